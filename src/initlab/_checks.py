"""Argument checks shared by every layer: clear errors that name the argument and echo the value.

One place for the checks of names (:func:`one_of`), scalars (:func:`real`, :func:`finite`,
:func:`non_negative`, :func:`positive_int`), tensors (:func:`floating`) and of what a fill can
write into a dtype (:func:`value_fits`, :func:`fill_fits`); and the warning PyTorch gives for
zero-element tensors (:func:`warn_zero_element`).
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import warnings
from collections.abc import Iterable

import torch

# The largest |z| PyTorch's normal samplers can return. They draw z by the Box-Muller transform,
# z = sqrt(-2 ln u) * cos(2 pi v), from uniforms u of at most 64 random bits (53 on the CPU,
# 32 on CUDA), so u >= 2**-64 and |z| <= sqrt(2 * 64 * ln 2) = 9.42. A normal fill of mean m
# and std s therefore writes values of magnitude at most |m| + 9.42 s: below the dtype's largest
# number, no draw can overflow.
NORMAL_Z_MAX = math.sqrt(2 * 64 * math.log(2))

# PyTorch's message for a zero-element tensor (torch.nn.init.kaiming_uniform_ and _normal_).
ZERO_ELEMENT_MESSAGE = "Initializing zero-element tensors is a no-op"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


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


def real(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a real number (infinities allowed, not NaN).

    Raises:
        TypeError: ``value`` is not an int or float (a bool is refused).
        ValueError: ``value`` is NaN.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; got {name}={value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float64, e.g. 10**400
        raise ValueError(
            f"{name} must be a finite number (within float64); got {name}={value!r}"
        ) from None
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN; got {name}={value!r}")
    return value


def finite(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise."""
    value = real(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {name}={value!r}")
    return value


def non_negative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise."""
    if isinstance(value, float) and math.isnan(value):  # one message for every bad value
        raise ValueError(f"{name} must be a finite number >= 0; got {name}={value!r}")
    value = real(name, value)
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0; got {name}={value!r}")
    return value


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an int >= 1, else raise (TypeError for a non-int or a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {name}={value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {name}={value!r}")
    return value


def non_negative_int(name: str, value: int) -> int:
    """Return ``value`` if it is an int >= 0, else raise (TypeError for a non-int or a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {name}={value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {name}={value!r}")
    return value


def floating(tensor: torch.Tensor, what: str) -> None:
    """Raise TypeError unless ``tensor`` has a floating-point dtype (``what`` names the caller)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{what} expects a torch.Tensor; got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(
            f"{what} needs a floating-point tensor; got dtype={tensor.dtype}. "
            "Convert it first, e.g. tensor.float()"
        )


def value_fits(what: str, dtype: torch.dtype, name: str, value: float) -> None:
    """Raise ValueError unless the constant ``value`` rounds to a finite, equally zero value.

    ``value`` (already checked finite) is written as ``dtype`` rounds it, as ``fill_`` does:
    beyond the dtype's largest number it would become inf, and a nonzero value below half its
    smallest subnormal would become 0.
    """
    rounded = torch.tensor(value, dtype=torch.float64).to(dtype).item()
    if math.isinf(rounded):
        raise ValueError(
            f"{what}: {name}={value!r} is beyond the largest {dtype} number "
            f"{torch.finfo(dtype).max:.6g} and would be written as inf; use a smaller {name} or "
            "a wider dtype (float32, float64)"
        )
    if rounded == 0 and value != 0:
        raise ValueError(
            f"{what}: {name}={value!r} is below the smallest {dtype} number "
            f"{torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps:.3g} and would be "
            f"written as 0; use a larger {name}, 0 itself, or a wider dtype (float32, float64)"
        )


def fill_fits(
    what: str,
    dtype: torch.dtype,
    given: str,
    *,
    largest: float,
    typical: float,
    shrink: str,
    grow: str,
) -> None:
    """Raise ValueError unless a random fill is representable in ``dtype``.

    Args:
        what: the initializer, for the message.
        dtype: the tensor's (floating) dtype.
        given: the arguments that produced the fill, as written in the message ("std=1e5").
        largest: an upper bound of the magnitudes the fill can write (for a normal of mean m
            and std s, ``|m| + NORMAL_Z_MAX * s``); above the dtype's largest number a draw
            could be inf.
        typical: the magnitude of the values (``|m| + s`` for a normal; ``s`` for a zero-mean
            fill; 0 for a fill that is not random, such as std 0): when it is nonzero but below
            the dtype's smallest normal number, every value is subnormal (fewer significant
            bits than the dtype has) or 0. A std small against a large mean is a matter of
            precision, not range, and passes.
        shrink: the arguments that set ``largest``, as advice ("a smaller std or |mean|").
        grow: the argument that sets ``typical``, as advice ("a larger std").
    """
    info = torch.finfo(dtype)
    if not largest <= info.max:
        raise ValueError(
            f"{what}: {given} gives values up to {largest:.4g} in magnitude, beyond the largest "
            f"{dtype} number {info.max:.6g}: they would be inf; use {shrink} or a wider "
            "dtype (float32, float64)"
        )
    if 0 < typical < info.smallest_normal:
        raise ValueError(
            f"{what}: {given} gives values of magnitude {typical:.3g}, below the smallest "
            f"normal {dtype} number {info.smallest_normal:.3g}: they would be subnormal or 0; "
            f"use {grow} or a wider dtype (float32, float64)"
        )


def warn_zero_element(names: Iterable[str] = ()) -> None:
    """Warn, as PyTorch does, that initializing zero-element tensors is a no-op.

    The warning is attributed to the first caller outside initlab, so Python's default filter
    shows it once per call site, as PyTorch's (``stacklevel=2``) is. ``names`` lists the
    parameters concerned, if any.
    """
    names = list(names)
    message = ZERO_ELEMENT_MESSAGE + (f": {names}" if names else "")
    warnings.warn(message, UserWarning, stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn`` in the caller point outside initlab."""
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None  # the function calling warnings.warn
    level = 1
    while caller is not None and caller.f_back is not None:
        if not os.path.abspath(caller.f_code.co_filename).startswith(_PACKAGE_DIR):
            break
        caller = caller.f_back
        level += 1
    return level


class ArgumentError(ValueError):
    """A ``ValueError`` that names the library argument at fault, so a caller can map it.

    The message names ``argument`` (the library's own name, e.g. ``data_dir``) and echoes the
    value; the command line catches it and prints the flag that set the argument
    (``--data-dir``) before the message, instead of rewriting the text.

    Attributes:
        argument: the library argument's name.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument

    def __reduce__(self):
        # args holds the message only; rebuild from both (torchrun ranks pickle errors)
        return (type(self), (self.argument, str(self)))
