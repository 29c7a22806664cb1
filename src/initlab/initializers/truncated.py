"""The truncated normal distribution, with bounds exact in the tensor's dtype.

Four samplers, chosen by the standardized interval ``[alpha, beta]`` and its probability mass
``P = Phi(beta) - Phi(alpha)`` under the parent normal:

- ``P >= 0.25`` and ``|alpha|, |beta| <= 3``, sampled in float32 (float32, float16 and bfloat16
  tensors; this covers the usual +-2 std): inverse CDF through the error function,
  ``sqrt(2) * erfinv(V)`` with ``V ~ U(erf(alpha / sqrt(2)), erf(beta / sqrt(2)))``, one 31-bit
  random integer per entry and no rejection. In float32 this costs about one ``normal_`` fill
  (a rejection sampler must also locate the 4.6 % of entries outside +-2 std, and locating them
  (``nonzero``) costs as much again). V carries float32 rounding, about ``2**-24``, which
  ``sqrt(2) * erfinv`` amplifies by ``sqrt(pi / 2) * exp(z**2 / 2)``: measured against the
  float64 inverse CDF of the same random integers, the largest error is 1.0e-6 std for bounds
  at +-2 std (4 float32 ulps of 2.0) and 9.5e-6 std at +-3 std with PyTorch's AVX2 kernels, and
  1.26e-6 and 1.06e-5 std with its scalar kernels: about 1e-5 std at 3 std on any CPU, and
  growing as ``exp(z**2 / 2)`` beyond, hence the cut at 3.
- ``P >= 0.25`` otherwise: draw the whole tensor from the parent normal once, then redraw only
  the entries that fell outside (in a small side buffer, by rejection). The tensor is traversed
  in blocks that stay in cache; the cost is one normal fill plus locating the rejected
  entries. With under one reject per 512 entries they are found through float 0/1 flags and
  one matrix-vector product per block (about 1.4x a ``normal_`` fill in all, e.g. timm's
  ``std=0.02`` cut at +-2 absolute, or +-4 std); with more, through ``nonzero``, which costs
  about 100 ns per reject (7x a fill for a half-normal, where half the entries are redrawn).
- ``P < 0.25`` (a narrow interval or one in a tail): inverse CDF, ``Phi^-1(U)`` with
  ``U ~ U(Phi(alpha), Phi(beta))`` in float64, on the lower-tail side of the interval (by
  symmetry) where ``Phi`` and ``Phi^-1`` keep full relative precision.
- an interval so narrow that the density varies by less than 1e-10 across it: uniform on it
  (the inverse CDF would run out of float64 resolution there).

Sources: Devroye, "Non-Uniform Random Variate Generation" (1986), Ch. II, Sec. 2 (inversion)
and Sec. 3 (rejection); Robert, "Simulation of truncated normal variables" (Statistics and
Computing, 1995), which studies both for the truncated normal.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from initlab._checks import NORMAL_Z_MAX, fill_fits, finite, floating, non_negative, one_of, real
from initlab.initializers._args import zero_element

__all__ = ["trunc_normal_"]

# Below this acceptance probability, rejection costs more than 4 normal draws per entry and the
# inverse CDF is both faster and deterministic in cost.
_MIN_ACCEPTANCE = 0.25
# 2**18 entries (1 MiB of float32): a block and its masks stay in L2 cache.
_BLOCK = 1 << 18
# Rows of 256 entries: below one reject per 512 entries most rows have none (see _reject_).
_ROW = 256
# Beyond 3 std the float32 erfinv sampler errs by 1e-5 std or more (module docstring).
_ERFINV_MAX_Z = 3.0
# Rounds of side-buffer rejection before the remainder goes to the inverse CDF; only reached when
# rounding to the working dtype makes the interval far narrower than the math says.
_MAX_ROUNDS = 64


def trunc_normal_(
    tensor: torch.Tensor,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    bounds: str = "std",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place from N(mean, std**2) conditioned on ``lo <= x <= hi``.

    The interval ``[lo, hi]`` depends on ``bounds``:

    - ``bounds="std"`` (default; the JAX/TensorFlow/Keras convention): ``a`` and ``b`` count
      standard deviations from the mean, ``lo = mean + a * std``, ``hi = mean + b * std``.
      The defaults cut at +-2 std.
    - ``bounds="absolute"`` (PyTorch's ``torch.nn.init.trunc_normal_`` convention): ``lo = a``,
      ``hi = b`` in the units of the values, whatever ``mean`` and ``std`` are.

    ``std`` is the standard deviation of the parent normal *before* truncation; the result has a
    smaller one (0.8796 * std for the default +-2 std). Every value lies in ``[lo, hi]`` exactly,
    at the tensor's own precision: the bounds are rounded inward to the dtype. float16 and
    bfloat16 are sampled in float32, cast, then clamped to the inward-rounded bounds. ``std=0``
    gives the limit distribution, a point mass at ``mean`` clamped into ``[lo, hi]``.

    Method: when the interval holds at least 25 % of the parent mass, the inverse CDF through
    float32 ``erfinv`` if both bounds are within 3 std and the tensor is sampled in float32
    (the cost of about one ``normal_`` fill; values within 1e-6 std of the exact inverse CDF
    for +-2 std), else a redraw of the out-of-bounds entries; below 25 % the float64 inverse
    CDF ``Phi^-1(U)``, ``U ~ U(Phi(alpha), Phi(beta))``, with ``alpha = (lo - mean) / std``
    and ``beta = (hi - mean) / std`` (Devroye 1986, Ch. II; Robert 1995). All are exact
    samplers of the truncated law up to float rounding. An interval narrower than about 1e-10
    std, where the density is flat to float64 precision, is sampled uniformly.

    Every value must fit the tensor's dtype: the part of ``[lo, hi]`` that the draws can reach
    (within ``mean +- 9.42 std``, see :func:`normal_`) must lie within its largest number;
    otherwise a ValueError names the arguments and the dtype (rather than piling values up at
    the dtype's largest number). A parent std beyond the working dtype's range (with bounds
    within it) is sampled by the float64 inverse CDF.

    Args:
        tensor: any shape, floating point (meta tensors are left as they are; zero-element
            ones too, with PyTorch's warning).
        mean: mean of the parent normal, finite.
        std: standard deviation of the parent normal, finite, ``>= 0``.
        a: lower bound (in std or absolute, see ``bounds``); may be ``-inf``, not NaN.
        b: upper bound, ``b > a``; may be ``+inf``, not NaN.
        bounds: ``"std"`` or ``"absolute"``.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        TypeError: if ``tensor`` is not floating point or an argument is not a real number.
        ValueError: if ``std < 0``, ``a >= b``, ``bounds`` is unknown, no value of the tensor's
            dtype lies in ``[lo, hi]``, the interval is so far in a tail (beyond about 37 std)
            that its probability underflows float64, or the values would not fit the dtype.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> w = trunc_normal_(torch.empty(768, 768), std=0.02)  # in [-0.04, 0.04]
        >>> w = trunc_normal_(torch.empty(10), std=1.0, a=0.0, b=math.inf, bounds="absolute")
    """
    floating(tensor, "trunc_normal_")
    law = _law(tensor.dtype, mean, std, a, b, bounds)
    # the values lie in [lo, hi] and, whatever the sampler, within mean +- NORMAL_Z_MAX * std
    reach = NORMAL_Z_MAX * law.std
    lowest, highest = max(law.lo, law.mean - reach), min(law.hi, law.mean + reach)
    fill_fits(
        "trunc_normal_",
        tensor.dtype,
        f"mean={mean!r}, std={std!r}, a={a!r}, b={b!r}, bounds={bounds!r}",
        largest=max(abs(lowest), abs(highest)),
        typical=0.0,  # values lie in [lo, hi] rounded inward, subnormal or not
        shrink="a smaller std, |mean| or bounds",
        grow="a larger std",
    )
    if zero_element(tensor) or tensor.is_meta:
        return tensor
    with torch.no_grad():
        if law.std == 0:
            tensor.fill_(min(max(law.mean, law.lo), law.hi))
        else:
            _sample_(tensor, law, generator)
    return tensor


