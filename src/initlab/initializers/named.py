"""Glorot/Xavier, He/Kaiming and LeCun: named specializations of ``variance_scaling_``.

Each one is ``variance_scaling_`` with a fixed ``scale``, ``mode`` and ``distribution``. Xavier
and Kaiming compute the standard deviation with the same float operations as
``torch.nn.init`` (for example ``gain * sqrt(2 / (fan_in + fan_out))`` rather than
``sqrt(gain**2 / fan_avg)``, which can differ in the last bit), so that with identically seeded
generators they return the same tensor as PyTorch, bit for bit.

Which normal? PyTorch's ``kaiming_normal_``/``xavier_normal_`` draw from an untruncated normal;
Keras' and JAX's ``he_normal``/``glorot_normal``/``lecun_normal`` from a normal truncated to
+-2 std and rescaled by 1/0.8796. Here every ``*_normal_`` is untruncated by default (PyTorch)
and ``truncated=True`` gives the Keras/JAX version: a normal truncated to +-2 s with
``s = std / 0.8796`` (0.8796 is the std of a standard normal truncated to [-2, 2]), whose
variance after truncation is ``std**2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from initlab._checks import non_negative, one_of
from initlab.gains import _negative_slope, calculate_gain
from initlab.initializers.variance_scaling import (
    MODES,
    _fill_scaled_,
    select_fan,
    variance_scaling_,
)

__all__ = [
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "xavier_normal_",
    "xavier_uniform_",
]


def xavier_uniform_(
    tensor: torch.Tensor,
    *,
    gain: float = 1.0,
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from U(-bound, bound), bound = gain * sqrt(6 / (fan_in + fan_out)).

    The standard deviation is ``gain * sqrt(2 / (fan_in + fan_out))``. Equals
    ``variance_scaling_(tensor, gain**2, "fan_avg", "uniform")``; matches
    ``torch.nn.init.xavier_uniform_`` bit for bit.

    Source: Glorot and Bengio, "Understanding the difficulty of training deep feedforward neural
    networks" (AISTATS 2010), Eq. 16 (there with gain 1). Also known as Glorot uniform.

    Args:
        tensor: weight ``(out, in, *kernel)``, at least 2-D unless ``fans`` is given, floating.
        gain: multiplier of the standard deviation (see :func:`initlab.calculate_gain`), ``>= 0``.
        fans: ``(fan_in, fan_out)`` to use instead of those read from the shape.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Raises:
        ValueError: if ``tensor.ndim < 2`` without ``fans``, ``gain`` is negative or not
            finite, ``fans`` is invalid, or the std would not fit the tensor's dtype (see
            :func:`variance_scaling_`; the message names ``gain``).
        TypeError: if ``tensor`` is not floating point.

    Example:
        >>> w = xavier_uniform_(torch.empty(20, 10), gain=5 / 3)  # bound = 5/3 * sqrt(6 / 30)
    """
    std_of = _xavier_std(gain)
    return _fill_scaled_(
        tensor,
        std_of,
        "uniform",
        fans=fans,
        generator=generator,
        what="xavier_uniform_",
        given=(f"gain={gain!r}", "a smaller gain", "a larger gain"),
    )


