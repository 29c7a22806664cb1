import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from torch import nn

from initlab import calculate_gain, compute_gain
from initlab.gains import ACTIVATIONS, PYTORCH_GAINS


def _torch_outcome(fn, *args):
    try:
        value = fn(*args)
    except Exception as error:  # the oracle's error type is part of what we compare
        return type(error)
    return value, type(value)


@pytest.mark.parametrize("name", PYTORCH_GAINS)
@pytest.mark.parametrize("param", [None, 0, 1, 3, 0.2, -0.5, 1e-3, np.float64(0.3), "x", True])
def test_calculate_gain_matches_torch(name, param):
    expected = _torch_outcome(torch.nn.init.calculate_gain, name, param)
    assert _torch_outcome(calculate_gain, name, param) == expected


@pytest.mark.parametrize("param", [True, False, "0.1", np.float32(0.1), np.int64(2), [0.1]])
def test_calculate_gain_rejects_leaky_params_like_torch(param):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain("leaky_relu", param)
    with pytest.raises(
        ValueError, match=re.escape(f"must be an int or float; got param={param!r}")
    ):
        calculate_gain("leaky_relu", param)


@pytest.mark.parametrize("name", ["Relu", "gelu", "", None, 1, "leaky relu"])
def test_calculate_gain_rejects_unknown_like_torch(name):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(name)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        calculate_gain(name)


def test_calculate_gain_suggests_close_name():
    with pytest.raises(ValueError, match="did you mean 'leaky_relu'"):
        calculate_gain("leaky_rellu")
    with pytest.raises(ValueError, match="got nonlinearity='Relu' \\(did you mean 'relu'\\?\\)"):
        calculate_gain("Relu")  # case first: difflib alone would say 'selu'


@pytest.mark.parametrize("name", ["gelu", "silu", "elu"])
def test_calculate_gain_points_to_compute_gain_for_activations_it_lacks(name):
    with pytest.raises(
        ValueError, match=rf"which PyTorch's table lacks: .*compute_gain\('{name}'\)"
    ):
        calculate_gain(name)


def test_compute_gain_closed_forms():
    # E[relu(z)^2] = 1/2 (He et al. 2015, Eq. 10)
    assert abs(compute_gain("relu") - math.sqrt(2)) <= 1e-12
    for name in ("linear", "identity"):
        assert abs(compute_gain(name) - 1) <= 1e-12
    # E[leaky(z)^2] = (1 + a^2) / 2
    for slope in (0.0, 0.01, 0.2, 0.25, 1.0, 3.0):
        expected = math.sqrt(2 / (1 + slope**2))
        assert abs(compute_gain(("leaky_relu", slope)) - expected) <= 1e-12
        assert abs(compute_gain(lambda x, a=slope: F.leaky_relu(x, a)) - expected) <= 1e-12
    assert compute_gain("leaky_relu") == compute_gain(("leaky_relu", 0.01))
    assert compute_gain("prelu") == compute_gain(("leaky_relu", 0.25))
    # SELU's constants are rounded to ~1e-10, E[selu(z)^2] = 1 at its fixed point
    assert abs(compute_gain("selu") - 1) <= 1e-4


