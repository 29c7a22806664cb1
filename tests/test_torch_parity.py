"""Parity with torch.nn.init, case by case as PyTorch's own test/nn/test_init.py checks it.

Our tests of the same cases (not a copy): for every name both libraries share, the same global
seed (``torch.manual_seed``) gives the same tensor bit for bit where the semantics are the same;
where they differ on purpose (``trunc_normal_``'s bounds in std, ``sparse_``'s zero pattern
drawn from the generator) the documented contract is checked instead. The error cases PyTorch
tests raise ValueError here too; zero-element tensors warn as there, also through the policy;
PyTorch's deprecated unsuffixed names exist and warn FutureWarning.
"""

from __future__ import annotations

import math
import random
import string
import warnings

import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import init as torch_init

import initlab as il
from initlab.initializers.deprecated import DEPRECATED

ZERO_ELEMENT = "Initializing zero-element tensors is a no-op"
PRESETS = ["auto", "torch", "gpt2", "bert", "keras", "flax"]


def _torch_functions() -> set[str]:
    """Public functions defined in torch.nn.init itself (not its imports such as math)."""
    return {
        name
        for name in dir(torch_init)
        if not name.startswith("_")
        and callable(getattr(torch_init, name))
        and getattr(getattr(torch_init, name), "__module__", None) == "torch.nn.init"
    }


def test_every_torch_nn_init_name_exists_in_initlab():
    # the README's claim; before, the deprecated unsuffixed names were missing
    assert _torch_functions() <= set(il.__all__)
    assert all(callable(getattr(il, name)) for name in _torch_functions())


def test_deprecated_names_are_exactly_pytorchs():
    deprecated = {
        n for n in _torch_functions() if not n.endswith("_") and n + "_" in dir(torch_init)
    }
    assert deprecated == set(DEPRECATED)  # uniform, normal, ..., orthogonal, sparse: 11 names
    assert len(deprecated) == 11


# --- same global seed, same tensor bit for bit -------------------------------------------------