def xavier_normal_(
    tensor: torch.Tensor,
    *,
    gain: float = 1.0,
    truncated: bool = False,
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from N(0, std**2), std = gain * sqrt(2 / (fan_in + fan_out)).

    Untruncated by default (PyTorch's ``xavier_normal_``, matched bit for bit);
    ``truncated=True`` is Keras/JAX ``glorot_normal`` (see the module docstring). Equals
    ``variance_scaling_(tensor, gain**2, "fan_avg", "normal" or "truncated_normal")``.

    Source: Glorot and Bengio (AISTATS 2010), Sec. 4.2, Eq. 12 (variance 2 / (fan_in + fan_out)).
    Also known as Glorot normal.

    Args:
        tensor: weight ``(out, in, *kernel)``, at least 2-D unless ``fans`` is given, floating.
        gain: multiplier of the standard deviation, ``>= 0``.
        truncated: draw from the truncated normal (Keras/JAX) instead of the plain one.
        fans: ``(fan_in, fan_out)`` to use instead of those read from the shape.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Raises:
        ValueError: if ``tensor.ndim < 2`` without ``fans``, ``gain`` is negative or not
            finite, ``fans`` is invalid, or the std would not fit the tensor's dtype (see
            :func:`variance_scaling_`; the message names ``gain``).
        TypeError: if ``tensor`` is not floating point or ``truncated`` is not a bool.

    Example:
        >>> w = xavier_normal_(torch.empty(20, 10))  # std = sqrt(2 / 30)
    """
    std_of = _xavier_std(gain)
    kind = _normal_kind(truncated)
    return _fill_scaled_(
        tensor,
        std_of,
        kind,
        fans=fans,
        generator=generator,
        what="xavier_normal_",
        given=(f"gain={gain!r}", "a smaller gain", "a larger gain"),
    )


def kaiming_uniform_(
    tensor: torch.Tensor,
    *,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from U(-bound, bound), bound = gain * sqrt(3 / fan).

    ``gain = calculate_gain(nonlinearity, a)`` (sqrt(2) for ReLU, sqrt(2 / (1 + a**2)) for
    leaky ReLU of slope ``a``); the standard deviation is ``gain / sqrt(fan)``. Equals
    ``variance_scaling_(tensor, gain**2, mode, "uniform")``; matches
    ``torch.nn.init.kaiming_uniform_`` bit for bit for ``mode`` in {fan_in, fan_out}.
    Note that the default ``a=0`` with ``"leaky_relu"`` is the ReLU gain sqrt(2), not the
    ``a=sqrt(5)`` that ``nn.Linear`` uses internally.

    Source: He, Zhang, Ren and Sun, "Delving Deep into Rectifiers" (ICCV 2015), Sec. 2.2,
    Eqs. 10 (forward, fan_in), 14 (backward, fan_out) and 15 (slope ``a``). Also known as He
    uniform.

    Args:
        tensor: weight ``(out, in, *kernel)``, at least 2-D unless ``fans`` is given, floating.
        a: negative slope of the leaky ReLU after this layer (only used for ``"leaky_relu"``,
            checked for any): a finite real number with ``a**2`` within float64.
        mode: ``"fan_in"`` (forward variance), ``"fan_out"`` (backward) or ``"fan_avg"``.
        nonlinearity: a name accepted by :func:`initlab.calculate_gain`.
        fans: ``(fan_in, fan_out)`` to use instead of those read from the shape.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Raises:
        ValueError: if ``tensor.ndim < 2`` without ``fans``, ``mode``, ``nonlinearity`` or
            ``fans`` is invalid, ``a`` is NaN, infinite or too large, or the std would not fit
            the tensor's dtype (see :func:`variance_scaling_`; the message names ``a``).
        TypeError: if ``tensor`` is not floating point.

    Example:
        >>> w = kaiming_uniform_(torch.empty(64, 3, 3, 3), nonlinearity="relu")  # fan_in = 27
    """
    std_of = _kaiming_std(a, mode, nonlinearity)
    return _fill_scaled_(
        tensor,
        std_of,
        "uniform",
        fans=fans,
        generator=generator,
        what="kaiming_uniform_",
        given=(f"a={a!r}, nonlinearity={nonlinearity!r}", "a smaller gain", "a smaller |a|"),
    )


def kaiming_normal_(
    tensor: torch.Tensor,
    *,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    truncated: bool = False,
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from N(0, std**2), std = gain / sqrt(fan).

    ``gain = calculate_gain(nonlinearity, a)`` as in :func:`kaiming_uniform_`. Untruncated by
    default (PyTorch's ``kaiming_normal_``, matched bit for bit for ``mode`` in {fan_in,
    fan_out}); ``truncated=True`` is Keras/JAX ``he_normal`` (see the module docstring). Equals
    ``variance_scaling_(tensor, gain**2, mode, "normal" or "truncated_normal")``.

    Source: He et al. (ICCV 2015), Sec. 2.2, Eqs. 10, 14 and 15. Also known as He normal.

    Args:
        tensor: weight ``(out, in, *kernel)``, at least 2-D unless ``fans`` is given, floating.
        a: negative slope of the leaky ReLU after this layer (only used for ``"leaky_relu"``,
            checked for any): a finite real number with ``a**2`` within float64.
        mode: ``"fan_in"`` (forward variance), ``"fan_out"`` (backward) or ``"fan_avg"``.
        nonlinearity: a name accepted by :func:`initlab.calculate_gain`.
        truncated: draw from the truncated normal (Keras/JAX) instead of the plain one.
        fans: ``(fan_in, fan_out)`` to use instead of those read from the shape.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Raises:
        ValueError: if ``tensor.ndim < 2`` without ``fans``, ``mode``, ``nonlinearity`` or
            ``fans`` is invalid, ``a`` is NaN, infinite or too large, or the std would not fit
            the tensor's dtype (see :func:`variance_scaling_`; the message names ``a``).
        TypeError: if ``tensor`` is not floating point or ``truncated`` is not a bool.

    Example:
        >>> w = kaiming_normal_(torch.empty(128, 64), nonlinearity="relu")  # std = sqrt(2 / 64)
    """
    std_of = _kaiming_std(a, mode, nonlinearity)
    kind = _normal_kind(truncated)
    return _fill_scaled_(
        tensor,
        std_of,
        kind,
        fans=fans,
        generator=generator,
        what="kaiming_normal_",
        given=(f"a={a!r}, nonlinearity={nonlinearity!r}", "a smaller gain", "a smaller |a|"),
    )


def _xavier_std(gain: float) -> Callable[[int, int], float]:
    """Glorot's std ``gain * sqrt(2 / (fan_in + fan_out))`` in torch.nn.init's float operations."""
    gain = non_negative("gain", gain)
    return lambda fan_in, fan_out: gain * math.sqrt(2.0 / float(fan_in + fan_out))


def _kaiming_std(a: float, mode: str, nonlinearity: str) -> Callable[[int, int], float]:
    """He's std ``calculate_gain(nonlinearity, a) / sqrt(fan)``, fan chosen by ``mode``.

    ``a`` is checked whatever the nonlinearity (PyTorch reads it only for leaky_relu, and there
    ``a=inf`` would give gain 0, a zero weight, and ``a=nan`` a NaN one).
    """
    mode = one_of("mode", mode, MODES)
    a = _negative_slope(a, "a")
    gain = calculate_gain(nonlinearity, a)
    return lambda fan_in, fan_out: gain / math.sqrt(select_fan(fan_in, fan_out, mode))


def lecun_uniform_(
    tensor: torch.Tensor,
    *,
    mode: str = "fan_in",
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from U(-bound, bound), bound = sqrt(3 / fan_in).

    The standard deviation is ``1 / sqrt(fan)``. Exactly
    ``variance_scaling_(tensor, 1.0, mode, "uniform")``.

    Source: LeCun, Bottou, Orr and Mueller, "Efficient BackProp" (1998), Sec. 4.6 (std
    ``m**-1/2`` for ``m`` inputs). Also the SELU initialization of Klambauer et al.,
    "Self-Normalizing Neural Networks" (2017).

    Args:
        tensor: weight ``(out, in, *kernel)``, at least 2-D unless ``fans`` is given, floating.
        mode: ``"fan_in"`` (the paper's), ``"fan_out"`` or ``"fan_avg"``.
        fans: ``(fan_in, fan_out)`` to use instead of those read from the shape.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Raises:
        ValueError: if ``tensor.ndim < 2`` without ``fans``, or ``mode`` or ``fans`` is invalid.
        TypeError: if ``tensor`` is not floating point.

    Example:
        >>> w = lecun_uniform_(torch.empty(20, 12))  # bound = sqrt(3 / 12) = 0.5
    """
    return variance_scaling_(tensor, 1.0, mode, "uniform", fans=fans, generator=generator)


def lecun_normal_(
    tensor: torch.Tensor,
    *,
    mode: str = "fan_in",
    truncated: bool = False,
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from N(0, std**2), std = 1 / sqrt(fan_in).

    Untruncated by default; ``truncated=True`` is Keras/JAX ``lecun_normal`` (see the module
    docstring). Exactly
    ``variance_scaling_(tensor, 1.0, mode, "normal" or "truncated_normal")``.

    Source: LeCun, Bottou, Orr and Mueller, "Efficient BackProp" (1998), Sec. 4.6; Klambauer
    et al., "Self-Normalizing Neural Networks" (2017) for SELU networks.

    Args:
        tensor: weight ``(out, in, *kernel)``, at least 2-D unless ``fans`` is given, floating.
        mode: ``"fan_in"`` (the paper's), ``"fan_out"`` or ``"fan_avg"``.
        truncated: draw from the truncated normal (Keras/JAX) instead of the plain one.
        fans: ``(fan_in, fan_out)`` to use instead of those read from the shape.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Raises:
        ValueError: if ``tensor.ndim < 2`` without ``fans``, or ``mode`` or ``fans`` is invalid.
        TypeError: if ``tensor`` is not floating point or ``truncated`` is not a bool.

    Example:
        >>> w = lecun_normal_(torch.empty(20, 16))  # std = 1 / 4
    """
    kind = _normal_kind(truncated)
    return variance_scaling_(tensor, 1.0, mode, kind, fans=fans, generator=generator)


def _normal_kind(truncated: bool) -> str:
    if not isinstance(truncated, bool):
        raise TypeError(f"truncated must be a bool; got truncated={truncated!r}")
    return "truncated_normal" if truncated else "normal"


glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
he_uniform_ = kaiming_uniform_
he_normal_ = kaiming_normal_