@dataclasses.dataclass(frozen=True)
class _Law:
    """A truncated normal, with everything its samplers need."""

    mean: float
    std: float
    lo: float  # the exact bounds
    hi: float
    work: tuple[float, float]  # bounds rounded inward to the working dtype (float32/float64)
    target: tuple[float, float]  # bounds rounded inward to the tensor's dtype
    # standardized bounds, mirrored onto the lower half (alpha + beta <= 0) if that side is
    # nearer: sampling -z on [-beta, -alpha] keeps Phi and Phi^-1 away from 1, where float64
    # loses their relative precision
    alpha: float
    beta: float
    mirrored: bool
    mass: float  # Phi(beta) - Phi(alpha), the acceptance probability of rejection


def _law(dtype: torch.dtype, mean, std, a, b, bounds) -> _Law:
    mean, std = finite("mean", mean), non_negative("std", std)
    a, b = real("a", a), real("b", b)
    if not a < b:
        raise ValueError(f"trunc_normal_ needs a < b; got a={a!r}, b={b!r}")
    if one_of("bounds", bounds, ("absolute", "std")) == "absolute":
        lo, hi = a, b
    else:  # an infinite bound stays infinite (inf * 0 would be NaN for std=0)
        lo = mean + a * std if math.isfinite(a) else a
        hi = mean + b * std if math.isfinite(b) else b
    if std == 0:
        return _Law(mean, std, lo, hi, (lo, hi), (lo, hi), 0.0, 0.0, False, 1.0)
    work, target = _inward(lo, hi, _working_dtype(dtype)), _inward(lo, hi, dtype)
    alpha, beta = (lo - mean) / std, (hi - mean) / std
    mirrored = alpha + beta > 0
    if mirrored:
        alpha, beta = -beta, -alpha
    law = _Law(mean, std, lo, hi, work, target, alpha, beta, mirrored, _mass(alpha, beta))
    if law.mass == 0 and not _narrow(law):
        raise ValueError(
            f"the interval [{lo!r}, {hi!r}] is too far in a tail of N(mean={mean!r}, "
            f"std={std!r}**2): its probability underflows float64"
        )
    return law


