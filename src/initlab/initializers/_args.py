"""Argument checks and the no-op rule shared by the tensor initializers."""

from __future__ import annotations

import math

import torch


def finite(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise."""
    value = real(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {name}={value!r}")
    return value


def real(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a real number (infinities allowed, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; got {name}={value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN; got {name}={value!r}")
    return float(value)


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an int >= 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {name}={value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {name}={value!r}")
    return value


def ndim_at_least(tensor: torch.Tensor, ndim: int, what: str) -> None:
    """Raise ValueError unless ``tensor`` has at least ``ndim`` dimensions."""
    if tensor.ndim < ndim:
        raise ValueError(
            f"{what} needs a tensor with at least {ndim} dimensions; "
            f"got shape={tuple(tensor.shape)}"
        )


def nothing_to_fill(tensor: torch.Tensor) -> bool:
    """Return True for tensors an initializer leaves alone: meta (no storage) or zero-element."""
    return tensor.is_meta or tensor.numel() == 0
