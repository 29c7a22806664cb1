"""Mean-field theory against closed forms, known published values and scipy's quadrature."""

import math

import pytest
import torch

from initlab.diagnostics.meanfield import critical_weight_variance, mean_field

integrate = pytest.importorskip("scipy.integrate")


def _gauss(f):
    """E[f(z)], z ~ N(0, 1), by adaptive quadrature (independent of the code under test)."""
    density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(lambda z: f(z) * density(z), -12, 12, limit=200)[0]


def test_edge_of_chaos_tanh_with_bias_matches_schoenholz():
    # Schoenholz et al. (2017), Fig. 1: sigma_b^2 = 0.05 puts the tanh critical line at
    # sigma_w^2 ~= 1.76.
    assert critical_weight_variance("tanh", 0.05) == pytest.approx(1.76, abs=0.01)


def test_edge_of_chaos_tanh_without_bias_is_one():
    # Poole et al. (2016): with sigma_b^2 = 0, chi_1 = sigma_w^2 tanh'(0)^2 = sigma_w^2 at q* = 0,
    # so the edge of chaos is exactly 1; bisection runs to tol = 1e-6, well inside 1e-4.
    assert critical_weight_variance("tanh", 0.0) == pytest.approx(1.0, abs=1e-4)
    # Tighter bias case: 1.76095 (Schoenholz et al. 2017, Fig. 1 reads ~1.76).
    assert critical_weight_variance("tanh", 0.05) == pytest.approx(1.76095, abs=1e-4)


def test_tanh_just_above_the_edge_converges_to_its_small_fixed_point():
    # sigma_w^2 = 1.002: q_l -> q* ~ (sigma_w^2 - 1) / (2 sigma_w^2) only algebraically, so plain
    # iteration for 2000 layers stops at q ~ 1e-3 + 5e-4 and reports chi_1 < 1 ("ordered").
    mf = mean_field("tanh", 1.002, 0.0)
    assert mf.q_star == pytest.approx(0.0010008, rel=1e-4)
    # q* is a fixed point of the variance map, integrated independently by scipy.
    q = mf.q_star
    assert 1.002 * _gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2) == pytest.approx(q, rel=1e-9)
    chi = 1.002 * _gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert mf.chi_1 == pytest.approx(chi, rel=1e-9) and mf.chi_1 > 1.0
    assert mf.chi_1 == pytest.approx(1.0000013, abs=1e-7)
    # chi_1 - 1 = 1.3e-6 is inside the critical band (|chi_1 - 1| <= 1e-4: xi_c > 10^4 layers).
    assert mf.phase == "critical"


def test_ordered_just_below_the_edge_collapses_to_zero():
    # sigma_w^2 = 0.999 < 1: q* = 0 (q_l shrinks by ~0.999 per layer, far beyond 2000 layers to
    # reach 1e-30), and chi_1 at q* = 0 is exactly sigma_w^2.
    mf = mean_field("tanh", 0.999, 0.0)
    assert mf.q_star == 0.0 and mf.chi_1 == pytest.approx(0.999, rel=1e-9)
    assert mf.phase == "ordered"


def test_slow_correlation_map_is_solved_not_truncated():
    # tanh at sigma_w^2 = 1.78125, sigma_b^2 = 0.05: the correlation map's slope at c* is 0.996,
    # so 2000 iterations from c = 0 stop 5.8e-6 short (at 0.9737811). 0.9737869 is a fixed point
    # by scipy's dblquad (residual C(c) - c = -3.7e-9, i.e. c off by 3.7e-9 / (1 - 0.996) ~ 1e-6).
    mf = mean_field("tanh", 1.78125, 0.05)
    assert mf.c_star == pytest.approx(0.9737869, abs=2e-6)


def test_edge_of_chaos_relu_is_he():
    # E[relu'(z)^2] = 1/2 for any q, so chi_1 = sigma_w^2 / 2 = 1 at He's 2.0.
    assert critical_weight_variance("relu", 0.0) == pytest.approx(2.0, abs=1e-5)
    mf = mean_field("relu", 2.0)
    assert mf.chi_1 == pytest.approx(1.0, abs=1e-12)
    assert mf.phase == "critical" and mf.xi_c == math.inf


def test_linear_network_closed_form():
    # phi(x) = x: q* = sigma_b^2 / (1 - sigma_w^2), chi_1 = sigma_w^2, xi_c = -1 / ln(sigma_w^2).
    mf = mean_field("linear", 0.5, 0.2)
    assert mf.q_star == pytest.approx(0.4, rel=1e-9)
    assert mf.chi_1 == pytest.approx(0.5, rel=1e-12)
    assert mf.xi_c == pytest.approx(-1 / math.log(0.5), rel=1e-12)
    assert mf.phase == "ordered" and mf.c_star == 1.0


