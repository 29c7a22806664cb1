"""Statistics of a comparison: Welch's t interval for a difference of means over seeds.

Two schemes' metric values over seeds are independent samples whose variances need not be equal
(a scheme near chance varies little, an unstable one a lot), so their difference of means gets
Welch's interval (B. L. Welch, "The generalization of 'Student's' problem when several different
population variances are involved", Biometrika 34, 1947), with the Welch–Satterthwaite degrees of
freedom (F. E. Satterthwaite, Biometrics Bulletin 2, 1946)::

    d = mean_a - mean_b,   se^2 = s_a^2 / n_a + s_b^2 / n_b   (sample variances, ddof=1)
    df = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1))
    interval = d ± t_{(1 + level) / 2, df} · se

The Student t quantile is computed here (SciPy is only a test dependency) from the regularized
incomplete beta function, ``P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2)``, evaluated by its
continued fraction (modified Lentz; Press et al., *Numerical Recipes*, 3rd ed., section 6.4) and
inverted by bisection; tests compare it with ``scipy.stats.t.ppf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from initlab._checks import ArgumentError

__all__ = ["WelchInterval", "student_t_quantile", "welch_interval"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, NR 3rd ed. 6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: float) -> float:
    """``P(T > t)`` for ``t >= 0`` and Student's t with ``df`` degrees of freedom."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


def student_t_quantile(p: float, df: float) -> float:
    """Return the ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Exact up to about 1e-12 relative (bisection on the CDF from the regularized incomplete beta
    function; see the module doc); ``df`` need not be an integer (Welch–Satterthwaite).

    Args:
        p: probability, ``0 < p < 1``.
        df: degrees of freedom, ``> 0``; ``math.inf`` gives the normal quantile.

    Returns:
        ``t`` with ``P(T <= t) = p``.

    Raises:
        ArgumentError: ``p`` outside (0, 1) or ``df`` not positive.

    Example:
        >>> round(student_t_quantile(0.975, 2), 6)
        4.302653
    """
    if not 0.0 < p < 1.0:
        raise ArgumentError("p", f"p must be a probability strictly between 0 and 1, got {p!r}")
    if not df > 0.0:
        raise ArgumentError("df", f"df must be a positive number of degrees of freedom, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    tail = 1.0 - p
    if math.isinf(df):
        return math.sqrt(2.0) * _erfinv(1.0 - 2.0 * tail)
    low, high = 0.0, 1.0
    while _t_upper_tail(high, df) > tail:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if _t_upper_tail(mid, df) > tail:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


def _erfinv(y: float) -> float:
    """Inverse error function on (-1, 1) by bisection on ``math.erf`` (the df = inf case)."""
    low, high = -10.0, 10.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if math.erf(mid) < y:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@dataclass(frozen=True)
class WelchInterval:
    """Welch's interval for ``mean(a) - mean(b)``; ``low``/``high`` ``None`` without one.

    Attributes:
        difference: ``mean(a) - mean(b)``, in the samples' unit.
        low, high: the interval's ends; ``None`` when a sample has a single value (no variance
            estimate, so no interval). Equal to ``difference`` when both samples have zero
            spread (every seed gave the same value): seed noise then adds no width.
        df: Welch–Satterthwaite degrees of freedom; ``None`` without an interval or with zero
            spread in both samples.
        n_a, n_b: the sample sizes.
        level: the confidence level, e.g. 0.95.
    """

    difference: float
    low: float | None
    high: float | None
    df: float | None
    n_a: int
    n_b: int
    level: float

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (the ``±`` of a sentence); ``None`` without an interval."""
        return None if self.high is None else self.high - self.difference

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies strictly on one side of 0 (``False`` without one)."""
        if self.low is None or self.high is None:
            return False
        return self.low > 0.0 or self.high < 0.0


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> WelchInterval:
    """Return Welch's ``level`` interval for ``mean(a) - mean(b)`` (see the module doc).

    The same interval as ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval``.

    Args:
        a, b: the two samples (e.g. final test accuracies over seeds), at least one value each.
        level: confidence level in (0, 1).

    Returns:
        A :class:`WelchInterval`; without an interval (a sample of one value) ``low``, ``high``
        and ``df`` are ``None``.

    Raises:
        ArgumentError: an empty sample, a non-finite value, or ``level`` outside (0, 1).
    """
    for name, sample in (("a", a), ("b", b)):
        if not sample:
            raise ArgumentError(name, f"{name} needs at least one value, got an empty sample")
        if not all(math.isfinite(v) for v in sample):
            raise ArgumentError(name, f"{name} must hold finite values, got {list(sample)!r}")
    if not 0.0 < level < 1.0:
        raise ArgumentError("level", f"level must be strictly between 0 and 1, got {level!r}")
    n_a, n_b = len(a), len(b)
    difference = sum(a) / n_a - sum(b) / n_b
    if n_a < 2 or n_b < 2:
        return WelchInterval(difference, None, None, None, n_a, n_b, level)
    (_, var_a), (_, var_b) = _mean_var(a), _mean_var(b)
    va, vb = var_a / n_a, var_b / n_b
    se2 = va + vb
    if se2 == 0.0:
        return WelchInterval(difference, difference, difference, None, n_a, n_b, level)
    df = se2 * se2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
    half = student_t_quantile((1.0 + level) / 2.0, df) * math.sqrt(se2)
    return WelchInterval(difference, difference - half, difference + half, df, n_a, n_b, level)
