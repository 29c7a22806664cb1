r"""Mean-field theory of signal propagation in deep random MLPs: fixed points, slopes, depth scales.

For an infinitely wide MLP with weights ``W ~ N(0, weight_var / fan_in)`` and biases
``b ~ N(0, bias_var)``, the pre-activation variance ``q`` of one layer maps to the next by
(Poole et al. 2016, eq. 3)::

    q_{l+1} = weight_var * E_z[phi(sqrt(q_l) z)^2] + bias_var,        z ~ N(0, 1)

and the correlation ``c`` between the pre-activations of two inputs by (ibid., eq. 5)::

    c_{l+1} = (weight_var * E[phi(u1) phi(u2)] + bias_var) / q*,
    u1 = sqrt(q*) z1,  u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2).

The slope of the correlation map at ``c = 1`` is (Poole et al. 2016, eq. 7)::

    chi_1 = weight_var * E_z[phi'(sqrt(q*) z)^2]

``chi_1 < 1`` is the ordered phase (inputs become correlated, gradients vanish), ``chi_1 > 1``
the chaotic phase (inputs decorrelate, gradients explode), ``chi_1 = 1`` the edge of chaos.
Correlations approach their fixed point ``c*`` as ``exp(-l / xi_c)`` with depth scale
(Schoenholz et al. 2017, "Deep Information Propagation", eq. 9)::

    xi_c = -1 / ln(chi_c),   chi_c = weight_var * E[phi'(u1) phi'(u2)] at c = c*,

which for ``c* = 1`` (the ordered phase) is ``xi_c = -1 / ln(chi_1)``. Schoenholz et al. (Sec. 5,
Fig. 5) find that random networks train up to a depth of about ``6 xi_c``.

The Gaussian expectations are computed by Gauss-Hermite quadrature (probabilists' Hermite
polynomials, numpy) and ``phi'`` by autograd, so any activation written in torch works.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from initlab._checks import non_negative, one_of

__all__ = ["MeanField", "mean_field", "critical_weight_variance"]

# An even node count puts no node at z = 0, where ReLU-like functions have a kink, and makes
# the quadrature of E[relu(z)^2] = 1/2 and E[relu'(z)^2] = 1/2 exact by symmetry.
_NODES = 100
_NODES_2D = 40
# q below this has collapsed to the fixed point 0, above it has diverged to infinity; slopes are
# then evaluated at the last finite iterate (their limit, exact for scale-free ReLU).
_Q_ZERO, _Q_INF = 1e-30, 1e30
_MAX_ITER = 2000
_RTOL = 1e-12
# |chi_1 - 1| below which the phase is called critical: xi_c = -1 / ln(chi_1) then exceeds 10^4
# layers, deeper than any network this is used for, so ordered and chaotic are indistinguishable.
CRITICAL_TOL = 1e-4
# Plain iteration q <- F(q) converges geometrically only away from the edge of chaos; near it
# F'(q*) -> 1 and q_l reaches q* algebraically (~1 / l for tanh), so after this many steps the
# fixed point is found as a root of F(q) - q by bisection instead.
_ITER = 200

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.01),
    "sigmoid": torch.sigmoid,
    "elu": torch.nn.functional.elu,
    "selu": torch.selu,
    "gelu": torch.nn.functional.gelu,
    "silu": torch.nn.functional.silu,
    "softplus": torch.nn.functional.softplus,
    "erf": torch.erf,
}


@dataclass(frozen=True)
class MeanField:
    """Mean-field quantities of one (activation, weight variance, bias variance) triple.

    Attributes:
        activation: name of the activation (or the callable's name).
        weight_var: ``sigma_w^2``, the weight variance times fan_in.
        bias_var: ``sigma_b^2``, the bias variance.
        q_star: fixed-point pre-activation variance reached from ``q0`` (0.0 if it collapses,
            ``inf`` if it diverges; then ``xi_c = 1 / |ln chi_1|`` is the depth scale of the
            variance itself and ``c_star`` is NaN when it diverges).
        chi_1: slope of the correlation map at c = 1 (< 1 ordered, > 1 chaotic).
        c_star: fixed-point correlation between two inputs (1.0 in the ordered phase).
        xi_c: correlation depth scale in layers (``inf`` at the edge of chaos).
        phase: ``"ordered"`` (chi_1 < 1 - 1e-4), ``"critical"`` (|chi_1 - 1| <= 1e-4, where
            xi_c > 10^4 layers; reported as ``inf``) or ``"chaotic"`` (chi_1 > 1 + 1e-4).
    """

    activation: str
    weight_var: float
    bias_var: float
    q_star: float
    chi_1: float
    c_star: float
    xi_c: float
    phase: str

    @property
    def trainable_depth(self) -> float:
        """Depth up to which a network with this init is expected to train: ``6 xi_c``.

        Source: Schoenholz et al. (2017), Sec. 5 and Fig. 5 (trainable iff depth < ~6 xi_c).
        """
        return 6.0 * self.xi_c


def mean_field(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    weight_var: float,
    bias_var: float = 0.0,
    *,
    q0: float = 1.0,
) -> MeanField:
    r"""Compute the mean-field fixed point ``q*``, slope ``chi_1`` and depth scale ``xi_c``.

    ``q*`` is the limit of ``q_{l+1} = weight_var E[phi(sqrt(q_l) z)^2] + bias_var`` from
    ``q_0 = q0``; ``chi_1 = weight_var E[phi'(sqrt(q*) z)^2]``; ``xi_c = -1 / ln(chi_c)`` with
    ``chi_c = chi_1`` when ``chi_1 <= 1`` and the slope at the correlation fixed point ``c* < 1``
    in the chaotic phase. Sources: Poole, Lahiri, Raghu, Sohl-Dickstein, Ganguli, "Exponential
    expressivity in deep neural networks through transient chaos" (2016), eqs. 3, 5, 7;
    Schoenholz, Gilmer, Ganguli, Sohl-Dickstein, "Deep Information Propagation" (2017), eq. 9.

    Units: ``weight_var`` is the *variance* of ``sqrt(fan_in) * W`` (He for ReLU: 2.0, Xavier for
    tanh with equal fans: 1.0), ``bias_var`` the variance of the bias; ``q*`` is a variance.

    Args:
        activation: a name (``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"linear"``, ``"elu"``,
            ``"selu"``, ``"gelu"``, ``"silu"``, ``"softplus"``, ``"leaky_relu"``, ``"erf"``) or
            a callable mapping a float64 tensor to a tensor elementwise (differentiable).
        weight_var: ``sigma_w^2 >= 0``.
        bias_var: ``sigma_b^2 >= 0``.
        q0: input pre-activation variance the iteration starts from (matters only where the
            variance map has a line of fixed points, e.g. ReLU at weight_var = 2, bias_var = 0).

    Returns:
        A :class:`MeanField`.

    Raises:
        ValueError: unknown activation name, or a negative or non-finite variance.
        TypeError: ``activation`` is neither a string nor callable.

    Example:
        >>> mf = mean_field("tanh", 1.5, 0.05)
        >>> mf.phase
        'ordered'
    """
    name, phi = _resolve(activation)
    weight_var = non_negative("weight_var", weight_var)
    bias_var = non_negative("bias_var", bias_var)
    q0 = non_negative("q0", q0)
    q_star, q_eval = _variance_fixed_point(phi, weight_var, bias_var, q0)
    chi_1 = weight_var * float(np.dot(_W, _derivative(phi, math.sqrt(q_eval) * _Z) ** 2))
    if not 0.0 < q_star < math.inf:
        # No finite fixed point: the variance itself collapses or explodes by chi_1 per layer
        # (exactly so for ReLU), so the depth scale is that of the variance, 1 / |ln chi_1|.
        phase = "ordered" if chi_1 < 1.0 else "chaotic"
        c_star, chi_c = (1.0, chi_1) if chi_1 < 1.0 else (math.nan, 1.0 / chi_1)
    elif chi_1 < 1.0 - CRITICAL_TOL:
        c_star, chi_c, phase = 1.0, chi_1, "ordered"
    elif chi_1 <= 1.0 + CRITICAL_TOL:
        c_star, chi_c, phase = 1.0, 1.0, "critical"
    else:
        c_star, chi_c = _correlation_fixed_point(phi, weight_var, bias_var, q_eval)
        phase = "chaotic"
    # chi_c = 0 (zero weights): every input maps to one output, correlations are lost in one
    # layer, and -1 / ln(chi_c) -> 0 as chi_c -> 0+.
    xi_c = 0.0 if chi_c <= 0.0 else math.inf if chi_c >= 1.0 else -1.0 / math.log(chi_c)
    return MeanField(name, weight_var, bias_var, q_star, chi_1, c_star, xi_c, phase)


def critical_weight_variance(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    bias_var: float = 0.0,
    *,
    tol: float = 1e-6,
) -> float:
    r"""Return the weight variance ``sigma_w^2`` at the edge of chaos, where ``chi_1 = 1``.

    Found by bisection on ``chi_1(sigma_w^2) - 1`` (``chi_1`` increases with ``sigma_w^2``).
    Known values: tanh with ``bias_var = 0`` gives 1.0, with ``bias_var = 0.05`` about 1.76
    (Schoenholz et al. 2017, Fig. 1); ReLU with ``bias_var = 0`` gives 2.0 (He et al. 2015).

    Args:
        activation: as in :func:`mean_field`.
        bias_var: ``sigma_b^2 >= 0``.
        tol: absolute tolerance on the returned weight variance.

    Returns:
        ``sigma_w^2`` as a float (a variance, multiply by ``1 / fan_in`` for the weight variance).

    Raises:
        ValueError: if no critical point exists below ``sigma_w^2 = 1e4``, or bad arguments.

    Example:
        >>> round(critical_weight_variance("tanh", 0.05), 2)
        1.76
    """
    bias_var = non_negative("bias_var", bias_var)
    _, phi = _resolve(activation)
    lo, hi = 0.0, 1.0
    while _chi_1(phi, hi, bias_var) < 1.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e4:
            raise ValueError(
                f"no edge of chaos for activation={activation!r}, bias_var={bias_var}: "
                "chi_1 stays below 1 up to weight_var=1e4"
            )
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _chi_1(phi, mid, bias_var) < 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def _chi_1(phi, weight_var: float, bias_var: float) -> float:
    """``chi_1`` as :func:`mean_field` computes it, without the correlation map (fast)."""
    _, q_eval = _variance_fixed_point(phi, weight_var, bias_var, 1.0)
    return weight_var * float(np.dot(_W, _derivative(phi, math.sqrt(q_eval) * _Z) ** 2))


def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / math.sqrt(2.0 * math.pi)  # weights of the standard normal


_Z, _W = _gauss_hermite(_NODES)


def _resolve(activation) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    if isinstance(activation, str):
        return activation, _ACTIVATIONS[one_of("activation", activation, _ACTIVATIONS)]
    if callable(activation):
        return getattr(activation, "__name__", type(activation).__name__), activation
    raise TypeError(
        f"activation must be a name or a callable; got activation={activation!r} "
        f"of type {type(activation).__name__}"
    )


def _apply(phi, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return phi(torch.from_numpy(x)).numpy()


def _derivative(phi, x: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(x).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(phi(t).sum(), t)
    return grad.numpy()


def _variance_fixed_point(phi, weight_var, bias_var, q0) -> tuple[float, float]:
    """Return (q*, the q at which slopes are evaluated: q*, or the last finite q if 0 or inf)."""

    def excess(q: float) -> float:  # F(q) - q, whose root reached from q0 is q*
        q_next = weight_var * float(np.dot(_W, _apply(phi, math.sqrt(q) * _Z) ** 2)) + bias_var
        if not math.isfinite(q_next):
            raise ValueError(f"the variance map is not finite at q={q!r}: F(q)={q_next!r}")
        return q_next - q

    q = q0 if q0 > 0 else _Q_ZERO
    for _ in range(_ITER):
        q_next = q + excess(q)
        if q_next < _Q_ZERO:
            return 0.0, q
        if q_next > _Q_INF:
            return math.inf, q
        if abs(q_next - q) <= _RTOL * q:
            return q_next, q_next
        q = q_next
    return _root_from(excess, q)


def _root_from(excess: Callable[[float], float], q: float) -> tuple[float, float]:
    """Bisect ``excess`` for the root the iteration from ``q`` moves to (down if excess < 0).

    The bracket is found by halving (or doubling) ``q`` until ``excess`` changes sign; if it never
    does before ``_Q_ZERO`` (``_Q_INF``), the iteration's limit is 0 (inf), returned as in
    :func:`_variance_fixed_point`. Bisection then runs to relative width ``_RTOL``.
    """
    sign = math.copysign(1.0, excess(q))
    step = 0.5 if sign < 0 else 2.0
    inner, outer = q, q * step
    while excess(outer) * sign > 0:
        if not _Q_ZERO <= outer * step <= _Q_INF:
            return (0.0 if step < 1 else math.inf), outer
        inner, outer = outer, outer * step
    root = _bisect(excess, inner, outer, sign)
    return root, root


def _bisect(excess: Callable[[float], float], inner: float, outer: float, sign: float) -> float:
    """Root of ``excess`` between ``inner`` (where its sign is ``sign``) and ``outer`` (not)."""
    while abs(outer - inner) > _RTOL * max(abs(inner), abs(outer)):
        mid = 0.5 * (inner + outer)
        inner, outer = (mid, outer) if excess(mid) * sign > 0 else (inner, mid)
    return 0.5 * (inner + outer)


def _correlation_fixed_point(phi, weight_var, bias_var, q) -> tuple[float, float]:
    """Solve the correlation map from c = 0 for c* and return (c*, chi_c at c*).

    Iterates up to ``_MAX_ITER`` steps; near the edge of chaos the slope at c* nears 1 and the
    iteration crawls (slope 0.996 for tanh at weight_var = 1.78, bias_var = 0.05), so the rest is
    bisection of C(c) - c between the last iterate and the end (+-1) it moves towards.
    """
    z1, z2 = np.meshgrid(*(_gauss_hermite(_NODES_2D)[0],) * 2, indexing="ij")
    w = np.outer(*(_gauss_hermite(_NODES_2D)[1],) * 2).ravel()
    z1, z2 = z1.ravel(), z2.ravel()
    s = math.sqrt(q)
    phi_1 = _apply(phi, s * z1)

    def excess(c: float) -> float:  # C(c) - c, capped at c = 1 (identical inputs)
        u2 = s * (c * z1 + math.sqrt(max(1.0 - c * c, 0.0)) * z2)
        c_next = (weight_var * float(np.dot(w, phi_1 * _apply(phi, u2))) + bias_var) / q
        return min(c_next, 1.0) - c

    c = 0.0
    for _ in range(_MAX_ITER):
        step = excess(c)
        c += step
        if abs(step) <= 1e-10:
            break
    else:
        c = _correlation_root(excess, c)
    u2 = s * (c * z1 + math.sqrt(max(1.0 - c * c, 0.0)) * z2)
    chi_c = weight_var * float(np.dot(w, _derivative(phi, s * z1) * _derivative(phi, u2)))
    return c, chi_c


def _correlation_root(excess: Callable[[float], float], c: float) -> float:
    """Bisect ``excess`` for the root the iteration from ``c`` moves to; +-1 if none is nearer."""
    sign = math.copysign(1.0, excess(c))
    end = sign  # the iteration moves up where C(c) > c, towards c = 1, and down towards -1
    inner, outer = c, 0.5 * (c + end)
    while excess(outer) * sign > 0:
        if abs(end - outer) <= _RTOL:
            return end
        inner, outer = outer, 0.5 * (outer + end)
    return _bisect(excess, inner, outer, sign)
