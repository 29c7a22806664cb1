"""PyTorch's contract for every initializer, driven by one table; and every bad-input error."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

import initlab as il

# name -> (initializer with default options, a shape it accepts, whether it draws random numbers)
INITIALIZERS = {
    "zeros_": (il.zeros_, (8, 4, 3), False),
    "ones_": (il.ones_, (8, 4, 3), False),
    "constant_": (functools.partial(il.constant_, val=0.5), (8, 4, 3), False),
    "uniform_": (il.uniform_, (8, 4, 3), True),
    "normal_": (il.normal_, (8, 4, 3), True),
    "trunc_normal_": (il.trunc_normal_, (8, 4, 3), True),
    "trunc_normal_ tail": (
        functools.partial(il.trunc_normal_, a=3.0, b=5.0),  # the inverse-CDF sampler
        (8, 4, 3),
        True,
    ),
    "variance_scaling_": (il.variance_scaling_, (8, 4, 3), True),
    "variance_scaling_ uniform": (
        functools.partial(il.variance_scaling_, distribution="uniform"),
        (8, 4, 3),
        True,
    ),
    "xavier_uniform_": (il.xavier_uniform_, (8, 4, 3), True),
    "xavier_normal_": (il.xavier_normal_, (8, 4, 3), True),
    "kaiming_uniform_": (il.kaiming_uniform_, (8, 4, 3), True),
    "kaiming_normal_": (il.kaiming_normal_, (8, 4, 3), True),
    "he_normal_ truncated": (functools.partial(il.he_normal_, truncated=True), (8, 4, 3), True),
    "lecun_uniform_": (il.lecun_uniform_, (8, 4, 3), True),
    "lecun_normal_": (il.lecun_normal_, (8, 4, 3), True),
    "orthogonal_": (il.orthogonal_, (8, 4, 3), True),
    "orthogonal_ svd": (functools.partial(il.orthogonal_, method="svd"), (8, 4, 3), True),
    "orthogonal_ householder": (
        functools.partial(il.orthogonal_, method="householder"),
        (8, 4, 3),
        True,
    ),
    "delta_orthogonal_": (il.delta_orthogonal_, (8, 4, 3), True),
    "identity_": (il.identity_, (8, 4), False),
    "dirac_": (il.dirac_, (8, 4, 3), False),
    "sparse_": (functools.partial(il.sparse_, sparsity=0.5), (8, 4), True),
    "per_block_": (
        lambda t, **kw: il.per_block_(t, 2, il.orthogonal_, **kw),
        (8, 4, 3),
        True,
    ),
}
RANDOM = [name for name, (_, _, random) in INITIALIZERS.items() if random]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _call(name, tensor, seed=None):
    fn, _, random = INITIALIZERS[name]
    if random and seed is not None:
        return fn(tensor, generator=torch.Generator().manual_seed(seed))
    return fn(tensor)


@pytest.mark.parametrize("name", INITIALIZERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fills_in_place_in_every_dtype(name, dtype):
    shape = INITIALIZERS[name][1]
    sentinel = float("nan")
    tensor = torch.full(shape, sentinel, dtype=dtype)
    out = _call(name, tensor, seed=0)
    assert out is tensor
    assert out.dtype == dtype and out.shape == shape
    assert torch.isfinite(out).all()  # every entry was written


@pytest.mark.parametrize("name", INITIALIZERS)
def test_meta_tensor_is_a_no_op(name):
    tensor = torch.empty(INITIALIZERS[name][1], device="meta")
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    fn, _, random = INITIALIZERS[name]
    out = fn(tensor, generator=generator) if random else fn(tensor)
    assert out is tensor and out.is_meta
    assert torch.equal(generator.get_state(), before)


ZERO_ELEMENT = "Initializing zero-element tensors is a no-op"  # torch.nn.init's message


@pytest.mark.parametrize("name", INITIALIZERS)
@pytest.mark.parametrize("where", [-1, 0], ids=["last dim 0", "first dim 0"])
def test_zero_element_tensor_warns_once_like_torch_and_is_returned(name, where):
    shape = list(INITIALIZERS[name][1])
    shape[where] = 0  # (0, 4, 3): delta_orthogonal_'s out < in must not matter, nothing to fill
    tensor = torch.empty(shape)
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    fn, _, random = INITIALIZERS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(tensor, generator=generator) if random else fn(tensor)
    assert out is tensor and out.shape == tuple(shape)
    assert [str(w.message) for w in caught] == [ZERO_ELEMENT]  # once, per_block_ included
    assert caught[0].category is UserWarning
    assert caught[0].filename == __file__  # attributed to the caller, as torch's stacklevel=2
    assert torch.equal(generator.get_state(), before)


def test_zero_element_warning_matches_torch():
    with pytest.warns(UserWarning, match=ZERO_ELEMENT):
        torch.nn.init.kaiming_uniform_(torch.empty(0, 3))
    with pytest.warns(UserWarning, match=ZERO_ELEMENT):
        il.kaiming_uniform_(torch.empty(0, 3))


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_values_other_seed_other_values(name):
    shape = INITIALIZERS[name][1]
    first = _call(name, torch.empty(shape), seed=7)
    again = _call(name, torch.empty(shape), seed=7)
    other = _call(name, torch.empty(shape), seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", INITIALIZERS)
def test_global_generator_untouched_with_a_generator(name):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    _call(name, torch.empty(INITIALIZERS[name][1]), seed=0)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", RANDOM)
def test_no_generator_draws_from_the_global_one(name):
    shape = INITIALIZERS[name][1]
    torch.manual_seed(5)
    first = _call(name, torch.empty(shape))
    torch.manual_seed(5)
    assert torch.equal(_call(name, torch.empty(shape)), first)


@pytest.mark.parametrize("name", INITIALIZERS)
def test_parameter_stays_a_leaf_parameter(name):
    param = nn.Parameter(torch.empty(INITIALIZERS[name][1]))
    out = _call(name, param, seed=0)
    assert out is param and isinstance(out, nn.Parameter)
    assert out.is_leaf and out.requires_grad and out.grad_fn is None
    (out * 2).sum().backward()
    assert torch.equal(param.grad, torch.full_like(param, 2.0))


@pytest.mark.parametrize("name", INITIALIZERS)
def test_non_contiguous_tensor_is_written_through(name):
    shape = INITIALIZERS[name][1]
    base = torch.full((2 * shape[0], *shape[1:]), float("nan"))
    view = base[::2]  # every other slice along dim 0: not contiguous
    assert _call(name, view, seed=0) is view
    # torch's own fills order their draws differently on strided memory, so only check that the
    # view, and nothing else, was written
    assert torch.isfinite(base[::2]).all() and torch.isnan(base[1::2]).all()


@pytest.mark.parametrize("name", INITIALIZERS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool], ids=str)
def test_integer_or_bool_tensor_is_a_type_error_naming_the_dtype(name, dtype):
    tensor = torch.zeros(INITIALIZERS[name][1], dtype=dtype)
    with pytest.raises(TypeError, match=f"dtype={dtype}"):
        _call(name, tensor, seed=0)


def test_exports_match_the_contract():
    names = {
        "zeros_", "ones_", "constant_", "uniform_", "normal_", "trunc_normal_",
        "variance_scaling_", "xavier_uniform_", "xavier_normal_", "glorot_uniform_",
        "glorot_normal_", "kaiming_uniform_", "kaiming_normal_", "he_uniform_", "he_normal_",
        "lecun_uniform_", "lecun_normal_", "orthogonal_", "delta_orthogonal_", "identity_",
        "dirac_", "sparse_", "per_block_",
    }  # fmt: skip
    assert names <= set(il.__all__)
    assert il.glorot_uniform_ is il.xavier_uniform_ and il.he_normal_ is il.kaiming_normal_


def test_variance_scaling_help_shows_formula_sources_shapes_units_and_errors():
    doc = il.variance_scaling_.__doc__
    for text in (
        "scale / fan",
        "0.8796256610342398",
        "Glorot and Bengio",
        "He, Zhang, Ren and Sun",
        "LeCun",
        "jax.nn.initializers.variance_scaling",
        "(out, in, *kernel)",
        "multiplies the *variance*",
        "a standard deviation",
        "Raises:",
    ):
        assert text in doc, text


# --- bad input: each message names the argument, echoes the value, lists what is accepted ---

ERRORS = [
    (il.variance_scaling_, (10,), {}, ValueError, "bias rule"),
    (il.variance_scaling_, (4, 3), {"mode": "fan_inn"}, ValueError, r"mode must be one of \["),
    (il.variance_scaling_, (4, 3), {"mode": "fan_inn"}, ValueError, "did you mean 'fan_in'"),
    (
        il.variance_scaling_,
        (4, 3),
        {"distribution": "normall"},
        ValueError,
        r"distribution must be one of \['normal', 'truncated_normal', 'uniform'\]; "
        r"got distribution='normall' \(did you mean 'normal'\?\)",
    ),
    (il.variance_scaling_, (4, 3), {"scale": -1.0}, ValueError, "got scale=-1.0"),
    (il.variance_scaling_, (4, 3), {"scale": "2"}, TypeError, "scale must be a real number"),
    (il.variance_scaling_, (4, 3), {"fans": (0, 3)}, ValueError, r"got fans=\(0, 3\)"),
    (il.variance_scaling_, (4, 3), {"fans": 12}, ValueError, "two positive ints"),
    (il.xavier_uniform_, (4, 3), {"gain": -1.0}, ValueError, "got gain=-1.0"),
    (il.xavier_normal_, (4, 3), {"truncated": "yes"}, TypeError, "got truncated='yes'"),
    (il.kaiming_uniform_, (4, 3), {"mode": "in"}, ValueError, "mode must be one of"),
    (il.kaiming_normal_, (4, 3), {"nonlinearity": "relu6"}, ValueError, "nonlinearity must be"),
    (il.lecun_normal_, (7,), {}, ValueError, "bias rule"),
    (il.normal_, (4,), {"std": -0.1}, ValueError, "got std=-0.1"),
    (il.normal_, (4,), {"mean": float("inf")}, ValueError, "mean must be a finite number"),
    (il.uniform_, (4,), {"a": 1.0, "b": 0.0}, ValueError, r"a <= b; got a=1.0, b=0.0"),
    (il.constant_, (4,), {"val": float("nan")}, ValueError, "val must not be NaN"),
    (il.trunc_normal_, (4,), {"std": -1.0}, ValueError, "got std=-1.0"),
    (il.trunc_normal_, (4,), {"a": 2.0, "b": 2.0}, ValueError, r"a < b; got a=2.0, b=2.0"),
    (il.trunc_normal_, (4,), {"bounds": "absolut"}, ValueError, "did you mean 'absolute'"),
    (il.orthogonal_, (4,), {}, ValueError, "at least 2 dimensions; got shape=\\(4,\\)"),
    (
        il.orthogonal_,
        (4, 4),
        {"method": "lu"},
        ValueError,
        r"method must be one of \['householder', 'qr', 'svd'\]",
    ),
    (il.orthogonal_, (4, 4), {"gain": float("inf")}, ValueError, "gain must be a finite number"),
    (il.delta_orthogonal_, (4, 8, 3), {}, ValueError, "out_channels >= in_channels"),
    (il.delta_orthogonal_, (8, 4), {}, ValueError, "at least 3 dimensions"),
    (il.identity_, (2, 2, 2), {}, ValueError, r"2-D tensor; got shape=\(2, 2, 2\)"),
    (il.dirac_, (4, 4), {}, ValueError, "3, 4 or 5 dimensions"),
    (il.dirac_, (6, 4, 3), {"groups": 4}, ValueError, "groups must divide .* 6; got groups=4"),
    (il.dirac_, (6, 4, 3), {"groups": 0}, ValueError, "groups must be >= 1; got groups=0"),
    (il.sparse_, (4, 3), {"sparsity": 1.0}, ValueError, r"\[0, 1\); got sparsity=1.0"),
    (il.sparse_, (4, 3), {"sparsity": -0.1}, ValueError, "got sparsity=-0.1"),
    (il.sparse_, (4, 3, 2), {"sparsity": 0.1}, ValueError, "2-D tensor"),
]


@pytest.mark.parametrize(("fn", "shape", "kwargs", "error", "message"), ERRORS)
def test_bad_input_raises_before_writing(fn, shape, kwargs, error, message):
    tensor = torch.full(shape, 3.0)
    with pytest.raises(error, match=message):
        fn(tensor, **kwargs)
    assert (tensor == 3.0).all()  # nothing was written


def test_trunc_normal_interval_without_a_value_of_the_dtype():
    # float16 spacing near 0.1 is 2**-14 * 1.6 ~ 6e-5, wider than the +-2e-6 interval
    with pytest.raises(ValueError, match=r"no torch.float16 value lies in \[0.099998"):
        il.trunc_normal_(torch.empty(3, dtype=torch.float16), mean=0.1, std=1e-6)


def test_trunc_normal_interval_too_far_in_a_tail():
    with pytest.raises(ValueError, match="too far in a tail .* underflows float64"):
        il.trunc_normal_(torch.empty(3), a=40.0, b=60.0)


def test_per_block_errors():
    with pytest.raises(ValueError, match=r"blocks must divide dim 0.*blocks=3 for shape=\(8, 2\)"):
        il.per_block_(torch.empty(8, 2), 3, il.orthogonal_)
    with pytest.raises(TypeError, match="fn must be a callable"):
        il.per_block_(torch.empty(8, 2), 2, "orthogonal_")
    with pytest.raises(ValueError, match="blocks must be >= 1"):
        il.per_block_(torch.empty(8, 2), 0, il.orthogonal_)


@pytest.mark.parametrize("distribution", ["normal", "uniform", "truncated_normal"])
def test_variance_scaling_draws_what_its_pure_formula_gives(distribution):
    # variance_scaling_ is select_fan -> variance_scaling_std -> scaled_draw -> one sampler:
    # the same generator state gives the same bits as the sampler fed those parameters.
    from initlab.initializers import scaled_draw, select_fan, variance_scaling_std

    got = il.variance_scaling_(torch.empty(64, 48), 2.0, "fan_avg", distribution,
                               generator=torch.Generator().manual_seed(5))  # fmt: skip
    draw = scaled_draw(variance_scaling_std(2.0, select_fan(48, 64, "fan_avg")), distribution)
    assert draw.std == (2.0 / 56) ** 0.5
    g = torch.Generator().manual_seed(5)
    expected = torch.empty(64, 48)
    if distribution == "normal":
        expected.normal_(0.0, draw.sampler_std, generator=g)
    elif distribution == "uniform":
        expected.uniform_(-draw.bound, draw.bound, generator=g)
        assert draw.bound == 3**0.5 * draw.std
    else:
        il.trunc_normal_(expected, std=draw.sampler_std, a=-2.0, b=2.0, generator=g)
        assert draw.bound == 2 * draw.sampler_std
    assert torch.equal(got, expected)


def test_the_pure_formula_checks_its_arguments():
    from initlab.initializers import scaled_draw, select_fan, variance_scaling_std

    with pytest.raises(ValueError, match=r"mode must be one of .*got mode='fan_sum'"):
        select_fan(3, 4, "fan_sum")
    with pytest.raises(ValueError, match=r"fan must be > 0 for a variance-scaled std; got fan=0"):
        variance_scaling_std(1.0, 0)
    with pytest.raises(ValueError, match=r"distribution must be one of .*got distribution='n'"):
        scaled_draw(1.0, "n")