def _gain_by_quad(fn, breakpoints):
    # Reference: adaptive quadrature of phi(z)^2 * N(z; 0, 1), split at the kinks.
    def integrand(z):
        return fn(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    edges = [-math.inf, *breakpoints, math.inf]
    total = sum(
        integrate.quad(integrand, a, b, epsabs=0, epsrel=1e-13, limit=200)[0]
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    )
    return 1 / math.sqrt(total)


@pytest.mark.parametrize(
    ("name", "fn", "breakpoints"),
    [
        ("hardtanh", lambda z: min(max(z, -1.0), 1.0), [-1.0, 1.0]),
        ("tanh", math.tanh, [0.0]),
        ("relu6", lambda z: min(max(z, 0.0), 6.0), [0.0, 6.0]),
        ("hardswish", lambda z: z * min(max(z + 3, 0.0), 6.0) / 6, [-3.0, 3.0]),
        ("softsign", lambda z: z / (1 + abs(z)), [0.0]),
        ("elu", lambda z: z if z > 0 else math.expm1(z), [0.0]),
    ],
)
def test_compute_gain_against_quad(name, fn, breakpoints):
    # both rules are accurate to ~1e-14; 1e-10 leaves room for rounding, not for a wrong rule
    assert compute_gain(name) == pytest.approx(_gain_by_quad(fn, breakpoints), rel=1e-10)


@pytest.mark.parametrize(("name", "fn"), [("gelu", F.gelu), ("silu", F.silu)])
def test_compute_gain_monte_carlo(name, fn):
    n = 10**6
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    squares = fn(z) ** 2
    # The sample mean of phi(z)^2 has standard error sd(phi(z)^2) / sqrt(n) (~1e-3 here);
    # 5 standard errors bound a correct gain's miss with probability 1 - 6e-7.
    tolerance = 5 * float(squares.std()) / math.sqrt(n)
    assert abs(float(squares.mean()) - compute_gain(name) ** -2) <= tolerance


@pytest.mark.parametrize(
    ("name", "documented"),
    [("tanh", 1.5925), ("sigmoid", 1.8462), ("gelu", 1.5335), ("silu", 1.6765), ("elu", 1.2452)],
)
def test_compute_gain_documented_values(name, documented):
    # the docstring quotes these to 4 decimals
    assert round(compute_gain(name), 4) == documented


def test_compute_gain_differs_from_pytorch_table_where_documented():
    assert (calculate_gain("tanh"), round(compute_gain("tanh"), 4)) == (5 / 3, 1.5925)
    assert (calculate_gain("sigmoid"), round(compute_gain("sigmoid"), 4)) == (1, 1.8462)
    assert (calculate_gain("selu"), round(compute_gain("selu"), 4)) == (0.75, 1.0)
    for name in ("linear", "relu", "leaky_relu"):
        assert compute_gain(name) == pytest.approx(calculate_gain(name), rel=1e-12)


def test_compute_gain_every_name_is_finite_and_positive():
    for name in ACTIVATIONS:
        assert 0 < compute_gain(name) < 3, name


def test_compute_gain_accepts_modules_and_functions():
    assert compute_gain(nn.GELU()) == pytest.approx(compute_gain("gelu"), rel=1e-14)
    assert compute_gain(nn.ReLU(inplace=True)) == pytest.approx(math.sqrt(2), rel=1e-14)
    assert compute_gain(nn.PReLU()) == pytest.approx(compute_gain("prelu"), rel=1e-14)
    assert compute_gain(torch.tanh) == compute_gain("tanh")
    assert compute_gain(nn.Softplus(beta=2.0)) == pytest.approx(compute_gain(("softplus", 2.0)))
    assert compute_gain(("celu", 1.0)) == pytest.approx(compute_gain("elu"), rel=1e-14)


def test_compute_gain_named_results_are_cached():
    from initlab.gains import _named_gain

    compute_gain("mish")
    hits = _named_gain.cache_info().hits
    compute_gain("mish")
    assert _named_gain.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    ("activation", "error", "message"),
    [
        (3, TypeError, "activation must be a name, a \\(name, param\\) tuple or a callable"),
        (("relu",), TypeError, "activation tuple must be \\(name, param\\)"),
        ("rellu", ValueError, "activation must be one of .*did you mean 'relu'"),
        (("relu", 0.1), ValueError, "activation 'relu' takes no parameter"),
        (("softplus", 0), ValueError, "beta of 'softplus' must be > 0; got beta=0.0"),
        (("leaky_relu", True), ValueError, "must be a finite number; got True"),
        (("elu", math.nan), ValueError, "must be a finite number; got nan"),
        (lambda x: 0 * x, ValueError, "E\\[phi\\(z\\)\\^2\\] must be finite and > 0"),
        (lambda x: x.sum(), TypeError, "activation must be elementwise"),
        (lambda x: x.tolist(), TypeError, "activation must be elementwise"),
    ],
)
def test_compute_gain_errors(activation, error, message):
    with pytest.raises(error, match=message):
        compute_gain(activation)