def _mass(alpha: float, beta: float) -> float:
    """Return Phi(beta) - Phi(alpha) for alpha + beta <= 0, without cancellation."""
    if beta <= 0:  # both in the lower tail: erfc keeps its relative precision there
        return 0.5 * (math.erfc(-beta / math.sqrt(2.0)) - math.erfc(-alpha / math.sqrt(2.0)))
    return 0.5 * (math.erf(beta / math.sqrt(2.0)) - math.erf(alpha / math.sqrt(2.0)))


def _narrow(law: _Law) -> bool:
    """Whether the density varies by less than 1e-10 (relative) across the interval.

    The log-density changes by at most (beta - alpha) * max(|alpha|, |beta|) + (beta - alpha)**2
    over [alpha, beta]; below 1e-10 the uniform distribution on [lo, hi] is the truncated normal
    to float64 accuracy, where the inverse CDF would run out of resolution.
    """
    width = law.beta - law.alpha
    return width * (1 + max(abs(law.alpha), abs(law.beta))) < 1e-10


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _inward(lo: float, hi: float, dtype: torch.dtype) -> tuple[float, float]:
    """Return the smallest value of ``dtype`` >= lo and the largest <= hi."""
    lo_d, hi_d = _round(lo, dtype, up=True), _round(hi, dtype, up=False)
    if lo_d > hi_d:
        raise ValueError(
            f"no {dtype} value lies in [{lo!r}, {hi!r}]; widen the interval or use a more "
            "precise dtype"
        )
    return lo_d, hi_d


