"""diagnose claims only what it measured, and its ratio verdicts compare like with like."""

import math

import pytest
import torch
from torch import nn

from initlab.diagnostics.diagnose import diagnose
from initlab.experiments.diagnosis import diagnose_schemes, load_batch

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
        "(fewer than 2 comparable weight layers, or a zero output layer)"
    )


def test_plain_mlp_compares_the_first_and_last_hidden_layer_as_before():
    d = diagnose(_tanh_net(depth=10), _batch(), loss_fn=CE)
    assert d.residual_ends == ()
    (v,) = [v for v in d.verdicts if v.code == "vanishing_gradients"]
    rows = _rows(d)
    ratio = rows["0"].grad_rms / rows["18"].grad_rms
    assert v.message.startswith("pre-activation gradient RMS from 18 back to 0 goes from")
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
    ratio = rows["blocks.0.fc2"].grad_rms / rows["blocks.9.fc2"].grad_rms
    assert ratio > 10 and f"(ratio {ratio:.3g})" in v.message
    assert "residual-stream gradient RMS at the outputs of blocks.9.fc2 back to blocks.0.fc2" in (
        v.message
    )


def test_a_single_block_has_no_gradient_ratio(mnist):
    (result,) = diagnose_schemes(
        "transformer", ["kaiming_normal"], mnist, model_params={"depth": 1}
    )
    d = result.diagnosis
    assert _codes(d) == ["healthy"]
    assert "gradients not compared" in d.verdicts[0].message
    assert math.isfinite(_rows(d)["embed"].grad_rms)
