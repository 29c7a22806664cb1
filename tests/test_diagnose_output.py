"""diagnose flags an output far above unit scale, which layer-to-layer ratios cannot see."""

import math

import pytest
import torch
from torch import nn

from initlab.diagnostics import diagnose
from initlab.diagnostics.verdicts import HINTS, OUTPUT_STD
from initlab.experiments.diagnosis import load_batch
from initlab.schemes.registry import initialize
from initlab.zoo.models import InitNet

CE = nn.functional.cross_entropy


def _codes(d):
    return [v.code for v in d.verdicts]


@pytest.fixture(scope="module")
def mnist():
    return load_batch("mnist", size=256)


def _initnet(scheme, batch):
    torch.manual_seed(0)
    return initialize(InitNet(), scheme, generator=torch.Generator().manual_seed(0), batch=batch)


def test_uniform_bound_5_on_initnet_is_a_confidently_wrong_start(mnist):
    net = _initnet("uniform:bound=5", mnist)
    d = diagnose(net, mnist, loss_fn=CE)
    # U(-5, 5) has std 5 / sqrt(3) = 2.9 per weight; over 784 pixels of mean ~0.13 and then
    # 128 ReLU units the logits reach a std in the hundreds, the loss ~300x ln 10.
    with torch.no_grad():
        logits = net(mnist[0]).double()
    assert d.output_std == pytest.approx(logits.std(correction=0).item(), rel=1e-9)
    assert d.output_std > 100 and d.loss > 100 * math.log(10)
    assert _codes(d) == ["large_output"]  # every layer-to-layer ratio looks fine
    (v,) = d.verdicts
    assert v.message == (
        f"output std {d.output_std:.3g} is above 10, an order of magnitude over unit scale; "
        f"initial loss {d.loss:.3g} (cross-entropy with near-zero logits starts at ln 10 = 2.3)"
    )
    assert "xavier_normal" in v.hint and v.hint == HINTS["large_output"]
    assert f"output std: {d.output_std:.3g}\nlarge_output: output std" in d.table()


@pytest.mark.parametrize("scheme", ["seed", "xavier_normal", "kaiming_normal", "lecun_normal"])
def test_variance_preserving_schemes_on_initnet_are_not_flagged(mnist, scheme):
    # The hint's schemes clear the verdict: logits of std about 0.4 (chance-level loss).
    d = diagnose(_initnet(scheme, mnist), mnist, loss_fn=CE)
    assert d.output_std < 1 and _codes(d) == ["healthy"]


def test_threshold_is_inclusive_and_needs_no_loss():
    model = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(4))
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)).double()
    x = (x - x.mean()) / x.std(correction=0)  # population std exactly 1
    d = diagnose(model.double(), x * OUTPUT_STD)
    assert d.output_std == pytest.approx(OUTPUT_STD, rel=1e-12) and _codes(d) == ["healthy"]
    d = diagnose(model, x * OUTPUT_STD * 1.01)
    assert _codes(d) == ["large_output"]
    assert (
        d.verdicts[0].message
        == "output std 10.1 is above 10, an order of magnitude over unit scale"
    )


def test_non_finite_output_is_flagged_and_a_zero_head_is_not():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.zero_()
    d = diagnose(model, x)
    assert d.output_std == 0.0 and "large_output" not in _codes(d)
    with torch.no_grad():
        model[2].weight.fill_(math.inf)
    d = diagnose(model, x)
    # An inf weight: the non_finite verdict names it, large_output is for finite outputs.
    assert not math.isfinite(d.output_std) and _codes(d) == ["non_finite"]
    assert d.verdicts[0].message.startswith("NaN or inf first in parameter '2.weight' (24 of 24")


def test_the_first_floating_point_non_scalar_output_is_judged():
    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            logits = self.fc(x)
            loss = logits.pow(2).mean()  # a scalar first, as in a Hugging Face output
            return {
                "loss": loss,
                "predicted": logits.argmax(1),
                "logits": logits,
                "x": 1e3 * logits,
            }

    model, x = TwoOutputs(), torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    d = diagnose(model, x)
    with torch.no_grad():
        expected = model.fc(x).double().std(correction=0).item()
    assert d.output_std == pytest.approx(expected, rel=1e-9) and "large_output" not in _codes(d)
