"""Degenerate scalars: a ValueError naming the argument, its value and the dtype, never a silent
inf, NaN or zero tensor. Nothing is written when an argument is refused."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch

import initlab as il
from initlab._checks import NORMAL_Z_MAX

NAN, INF = math.nan, math.inf

# (initializer, a shape it accepts, the scalar argument, other required arguments)
SCALARS = [
    (il.constant_, (4, 3), "val", {}),
    (il.uniform_, (4, 3), "a", {}),
    (il.uniform_, (4, 3), "b", {}),
    (il.normal_, (4, 3), "mean", {}),
    (il.normal_, (4, 3), "std", {}),
    (il.trunc_normal_, (4, 3), "mean", {}),
    (il.trunc_normal_, (4, 3), "std", {}),
    (il.variance_scaling_, (4, 3), "scale", {}),
    (il.xavier_uniform_, (4, 3), "gain", {}),
    (il.xavier_normal_, (4, 3), "gain", {}),
    (il.kaiming_uniform_, (4, 3), "a", {}),
    (il.kaiming_normal_, (4, 3), "a", {}),
    (il.orthogonal_, (4, 3), "gain", {}),
    (il.delta_orthogonal_, (4, 3, 3), "gain", {}),
    (il.identity_, (4, 3), "gain", {}),
    (il.sparse_, (4, 3), "std", {"sparsity": 0.5}),
    (il.sparse_, (4, 3), "sparsity", {}),
]


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("fn", "shape", "argument", "others"),
    SCALARS,
    ids=[f"{fn.__name__}-{argument}" for fn, _, argument, _ in SCALARS],
)
def test_non_finite_scalar_raises_naming_it_and_writes_nothing(fn, shape, argument, others, value):
    tensor = torch.full(shape, 3.0)
    with pytest.raises(ValueError, match=re.escape(f"{argument}={value!r}")):
        fn(tensor, **{argument: value}, **others)
    assert (tensor == 3.0).all()


def test_every_float_argument_of_every_initializer_is_in_the_table():
    """A new scalar option gets a row above (annotations are strings: __future__ annotations)."""
    covered = {(fn.__name__, argument) for fn, _, argument, _ in SCALARS}
    initializers = [
        fn
        for fn in (getattr(il, n) for n in il.__all__ if n.endswith("_"))
        if fn.__module__.startswith("initlab.initializers.")
    ]
    found = {
        (fn.__name__, p.name)
        for fn in initializers
        for p in inspect.signature(fn).parameters.values()
        if p.annotation == "float"
    }
    assert found == covered | {("trunc_normal_", "a"), ("trunc_normal_", "b")}


@pytest.mark.parametrize("argument", ["a", "b"])
def test_trunc_normal_bounds_may_be_infinite_but_not_nan(argument):
    tensor = torch.full((4,), 3.0)
    with pytest.raises(ValueError, match=f"{argument} must not be NaN; got {argument}=nan"):
        il.trunc_normal_(tensor, **{argument: NAN})
    assert (tensor == 3.0).all()
    bound = -INF if argument == "a" else INF
    assert torch.isfinite(il.trunc_normal_(tensor, **{argument: bound})).all()


# --- infinite, NaN and overflowing arguments ---


def test_kaiming_with_infinite_slope_raises_instead_of_filling_zeros():
    # without the check: gain sqrt(2 / (1 + inf)) = 0, so a weight of zeros without a word
    with pytest.raises(ValueError, match=r"a must be a finite number; got a=inf"):
        il.kaiming_normal_(torch.empty(8, 4), a=INF)


def test_kaiming_with_nan_slope_raises_a_value_error_naming_a():
    # without the check: a raw RuntimeError from Tensor.normal_ about its std
    with pytest.raises(ValueError, match=r"a must not be NaN; got a=nan"):
        il.kaiming_normal_(torch.empty(8, 4), a=NAN)


@pytest.mark.parametrize("nonlinearity", ["leaky_relu", "relu", "tanh", "linear"])
@pytest.mark.parametrize("param", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
def test_calculate_gain_refuses_a_non_finite_param(nonlinearity, param):
    # without the check: leaky_relu gives NaN (nan) or 0 (inf); the others ignore it
    with pytest.raises(ValueError, match=re.escape(f"got param={param!r}")):
        il.calculate_gain(nonlinearity, param)


@pytest.mark.parametrize("param", [1e200, -1e160, 10**200])
def test_calculate_gain_slope_whose_square_overflows_is_a_value_error(param):
    with pytest.raises(OverflowError):  # PyTorch's raw error
        torch.nn.init.calculate_gain("leaky_relu", float(param))
    with pytest.raises(ValueError, match="param .*must have a square within float64"):
        il.calculate_gain("leaky_relu", param)
    with pytest.raises(ValueError, match="a .*must have a square within float64"):
        il.kaiming_uniform_(torch.empty(4, 3), a=param)


def test_calculate_gain_still_ignores_a_non_number_where_pytorch_does():
    assert il.calculate_gain("relu", "x") == torch.nn.init.calculate_gain("relu", "x")


def test_compute_gain_with_an_overflowing_parameter_names_it():
    with pytest.raises(ValueError, match=r"for 'elu' with alpha=1e\+300"):
        il.compute_gain(("elu", 1e300))


@pytest.mark.parametrize(
    ("dtype", "std"), [(torch.float32, 1e300), (torch.float16, 1e5)], ids=["float32", "float16"]
)
def test_normal_whose_draws_overflow_the_dtype_raises(dtype, std):
    # without the check: a tensor of inf (float32: std itself rounds to inf; float16: |x| > 65504)
    tensor = torch.zeros(1000, dtype=dtype)
    message = rf"{re.escape(f'std={std!r}')} gives values up to .*largest {dtype}"
    with pytest.raises(ValueError, match=message):
        il.normal_(tensor, std=std)
    assert (tensor == 0).all()


# --- what a scalar makes must fit the dtype: just outside raises, just inside is finite ---

F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32
# float16: largest 65504, smallest normal 6.1e-5, smallest subnormal 6e-8. A normal reaches at
# most |mean| + NORMAL_Z_MAX * std (9.42 std), a uniform its bounds, a variance-scaling fill
# sqrt(3) std (uniform) or 9.42 std (normal), an orthogonal one |gain|.
# (initializer, shape, dtype, argument, refused value, accepted value, other arguments)
FITS = [
    (il.normal_, (64, 64), F16, "std", 1e5, 6000.0, {}),  # 9.42 * 6000 = 56520
    (il.normal_, (64, 64), F16, "mean", 65000.0, 60000.0, {"std": 100.0}),  # 65942 | 60942
    (il.normal_, (64, 64), F32, "std", 1e300, 1e37, {}),
    (il.normal_, (64, 64), F16, "std", 1e-5, 1e-4, {}),  # all subnormal | normal numbers
    (il.uniform_, (64, 64), F16, "a", -7e4, -6e4, {"b": 0.0}),
    (il.uniform_, (64, 64), F32, "b", 3e38, 1.5e38, {"a": -1.5e38}),  # width b - a overflows
    (il.uniform_, (64, 64), F16, "b", 1e-6, 1e-4, {"a": 0.0}),
    (il.constant_, (64, 64), F16, "val", 1e5, 6e4, {}),
    (il.constant_, (64, 64), F16, "val", 1e-9, 1e-7, {}),  # rounds to 0 | to 2 subnormal ulps
    (il.identity_, (64, 64), BF16, "gain", 1e39, 1e38, {}),
    (il.trunc_normal_, (64, 64), F16, "std", 1e5, 1e4, {}),  # +-2 std: 2e5 | 2e4
    (il.trunc_normal_, (64, 64), F16, "b", 1e5, 6e4, {"a": -6e4, "std": 1e5, "bounds": "absolute"}),
    (il.variance_scaling_, (64, 64), F32, "scale", 1e300, 1e70, {}),
    (il.xavier_uniform_, (64, 64), F16, "gain", 1e6, 1e4, {}),  # bound 0.217 * gain
    (il.xavier_normal_, (64, 64), F16, "gain", 1e6, 1e3, {}),  # 9.42 * 0.125 * gain
    (il.kaiming_normal_, (64, 64), F16, "a", 1e5, 1e3, {}),  # std 1.8e-6 | 1.8e-4
    (il.kaiming_uniform_, (64, 64), BF16, "a", 1e40, 1e30, {}),  # std 1.8e-41 | 1.8e-31
    (il.orthogonal_, (64, 64), F16, "gain", 1e5, 6e4, {}),
    (il.delta_orthogonal_, (64, 64, 3), F16, "gain", 1e5, 6e4, {}),
    (il.sparse_, (64, 64), F16, "std", 1e5, 6000.0, {"sparsity": 0.5}),
]


@pytest.mark.parametrize(
    ("fn", "shape", "dtype", "argument", "refused", "accepted", "others"),
    FITS,
    ids=[f"{f[0].__name__}-{f[3]}-{f[4]:g}-{f[2]}" for f in FITS],
)
def test_values_must_fit_the_dtype(fn, shape, dtype, argument, refused, accepted, others):
    tensor = torch.full(shape, 3.0, dtype=dtype)
    with pytest.raises(ValueError, match=rf"{re.escape(f'{argument}={refused!r}')}.*{dtype}"):
        fn(tensor, **{argument: refused}, **others)
    assert (tensor == 3.0).all()  # checked before writing
    out = fn(tensor, **{argument: accepted}, **others, **_seeded(fn))
    assert torch.isfinite(out).all()
    assert (out != 0).any()  # not silently zero either


def _seeded(fn) -> dict:
    takes = "generator" in inspect.signature(fn).parameters
    return {"generator": torch.Generator().manual_seed(0)} if takes else {}


def test_normal_reach_bound_is_the_box_muller_limit_of_64_bit_uniforms():
    # sqrt(-2 ln u) with u >= 2**-64 is at most sqrt(128 ln 2); PyTorch draws u with 53 bits on
    # the CPU and 32 on CUDA, so no draw exceeds it
    assert math.sqrt(-2 * math.log(2.0**-64)) == NORMAL_Z_MAX
    assert math.sqrt(-2 * math.log(2.0**-53)) < NORMAL_Z_MAX  # the CPU's bound, 8.57


def test_trunc_normal_parent_std_beyond_float32_with_bounds_inside_it_is_sampled():
    # std 5e38 is not a float32 number, but N(0, 5e38) cut to +-3e38 is a law on float32 values
    # (without the check: a raw RuntimeError from the float32 sampler)
    tensor = torch.empty(10_000)
    il.trunc_normal_(
        tensor, std=5e38, a=-3e38, b=3e38, bounds="absolute", generator=torch.Generator()
    )
    assert torch.isfinite(tensor).all() and tensor.abs().max() <= 3e38
    # the law is nearly uniform on the interval (density ratio exp(-0.36 / 2) = 0.84 at the
    # ends): about half the values are negative; 10_000 draws give a std of 0.005 for the share
    assert abs((tensor < 0).double().mean().item() - 0.5) < 0.03