def _round(x: float, dtype: torch.dtype, *, up: bool) -> float:
    if math.isinf(x):
        return x
    t = torch.tensor(x, dtype=torch.float64).to(dtype)
    if (t.item() < x) if up else (t.item() > x):
        t = torch.nextafter(t, torch.tensor(math.inf if up else -math.inf, dtype=dtype))
    return t.item()


def _phi(x: float) -> float:
    """Standard normal CDF; erfc keeps full relative precision in the lower tail."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _sample_(tensor: torch.Tensor, law: _Law, generator: torch.Generator | None) -> None:
    work_dtype = _working_dtype(tensor.dtype)
    direct = tensor.dtype == work_dtype and tensor.is_contiguous()
    flat = tensor.view(-1) if direct else tensor.new_empty(tensor.numel(), dtype=work_dtype)
    if _narrow(law):
        fill = _uniform_
    elif law.std * NORMAL_Z_MAX > torch.finfo(work_dtype).max:
        # a parent normal wider than the working dtype (std=5e38 cut to +-3e38 in float32):
        # only the float64 inverse CDF computes it without overflow
        fill = _inverse_cdf_
    elif law.mass >= _MIN_ACCEPTANCE and _erfinv_fits(law, work_dtype):
        fill = _erfinv_
    elif law.mass >= _MIN_ACCEPTANCE:
        fill = _reject_
    else:
        fill = _inverse_cdf_
    # two rows of scratch per block, allocated once: fresh pages per block cost a fault each
    scratch = flat.new_empty((2, min(_BLOCK, flat.numel())))
    for block in flat.split(_BLOCK):
        fill(block, law, generator, scratch[:, : block.numel()])
    if not direct:
        tensor.copy_(flat.view(tensor.shape))
    # both samplers leave each block within the working bounds; a cast from float64 or to a
    # lower precision rounds, hence the clamp to the tensor's own bounds
    if not (direct and fill in (_reject_, _erfinv_)):
        tensor.clamp_(*law.target)


def _erfinv_fits(law: _Law, work_dtype: torch.dtype) -> bool:
    """Whether the float32 erfinv sampler is accurate for ``law`` (see the module docstring)."""
    return work_dtype == torch.float32 and max(abs(law.alpha), abs(law.beta)) <= _ERFINV_MAX_Z


def _erfinv_(block: torch.Tensor, law: _Law, generator, scratch: torch.Tensor) -> None:
    """Fill ``block`` with ``mean + std * sqrt(2) * erfinv(V)``, V uniform on the erf interval.

    ``Phi(z) = (1 + erf(z / sqrt(2))) / 2``, so ``Phi^-1(U) = sqrt(2) * erfinv(2U - 1)`` and
    ``2U - 1`` is uniform on ``[erf(alpha / sqrt(2)), erf(beta / sqrt(2))]`` (Devroye 1986,
    Ch. II, Sec. 2). ``V = erf(alpha / sqrt(2)) + (k + 1/2) * step`` with k uniform on the
    integers ``[0, 2**31)``: 31 random bits, rounded once to float32 (at most 1 ulp of V).
    """
    a, b = law.alpha, law.beta
    if law.mirrored:  # law.alpha, law.beta describe -z; erfinv needs no mirroring
        a, b = -b, -a
    lo_v, hi_v = math.erf(a / math.sqrt(2.0)), math.erf(b / math.sqrt(2.0))
    step = (hi_v - lo_v) * 2.0**-31
    bits = scratch[0].view(torch.int32)  # float32 scratch: the same bytes
    bits.random_(generator=generator)  # uniform on [0, 2**31)
    block.copy_(bits)
    # torch.add(c, x, alpha=s) = c + s * x in one pass (mul_ then add_ take two)
    torch.add(_scalar(lo_v + step / 2, block), block, alpha=step, out=block)
    torch.erfinv(block, out=block)
    torch.add(_scalar(law.mean, block), block, alpha=law.std * math.sqrt(2.0), out=block)
    block.clamp_(*law.work)


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim tensor of ``like``'s dtype, so that ``torch.add`` stays in that dtype."""
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _reject_(block: torch.Tensor, law: _Law, generator, scratch: torch.Tensor) -> None:
    """Fill ``block`` from the parent normal, then replace its out-of-bounds entries."""
    lo, hi = law.work
    block.normal_(law.mean, law.std, generator=generator)
    if (1 - law.mass) * _ROW <= 0.5:  # most rows of _ROW entries hold no reject
        index = _outside_sparse(block, lo, hi, scratch)
    else:
        outside = block < lo
        outside.logical_or_(block > hi)
        index = outside.nonzero().squeeze(1)
    if index.numel():
        block[index] = _inside(index.numel(), law, block, generator)