def test_tanh_fixed_point_and_slope_match_scipy():
    weight_var, bias_var = 1.5, 0.05
    mf = mean_field("tanh", weight_var, bias_var)
    q = mf.q_star
    # q* is a fixed point of the variance map, integrated independently by scipy.
    assert weight_var * _gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2) + bias_var == (
        pytest.approx(q, rel=1e-8)
    )
    chi = weight_var * _gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert mf.chi_1 == pytest.approx(chi, rel=1e-8)
    assert mf.xi_c == pytest.approx(-1 / math.log(chi), rel=1e-6)
    assert mf.trainable_depth == pytest.approx(6 * mf.xi_c)


def test_phases_around_the_critical_point():
    critical = critical_weight_variance("tanh", 0.05)
    ordered, chaotic = mean_field("tanh", 1.0, 0.05), mean_field("tanh", 3.0, 0.05)
    assert ordered.phase == "ordered" and ordered.chi_1 < 1
    assert chaotic.phase == "chaotic" and chaotic.chi_1 > 1 and 0 < chaotic.c_star < 1
    near = mean_field("tanh", critical, 0.05)
    # The depth scale diverges at the edge of chaos and is finite on both sides.
    assert near.xi_c > 100 > max(ordered.xi_c, chaotic.xi_c)
    # critical_weight_variance's own answer is labelled critical (|chi_1 - 1| <= 1e-4), and a
    # step of 1e-3 in sigma_w^2 (chi_1 moves by about 6e-4) leaves the critical band each way.
    assert near.phase == "critical"
    assert mean_field("tanh", critical - 1e-3, 0.05).phase == "ordered"
    assert mean_field("tanh", critical + 1e-3, 0.05).phase == "chaotic"


def test_callable_activation_matches_name():
    by_name, by_callable = mean_field("tanh", 1.2, 0.1), mean_field(torch.nn.Tanh(), 1.2, 0.1)
    assert by_callable.chi_1 == pytest.approx(by_name.chi_1, rel=1e-12)
    assert by_callable.activation == "Tanh"


def test_relu_variance_collapse_and_explosion():
    assert mean_field("relu", 1.0).q_star == 0.0
    exploding = mean_field("relu", 3.0)
    assert exploding.q_star == math.inf and exploding.phase == "chaotic"
    # The variance grows by chi_1 = 1.5 per layer: depth scale 1 / ln 1.5.
    assert exploding.xi_c == pytest.approx(1 / math.log(1.5), rel=1e-9)


@pytest.mark.parametrize("activation, bias_var", [("relu", 0.0), ("tanh", 0.05)])
def test_zero_weights_have_no_depth_scale(activation, bias_var):
    # sigma_w^2 = 0: every input gives the same output, chi_1 = 0, and xi_c = -1/ln(chi) -> 0;
    # the zeros scheme must not read as "trainable up to any depth".
    mf = mean_field(activation, 0.0, bias_var)
    assert mf.chi_1 == 0.0 and mf.xi_c == 0.0 and mf.trainable_depth == 0.0
    assert mf.phase == "ordered"
    # continuous with a tiny weight variance: relu's chi_1 = sigma_w^2 / 2, xi_c = -1/ln(5e-7)
    assert mean_field("relu", 1e-6).xi_c == pytest.approx(-1 / math.log(5e-7), rel=1e-9)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"activation must be one of .*did you mean 'tanh'"):
        mean_field("tahn", 1.0)
    with pytest.raises(ValueError, match=r"weight_var must be a finite number >= 0; got"):
        mean_field("tanh", -1.0)
    with pytest.raises(TypeError, match="activation must be a name or a callable"):
        mean_field(3, 1.0)
    with pytest.raises(ValueError, match="no edge of chaos"):
        critical_weight_variance(lambda x: 0.0 * x, 0.0)  # chi_1 = 0 for every variance


def test_mlp_mean_field_reads_the_square_layers():
    from initlab.experiments.diagnosis import mlp_mean_field
    from initlab.zoo.models import MLP

    net = MLP(depth=3, width=16, activation="tanh")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.fill_(0.25)  # fan_in * E[W^2] = 16 / 16 = 1 for the square layers
                m.bias.fill_(0.1)
    mf = mlp_mean_field(net, "tanh")
    assert mf.weight_var == pytest.approx(1.0) and mf.bias_var == pytest.approx(0.01)
