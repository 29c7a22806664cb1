"""Schemes on whole models: exact matches with torch.nn.init, moments, bias rules, blocks."""

import copy
import math

import pytest
import torch
from torch import nn

from initlab.schemes.registry import (
    SCHEMES,
    BiasInit,
    initialize,
    parse_bias_init,
    parse_scheme,
    weight_parameters,
)
from initlab.schemes.transformer import POLICIES
from initlab.zoo.models import MLP, InitNet, build_model
from initlab.zoo.residual import ResidualMLP


@pytest.fixture(autouse=True)
def _no_grad():
    # The tests read parameters as numbers; no autograd bookkeeping (or warnings) needed.
    with torch.no_grad():
        yield


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_xavier_then_he_equals_the_reference_examples_torch_code_bit_for_bit():
    net = initialize(InitNet(), "xavier-then-he", generator=_gen(5))
    ref = InitNet()
    g = _gen(5)
    nn.init.xavier_uniform_(ref.fc1.weight, generator=g)
    nn.init.kaiming_uniform_(ref.fc2.weight, nonlinearity="relu", generator=g)
    nn.init.zeros_(ref.fc1.bias)
    nn.init.zeros_(ref.fc2.bias)
    for (name, p), (_, q) in zip(net.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize(
    "scheme, torch_init",
    [
        ("xavier_uniform", lambda w, g: nn.init.xavier_uniform_(w, generator=g)),
        ("xavier_normal", lambda w, g: nn.init.xavier_normal_(w, generator=g)),
        (
            "kaiming_uniform",
            lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g),
        ),
        (
            "kaiming_normal",
            lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g),
        ),
        ("uniform", lambda w, g: nn.init.uniform_(w, -0.05, 0.05, generator=g)),
        ("normal", lambda w, g: nn.init.normal_(w, 0.0, 0.01, generator=g)),
    ],
)
def test_schemes_equal_torch_nn_init_layer_by_layer(scheme, torch_init):
    net = initialize(MLP(depth=2, width=64), scheme, generator=_gen(1))
    ref = MLP(depth=2, width=64)
    g = _gen(1)
    for _, _, w in weight_parameters(ref):
        torch_init(w, g)
    for (_, _, w), (_, _, r) in zip(weight_parameters(net), weight_parameters(ref), strict=True):
        assert torch.equal(w, r)


# Moment test (STYLE.md): n = 256 * 784 = 200704 samples; the sample std s of n draws has
# relative standard error c / sqrt(n) with c = 0.707 (normal), 0.447 (uniform), 0.584 (normal
# truncated to +-2 sigma), so |s / sigma - 1| <= 5 c / sqrt(n) fails a correct fill with
# probability < 1e-6 while a forgotten sqrt(2) (41%) or a wrong fan (> 10%) is far outside.
_FAN_IN, _FAN_OUT = 784, 256
_MOMENTS = [
    ("uniform", 0.05 / math.sqrt(3), 0.447),
    ("normal", 0.01, 0.707),
    ("normal:std=0.3", 0.3, 0.707),
    ("uniform:bound=0.2", 0.2 / math.sqrt(3), 0.447),
    ("xavier_uniform", math.sqrt(2 / (_FAN_IN + _FAN_OUT)), 0.447),
    ("xavier_normal", math.sqrt(2 / (_FAN_IN + _FAN_OUT)), 0.707),
    ("xavier_normal:gain=2", 2 * math.sqrt(2 / (_FAN_IN + _FAN_OUT)), 0.707),
    ("kaiming_uniform", math.sqrt(2 / _FAN_IN), 0.447),
    ("kaiming_normal", math.sqrt(2 / _FAN_IN), 0.707),
    ("lecun_normal", math.sqrt(1 / _FAN_IN), 0.707),
    # 0.8796256610342398: std of a standard normal truncated to [-2, 2]
    ("trunc_normal", 0.02 * 0.8796256610342398, 0.584),
]


@pytest.mark.parametrize("scheme, sigma, c", _MOMENTS)
def test_weight_std_matches_the_formula(scheme, sigma, c):
    layer = nn.Linear(_FAN_IN, _FAN_OUT)
    initialize(layer, scheme, generator=_gen(2))
    n = layer.weight.numel()
    s = float(layer.weight.double().std())
    assert abs(s / sigma - 1) <= 5 * c / math.sqrt(n)
    assert torch.equal(layer.bias, torch.zeros(_FAN_OUT))