def _outside_sparse(block: torch.Tensor, lo: float, hi: float, scratch) -> torch.Tensor:
    """Return the ascending indices of ``block``'s entries outside ``[lo, hi]``, when few are.

    ``nonzero`` over the whole block costs about a fifth of the normal fill even with nothing
    to find. Instead: 0/1 float flags (float comparisons are vectorized, boolean ones are not),
    one matrix-vector product for the number of rejects per row of ``_ROW`` entries (small
    integers, exact in float32 whatever the order of summation), then ``nonzero`` only over the
    row counts and the rows that have any.
    """
    flags, below = scratch
    torch.gt(block, hi, out=flags)  # float output: 10x faster than a bool one, then a cast
    flags.add_(torch.lt(block, lo, out=below))
    whole = block.numel() // _ROW * _ROW
    grid = flags[:whole].view(-1, _ROW)
    rows = torch.mv(grid, flags.new_ones(_ROW)).nonzero().squeeze(1)
    hit = grid[rows].nonzero()  # (k, 2): position in rows, column
    tail = flags[whole:].nonzero().squeeze(1) + whole
    return torch.cat((rows[hit[:, 0]] * _ROW + hit[:, 1], tail))


def _inside(n: int, law: _Law, like: torch.Tensor, generator) -> torch.Tensor:
    """Return ``n`` draws inside the working bounds, by rejection in a small side buffer."""
    lo, hi = law.work
    parts, missing = [], n
    for _ in range(_MAX_ROUNDS):
        # 10 % over the expected need, so one round usually suffices
        draw = like.new_empty(int(missing / law.mass * 1.1) + 16)
        draw.normal_(law.mean, law.std, generator=generator)
        kept = draw[(draw >= lo) & (draw <= hi)][:missing]
        parts.append(kept)
        missing -= kept.numel()
        if missing == 0:
            return torch.cat(parts)
    rest = like.new_empty(missing)
    _inverse_cdf_(rest, law, generator, None)
    parts.append(rest.clamp_(lo, hi))
    return torch.cat(parts)


def _inverse_cdf_(block: torch.Tensor, law: _Law, generator, scratch=None) -> None:
    """Fill ``block`` with ``mean + std * Phi^-1(U)``, U ~ U(Phi(alpha), Phi(beta)), in float64."""
    u = torch.rand(block.numel(), dtype=torch.float64, device=block.device, generator=generator)
    z = torch.special.ndtri(u.mul_(law.mass).add_(_phi(law.alpha)))
    block.copy_(z.mul_(-law.std if law.mirrored else law.std).add_(law.mean))


def _uniform_(block: torch.Tensor, law: _Law, generator, scratch=None) -> None:
    """Fill ``block`` uniformly on the bounds: the truncated normal on a very narrow interval."""
    block.uniform_(*law.work, generator=generator)
