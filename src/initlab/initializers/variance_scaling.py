"""The one primitive of scaled initialization: ``variance_scaling_``, and its formula.

The formula is pure and public, so that every caller computes a scaled draw the same way:
:func:`select_fan` (the fan a mode names), :func:`variance_scaling_std` (``sqrt(scale / fan)``)
and :func:`scaled_draw` (what a sampler is given for values of a target std: the parent std of a
truncated normal, the bound of a uniform). :func:`variance_scaling_` fills a tensor with them;
the policy's rules (:mod:`initlab.policy.rules`) write them into plan rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from initlab._checks import NORMAL_Z_MAX, fill_fits, floating, non_negative, one_of
from initlab.fans import compute_fans
from initlab.initializers._args import zero_element
from initlab.initializers.truncated import trunc_normal_

__all__ = [
    "DISTRIBUTIONS",
    "MODES",
    "TRUNCATED_STD",
    "ScaledDraw",
    "scaled_draw",
    "select_fan",
    "variance_scaling_",
    "variance_scaling_std",
]

MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS: tuple[str, ...] = ("truncated_normal", "normal", "uniform")

# Standard deviation of a standard normal truncated to [-2, 2]:
# sqrt(1 - 4 * pdf(2) / (cdf(2) - cdf(-2))). Dividing the parent std by it makes the variance
# after truncation exactly the target (JAX and Keras use the same constant).
TRUNCATED_STD = 0.8796256610342398


class ScaledDraw(NamedTuple):
    """What a sampler is given so that its values have standard deviation ``std``.

    Attributes:
        distribution: ``"normal"``, ``"uniform"`` or ``"truncated_normal"``.
        std: the standard deviation of the values drawn.
        sampler_std: the ``std`` the sampler takes: ``std`` itself, except for
            ``"truncated_normal"``: the parent normal's, ``std / TRUNCATED_STD``.
        bound: the largest magnitude drawn: ``sqrt(3) * std`` for ``"uniform"`` (U(-bound,
            bound)), ``2 * sampler_std`` for ``"truncated_normal"`` (the cut), None for
            ``"normal"``.
    """

    distribution: str
    std: float
    sampler_std: float
    bound: float | None


def select_fan(fan_in: float, fan_out: float, mode: str) -> float:
    """Return the fan ``mode`` names: ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2``.

    Raises:
        ValueError: if ``mode`` is not one of :data:`MODES`.
    """
    one_of("mode", mode, MODES)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


def variance_scaling_std(scale: float, fan: float) -> float:
    """Return ``sqrt(scale / fan)``: the standard deviation of variance ``scale / fan``.

    The formula of Glorot and Bengio (2010, Eq. 16: ``scale=1`` on ``fan_avg``), He et al.
    (2015, Eq. 10: ``scale=2`` on ``fan_in``) and LeCun et al. (1998, Sec. 4.6: ``scale=1`` on
    ``fan_in``), as :func:`variance_scaling_` and the policy's ``variance_scaling`` rules
    compute it.

    Args:
        scale: multiplier of the variance, ``>= 0`` (not checked here: callers check it).
        fan: the fan (:func:`select_fan`, or any width such as an RNN's ``hidden_size``), > 0.

    Raises:
        ValueError: if ``fan`` is not > 0 (a zero-element layer has no scaled draw).
    """
    if not fan > 0:
        raise ValueError(f"fan must be > 0 for a variance-scaled std; got fan={fan!r}")
    return math.sqrt(scale / fan)


def scaled_draw(std: float, distribution: str) -> ScaledDraw:
    """Return the sampler parameters that give values of standard deviation ``std``.

    ``"normal"``: N(0, std**2). ``"uniform"``: U(-bound, bound), ``bound = sqrt(3) * std``.
    ``"truncated_normal"``: N(0, s**2) cut to +-2 s with ``s = std / TRUNCATED_STD``, so that
    the std *after* truncation is ``std`` (the JAX and Keras ``variance_scaling`` convention).

    Raises:
        ValueError: if ``distribution`` is not one of :data:`DISTRIBUTIONS`.

    Example:
        >>> scaled_draw(1.0, "uniform").bound  # sqrt(3)
        1.7320508075688772
    """
    one_of("distribution", distribution, DISTRIBUTIONS)
    if distribution == "uniform":
        return ScaledDraw(distribution, std, std, math.sqrt(3.0) * std)
    if distribution == "truncated_normal":
        sigma = std / TRUNCATED_STD
        return ScaledDraw(distribution, std, sigma, 2.0 * sigma)
    return ScaledDraw(distribution, std, std, None)


def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    fans: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place with zero-mean values of variance ``scale / fan``.

    The fan is chosen by ``mode``: ``fan_in``, ``fan_out`` or ``fan_avg = (fan_in + fan_out) / 2``,
    with ``(fan_in, fan_out) = initlab.compute_fans(tensor)`` (PyTorch layout
    ``(out, in, *kernel)``: ``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``)
    unless ``fans`` gives them. With ``sigma = sqrt(scale / fan)`` (a standard deviation):

    - ``"truncated_normal"``: N(0, s**2) truncated to [-2 s, 2 s] with
      ``s = sigma / 0.8796256610342398`` (the std of N(0, 1) truncated to [-2, 2]), so that the
      variance *after* truncation is exactly ``scale / fan``. Bounds: +-2 s, i.e. about
      +-2.27 sigma.
    - ``"normal"``: N(0, sigma**2), untruncated.
    - ``"uniform"``: U(-sqrt(3) sigma, sqrt(3) sigma), i.e. bound ``sqrt(3 * scale / fan)``.

    ``scale`` multiplies the *variance*: He (Kaiming) is ``scale=2.0`` for ReLU, which is
    ``gain**2`` for ``gain = sqrt(2)``. A ``gain`` (as in :func:`xavier_uniform_`) multiplies
    the standard deviation instead.

    Specializations (same distributions, see each function): Glorot/Xavier is ``scale=gain**2,
    mode="fan_avg"``; He/Kaiming is ``scale=gain**2`` with ``mode="fan_in"`` (forward) or
    ``"fan_out"`` (backward); LeCun is ``scale=1, mode="fan_in"``.

    Sources: Glorot and Bengio, "Understanding the difficulty of training deep feedforward
    neural networks" (AISTATS 2010), Eq. 16; He, Zhang, Ren and Sun, "Delving Deep into
    Rectifiers" (ICCV 2015), Sec. 2.2, Eqs. 10 and 14; LeCun, Bottou, Orr and Mueller,
    "Efficient BackProp" (1998), Sec. 4.6; ``jax.nn.initializers.variance_scaling`` (the
    single-primitive design, the truncated-normal correction and this argument order).

    Args:
        tensor: weight with at least 2 dimensions (unless ``fans`` is given), floating point
            (float16, bfloat16, float32, float64); meta tensors are left as they are, and
            zero-element ones too, with PyTorch's warning.
        scale: multiplier of the variance, finite, ``>= 0``; the resulting std must fit the
            dtype (see Raises).
        mode: ``"fan_in"`` preserves the variance of activations in the forward pass,
            ``"fan_out"`` that of gradients in the backward pass, ``"fan_avg"`` compromises.
        distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
        fans: ``(fan_in, fan_out)`` as positive ints, for layouts that
            :func:`compute_fans` cannot read from the shape (see :func:`initlab.layer_fans`).
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor.ndim < 2`` and no ``fans`` (a bias needs a bias rule such as
            :func:`zeros_`), ``mode`` or ``distribution`` is unknown (the message lists the
            accepted values), ``scale`` is negative or not finite, ``fans`` is not two positive
            ints, or the draws would not fit the tensor's dtype: the largest possible value
            (9.42 std for ``"normal"``, see :func:`normal_`; sqrt(3) std for ``"uniform"``;
            2.27 std for ``"truncated_normal"``) beyond its largest number, or a nonzero std
            below its smallest normal number (all values subnormal or 0); the message names
            the argument and the dtype.
        TypeError: if ``tensor`` is not floating point (the message names the dtype).
        All checks run before anything is written.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> w = variance_scaling_(torch.empty(256, 128), 2.0, "fan_in", "normal")
        >>> round(float(w.std()), 2)  # He normal: std = sqrt(2 / 128) = 0.125  # doctest: +SKIP
        0.12
    """
    mode = one_of("mode", mode, MODES)
    distribution = one_of("distribution", distribution, DISTRIBUTIONS)
    scale = non_negative("scale", scale)
    return _fill_scaled_(
        tensor,
        lambda fan_in, fan_out: variance_scaling_std(scale, select_fan(fan_in, fan_out, mode)),
        distribution,
        fans=fans,
        generator=generator,
        what="variance_scaling_",
        given=(f"scale={scale!r}", "a smaller scale", "a larger scale"),
    )


def _fill_scaled_(
    tensor: torch.Tensor,
    std_of: Callable[[int, int], float],
    distribution: str,
    *,
    fans: Sequence[int] | None,
    generator: torch.Generator | None,
    what: str,
    given: tuple[str, str, str],
) -> torch.Tensor:
    """Check the weight, then fill it from ``distribution`` with std ``std_of(fan_in, fan_out)``.

    The body shared by :func:`variance_scaling_` and its named specializations, which differ only
    in how they compute the standard deviation (the named ones use PyTorch's float operations so
    that they match ``torch.nn.init`` bit for bit). ``given`` is the argument that sets the std,
    as written in an error (``"gain=2.0"``), then the advice for a std too large and too small.
    A zero-element tensor (whose fans may be 0) warns and is returned before the std is
    computed, as in PyTorch.
    """
    floating(tensor, what)
    fan_in, fan_out = compute_fans(tensor) if fans is None else _explicit(fans)
    if zero_element(tensor):
        return tensor
    std = std_of(fan_in, fan_out)
    text, shrink, grow = given
    fill_fits(
        what,
        tensor.dtype,
        f"{text} with fan_in={fan_in}, fan_out={fan_out}",
        largest=_REACH[distribution] * std,
        typical=std,
        shrink=shrink,
        grow=grow,
    )
    if tensor.is_meta:
        return tensor
    with torch.no_grad():
        _SAMPLERS[distribution](tensor, scaled_draw(std, distribution), generator)
    return tensor


def _explicit(fans: Sequence[int]) -> tuple[int, int]:
    ok = (
        isinstance(fans, Sequence)
        and len(fans) == 2
        and all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in fans)
    )
    if not ok:
        raise ValueError(f"fans must be (fan_in, fan_out), two positive ints; got fans={fans!r}")
    return fans[0], fans[1]


def _normal(tensor: torch.Tensor, draw: ScaledDraw, generator: torch.Generator | None) -> None:
    tensor.normal_(0.0, draw.sampler_std, generator=generator)


def _uniform(tensor: torch.Tensor, draw: ScaledDraw, generator: torch.Generator | None) -> None:
    tensor.uniform_(-draw.bound, draw.bound, generator=generator)


def _truncated(tensor: torch.Tensor, draw: ScaledDraw, generator: torch.Generator | None) -> None:
    trunc_normal_(tensor, std=draw.sampler_std, a=-2.0, b=2.0, generator=generator)


_SAMPLERS = {"truncated_normal": _truncated, "normal": _normal, "uniform": _uniform}
# The largest magnitude each sampler can write, in units of std (see initlab._checks).
_REACH = {
    "truncated_normal": 2.0 / TRUNCATED_STD,
    "normal": NORMAL_Z_MAX,
    "uniform": math.sqrt(3.0),
}
