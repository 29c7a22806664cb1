"""diagnose claims only what it measured, and its ratio verdicts compare like with like."""

import math

import pytest
import torch
from torch import nn

import initlab as il
from initlab.diagnostics.diagnose import diagnose
from initlab.experiments.diagnosis import diagnose_schemes, load_batch
from initlab.zoo.models import build_model

CE = nn.functional.cross_entropy


def _codes(d):
    return [v.code for v in d.verdicts]


def _rows(d):
    return {r.name: r for r in d.layers}


def _tanh_net(depth=20, width=64):
    # N(0, 0.01^2) weights, PyTorch's default biases U(+-1/8): the biases keep every tanh
    # layer's std near 0.07, while each layer multiplies the back-propagated signal by about
    # 0.01 * sqrt(64) = 0.08.
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.01)
    return model


def _batch(n=128, features=64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, features, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_without_a_loss_healthy_claims_nothing_about_gradients():
    model, (x, y) = _tanh_net(), _batch()
    measured = diagnose(model, (x, y), loss_fn=CE)
    rows = _rows(measured)
    # The first hidden pre-activation gradient is ~0.08^19 of the last one's.
    assert rows["0"].grad_rms / rows["38"].grad_rms < 1e-15
    assert _codes(measured) == ["vanishing_gradients"]
    d = diagnose(model, x)
    assert all(r.grad_rms is None for r in d.layers)
    assert _codes(d) == ["healthy"]
    assert d.verdicts[0].message == (
        "activations keep their scale; gradients not measured (no loss_fn: no backward pass ran)"
    )


def test_healthy_says_when_gradients_were_measured_but_not_compared():
    # Two hidden tanh layers compare both; one hidden layer leaves nothing to compare.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())
    model.append(nn.Linear(64, 10))
    d = diagnose(model, _batch(), loss_fn=CE)
    assert d.verdicts[0].message == "activations and gradients keep their scale"
    d = diagnose(
        nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)), _batch(), loss_fn=CE
    )
    assert d.verdicts[0].message == (
        "activations not compared (fewer than 2 hidden signals); gradients not compared "
        "(fewer than 2 comparable layers, a zero output layer, or no gradient reaching them)"
    )


def test_plain_mlp_compares_the_first_and_last_hidden_layer_as_before():
    d = diagnose(_tanh_net(depth=10), _batch(), loss_fn=CE)
    assert d.residual_ends == ()
    (v,) = [v for v in d.verdicts if v.code == "vanishing_gradients"]
    rows = _rows(d)
    ratio = rows["0"].grad_norm / rows["18"].grad_norm
    # equal widths: the per-example norm is sqrt(64) times the per-element RMS
    assert ratio == pytest.approx(rows["0"].grad_rms / rows["18"].grad_rms, rel=1e-9)
    assert v.message.startswith(
        "pre-activation gradient norm per example from 18 back to 0 goes from"
    )
    assert f"(ratio {ratio:.3g})" in v.message


@pytest.fixture(scope="module")
def mnist():
    return load_batch("mnist", size=128)


@pytest.mark.filterwarnings("ignore:lsuv_. 2 layer")  # out_proj is read, not called, by MHA
@pytest.mark.parametrize("scheme", ["xavier_normal", "kaiming_normal", "orthogonal", "lsuv"])
def test_transformer_compares_the_residual_stream_not_the_embedding(mnist, scheme):
    (result,) = diagnose_schemes("transformer", [scheme], mnist, model_params={"depth": 2})
    d = result.diagnosis
    rows = _rows(d)
    ends = ["encoder.layers.0.linear2", "encoder.layers.1.linear2"]
    assert set(ends) <= set(d.residual_ends) and "embed" not in d.residual_ends
    # What the old rule compared: the patch embedding, ahead of the first pre-norm (its
    # gradient scales with 1 / its std), against the last block's branch end.
    off_stream = rows["embed"].grad_rms / rows[ends[1]].grad_rms
    on_stream = rows[ends[0]].grad_rms / rows[ends[1]].grad_rms
    assert off_stream > 10 and 1 < on_stream < 3
    assert _codes(d) == ["healthy"]


def test_residual_stream_gradients_still_explode_without_normalization(mnist):
    # He init in a residual MLP without norms: the variance doubles per block, and the
    # stream's gradient grows toward the input with it.
    (result,) = diagnose_schemes(
        "resmlp", ["kaiming_normal"], mnist, model_params={"depth": 10}, seed=0
    )
    d = result.diagnosis
    assert d.residual_ends == tuple(f"blocks.{i}.fc2" for i in range(10))
    (v,) = [v for v in d.verdicts if v.code == "exploding_gradients"]
    rows = _rows(d)
    ratio = rows["blocks.0.fc2"].grad_norm / rows["blocks.9.fc2"].grad_norm
    assert ratio > 10 and f"(ratio {ratio:.3g})" in v.message
    assert (
        "residual-stream gradient norm per example at the outputs of blocks.9.fc2 back to "
        "blocks.0.fc2"
    ) in v.message


