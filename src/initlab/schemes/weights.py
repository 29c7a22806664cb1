"""The weight policies of the classic schemes: a tensor rule applied to every weight.

A weight is a parameter with ``ndim >= 2`` outside norm layers (:func:`weight_parameters`).
A weight policy is a callable ``policy(model, *, generator, batch=None, **options)`` that fills
the weights of ``model`` in place:

* :class:`EveryWeight` fills every weight by one tensor rule;
* :class:`FirstWeight` fills the first weight by one rule and every later one by another;
* :data:`CONSTRUCTED` leaves the weights as the modules built them (or as a later step sets).

A tensor rule is ``rule(tensor, *, generator, fans, **options)``: ``fans`` are the layer's
``(fan_in, fan_out)`` read from its kind (:func:`initlab.fans.layer_fans`: ConvTranspose,
grouped conv, Bilinear), not from the stored shape. A weight that stacks independent blocks
(LSTM/GRU gates, fused q/k/v, conv groups) is filled block by block, each with these per-block
fans (:func:`initlab.initializers.per_block_`). The rules of the built-in schemes are below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from initlab.fans import layer_fans
from initlab.initializers import (
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    normal_,
    orthogonal_,
    per_block_,
    trunc_normal_,
    uniform_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from initlab.introspect.kinds import is_norm

__all__ = [
    "CONSTRUCTED",
    "EveryWeight",
    "FirstWeight",
    "fill_weight",
    "weight_parameters",
]

Rule = Callable[..., None]


def weight_parameters(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    """Yield ``(module, name, parameter)`` for every weight: ``ndim >= 2``, outside norm layers.

    Norm layers are those of :func:`initlab.introspect.kinds.is_norm`. Order is registration
    order (``model.modules()``, then each module's own parameters).
    """
    for module in model.modules():
        if is_norm(module):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.ndim >= 2:
                yield module, name, param


def fill_weight(
    module: nn.Module, name: str, param: nn.Parameter, rule: Rule, generator, options
) -> None:
    """Fill ``module``'s parameter ``name`` by tensor ``rule``, block by block with layer fans."""
    fans = layer_fans(module, name)
    per_block_(param, fans.blocks, rule, generator=generator, fans=fans.fans, **options)


@dataclass(frozen=True)
class EveryWeight:
    """Fill every weight of a model by one tensor rule; the scheme's options go to the rule."""

    rule: Rule

    def __call__(self, model: nn.Module, *, generator: torch.Generator, batch=None, **options):
        for module, name, param in weight_parameters(model):
            fill_weight(module, name, param, self.rule, generator, options)


@dataclass(frozen=True)
class FirstWeight:
    """Fill the first weight (registration order) by ``first``, every later one by ``rest``.

    In ``mlp-784-128-10`` the first weight is ``fc1`` (the input layer), the only later one
    ``fc2``.
    """

    first: Rule
    rest: Rule

    def __call__(self, model: nn.Module, *, generator: torch.Generator, batch=None):
        for i, (module, name, param) in enumerate(weight_parameters(model)):
            fill_weight(module, name, param, self.first if i == 0 else self.rest, generator, {})


@dataclass(frozen=True)
class _Constructed:
    """Leave every weight as it is: as the modules built (or reset) it, or for a later step."""

    def __call__(self, model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
        return None


#: The weight policy that writes nothing (``torch_default``, and schemes whose steps set the
#: weights: ``lsuv``, ``pretrained``).
CONSTRUCTED = _Constructed()


# Tensor rules: rule(tensor, *, generator, fans, **options). Rules without fans ignore them.
def zeros(t, *, generator, fans):
    """0."""
    zeros_(t)


def uniform(t, *, generator, fans, bound):
    """U(-bound, bound)."""
    uniform_(t, a=-bound, b=bound, generator=generator)


def normal(t, *, generator, fans, std):
    """N(0, std^2)."""
    normal_(t, mean=0.0, std=std, generator=generator)


def xavier_uniform(t, *, generator, fans, gain=1.0):
    """U(-b, b), b = gain sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    xavier_uniform_(t, gain=gain, fans=fans, generator=generator)


def xavier_normal(t, *, generator, fans, gain):
    """N(0, std^2), std = gain sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    xavier_normal_(t, gain=gain, fans=fans, generator=generator)


def kaiming_uniform_relu(t, *, generator, fans):
    """U(-b, b), b = sqrt(6 / fan_in) (He et al. 2015, ReLU gain sqrt 2)."""
    kaiming_uniform_(t, mode="fan_in", nonlinearity="relu", fans=fans, generator=generator)


def kaiming_normal_relu(t, *, generator, fans):
    """N(0, std^2), std = sqrt(2 / fan_in), untruncated (He et al. 2015)."""
    kaiming_normal_(t, mode="fan_in", nonlinearity="relu", fans=fans, generator=generator)


def lecun_normal(t, *, generator, fans):
    """N(0, std^2), std = 1 / sqrt(fan_in), untruncated (LeCun et al. 1998)."""
    lecun_normal_(t, mode="fan_in", fans=fans, generator=generator)


def orthogonal(t, *, generator, fans, gain):
    """gain times a (semi-)orthogonal matrix (Saxe et al. 2014)."""
    orthogonal_(t, gain=gain, generator=generator)


def trunc_normal(t, *, generator, fans, std):
    """N(0, std^2) truncated to [-2 std, 2 std]."""
    trunc_normal_(t, mean=0.0, std=std, a=-2.0, b=2.0, bounds="std", generator=generator)
