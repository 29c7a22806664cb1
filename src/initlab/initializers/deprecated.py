"""PyTorch's deprecated unsuffixed names (``torch.nn.init.normal`` ...), kept as aliases.

``torch.nn.init`` still exports eleven names without the trailing underscore, each of which
warns ``FutureWarning`` ("`nn.init.normal` is now deprecated in favor of `nn.init.normal_`.")
and calls the in-place function (source: ``torch/nn/init.py``, ``_make_deprecate``). The same
names exist here, with the same warning category, and call initlab's in-place function with the
arguments as given: options are keyword-only here, so PyTorch's positional form
``normal(w, 0.0, 0.02)`` raises ``TypeError``; write ``normal_(w, mean=0.0, std=0.02)``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch

from initlab.initializers.basic import constant_, normal_, uniform_
from initlab.initializers.identity import dirac_, eye_
from initlab.initializers.named import (
    kaiming_normal_,
    kaiming_uniform_,
    xavier_normal_,
    xavier_uniform_,
)
from initlab.initializers.orthogonal import orthogonal_
from initlab.initializers.sparse import sparse_

__all__ = [
    "DEPRECATED",
    "constant",
    "dirac",
    "eye",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "orthogonal",
    "sparse",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
]


def _deprecated(old_name: str, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    new_name = old_name + "_"  # eye_ is identity_ here: name it as PyTorch does

    @functools.wraps(fn)
    def alias(*args, **kwargs) -> torch.Tensor:
        warnings.warn(
            f"`initlab.{old_name}` is deprecated in favor of `initlab.{new_name}` (as "
            f"`torch.nn.init.{old_name}` is in favor of `torch.nn.init.{new_name}`)",
            FutureWarning,
            stacklevel=2,
        )
        return fn(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__doc__ = (
        f"Deprecated alias of :func:`{new_name}` (PyTorch's ``torch.nn.init.{old_name}``).\n\n"
        f"Warns ``FutureWarning``, then returns ``{new_name}(*args, **kwargs)``."
    )
    return alias


# Deprecated name -> the in-place function it calls (PyTorch's list, torch/nn/init.py).
DEPRECATED: dict[str, Callable[..., torch.Tensor]] = {
    "uniform": uniform_,
    "normal": normal_,
    "constant": constant_,
    "eye": eye_,
    "dirac": dirac_,
    "xavier_uniform": xavier_uniform_,
    "xavier_normal": xavier_normal_,
    "kaiming_uniform": kaiming_uniform_,
    "kaiming_normal": kaiming_normal_,
    "orthogonal": orthogonal_,
    "sparse": sparse_,
}

uniform = _deprecated("uniform", uniform_)
normal = _deprecated("normal", normal_)
constant = _deprecated("constant", constant_)
eye = _deprecated("eye", eye_)
dirac = _deprecated("dirac", dirac_)
xavier_uniform = _deprecated("xavier_uniform", xavier_uniform_)
xavier_normal = _deprecated("xavier_normal", xavier_normal_)
kaiming_uniform = _deprecated("kaiming_uniform", kaiming_uniform_)
kaiming_normal = _deprecated("kaiming_normal", kaiming_normal_)
orthogonal = _deprecated("orthogonal", orthogonal_)
sparse = _deprecated("sparse", sparse_)
