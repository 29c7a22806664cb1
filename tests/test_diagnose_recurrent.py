"""diagnose records layers returning several tensors (nn.LSTM/nn.GRU), names those it cannot."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from initlab.diagnostics.diagnose import diagnose

B, T, I, H, C = 8, 5, 6, 12, 3


class Recurrent(nn.Module):
    """(B, T, I) -> per-step logits (B, T, C) through a recurrent layer returning a tuple."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), C)

    def forward(self, x):
        out, _ = self.rnn(x)  # (B, T, D * H); the final states are not the signal
        return self.head(out)


def _loss(logits, target):
    return nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, T, I, generator=g), torch.randint(0, C, (B, T), generator=g)


def _std(t):
    return t.detach().double().std(correction=0).item()


def _rms(t):
    return t.detach().double().pow(2).mean().sqrt().item()


@pytest.mark.parametrize(
    "rnn",
    [
        lambda: nn.LSTM(I, H, num_layers=2, batch_first=True),
        lambda: nn.GRU(I, H, batch_first=True, bidirectional=True),
    ],
    ids=["lstm", "gru"],
)
def test_a_recurrent_layer_gets_a_row_from_its_output_sequence(rnn):
    torch.manual_seed(0)
    model = Recurrent(rnn())
    x, y = _batch()
    d = diagnose(model, (x, y), loss_fn=_loss)
    rows = {r.name: r for r in d.layers}
    assert list(rows) == ["rnn", "head"] and d.unrecorded == ()
    # The same quantities by hand: the output sequence's statistics and its loss gradient.
    out, _ = model.rnn(x)
    grad = torch.autograd.grad(_loss(model.head(out), y), out)[0]
    row = rows["rnn"]
    assert row.module_type == type(model.rnn).__name__ and row.shape == tuple(out.shape)
    assert row.std == pytest.approx(_std(out), rel=1e-9)
    assert row.mean == pytest.approx(out.double().mean().item(), rel=1e-9, abs=1e-12)
    assert row.grad_rms == pytest.approx(_rms(grad), rel=1e-6)
    assert row.kind == "other" and row.variance_ratio is None


class Packed(nn.Module):
    """An LSTM on sequences of lengths ``LENGTHS``, packed: padding is not part of its output."""

    LENGTHS = [T] * 3 + [2] * (B - 3)

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(I, H, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(pack_padded_sequence(x, self.LENGTHS, batch_first=True))
        return out.data  # (sum(LENGTHS), H)


def test_a_packed_sequence_is_measured_on_its_packed_data():
    torch.manual_seed(0)
    model, (x, _) = Packed(), _batch()
    d = diagnose(model, x)
    expected = model(x)  # only the valid steps, no padding
    assert [r.name for r in d.layers] == ["rnn"]
    assert d.layers[0].shape == tuple(expected.shape) == (3 * T + (B - 3) * 2, H)
    assert d.layers[0].std == pytest.approx(_std(expected), rel=1e-9)


class Noop(nn.Module):
    """A leaf module that returns nothing (a logging or assertion hook)."""

    def forward(self, x):
        return None


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.check = Noop()
        self.fc = nn.Linear(I, C)

    def forward(self, x):
        self.check(x)
        self.check(x)  # named once however often it runs
        return self.fc(x)


def test_a_layer_without_a_floating_point_output_is_named_in_the_table_and_verdict():
    x, _ = _batch()
    d = diagnose(Net(), x[:, 0])
    assert [r.name for r in d.layers] == ["fc"] and d.unrecorded == ("check",)
    [verdict] = d.verdicts
    assert verdict.code == "healthy"
    assert verdict.message.endswith("; no statistics for check (no floating-point output)")
    assert "\nno row (no floating-point output): check\n" in d.table()
    assert "no row" not in diagnose(Net().fc, x[:, 0]).table()