def test_trunc_normal_and_uniform_respect_their_bounds():
    layer = initialize(nn.Linear(300, 200), "trunc_normal:std=0.1", generator=_gen(0))
    assert float(layer.weight.abs().max()) <= 0.2
    layer = initialize(nn.Linear(300, 200), "uniform:bound=0.01", generator=_gen(0))
    assert float(layer.weight.abs().max()) <= 0.01


@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_orthogonal_rows_are_orthonormal_times_gain(gain):
    layer = initialize(nn.Linear(784, 128), f"orthogonal:gain={gain}", generator=_gen(0))
    w = layer.weight.double()
    torch.testing.assert_close(
        w @ w.T, gain**2 * torch.eye(128, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_zeros_scheme_zeroes_every_weight_and_bias():
    net = initialize(InitNet(), "zeros", generator=_gen(0))
    assert all(float(p.abs().sum()) == 0.0 for p in net.parameters())


def test_xavier_then_he_generalizes_first_xavier_then_kaiming():
    net = initialize(MLP(depth=2, width=512), "xavier-then-he", generator=_gen(3))
    first, second, head = (w for _, _, w in weight_parameters(net))
    # Uniform bounds, hand-computed: xavier sqrt(6/(784+512)), kaiming relu sqrt(6/fan_in).
    xavier, he_512 = math.sqrt(6 / (784 + 512)), math.sqrt(6 / 512)
    assert float(first.abs().max()) <= xavier and float(first.abs().max()) > 0.99 * xavier
    assert float(second.abs().max()) <= he_512 and float(second.abs().max()) > 0.99 * he_512
    assert float(head.abs().max()) <= he_512 and float(head.abs().max()) > 0.95 * he_512


def test_norm_layers_get_weight_one_bias_zero_and_fresh_statistics():
    net = MLP(depth=2, width=16, norm="batch")
    bn = net.hidden[0][1]
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.running_mean.fill_(5.0)
    initialize(net, "normal:std=0.5", generator=_gen(0), bias_init="constant:0.1")
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.bias, torch.zeros(16))
    assert torch.equal(bn.running_mean, torch.zeros(16))
    assert torch.equal(net.hidden[0][0].bias, torch.full((16,), 0.1))


def test_bias_rules():
    net = initialize(InitNet(), "xavier_uniform", generator=_gen(0), bias_init="constant:0.01")
    assert torch.equal(net.fc1.bias, torch.full((128,), 0.01))
    net = initialize(InitNet(), "xavier_uniform", generator=_gen(0), bias_init="torch")
    # PyTorch's Linear bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 784 for fc1.
    assert 0 < float(net.fc1.bias.abs().max()) <= 1 / math.sqrt(784)
    assert 0 < float(net.fc2.bias.abs().max()) <= 1 / math.sqrt(128)


def test_torch_default_is_pytorchs_reset_and_leaves_the_global_rng_alone():
    a, b, c = InitNet(), InitNet(), InitNet()
    state = torch.get_rng_state()
    initialize(a, "torch_default", generator=_gen(9))
    initialize(b, "torch_default", generator=_gen(9))
    initialize(c, "torch_default", generator=_gen(10))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.fc1.weight, b.fc1.weight) and torch.equal(a.fc1.bias, b.fc1.bias)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)
    # PyTorch's Linear default: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / math.sqrt(784)
    assert (
        float(a.fc1.weight.abs().max()) <= bound and float(a.fc1.weight.abs().max()) > 0.99 * bound
    )
    assert float(a.fc1.bias.abs().max()) > 0  # torch_default keeps PyTorch's biases


def test_one_dimensional_parameters_that_are_not_biases_keep_their_defaults():
    net = nn.Sequential(nn.Linear(4, 4), nn.PReLU(4))
    initialize(net, "xavier_uniform", generator=_gen(0), bias_init="constant:0.5")
    assert torch.equal(net[1].weight, torch.full((4,), 0.25))  # PyTorch's PReLU slope
    assert torch.equal(net[0].bias, torch.full((4,), 0.5))


def test_torch_default_with_zero_bias_rule():
    net = initialize(InitNet(), "torch_default", generator=_gen(0), bias_init="zeros")
    assert float(net.fc1.bias.abs().sum()) == 0 and float(net.fc1.weight.abs().sum()) > 0


# The recurrent and transformer schemes refuse an MLP; tests/test_schemes_sequence.py runs the
# same check for them on the zoo's sequence models.
_SEQUENCE = {*POLICIES, "rnn_orthogonal", "irnn"}


