"""Distributions of the random initializers: moments, families (KS) and exact truncation bounds.

Moment tests: the sample standard deviation s of n i.i.d. draws has relative standard error
sqrt((kurtosis - 1) / (4 n)) = c / sqrt(n), with kurtosis 3 for the normal (c = 0.707), 1.8 for
the uniform (c = 0.447) and 2.364 for the normal truncated to +-2 std (c = 0.584). Asserting
|s / sigma - 1| <= 5 c / sqrt(n) with n >= 10^4 is a 5-standard-error band (a false alarm has
probability < 1e-6, and the seeds are fixed), yet it catches a forgotten sqrt(2) (a 41 % error)
or a wrong fan by a factor of 2 (29 %) with margin: the band is under 3.6 % wide. The target
sigma is computed here from the shape by hand, never by the code under test.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import initlab as il

C_NORMAL, C_UNIFORM, C_TRUNCATED = 0.707, 0.447, 0.584
TRUNCATED_STD = stats.truncnorm(-2, 2).std()  # the scipy value, independent of initlab


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# (id, initializer, shape, mean, sigma by hand, c)
MOMENTS = [
    (
        "uniform_",
        functools.partial(il.uniform_, a=-1.0, b=3.0),
        (100, 200),
        1.0,
        4 / 12**0.5,
        C_UNIFORM,
    ),
    ("normal_", functools.partial(il.normal_, mean=2.0, std=0.5), (100, 200), 2.0, 0.5, C_NORMAL),
    (
        "trunc_normal_",
        functools.partial(il.trunc_normal_, std=0.3),
        (100, 200),
        0.0,
        0.3 * TRUNCATED_STD,
        C_TRUNCATED,
    ),
    # (100, 50, 3): fan_in = 50 * 3 = 150, fan_out = 100 * 3 = 300, fan_avg = 225
    (
        "vs normal fan_in",
        functools.partial(il.variance_scaling_, scale=3.0, distribution="normal"),
        (100, 50, 3),
        0.0,
        (3 / 150) ** 0.5,
        C_NORMAL,
    ),
    (
        "vs uniform fan_out",
        functools.partial(il.variance_scaling_, scale=3.0, mode="fan_out", distribution="uniform"),
        (100, 50, 3),
        0.0,
        (3 / 300) ** 0.5,
        C_UNIFORM,
    ),
    (
        "vs truncated fan_avg",
        functools.partial(il.variance_scaling_, scale=3.0, mode="fan_avg"),
        (100, 50, 3),
        0.0,
        (3 / 225) ** 0.5,
        C_TRUNCATED,
    ),
    (
        "vs explicit fans",
        functools.partial(
            il.variance_scaling_, fans=(10, 40), mode="fan_avg", distribution="normal"
        ),
        (100, 200),
        0.0,
        (1 / 25) ** 0.5,
        C_NORMAL,
    ),
    # (200, 100): fan_in = 100, fan_out = 200
    (
        "xavier_uniform_",
        functools.partial(il.xavier_uniform_, gain=2.0),
        (200, 100),
        0.0,
        2 * (2 / 300) ** 0.5,
        C_UNIFORM,
    ),
    ("xavier_normal_", il.xavier_normal_, (200, 100), 0.0, (2 / 300) ** 0.5, C_NORMAL),
    (
        "glorot_normal_ truncated",
        functools.partial(il.glorot_normal_, truncated=True),
        (200, 100),
        0.0,
        (2 / 300) ** 0.5,
        C_TRUNCATED,
    ),
    # (64, 32, 3, 3): fan_in = 32 * 9 = 288, fan_out = 64 * 9 = 576
    (
        "kaiming_uniform_ relu",
        functools.partial(il.kaiming_uniform_, nonlinearity="relu"),
        (64, 32, 3, 3),
        0.0,
        (2 / 288) ** 0.5,
        C_UNIFORM,
    ),
    (
        "kaiming_normal_ leaky fan_out",
        functools.partial(il.kaiming_normal_, a=0.2, mode="fan_out"),
        (64, 32, 3, 3),
        0.0,
        (2 / 1.04 / 576) ** 0.5,
        C_NORMAL,
    ),
    (
        "he_normal_ truncated",
        functools.partial(il.he_normal_, nonlinearity="relu", truncated=True),
        (64, 32, 3, 3),
        0.0,
        (2 / 288) ** 0.5,
        C_TRUNCATED,
    ),
    ("lecun_uniform_", il.lecun_uniform_, (200, 100), 0.0, 0.1, C_UNIFORM),
    ("lecun_normal_", il.lecun_normal_, (200, 100), 0.0, 0.1, C_NORMAL),
    (
        "lecun_normal_ truncated",
        functools.partial(il.lecun_normal_, truncated=True),
        (200, 100),
        0.0,
        0.1,
        C_TRUNCATED,
    ),
    # each (64, 64) block of a fused (3 * 64, 64) weight has fan_out 64, not 192
    (
        "per_block_ kaiming fan_out",
        lambda t, **kw: il.per_block_(
            t, 3, il.kaiming_normal_, mode="fan_out", nonlinearity="relu", **kw
        ),
        (3 * 64, 64),
        0.0,
        (2 / 64) ** 0.5,
        C_NORMAL,
    ),
]


@pytest.mark.parametrize(
    ("fn", "shape", "mean", "sigma", "c"), [m[1:] for m in MOMENTS], ids=[m[0] for m in MOMENTS]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_moments(fn, shape, mean, sigma, c, dtype):
    w = fn(torch.empty(shape, dtype=dtype), generator=_seeded(1)).double()
    n = w.numel()
    assert n >= 10_000
    assert abs(w.std().item() / sigma - 1) <= 5 * c / math.sqrt(n)
    assert abs(w.mean().item() - mean) <= 5 * sigma / math.sqrt(n)


def test_sparse_nonzero_entries_have_the_given_std():
    w = il.sparse_(
        torch.empty(200, 100, dtype=torch.float64), sparsity=0.5, std=0.05, generator=_seeded()
    )
    values = w[w != 0]
    assert values.numel() == 100 * 100  # ceil(0.5 * 200) = 100 zeros per column
    assert abs(values.std().item() / 0.05 - 1) <= 5 * C_NORMAL / math.sqrt(values.numel())


def test_truncated_std_constant_is_the_std_of_the_truncated_standard_normal():
    assert abs(il.initializers.TRUNCATED_STD - TRUNCATED_STD) <= 1e-15


# --- family of the distribution: Kolmogorov-Smirnov on 20 000 draws, p > 1e-4 ---

N_KS = 20_000
KS_CASES = [
    ("uniform_", functools.partial(il.uniform_, a=-1.0, b=3.0), stats.uniform(-1.0, 4.0)),
    ("normal_", functools.partial(il.normal_, mean=2.0, std=0.5), stats.norm(2.0, 0.5)),
    (
        "trunc default +-2 std",
        functools.partial(il.trunc_normal_, mean=0.5, std=2.0),
        stats.truncnorm(-2, 2, 0.5, 2.0),
    ),
    (
        "trunc std asymmetric",
        functools.partial(il.trunc_normal_, std=2.0, a=-1.0, b=3.0),
        stats.truncnorm(-1, 3, 0, 2.0),
    ),
    (
        "trunc absolute asymmetric",
        functools.partial(il.trunc_normal_, mean=0.3, a=-0.5, b=1.5, bounds="absolute"),
        stats.truncnorm(-0.8, 1.2, 0.3, 1.0),
    ),
    (
        "trunc half-normal",
        functools.partial(il.trunc_normal_, a=0.0, b=math.inf, bounds="absolute"),
        stats.halfnorm(),
    ),
    (
        "trunc mass 0.34, side rejection",
        functools.partial(il.trunc_normal_, a=0.0, b=1.0),
        stats.truncnorm(0, 1),
    ),
    (
        "trunc narrow, inverse CDF",
        functools.partial(il.trunc_normal_, a=-0.1, b=0.1),
        stats.truncnorm(-0.1, 0.1),
    ),
    (
        "trunc upper tail, mirrored",
        functools.partial(il.trunc_normal_, a=2.5, b=4.0),
        stats.truncnorm(2.5, 4.0),
    ),
    (
        "trunc lower tail",
        functools.partial(il.trunc_normal_, a=-4.0, b=-2.5),
        stats.truncnorm(-4.0, -2.5),
    ),
    (
        "trunc far tail",
        functools.partial(il.trunc_normal_, mean=1.0, std=0.5, a=9.0, b=10.0),
        stats.truncnorm(9, 10, 1.0, 0.5),
    ),
    (
        "trunc mean outside absolute",
        functools.partial(il.trunc_normal_, mean=-3.0, a=0.0, b=1.0, bounds="absolute"),
        stats.truncnorm(3, 4, -3.0, 1.0),
    ),
    # (100, 200): fan_in 200; std before truncation sqrt(2 / 200) / 0.8796
    (
        "variance_scaling_ truncated",
        functools.partial(il.variance_scaling_, scale=2.0),
        stats.truncnorm(-2, 2, 0, 0.1 / TRUNCATED_STD),
    ),
    (
        "kaiming_uniform_ relu",
        functools.partial(il.kaiming_uniform_, nonlinearity="relu"),
        stats.uniform(-((6 / 200) ** 0.5), 2 * (6 / 200) ** 0.5),
    ),
    (
        "kaiming_normal_ relu",
        functools.partial(il.kaiming_normal_, nonlinearity="relu"),
        stats.norm(0, 0.1),
    ),
]


@pytest.mark.parametrize(("fn", "law"), [k[1:] for k in KS_CASES], ids=[k[0] for k in KS_CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_distribution_family(fn, law, dtype):
    w = fn(torch.empty(100, N_KS // 100, dtype=dtype), generator=_seeded(2))
    assert stats.kstest(w.double().ravel().numpy(), law.cdf).pvalue > 1e-4


def test_ks_would_catch_a_truncation_at_the_wrong_place():
    # the test above has power: +-2 std drawn, +-2.5 std claimed (the CDFs differ by 0.02, the
    # critical distance for p = 1e-4 at n = 20 000 is sqrt(ln(2e4) / 4e4) = 0.016)
    w = il.trunc_normal_(torch.empty(N_KS, dtype=torch.float64), generator=_seeded(2))
    assert stats.kstest(w.numpy(), stats.truncnorm(-2.5, 2.5).cdf).pvalue < 1e-4


# --- truncation bounds: exact, at the tensor's own precision ---

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _only_value_above(x: float, dtype: torch.dtype) -> float:
    """The smallest value of ``dtype`` >= x (x finite and in range)."""
    t = torch.tensor(x, dtype=torch.float64).to(dtype)
    candidates = [t, torch.nextafter(t, torch.tensor(math.inf, dtype=dtype))]
    return min(c.item() for c in candidates if c.item() >= x)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(DTYPES),
    mean=st.floats(-10, 10),
    log10_std=st.floats(-30, 2),
    a=st.floats(-6, 6),
    width=st.floats(1e-3, 8),
    bounds=st.sampled_from(["std", "absolute"]),
    seed=st.integers(0, 2**16),
)
def test_trunc_normal_never_leaves_its_bounds(dtype, mean, log10_std, a, width, bounds, seed):
    std = 10.0**log10_std
    lo, hi = mean + a * std, mean + (a + width) * std  # the documented meaning of "std" bounds
    if bounds == "absolute":
        a, width = lo, hi - lo
        if not lo < hi:  # std so small that the interval vanishes in float64
            return
    tensor = torch.empty(2000, dtype=dtype)
    try:
        il.trunc_normal_(
            tensor, mean=mean, std=std, a=a, b=a + width, bounds=bounds, generator=_seeded(seed)
        )
    except ValueError as error:  # the claim must be true: no value of dtype in [lo, hi]
        assert "value lies" in str(error) and _only_value_above(lo, dtype) > hi
        return
    values = tensor.double()
    assert (values >= lo).all() and (values <= hi).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("std", [1e-3, 1e-6, 1e-12])
def test_trunc_normal_tiny_std_has_no_outliers(dtype, std):
    mean = (
        0.5 if dtype in (torch.float32, torch.float64) else 0.0
    )  # near 0.5 float16 has no value within 1e-6
    w = il.trunc_normal_(torch.empty(100_000, dtype=dtype), mean=mean, std=std, generator=_seeded())
    values = w.double()
    assert (values >= mean - 2 * std).all() and (values <= mean + 2 * std).all()


def test_trunc_normal_low_precision_rounding_is_clamped_inward():
    # float16 values near 1 are 2**-10 apart; 1 + 1.5 * 2**-10 is not one, so the upper bound
    # rounds down to 1 + 2**-10 and a value rounded up to 1 + 2**-9 must not appear
    hi = 1 + 1.5 * 2**-10
    w = il.trunc_normal_(
        torch.empty(50_000, dtype=torch.float16),
        mean=1.0,
        std=0.01,
        a=0.9,
        b=hi,
        bounds="absolute",
        generator=_seeded(),
    )
    assert w.max().item() == 1 + 2**-10


def test_trunc_normal_terminates_when_rounding_defeats_rejection():
    # float32 cannot resolve std=1e-12 around 1: every parent draw rounds to 1.0, below the
    # bound. The only float32 value inside is the next one above 1, which must be returned.
    w = il.trunc_normal_(
        torch.empty(1000),
        mean=1.0,
        std=1e-12,
        a=1.0 + 1e-13,
        b=1.0 + 2e-7,
        bounds="absolute",
        generator=_seeded(),
    )
    assert (w == torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))).all()


def test_trunc_normal_zero_std_is_the_clamped_point_mass():
    assert (il.trunc_normal_(torch.empty(5), mean=0.25, std=0.0) == 0.25).all()
    w = il.trunc_normal_(torch.empty(5), mean=3.0, std=0.0, a=-1.0, b=1.0, bounds="absolute")
    assert (w == 1.0).all()
    assert (il.variance_scaling_(torch.empty(4, 3), 0.0) == 0).all()


def test_trunc_normal_meaning_of_bounds():
    # std: [mean - 2 std, mean + 2 std] = [9, 11]; absolute: [-2, 2] whatever the mean
    w = il.trunc_normal_(torch.empty(N_KS), mean=10.0, std=0.5, generator=_seeded())
    assert w.min() >= 9.0 and w.max() <= 11.0 and w.max() > 10.9
    w = il.trunc_normal_(
        torch.empty(N_KS), mean=0.0, std=10.0, bounds="absolute", generator=_seeded()
    )
    assert w.min() >= -2.0 and w.max() <= 2.0 and w.max() > 1.99