def test_a_single_block_has_no_gradient_ratio(mnist):
    (result,) = diagnose_schemes(
        "transformer", ["kaiming_normal"], mnist, model_params={"depth": 1}
    )
    d = result.diagnosis
    assert _codes(d) == ["healthy"]
    assert "gradients not compared" in d.verdicts[0].message
    assert math.isfinite(_rows(d)["embed"].grad_rms)


@pytest.mark.parametrize(
    ("model", "params", "end", "before"),
    [
        ("resnet", {}, "bn2", "conv2"),
        ("resmlp", {"norm": "batch", "depth": 4}, "norm2", "fc2"),
        ("resmlp", {"norm": "layer", "depth": 4}, "norm2", "fc2"),
    ],
)
def test_zero_init_residual_compares_the_stream_not_the_layer_before_the_norm(
    mnist, model, params, end, before
):
    x, y = mnist
    net = build_model(model, **params)
    il.init_model(net, "auto", example_input=x[:4], zero_init_residual=True, seed=0)
    d = diagnose(net, (x, y), loss_fn=CE)
    rows = _rows(d)
    blocks = sorted(r.name.removesuffix(f".{end}") for r in d.layers if r.name.endswith(end))
    assert len(blocks) >= 2
    for block in blocks:
        # Goyal et al.'s zero norm weight: the layer before the norm gets exactly no gradient,
        # the summand the norm outputs gets the stream's.
        assert net.get_submodule(f"{block}.{end}").weight.eq(0).all()
        assert rows[f"{block}.{before}"].grad_rms == 0.0
        assert rows[f"{block}.{end}"].grad_rms > 0.0
    assert _codes(d) == ["healthy"]
    assert d.verdicts[0].message == "activations and gradients keep their scale"  # judged


class _NormEndedBlock(nn.Module):
    """``x + bn(fc(relu(x)))``, the add written out of place or in place (torchvision's
    BasicBlock adds in place)."""

    def __init__(self, width, inplace):
        super().__init__()
        self.fc, self.bn, self.inplace = nn.Linear(width, width), nn.BatchNorm1d(width), inplace

    def forward(self, x):
        out = self.bn(self.fc(torch.relu(x)))  # (B, width)
        if self.inplace:
            out += x
            return out
        return x + out


@pytest.mark.parametrize("inplace", [False, True])
def test_a_norm_ending_a_branch_carries_the_stream_gradient(inplace):
    torch.manual_seed(0)
    blocks = [_NormEndedBlock(32, inplace) for _ in range(4)]
    net = nn.Sequential(nn.Linear(64, 32), *blocks, nn.Linear(32, 10))
    with torch.no_grad():
        blocks[-1].bn.weight.fill_(1e-3)  # small, not zero: no 0-to-0 escape
    x, y = _batch()
    d = diagnose(net, (x, y), loss_fn=CE)
    rows = _rows(d)
    # Oracle: the gradient of each block's sum, read by hand (BatchNorm in train mode, as in
    # diagnose; running statistics do not enter the output).
    sums = []

    def keep(module, args, out):
        out.retain_grad()
        sums.append(out)

    for block in blocks:
        block.register_forward_hook(keep)
    CE(net(x), y).backward()
    for i, out in enumerate(sums, start=1):
        expected = out.grad.double().pow(2).mean().sqrt().item()
        assert rows[f"{i}.bn"].grad_rms == pytest.approx(expected, rel=1e-9)
    # The last branch's fc sees the stream's gradient times 1e-3 / (its std, about 0.3): the
    # old comparison of fc rows read that as a factor ~300 of growth toward the input.
    assert rows["4.fc"].grad_rms < 1e-2 * rows["4.bn"].grad_rms
    assert _codes(d) == ["healthy"]
    assert d.verdicts[0].message == "activations and gradients keep their scale"


def test_no_gradient_at_the_last_comparable_layer_is_not_judged():
    # A plain network whose last hidden norm starts at zero: every hidden layer's output
    # gradient is exactly 0. 0 to 0 is no ratio, not a vanishing signal.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.Tanh(),
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.Tanh(),
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.Linear(64, 10),
    )  # fmt: skip
    with torch.no_grad():
        model[7].weight.zero_()
    d = diagnose(model, _batch(), loss_fn=CE)
    rows = _rows(d)
    assert [rows[n].grad_rms for n in ("0", "3", "6")] == [0.0, 0.0, 0.0]
    assert _codes(d) == ["healthy"]
    assert d.verdicts[0].message == (
        "activations keep their scale; gradients not compared (fewer than 2 comparable layers, "
        "a zero output layer, or no gradient reaching them)"
    )
