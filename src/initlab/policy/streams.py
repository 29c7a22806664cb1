"""Counter-based random streams: any box of a planned parameter, drawn without the rest.

This is the contract behind ``InitPlan.apply(seed=s)``: the value of every entry of a parameter
depends only on ``(s, parameter name, the entry's position)``, never on which process draws it
or on what else it draws. So a rank that holds one shard of a parameter (a DTensor shard along
any dimension, on any number of ranks) computes exactly its entries of the single-process
result, drawing only what overlaps its shard. Changing anything below changes the weights a
seed gives.

- ``normal``, ``uniform``, ``truncated_normal`` (entries i.i.d.): the parameter, flattened in
  row-major order, is cut into chunks of ``CHUNK = 2**18`` entries (1 MiB of float32). Chunk
  ``k`` holds entries ``[k * CHUNK, (k + 1) * CHUNK)`` (the last one may be shorter) and is drawn
  in float32 on the CPU by the row's tensor initializer (:func:`initlab.normal_`,
  :func:`initlab.uniform_`, :func:`initlab.trunc_normal_`) from a ``torch.Generator`` seeded
  with the first 8 bytes of SHA-256 of ``"{seed}:{name}:{k}"``. This is counter-based
  generation (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
  SC 2011) with a chunk, not an entry, as the counter, so that the fill inside a chunk stays
  PyTorch's vectorized one.
- ``orthogonal``: each of the row's ``blocks`` blocks along dim 0 is one matrix and is drawn
  whole by :func:`initlab.orthogonal_` from the generator of ``"{seed}:{name}:block{b}"``; a
  QR needs the whole block, so a shard computes every block it overlaps. A 2-D row with
  ``block_dim=1`` (a Hugging Face ``Conv1D`` stored ``(in, out)``, q/k/v along dim 1) is drawn
  as its transpose, whose blocks lie along dim 0.
- ``constant``: block ``b`` along dim 0 (dim 1 when ``block_dim=1``) takes ``value[b]`` (or
  the single value).
- ``zero_rows``: those indices of dim 0 are set to 0 afterwards (embedding padding rows).

Cost. A box that is the whole parameter is drawn chunk by chunk straight into a float32 CPU
parameter (one SHA-256 and ``manual_seed`` per 2**18 entries, about 1 % of their ``normal_``
fill), or through a 1 MiB buffer into any other dtype or device, so no second copy of the
parameter is ever held. A shard draws every chunk between its first and last entry: a shard
along dim 0 draws its own entries plus at most two partial chunks; a shard along a later
dimension interleaves with the other shards inside each chunk, so it draws all chunks its rows
span (for a row-major ``(out, in)`` weight sharded along ``in``, all of them), and only stores
its own entries, copied run by run through strided views (half of a 4096 x 3072 weight along
dim 1: 1.2x the single-process draw of the whole weight; along dim 0: 0.5x). Orthogonal rows
cost each rank the QR of every block it touches.

Limitation: PyTorch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so two of
``n`` chunks share a stream with probability about ``n**2 / 2**33``: 3e-5 for the 487 chunks
of GPT-2 small, 0.2 % for the 3815 chunks of a 1B-parameter model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence

import torch

from initlab import initializers as il

__all__ = ["CHUNK", "fill_box_", "stream_seed"]

CHUNK = 1 << 18
_ELEMENTWISE = ("normal", "uniform", "truncated_normal")
_DISTRIBUTIONS = (*_ELEMENTWISE, "orthogonal", "constant")


def stream_seed(seed: int, name: str, tag: str) -> int:
    """Seed of one stream: the first 8 bytes of SHA-256 of ``"{seed}:{name}:{tag}"``, as an int
    below 2**63 (stable across processes, unlike Python's salted ``hash``)."""
    digest = hashlib.sha256(f"{seed}:{name}:{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def fill_box_(out: torch.Tensor, row, seed: int, offset: Sequence[int] | None = None) -> None:
    """Write into ``out`` the entries of the box at ``offset`` of the parameter ``row`` plans.

    The box is ``param[offset[0] : offset[0] + out.shape[0], offset[1] : ..., ...]`` of a
    parameter of shape ``row.shape``; its values are those the whole parameter gets from
    ``seed`` (see the module docstring), so filling the boxes of any partition of the parameter
    and assembling them gives the parameter bit for bit.

    Args:
        out: the box, any floating dtype and device; values are drawn in float32 on the CPU
            and copied in, chunk by chunk.
        row: a :class:`~initlab.policy.plan.PlanRow` with a drawable distribution
            (``normal``, ``uniform``, ``truncated_normal``, ``orthogonal``, ``constant``).
        seed: the base seed of the plan's ``apply``.
        offset: the global index of ``out``'s first entry; ``None`` for the whole parameter.

    Raises:
        ValueError: if the box does not lie inside ``row.shape``, ``row.distribution`` cannot
            be drawn, or ``row.blocks`` does not divide dim 0.

    Example:
        >>> row = plan(nn.Linear(4, 6))["weight"]
        >>> top = torch.empty(3, 4)
        >>> fill_box_(top, row, seed=0, offset=(0, 0))  # rows 0-2 of apply(seed=0)'s weight
    """
    shape = tuple(row.shape)
    offset = (0,) * len(shape) if offset is None else tuple(int(o) for o in offset)
    _check_box(row.name, shape, offset, tuple(out.shape))
    if row.distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"row {row.name!r} has distribution {row.distribution!r}; fill_box_ draws "
            f"{list(_DISTRIBUTIONS)}"
        )
    if out.numel() == 0:
        return
    with torch.no_grad():
        if row.distribution in _ELEMENTWISE:
            _elementwise_(out, row, seed, shape, offset)
        else:
            _per_block_(out, row, seed, shape, offset)
        for index in row.zero_rows if shape else ():
            local = index % shape[0] - offset[0]
            if 0 <= local < out.shape[0]:
                out[local].zero_()


def _check_box(name: str, shape, offset, size) -> None:
    if (
        len(offset) != len(shape)
        or len(size) != len(shape)
        or any(o < 0 or o + s > n for o, s, n in zip(offset, size, shape, strict=True))
    ):
        raise ValueError(
            f"box at offset={offset} of size {size} does not lie inside parameter {name!r} "
            f"of shape {shape}"
        )


def _elementwise_(out: torch.Tensor, row, seed: int, shape, offset) -> None:
    strides = _row_major_strides(shape)
    first = sum(o * s for o, s in zip(offset, strides, strict=True))
    last = first + sum((n - 1) * s for n, s in zip(out.shape, strides, strict=True))
    contiguous_box = last - first + 1 == out.numel()  # e.g. a shard along dim 0
    target = (
        out if out.is_contiguous() else torch.empty_like(out, memory_format=torch.contiguous_format)
    )
    flat = target.view(-1)
    direct = flat.dtype == torch.float32 and flat.device.type == "cpu"
    generator = torch.Generator()
    total = math.prod(shape)
    runs = None if contiguous_box else _Runs.of(shape, offset, tuple(out.shape))
    for k in range(first // CHUNK, last // CHUNK + 1):
        start, stop = k * CHUNK, min((k + 1) * CHUNK, total)
        if contiguous_box:
            lo, hi = max(start, first), min(stop, last + 1)
            if direct and (lo, hi) == (start, stop):  # the whole chunk: draw in place
                _draw_chunk(flat[lo - first : hi - first], row, seed, k, generator)
            else:
                values = _draw_chunk(torch.empty(stop - start), row, seed, k, generator)
                flat[lo - first : hi - first].copy_(values[lo - start : hi - start])
        else:
            values = _draw_chunk(torch.empty(stop - start), row, seed, k, generator)
            _scatter_runs(flat, values, start, runs)
    if target is not out:
        out.copy_(target)


def _row_major_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


@dataclasses.dataclass(frozen=True)
class _Runs:
    """A box in row-major order: one run of ``length`` entries per row of ``width``.

    ``j`` is the last dimension the box cuts; a row is one index of dims ``< j`` (the outer
    dims) and spans ``width = prod(shape[j:])`` entries, of which the box holds
    ``[start, start + length)``.
    """

    outer_shape: tuple[int, ...]
    outer_offset: tuple[int, ...]
    outer_size: tuple[int, ...]
    width: int
    start: int
    length: int

    @classmethod
    def of(cls, shape, offset, size) -> _Runs:
        j = max(d for d in range(len(shape)) if size[d] != shape[d])
        inner = math.prod(shape[j + 1 :])
        width, start, length = math.prod(shape[j:]), offset[j] * inner, size[j] * inner
        return cls(shape[:j], offset[:j], size[:j], width, start, length)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For global row numbers: (which lie in the box, their row numbers in the box)."""
        local = torch.zeros_like(index)
        inside = torch.ones_like(index, dtype=torch.bool)
        step = 1
        dims = zip(self.outer_shape, self.outer_offset, self.outer_size, strict=True)
        for n, o, s in reversed(list(dims)):
            coord = index % n - o
            index = index // n
            inside &= (coord >= 0) & (coord < s)
            local += coord * step
            step *= s
        return inside, local[inside]


def _scatter_runs(flat: torch.Tensor, values: torch.Tensor, start: int, runs: _Runs) -> None:
    """Copy the box's entries among global entries ``[start, start + len(values))`` into the
    box ``flat`` (row-major): whole rows through one strided view, partial rows one by one."""
    stop, width = start + values.numel(), runs.width
    box = flat.view(-1, runs.length)
    first, end = -(-start // width), stop // width  # rows wholly inside the chunk
    if end > first:
        inside, local = runs.rows(torch.arange(first, end))
        offset = first * width + runs.start - start
        whole = values.as_strided((end - first, runs.length), (width, 1), offset)
        box[local.to(flat.device)] = whole[inside].to(flat.device, flat.dtype)
    partial = {start // width} if start % width else set()
    partial |= {(stop - 1) // width} if stop % width else set()
    for r in partial:
        lo = max(start, r * width + runs.start)
        hi = min(stop, r * width + runs.start + runs.length)
        inside, local = runs.rows(torch.tensor([r]))
        if lo < hi and inside.item():
            column = lo - r * width - runs.start
            box[local.item(), column : column + hi - lo] = values[lo - start : hi - start]


def _draw_chunk(buf: torch.Tensor, row, seed: int, k: int, generator) -> torch.Tensor:
    """Fill the float32 CPU ``buf`` with chunk ``k`` of ``row`` and return it."""
    generator.manual_seed(stream_seed(seed, row.name, str(k)))
    if row.distribution == "normal":
        return il.normal_(buf, std=row.std, generator=generator)
    if row.distribution == "uniform":
        return il.uniform_(buf, a=-row.bound, b=row.bound, generator=generator)
    return il.trunc_normal_(
        buf, std=row.std, a=-row.bound, b=row.bound, bounds="absolute", generator=generator
    )


def _per_block_(out: torch.Tensor, row, seed: int, shape, offset) -> None:
    """Orthogonal and constant rows: block ``b`` is ``param[b * R : (b + 1) * R]``."""
    if row.block_dim == 1:  # (in, out) with blocks along dim 1: the blocks of dim 0 of W^T
        out, shape, offset = out.T, shape[::-1], offset[::-1]
    if not shape:  # a scalar parameter (only a constant: the plan never makes it orthogonal)
        out.fill_(row.value[0])
        return
    if shape[0] % row.blocks:
        raise ValueError(
            f"row {row.name!r}: blocks={row.blocks} does not divide dim 0 of shape {shape}"
        )
    height = shape[0] // row.blocks
    inner = tuple(slice(o, o + s) for o, s in zip(offset[1:], out.shape[1:], strict=True))
    top, bottom = offset[0], offset[0] + out.shape[0]
    for b in range(top // height, (bottom - 1) // height + 1):
        lo, hi = max(top, b * height), min(bottom, (b + 1) * height)
        part = out[lo - top : hi - top]
        if row.distribution == "constant":
            part.fill_(row.value[b if len(row.value) > 1 else 0])
            continue
        block = torch.empty((height, *shape[1:]))
        generator = torch.Generator().manual_seed(stream_seed(seed, row.name, f"block{b}"))
        il.orthogonal_(block, gain=row.gain, generator=generator)
        part.copy_(block[(slice(lo - b * height, hi - b * height), *inner)])
