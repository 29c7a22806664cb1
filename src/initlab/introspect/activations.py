"""Recognize activations (modules and functional calls) and name their families.

An :class:`Activation` is a name plus an optional parameter (the negative slope of a leaky ReLU,
the alpha of an ELU, the approximation of a GELU). The policy rules match on the name or on a
family: ``relu_family`` (He, Sec. 2.2 of He et al. 2015), ``saturating`` (Xavier, Glorot and
Bengio 2010), ``selu`` (LeCun normal, Klambauer et al. 2017) and everything else, which gets the
numerically computed gain of :func:`initlab.gains.compute_gain`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CALLABLES", "FAMILIES", "Activation", "from_function", "from_module"]

#: Families the rules match on, besides single activation names.
FAMILIES: dict[str, frozenset[str]] = {
    "relu_family": frozenset({"relu", "leaky_relu", "prelu", "relu6", "rrelu"}),
    "saturating": frozenset({"tanh", "sigmoid", "softsign", "hardtanh", "hardsigmoid"}),
    "selu": frozenset({"selu"}),
}

#: Every activation name the policy knows, with the function that computes it.
CALLABLES: dict[str, Callable[..., torch.Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,
    "prelu": F.leaky_relu,  # at init a PReLU is a leaky ReLU with its initial slope
    "rrelu": F.leaky_relu,  # evaluated at the mean slope (lower + upper) / 2
    "elu": F.elu,
    "celu": F.celu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softsign": F.softsign,
    "softplus": F.softplus,
    "hardtanh": F.hardtanh,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "logsigmoid": F.logsigmoid,
    "tanhshrink": F.tanhshrink,
}


@dataclass(frozen=True)
class Activation:
    """An activation that follows a layer: ``name`` plus its parameter, if any.

    ``param`` is the negative slope for ``leaky_relu``/``prelu``/``rrelu``, alpha for
    ``elu``/``celu`` and the approximation (``"none"`` or ``"tanh"``) for ``gelu``.
    """

    name: str
    param: float | str | None = None

    def __str__(self) -> str:
        # the exact GELU is plain "gelu" (approximate="none" is PyTorch's default, not a value
        # worth printing); its tanh approximation reads "gelu(tanh)"
        if self.param is None or (self.name == "gelu" and self.param == "none"):
            return self.name
        return f"{self.name}({self.param})"

    @property
    def family(self) -> str:
        """Return the family name (``relu_family``, ``saturating``, ``selu``) or ``other``."""
        return next((f for f, names in FAMILIES.items() if self.name in names), "other")

    def function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Return the activation as a tensor function (for numerical gains)."""
        fn = CALLABLES[self.name]
        if self.param is None:
            return fn
        key = {"gelu": "approximate", "elu": "alpha", "celu": "alpha"}.get(self.name)
        return functools.partial(fn, **{key or "negative_slope": self.param})

    def gain(self) -> float:
        r"""Return the gain (a multiplier of the standard deviation) for this activation.

        ReLU family: :math:`\sqrt{2 / (1 + a^2)}` with negative slope ``a`` (He et al. 2015,
        "Delving Deep into Rectifiers", Eq. 15; ReLU6 treated as ReLU, a = 0). Others:
        :math:`1 / \sqrt{E[\phi(z)^2]}`, z ~ N(0, 1), from :func:`initlab.gains.compute_gain`.
        """
        if self.family == "relu_family":
            slope = float(self.param) if self.param is not None else 0.0
            return math.sqrt(2.0 / (1.0 + slope**2))
        from initlab.gains import compute_gain

        if self.param is None or isinstance(self.param, float):
            try:  # named activations are cached by compute_gain
                return float(
                    compute_gain(self.name if self.param is None else (self.name, self.param))
                )
            except ValueError:
                pass
        return float(compute_gain(self.function()))