# (shared name, shape, options accepted by both with the same meaning)
BITWISE = [
    ("uniform_", (30, 40), {"a": -0.5, "b": 2.0}),
    ("normal_", (30, 40), {"mean": 0.3, "std": 2.0}),
    ("normal_", (7,), {}),  # under 16 entries PyTorch's CPU sampler takes another path
    ("constant_", (3, 4, 5), {"val": 0.7}),
    ("ones_", (3, 4, 5), {}),
    ("zeros_", (3, 4, 5), {}),
    ("eye_", (4, 6), {}),
    ("eye_", (6, 4), {}),
    ("dirac_", (6, 4, 3, 3), {"groups": 2}),
    ("dirac_", (5, 8, 3), {}),
    ("xavier_uniform_", (20, 25, 3), {"gain": 1.7}),
    ("xavier_normal_", (20, 25), {}),
    ("kaiming_uniform_", (20, 25), {"a": math.sqrt(5)}),  # nn.Linear's reset_parameters
    ("kaiming_uniform_", (8, 4, 3, 3), {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", (20, 25), {"a": 0.4}),
    ("kaiming_normal_", (8, 4, 3, 3), {"mode": "fan_out", "nonlinearity": "tanh"}),
    ("orthogonal_", (3, 4), {}),
    ("orthogonal_", (4, 3), {"gain": 2.5}),
    ("orthogonal_", (20, 2, 3, 4), {}),
    ("orthogonal_", (2, 3, 4, 5), {"gain": 0.5}),
]


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    BITWISE,
    ids=[f"{n}-{s}-{sorted(o)}" for n, s, o in BITWISE],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_same_global_seed_same_tensor_as_torch(name, shape, options, dtype):
    torch.manual_seed(123)
    theirs = getattr(torch_init, name)(torch.full(shape, math.nan, dtype=dtype), **options)
    after_theirs = torch.get_rng_state()
    torch.manual_seed(123)
    ours = getattr(il, name)(torch.full(shape, math.nan, dtype=dtype), **options)
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.get_rng_state(), after_theirs)  # the same draws were consumed


@pytest.mark.parametrize("name", ["uniform_", "normal_", "xavier_normal_", "kaiming_uniform_"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_same_global_seed_same_tensor_as_torch_in_half_precision(name, dtype):
    torch.manual_seed(5)
    theirs = getattr(torch_init, name)(torch.empty(40, 30, dtype=dtype))
    torch.manual_seed(5)
    assert torch.equal(getattr(il, name)(torch.empty(40, 30, dtype=dtype)), theirs)


def test_trunc_normal_absolute_bounds_follow_torchs_contract():
    """Not bitwise (another sampler, and a, b count std unless bounds="absolute"): the law is
    PyTorch's: N(mean, std**2) cut to the absolute [a, b], every value inside."""
    mean, std, a, b = 0.5, 2.0, -1.0, 3.5
    torch.manual_seed(0)
    tensor = il.trunc_normal_(torch.empty(20_000), mean=mean, std=std, a=a, b=b, bounds="absolute")
    assert a <= tensor.min() and tensor.max() <= b
    # KS at a fixed seed: deterministic; 1e-4 is PyTorch's own threshold for this check
    law = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    assert stats.kstest(tensor.double().numpy(), law.cdf).pvalue > 1e-4


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9])
def test_sparse_zeros_per_column_as_torch(sparsity):
    """Not bitwise (our zero pattern comes from the generator): the count per column is
    PyTorch's, ceil(sparsity * rows), and the other entries are N(0, std**2) draws."""
    rows, cols = 31, 7
    torch.manual_seed(0)
    theirs = torch_init.sparse_(torch.empty(rows, cols), sparsity=sparsity)
    ours = il.sparse_(torch.empty(rows, cols), sparsity=sparsity)
    zeros = math.ceil(sparsity * rows)
    assert ((theirs == 0).sum(0) == zeros).all()
    assert ((ours == 0).sum(0) == zeros).all()


# --- PyTorch's gain table --------------------------------------------------------------------


@pytest.mark.parametrize("param", [None, 0, 0.01, 10, 0.2, -1.5])
def test_leaky_relu_gain_equals_torchs(param):
    assert il.calculate_gain("leaky_relu", param) == torch_init.calculate_gain("leaky_relu", param)


@pytest.mark.parametrize(
    "name", ["linear", "conv1d", "conv_transpose3d", "sigmoid", "tanh", "relu"]
)
def test_fixed_gains_equal_torchs(name):
    assert il.calculate_gain(name) == torch_init.calculate_gain(name)


# --- the error cases PyTorch tests raise ValueError here too ----------------------------------


def _random_names() -> list[str]:
    rng = random.Random(123)
    return ["".join(rng.choice(string.ascii_lowercase) for _ in range(n)) for n in (2, 5, 25)]


@pytest.mark.parametrize("name", _random_names())
def test_unknown_nonlinearity_is_a_value_error(name):
    with pytest.raises(ValueError):
        torch_init.calculate_gain(name)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        il.calculate_gain(name)


@pytest.mark.parametrize("param", [True, [1], {"a": "b"}], ids=["bool", "list", "dict"])
def test_leaky_relu_param_must_be_a_number(param):
    with pytest.raises(ValueError):
        torch_init.calculate_gain("leaky_relu", param)
    with pytest.raises(ValueError, match="must be an int or float"):
        il.calculate_gain("leaky_relu", param)


# (name, shapes whose dimensions the function refuses, extra options)
WRONG_DIMS = [
    ("xavier_uniform_", [(), (1,)], {}),  # fans need 2 dimensions
    ("xavier_normal_", [(), (1,)], {}),
    ("kaiming_uniform_", [(), (1,)], {}),
    ("kaiming_normal_", [(), (1,)], {}),
    ("orthogonal_", [(), (3,)], {}),
    ("eye_", [(3,), (2, 2, 2)], {}),
    ("dirac_", [(3,), (3, 3), (1, 1, 1, 1, 1, 1)], {}),
    ("sparse_", [(3,), (2, 2, 2)], {"sparsity": 0.5}),
]


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    [(n, s, o) for n, shapes, o in WRONG_DIMS for s in shapes],
    ids=[f"{n}-{s}" for n, shapes, _ in WRONG_DIMS for s in shapes],
)
def test_wrong_number_of_dimensions_is_a_value_error(name, shape, options):
    with pytest.raises(ValueError):
        getattr(torch_init, name)(torch.zeros(shape), **options)
    with pytest.raises(ValueError, match="dimensions|2-D|bias rule"):
        getattr(il, name)(torch.zeros(shape), **options)


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_zero_element_tensor_warns_as_torch(name):
    for library in (torch_init, il):
        tensor = torch.empty(0, 1)
        with pytest.warns(UserWarning, match=ZERO_ELEMENT):
            assert getattr(library, name)(tensor) is tensor


