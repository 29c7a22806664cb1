"""Constant fills and the plain uniform and normal distributions."""

from __future__ import annotations

import torch

from initlab._checks import floating, non_negative
from initlab.initializers._args import finite, nothing_to_fill

__all__ = ["constant_", "normal_", "ones_", "uniform_", "zeros_"]


def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill ``tensor`` in place with 0.

    Args:
        tensor: any shape, floating point (meta and zero-element tensors are left as they are).

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not a floating-point tensor.

    Example:
        >>> zeros_(torch.empty(3)).tolist()
        [0.0, 0.0, 0.0]
    """
    return constant_(tensor, val=0.0)


def ones_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill ``tensor`` in place with 1.

    Args:
        tensor: any shape, floating point (meta and zero-element tensors are left as they are).

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not a floating-point tensor.

    Example:
        >>> ones_(torch.empty(2)).tolist()
        [1.0, 1.0]
    """
    return constant_(tensor, val=1.0)


def constant_(tensor: torch.Tensor, *, val: float) -> torch.Tensor:
    """Fill ``tensor`` in place with ``val`` (rounded to the tensor's dtype, like ``fill_``).

    Args:
        tensor: any shape, floating point (meta and zero-element tensors are left as they are).
        val: a finite real number.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or ``val`` is not a real number.
        ValueError: if ``val`` is NaN or infinite.

    Example:
        >>> constant_(torch.empty(2), val=0.5).tolist()
        [0.5, 0.5]
    """
    floating(tensor, "constant_")
    val = finite("val", val)
    if nothing_to_fill(tensor):
        return tensor
    with torch.no_grad():
        tensor.fill_(val)
    return tensor


def uniform_(
    tensor: torch.Tensor,
    *,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` in place with values drawn from the uniform distribution U(a, b).

    Mean ``(a + b) / 2``, standard deviation ``(b - a) / sqrt(12)``; ``a`` and ``b`` are
    absolute bounds.

    Args:
        tensor: any shape, floating point (meta and zero-element tensors are left as they are).
        a: lower bound, finite.
        b: upper bound, finite, ``b >= a``.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or a bound is not a real number.
        ValueError: if a bound is NaN or infinite, or ``a > b``.

    Example:
        >>> w = uniform_(torch.empty(3, 5), a=-0.1, b=0.1)
    """
    floating(tensor, "uniform_")
    a, b = finite("a", a), finite("b", b)
    if a > b:
        raise ValueError(f"uniform_ needs a <= b; got a={a!r}, b={b!r}")
    if nothing_to_fill(tensor):
        return tensor
    with torch.no_grad():
        tensor.uniform_(a, b, generator=generator)
    return tensor


def normal_(
    tensor: torch.Tensor,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` in place with values drawn from the normal distribution N(mean, std**2).

    ``std`` is a standard deviation (not a variance). For a normal cut to an interval, see
    :func:`trunc_normal_`.

    Args:
        tensor: any shape, floating point (meta and zero-element tensors are left as they are).
        mean: finite real number.
        std: standard deviation, finite, ``>= 0``.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or an argument is not a real number.
        ValueError: if ``mean`` is not finite or ``std`` is negative or not finite.

    Example:
        >>> w = normal_(torch.empty(3, 5), std=0.02)
    """
    floating(tensor, "normal_")
    mean, std = finite("mean", mean), non_negative("std", std)
    if nothing_to_fill(tensor):
        return tensor
    with torch.no_grad():
        tensor.normal_(mean, std, generator=generator)
    return tensor
