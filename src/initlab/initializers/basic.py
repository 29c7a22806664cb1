"""Constant fills and the plain uniform and normal distributions."""

from __future__ import annotations

import torch

from initlab._checks import NORMAL_Z_MAX, fill_fits, finite, floating, non_negative, value_fits
from initlab.initializers._args import zero_element

__all__ = ["constant_", "normal_", "ones_", "uniform_", "zeros_"]


def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill ``tensor`` in place with 0.

    Args:
        tensor: any shape, floating point (meta tensors are left as they are; zero-element
            ones too, with PyTorch's warning).

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
        tensor: any shape, floating point (meta tensors are left as they are; zero-element
            ones too, with PyTorch's warning).

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
        tensor: any shape, floating point (meta tensors are left as they are; zero-element
            ones too, with PyTorch's warning).
        val: a finite real number that the tensor's dtype can hold: not rounded to inf (beyond
            65504 in float16) nor, if nonzero, to 0.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or ``val`` is not a real number.
        ValueError: if ``val`` is NaN or infinite, or the dtype rounds it to inf or to 0.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> constant_(torch.empty(2), val=0.5).tolist()
        [0.5, 0.5]
    """
    floating(tensor, "constant_")
    val = finite("val", val)
    value_fits("constant_", tensor.dtype, "val", val)
    if zero_element(tensor) or tensor.is_meta:
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
        tensor: any shape, floating point (meta tensors are left as they are; zero-element
            ones too, with PyTorch's warning).
        a: lower bound, finite.
        b: upper bound, finite, ``b >= a``. Both bounds and the width ``b - a`` must lie within
            the dtype's range, and if ``b > a`` the larger of ``|a|, |b|`` must be at least its
            smallest normal number (else every value would be subnormal or 0).
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or a bound is not a real number.
        ValueError: if a bound is NaN or infinite, ``a > b``, or the bounds or the width do not
            fit the tensor's dtype (the message names them and the dtype).

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> w = uniform_(torch.empty(3, 5), a=-0.1, b=0.1)
    """
    floating(tensor, "uniform_")
    a, b = finite("a", a), finite("b", b)
    if a > b:
        raise ValueError(f"uniform_ needs a <= b; got a={a!r}, b={b!r}")
    # the sampler computes a + (b - a) * u, so the width must be finite in the dtype too
    given = f"a={a!r}, b={b!r}"
    largest = max(abs(a), abs(b), b - a)
    fill_fits(
        "uniform_",
        tensor.dtype,
        given,
        largest=largest,
        typical=max(abs(a), abs(b)) if b > a else 0.0,
        shrink="smaller |a| and |b|",
        grow="larger bounds",
    )
    if zero_element(tensor) or tensor.is_meta:
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
        tensor: any shape, floating point (meta tensors are left as they are; zero-element
            ones too, with PyTorch's warning).
        mean: finite real number.
        std: standard deviation, finite, ``>= 0``. Every draw must fit the dtype:
            ``|mean| + 9.42 * std`` (9.42 bounds any draw of PyTorch's Box-Muller samplers)
            at most its largest number (65504 for float16), and if ``std > 0``,
            ``|mean| + std`` at least its smallest normal number (6.1e-5 for float16; below it
            every value would be subnormal or 0).
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or an argument is not a real number.
        ValueError: if ``mean`` is not finite, ``std`` is negative or not finite, or the draws
            would not fit the tensor's dtype (the message names the argument and the dtype).

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> w = normal_(torch.empty(3, 5), std=0.02)
    """
    floating(tensor, "normal_")
    mean, std = finite("mean", mean), non_negative("std", std)
    largest = abs(mean) + NORMAL_Z_MAX * std
    given = f"mean={mean!r}, std={std!r}"
    fill_fits(
        "normal_",
        tensor.dtype,
        given,
        largest=largest,
        typical=abs(mean) + std if std > 0 else 0.0,
        shrink="a smaller std or |mean|",
        grow="a larger std",
    )
    if zero_element(tensor) or tensor.is_meta:
        return tensor
    with torch.no_grad():
        tensor.normal_(mean, std, generator=generator)
    return tensor
