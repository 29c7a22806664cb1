"""Argument checks shared by every layer: clear errors that name the argument and echo the value."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch


def one_of(name: str, value, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is in ``allowed``, else raise a ValueError naming a close match.

    Raises:
        ValueError: ``value`` is not in ``allowed``; the message lists the accepted values and,
            when one is close, asks "did you mean ...?".
    """
    allowed = sorted(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    message = f"{name} must be one of {allowed}; got {name}={value!r}"
    if isinstance(value, str):
        same_letters = [a for a in allowed if a.lower() == value.lower()]  # "ReLU" -> "relu"
        close = same_letters or difflib.get_close_matches(value, allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    raise ValueError(message)


def non_negative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; got {name}={value!r}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0; got {name}={value!r}")
    return float(value)


def floating(tensor: torch.Tensor, what: str) -> None:
    """Raise TypeError unless ``tensor`` has a floating-point dtype (``what`` names the caller)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{what} expects a torch.Tensor; got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(
            f"{what} needs a floating-point tensor; got dtype={tensor.dtype}. "
            "Convert it first, e.g. tensor.float()"
        )