# --- PyTorch's deprecated unsuffixed names ---------------------------------------------------

# deprecated name -> (shape, options); the same draws as torch's except sparse (see above)
DEPRECATED_CALLS = {
    "uniform": ((5, 6), {"a": -1.0, "b": 1.0}),
    "normal": ((5, 6), {"std": 0.5}),
    "constant": ((5, 6), {"val": 2.0}),
    "eye": ((5, 6), {}),
    "dirac": ((4, 4, 3), {}),
    "xavier_uniform": ((5, 6), {}),
    "xavier_normal": ((5, 6), {"gain": 2.0}),
    "kaiming_uniform": ((5, 6), {"a": math.sqrt(5)}),
    "kaiming_normal": ((5, 6), {}),
    "orthogonal": ((5, 6), {}),
    "sparse": ((5, 6), {"sparsity": 0.4}),
}


@pytest.mark.parametrize("name", sorted(DEPRECATED_CALLS))
def test_deprecated_name_warns_future_warning_and_calls_the_in_place_function(name):
    shape, options = DEPRECATED_CALLS[name]
    torch.manual_seed(7)
    with pytest.warns(FutureWarning, match="deprecated"):
        theirs = getattr(torch_init, name)(torch.empty(shape), **options)
    torch.manual_seed(7)
    tensor = torch.empty(shape)
    with pytest.warns(
        FutureWarning, match=rf"`initlab\.{name}` is deprecated .* `initlab\.{name}_`"
    ):
        ours = getattr(il, name)(tensor, **options)
    assert ours is tensor
    torch.manual_seed(7)
    assert torch.equal(ours, DEPRECATED[name](torch.empty(shape), **options))
    if name != "sparse":
        assert torch.equal(ours, theirs)


def test_deprecated_name_keeps_keyword_only_options():
    # PyTorch's positional normal(w, 0.0, 0.02) would silently mean mean=0, std=0.02 there;
    # here options are keyword-only, as for normal_
    with pytest.warns(FutureWarning), pytest.raises(TypeError):
        il.normal(torch.empty(3), 0.0, 0.02)


# --- zero-element layers through the policy ------------------------------------------------------


# model -> (factory, the parameters PyTorch's own init fixes: no elements, or the bias of a layer
# with fan_in 0, whose bound 1/sqrt(fan_in) if fan_in > 0 else 0 makes it exactly 0)
ZERO_LAYER_MODELS = {
    "Linear(0, 4)": (lambda: nn.Linear(0, 4), ["weight", "bias"]),
    "Linear(3, 0) -> Linear(0, 4)": (
        lambda: nn.Sequential(nn.Linear(3, 0), nn.ReLU(), nn.Linear(0, 4)),
        ["0.weight", "0.bias", "2.weight", "2.bias"],
    ),
    "Conv2d(0, 4, 3) -> Conv2d(4, 2, 1)": (
        lambda: nn.Sequential(nn.Conv2d(0, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)),
        ["0.weight", "0.bias"],
    ),
}


def _build(model: str) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own zero-element warning at construction
        return ZERO_LAYER_MODELS[model][0]()


@pytest.mark.parametrize("model", list(ZERO_LAYER_MODELS))
@pytest.mark.parametrize("preset", PRESETS)
def test_init_model_of_a_zero_element_layer_works_and_warns_once(preset, model):
    # before: "needs fans" under torch and flax (`if not fan` read fan_in 0 as no fan)
    net = _build(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        il.init_model(net, preset, seed=0)
    zero = [w for w in caught if ZERO_ELEMENT in str(w.message)]
    assert len(zero) == 1 and zero[0].filename == __file__  # at the caller, as torch's
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("model", list(ZERO_LAYER_MODELS))
def test_torch_preset_of_a_zero_element_layer_equals_torchs_own_init(model):
    ours, theirs = _build(model), _build(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        il.init_model(ours, "torch", seed=0)
    theirs = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert p.shape == theirs[name].shape
    for name in ZERO_LAYER_MODELS[model][1]:
        assert torch.equal(ours.get_parameter(name), theirs[name]), name