@pytest.mark.parametrize("scheme", sorted(set(SCHEMES) - _SEQUENCE))
def test_every_scheme_is_reproducible_and_uses_only_its_generator(scheme, tmp_path):
    # fixup needs a model with residual blocks, zero_gamma with norms in them; the others take
    # any model.
    model = "resmlp" if scheme in ("fixup", "zero_gamma") else "mlp"
    extra = {"norm": "batch"} if scheme == "zero_gamma" else {}
    a, b = (build_model(model, depth=2, width=32, **extra) for _ in range(2))
    batch = torch.rand(64, 784, generator=_gen(8))  # for data-dependent schemes (lsuv)
    source = tmp_path / "source.pt"  # for schemes that load a checkpoint (pretrained)
    torch.save(build_model(model, depth=2, width=32, **extra).state_dict(), source)
    state = torch.get_rng_state()
    initialize(a, scheme, generator=_gen(4), batch=batch, source=source)
    initialize(b, scheme, generator=_gen(4), batch=batch, source=source)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fixup_is_he_normal_then_fixups_rules_bit_for_bit():
    # What the fixup scheme drew before it was He's policy plus a Fixup step: kaiming_normal_
    # (fan_in, relu) on every Linear weight in registration order, then fixup_.
    from initlab.datadriven import fixup_

    net = ResidualMLP(depth=3, width=16)
    ref = copy.deepcopy(net)
    initialize(net, "fixup", generator=_gen(6))
    g = _gen(6)
    for module in ref.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=g)
            nn.init.zeros_(module.bias)
    fixup_(ref, generator=g)
    for (name, p), (_, q) in zip(net.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(p, q), name


def test_lstm_gates_are_filled_block_by_block():
    lstm = nn.LSTM(8, 16)
    initialize(lstm, "xavier_uniform", generator=_gen(0))
    # Per gate the fans are (8, 16): bound sqrt(6/24) = 0.5. Filling the whole (64, 8) tensor
    # would read fans (8, 64) and bound sqrt(6/72) = 0.289; the max of 512 draws is near 0.5.
    assert 0.45 < float(lstm.weight_ih_l0.abs().max()) <= 0.5
    for gate in lstm.weight_hh_l0.chunk(4):
        assert 0.8 * math.sqrt(6 / 32) < float(gate.abs().max()) <= math.sqrt(6 / 32)


def test_conv_transpose_uses_layer_fans():
    conv = nn.ConvTranspose2d(4, 32, 3)  # weight (in=4, out=32, 3, 3)
    initialize(conv, "kaiming_uniform", generator=_gen(0))
    # fan_in of a transposed conv is in * K = 4 * 9 = 36 (not out * K = 288, the shape's reading)
    bound = math.sqrt(6 / 36)
    assert 0.95 * bound < float(conv.weight.abs().max()) <= bound


def test_parse_scheme_and_bias_init():
    assert parse_scheme("normal") == (SCHEMES["normal"], {"std": 0.01})
    assert parse_scheme("orthogonal:gain=2")[1] == {"gain": 2.0}
    assert parse_bias_init("zeros") == BiasInit("zeros")
    assert parse_bias_init("constant:-0.5") == BiasInit("constant", -0.5)
    assert parse_bias_init("torch") == BiasInit("torch")


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: parse_scheme("xavier_unifrom"),
            r"scheme must be one of .*did you mean 'xavier_uniform'",
        ),
        (
            lambda: parse_scheme("normal:sd=1"),
            r"option of scheme 'normal' must be one of \['std'\]",
        ),
        (
            lambda: parse_scheme("normal:std=big"),
            r"std in scheme='normal:std=big' must be a number",
        ),
        (lambda: parse_scheme("normal:0.1"), r"scheme options are key=value; got '0.1'"),
        (lambda: parse_scheme("zeros:std=1"), r"scheme 'zeros' takes no options; got 'std=1'"),
        (
            lambda: parse_scheme("pretrained:x=1"),
            r"scheme 'pretrained' takes no options \(its weights come from the source checkpoint",
        ),
        (lambda: parse_bias_init("zero"), r"bias_init must be one of .*did you mean 'zeros'"),
        (lambda: parse_bias_init("constant"), r"constant needs a value, e.g. 'constant:0.01'"),
        (lambda: parse_bias_init("zeros:1"), r"'zeros' takes no value; got bias_init='zeros:1'"),
    ],
)
def test_parse_errors_name_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_scheme_has_a_one_line_summary():
    for name, scheme in SCHEMES.items():
        assert scheme.name == name and scheme.summary and "\n" not in scheme.summary