_MODULES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ReLU, "relu"),
    (nn.ReLU6, "relu6"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.PReLU, "prelu"),
    (nn.RReLU, "rrelu"),
    (nn.ELU, "elu"),
    (nn.CELU, "celu"),
    (nn.SELU, "selu"),
    (nn.GELU, "gelu"),
    (nn.SiLU, "silu"),
    (nn.Mish, "mish"),
    (nn.Tanh, "tanh"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Softsign, "softsign"),
    (nn.Softplus, "softplus"),
    (nn.Hardtanh, "hardtanh"),
    (nn.Hardswish, "hardswish"),
    (nn.Hardsigmoid, "hardsigmoid"),
    (nn.LogSigmoid, "logsigmoid"),
    (nn.Tanhshrink, "tanhshrink"),
)

# Third-party activation modules (Hugging Face NewGELUActivation, QuickGELUActivation, timm's
# Swish ...) are recognized by class name, most specific first: "quickgelu" is x*sigmoid(1.702x),
# a swish, so it must be checked before "gelu".
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("quickgelu", "silu"),
    ("gelu", "gelu"),
    ("swish", "silu"),
    ("silu", "silu"),
    ("mish", "mish"),
    ("leakyrelu", "leaky_relu"),
    ("relu6", "relu6"),
    ("relu", "relu"),
    ("selu", "selu"),
    ("elu", "elu"),
    ("tanh", "tanh"),
    ("sigmoid", "sigmoid"),
)


def from_module(module: nn.Module) -> Activation | None:
    """Return the :class:`Activation` a module computes, or ``None`` if it is not one."""
    for cls, name in _MODULES:  # ReLU6 subclasses Hardtanh: it is listed first
        if isinstance(module, cls):
            return Activation(name, _module_param(module, name))
    if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.children()):
        return None
    lowered = type(module).__name__.lower()
    if not ("activation" in lowered or lowered in {h for h, _ in _NAME_HINTS}):
        return None
    return next((Activation(n) for hint, n in _NAME_HINTS if hint in lowered), None)


def _module_param(module: nn.Module, name: str) -> float | str | None:
    if name == "leaky_relu":
        return float(module.negative_slope)
    if name == "prelu":
        return float(module.weight.detach().float().mean()) if not module.weight.is_meta else 0.25
    if name == "rrelu":
        return (float(module.lower) + float(module.upper)) / 2
    if name in {"elu", "celu"}:
        return float(module.alpha)
    if name == "gelu":
        return module.approximate
    return None


_FUNCTIONS: dict[str, str] = {
    "relu": "relu",
    "relu6": "relu6",
    "leaky_relu": "leaky_relu",
    "prelu": "prelu",
    "rrelu": "rrelu",
    "elu": "elu",
    "celu": "celu",
    "selu": "selu",
    "gelu": "gelu",
    "silu": "silu",
    "mish": "mish",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "softsign": "softsign",
    "softplus": "softplus",
    "hardtanh": "hardtanh",
    "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid",
    "logsigmoid": "logsigmoid",
    "tanhshrink": "tanhshrink",
    "erf": "gelu",  # 0.5 * x * (1 + erf(x / sqrt(2))) is the exact GELU written by hand
}


def from_function(func: Callable, args: tuple, kwargs: dict) -> Activation | None:
    """Return the :class:`Activation` of a functional call (``F.relu``, ``torch.tanh``,
    ``Tensor.sigmoid_`` ...), or ``None`` if ``func`` is not an activation."""
    raw = getattr(func, "__name__", "")
    name = _FUNCTIONS.get(raw.rstrip("_"))
    if name is None:
        return None
    if name == "leaky_relu":
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        return Activation(name, float(slope))
    if name in {"elu", "celu"}:
        alpha = args[1] if len(args) > 1 else kwargs.get("alpha", 1.0)
        return Activation(name, float(alpha))
    if name == "gelu":
        return Activation(name, kwargs.get("approximate", "none") if raw != "erf" else "none")
    if name == "prelu":
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        return Activation(name, float(weight.detach().float().mean()))
    if name == "rrelu":
        lower = args[1] if len(args) > 1 else kwargs.get("lower", 1.0 / 8)
        upper = args[2] if len(args) > 2 else kwargs.get("upper", 1.0 / 3)
        return Activation(name, (float(lower) + float(upper)) / 2)
    return Activation(name)
