"""Init receipts: what every tensor of a model held right after it was initialized or loaded.

A :class:`Receipt` records, per parameter and buffer, its name, shape, dtype, where its values
came from (the plan rule with its distribution and std or bound, the module's own computation,
or the checkpoint tensor and file), the seed, summary statistics and a SHA-256 content hash; and
which names share one tensor (ties). :meth:`InitPlan.apply <initlab.policy.plan.InitPlan.apply>`
and :func:`initlab.load_pretrained` write one on request (``receipt=``);
:func:`initlab.policy.verify.verify` checks a model against it.

The file is JSON, one line per tensor so that two receipts diff line by line, written
atomically (:func:`initlab._files.atomic_write`): a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from initlab._files import atomic_write

__all__ = [
    "RECEIPT_FORMAT",
    "RECEIPT_VERSION",
    "Receipt",
    "ReceiptError",
    "TensorRecord",
    "named_tensors",
    "plan_source",
    "read_receipt",
    "record_model",
    "tensor_hash",
    "tensor_stats",
]

RECEIPT_FORMAT = "initlab.Receipt"
RECEIPT_VERSION = 1
# Tensors larger than this have their subnormal entries counted on a sample (see tensor_stats).
_EXACT_SUBNORMAL = 1 << 16
_RUN, _RUNS = 4096, 16  # the sample: 16 contiguous runs of 4096 entries, spread evenly
_STAT_KEYS = ("mean", "std", "min", "max", "zeros", "nonfinite", "subnormal")
_RECORD_KEYS = {"name", "kind", "shape", "dtype", "source", "seed", "stats", "sha256", "tied"}


class ReceiptError(ValueError):
    """A receipt file or dict that cannot be read: names the file and what is wrong."""


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of a receipt.

    Attributes:
        name: its first name in ``named_parameters``/``named_buffers`` order.
        kind: ``"parameter"``, ``"buffer"`` or ``"transient"`` (a non-persistent buffer, which
            ``state_dict`` and checkpoints leave out).
        shape: its shape.
        dtype: its dtype without the ``torch.`` prefix (``"float32"``).
        source: where its values came from: ``{"kind": "plan", "rule", "distribution", "std",
            "bound", ...}`` (drawn by a plan row, as in :class:`~initlab.policy.plan.PlanRow`),
            ``{"kind": "own_init", "rule"}`` (the module's own init), ``{"kind": "module"}``
            (computed by the module: buffers), ``{"kind": "checkpoint", "file", "tensor"}``,
            ``{"kind": "adapted", "file", "tensor", "rule"}`` or ``{"kind": "untouched"}``.
        seed: the base seed it was drawn with, or None.
        stats: :func:`tensor_stats` of its values.
        sha256: :func:`tensor_hash` of its values (None when unknown, e.g. built from a plan).
        tied: its other names (the same tensor under another module, e.g. GPT-2's
            ``lm_head.weight``).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    source: dict = field(default_factory=dict)
    seed: int | None = None
    stats: dict = field(default_factory=dict)
    sha256: str | None = None
    tied: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "source": self.source,
            "seed": self.seed,
            "stats": {k: _json_float(v) for k, v in self.stats.items()},
            "sha256": self.sha256,
        }
        if self.tied:
            out["tied"] = list(self.tied)
        return out


@dataclass
class Receipt:
    """The tensors of one model at step zero; see the module docstring.

    Attributes:
        tensors: name -> :class:`TensorRecord`, in the model's order (tied aliases are listed in
            their record's ``tied``, not as records of their own).
        origin: what wrote it: ``"plan"`` (``InitPlan.apply``), ``"load_pretrained"`` or
            ``"model"`` (:func:`record_model` called directly).
        seed: the base seed, or None.
        torch_version: ``torch.__version__`` when it was made (hashes depend on the dtype and
            values only; this is for the reader).
    """

    tensors: dict[str, TensorRecord]
    origin: str = "model"
    seed: int | None = None
    torch_version: str = torch.__version__

    def __getitem__(self, name: str) -> TensorRecord:
        return self.tensors[name]

    def names(self) -> dict[str, str]:
        """Every name the receipt knows -> the record it belongs to (aliases included)."""
        out = {}
        for record in self.tensors.values():
            for n in (record.name, *record.tied):
                out[n] = record.name
        return out

    def to_dict(self) -> dict:
        """JSON-ready data (:func:`json.dumps` works on it)."""
        return {
            "format": RECEIPT_FORMAT,
            "version": RECEIPT_VERSION,
            "origin": self.origin,
            "seed": self.seed,
            "torch": self.torch_version,
            "tensors": [r.to_dict() for r in self.tensors.values()],
        }

    def to_json(self) -> str:
        """The receipt as JSON text, one line per tensor (diffable)."""
        data = self.to_dict()
        head = {k: v for k, v in data.items() if k != "tensors"}
        lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        rows = [f"  {json.dumps(t, allow_nan=False)}" for t in data["tensors"]]
        body = ",\n".join(rows)
        return "{\n" + "\n".join(lines) + '\n "tensors": [\n' + body + "\n ]\n}\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the receipt to ``path`` atomically; return the path.

        Raises:
            OSError: the directory does not exist or is not writable.
        """
        return atomic_write(path, self.to_json())

    @classmethod
    def from_dict(cls, data, *, where: str = "receipt data") -> Receipt:
        """Rebuild a receipt from :meth:`to_dict` data.

        Raises:
            ReceiptError: naming ``where`` and what is wrong (not a receipt, another version,
                a record with a missing or malformed field).
        """
        if not isinstance(data, dict) or data.get("format") != RECEIPT_FORMAT:
            raise ReceiptError(f"{where} is not an initlab receipt (no format={RECEIPT_FORMAT!r})")
        if data.get("version") != RECEIPT_VERSION:
            raise ReceiptError(
                f"{where} has receipt version {data.get('version')!r}; this initlab reads "
                f"version {RECEIPT_VERSION}"
            )
        raw = data.get("tensors")
        if not isinstance(raw, list):
            raise ReceiptError(f"{where}: 'tensors' must be a list; got {type(raw).__name__}")
        tensors = {}
        for i, item in enumerate(raw):
            record = _record(item, f"{where}: tensor {i}")
            if record.name in tensors:
                raise ReceiptError(f"{where}: tensor {record.name!r} is listed twice")
            tensors[record.name] = record
        return cls(
            tensors,
            origin=str(data.get("origin", "model")),
            seed=data.get("seed"),
            torch_version=str(data.get("torch", "")),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Receipt:
        """Read a receipt file (see :func:`read_receipt`)."""
        return read_receipt(path)


def read_receipt(path: str | os.PathLike) -> Receipt:
    """Read a receipt written by :meth:`Receipt.save`.

    Raises:
        ReceiptError: naming the file: it does not exist, cannot be read, is not JSON (with the
            line and column), or is not a receipt of this version (what is wrong in it).
    """
    where = f"receipt file {os.fspath(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReceiptError(f"cannot read {where}: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReceiptError(
            f"{where} is not valid JSON (truncated or edited?): {error.msg} at line "
            f"{error.lineno} column {error.colno}"
        ) from error
    return Receipt.from_dict(data, where=where)


def _record(item, where: str) -> TensorRecord:
    if not isinstance(item, dict):
        raise ReceiptError(f"{where} must be an object; got {type(item).__name__}")
    missing = sorted({"name", "kind", "shape", "dtype"} - set(item))
    if missing:
        raise ReceiptError(f"{where} lacks the field(s) {missing}")
    name = item["name"]
    shape = item["shape"]
    if not isinstance(name, str):
        raise ReceiptError(f"{where}: 'name' must be text; got {name!r}")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise ReceiptError(f"{where} ({name!r}): 'shape' must be a list of sizes; got {shape!r}")
    stats = item.get("stats") or {}
    sha = item.get("sha256")
    if not isinstance(stats, dict) or not (sha is None or isinstance(sha, str)):
        raise ReceiptError(f"{where} ({name!r}): malformed 'stats' or 'sha256'")
    try:
        stats = {k: float(v) for k, v in stats.items()}
    except (TypeError, ValueError) as error:
        raise ReceiptError(f"{where} ({name!r}): a stat is not a number: {error}") from error
    return TensorRecord(
        name=name,
        kind=str(item["kind"]),
        shape=tuple(shape),
        dtype=str(item["dtype"]),
        source=dict(item.get("source") or {}),
        seed=item.get("seed"),
        stats=stats,
        sha256=sha,
        tied=tuple(item.get("tied") or ()),
    )


def _json_float(value: float) -> float | str:
    """A finite float as is; NaN and infinities as text (JSON has no literal for them)."""
    return value if math.isfinite(value) else str(value)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def tensor_hash(tensor: torch.Tensor) -> str:
    """SHA-256 (hex) of the tensor's values as bytes: on the CPU, contiguous, in its own dtype.

    The same values in the same dtype give the same hash on any device and for any strides;
    the hash does not include the shape or dtype (the receipt records them beside it).
    """
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    return hashlib.sha256(memoryview(t.view(torch.uint8).numpy())).hexdigest()


def tensor_stats(tensor: torch.Tensor) -> dict[str, float]:
    """Summary statistics of a tensor's values, computed in as few passes as possible.

    Returns ``mean``, ``std`` (population std, i.e. divided by n), ``min``, ``max``, ``zeros``
    (the fraction of entries equal to 0), ``nonfinite`` (the number of NaN and infinite entries;
    the other statistics are then taken over the finite ones) and ``subnormal`` (the fraction of
    nonzero entries smaller in magnitude than the dtype's smallest normal number, for floating
    dtypes with float32's exponent range or wider: float16 draws have subnormals legitimately).
    Tensors of more than 2**16 entries have ``subnormal`` counted on a sample of 16 contiguous
    runs of 4096 entries spread over the tensor (uninitialized memory comes in whole pages);
    every other value is exact. An empty tensor gives zeros and NaN for mean/std/min/max.

    ``std`` is sqrt(E[x^2] - E[x]^2) from one sum and one dot product (float64 arithmetic on
    the float32 sums), recomputed by ``torch.var`` when the mean is not small against the
    root mean square (where the difference would lose digits).
    """
    t = tensor.detach()
    n = t.numel()
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan,
                "zeros": 0.0, "nonfinite": 0.0, "subnormal": 0.0}  # fmt: skip
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    flat = t.reshape(-1)
    zeros = (n - int(torch.count_nonzero(flat))) / n
    if flat.dtype in (torch.float32, torch.float64):
        values = flat
    else:  # float16/bfloat16 exactly in float32; integers in float64
        values = flat.float() if flat.is_floating_point() else flat.to(torch.float64)
    lo, hi = (float(v) for v in torch.aminmax(values))
    total = float(values.sum())
    nonfinite = 0
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(total)):
        finite = torch.isfinite(values)
        nonfinite = n - int(finite.sum())
        values = values[finite].to(torch.float64)
        if values.numel() == 0:
            return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan,
                    "zeros": zeros, "nonfinite": float(n), "subnormal": 0.0}  # fmt: skip
        lo, hi = (float(v) for v in torch.aminmax(values))
        total = float(values.sum())
    m = values.numel()
    mean = total / m
    if lo == hi:
        std = 0.0
    else:
        square = float(torch.dot(values, values)) / m
        if not math.isfinite(square) or mean * mean > 1e-4 * square:
            std = float(torch.var(values.to(torch.float64), correction=0).sqrt())
        else:
            std = math.sqrt(max(square - mean * mean, 0.0))
    return {
        "mean": mean,
        "std": std,
        "min": lo,
        "max": hi,
        "zeros": zeros,
        "nonfinite": float(nonfinite),
        "subnormal": _subnormal_fraction(flat),
    }


def _subnormal_fraction(flat: torch.Tensor) -> float:
    if flat.dtype not in (torch.float32, torch.float64, torch.bfloat16):
        return 0.0  # integers have none; float16 draws have them legitimately
    n = flat.numel()
    if n > _EXACT_SUBNORMAL:
        starts = torch.linspace(0, n - _RUN, _RUNS).long().tolist()
        flat = torch.cat([flat[s : s + _RUN] for s in starts])
    tiny = torch.finfo(flat.dtype).tiny
    small = flat.abs() < tiny
    return float((small & (flat != 0)).sum()) / flat.numel()


def named_tensors(model) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, list[str]]]:
    """The tensors of a model or a state dict, grouped by identity.

    Returns ``(tensors, kinds, aliases)``: first name -> tensor, in the model's order
    (parameters, then buffers); first name -> ``"parameter"``/``"buffer"``/``"transient"``
    (non-persistent buffer); first name -> the other names of the same tensor (ties). A state
    dict (a mapping of names to tensors) has kind ``"tensor"`` for all, and ties where two
    names hold the same tensor object or view the same memory with the same shape and strides.
    """
    if isinstance(model, nn.Module):
        state = set(model.state_dict(keep_vars=True))
        items = [(n, p, "parameter") for n, p in model.named_parameters(remove_duplicate=False)]
        items += [
            (n, b, "buffer" if n in state else "transient")
            for n, b in model.named_buffers(remove_duplicate=False)
        ]
    else:
        items = [(n, t, "tensor") for n, t in model.items()]
    tensors, kinds, aliases, first = {}, {}, {}, {}
    for name, t, kind in items:
        key = _identity(t)
        if key in first:
            aliases[first[key]].append(name)
            continue
        first[key] = name
        tensors[name], kinds[name], aliases[name] = t, kind, []
    return tensors, kinds, aliases


def _identity(t: torch.Tensor):
    if t.is_meta or t.numel() == 0 or t.layout != torch.strided:
        return ("object", id(t))
    try:
        return ("memory", t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device)
    except (RuntimeError, NotImplementedError):  # a tensor without storage (DTensor wrapper)
        return ("object", id(t))


def plan_source(row) -> dict:
    """The receipt ``source`` of a :class:`~initlab.policy.plan.PlanRow`: ``plan`` with its
    rule and explicit distribution for drawn rows, ``own_init`` for ``keep`` rows and
    ``untouched`` for ``skip``/``none`` rows."""
    if row.distribution == "keep":
        return {"kind": "own_init", "rule": row.rule}
    if row.distribution in ("skip", "none"):
        return {"kind": "untouched", "reason": row.reason}
    out = {"kind": "plan", "rule": row.rule, "distribution": row.distribution}
    for key in ("std", "bound", "gain"):
        if getattr(row, key) is not None:
            out[key] = getattr(row, key)
    if row.value is not None:
        out["value"] = list(row.value)
    if row.zero_rows:
        out["zero_rows"] = list(row.zero_rows)
    if row.blocks > 1:
        out["blocks"], out["block_dim"] = row.blocks, row.block_dim
    return out


def record_model(
    model,
    sources: Mapping[str, dict] | None = None,
    *,
    origin: str = "model",
    seed: int | None = None,
    seeds: Mapping[str, int | None] | None = None,
) -> Receipt:
    """Make a :class:`Receipt` of a model's (or a state dict's) tensors as they are now.

    Args:
        model: an ``nn.Module`` (parameters and buffers, on any device) or a mapping of names to
            tensors.
        sources: name -> source dict (see :class:`TensorRecord`); a tensor without one gets
            ``{"kind": "module"}`` for a buffer and ``{"kind": "untouched"}`` otherwise.
        origin: what made the tensors (``"plan"``, ``"load_pretrained"``, ``"model"``).
        seed: the base seed, recorded for the receipt and for every tensor whose source is a
            plan or own-init draw unless ``seeds`` says otherwise.
        seeds: name -> seed, per tensor.

    Returns:
        The receipt. Reads every tensor once for its statistics and once for its hash; changes
        nothing.

    Raises:
        ValueError: a tensor is on the meta device (it holds no values to record).
    """
    sources = dict(sources or {})
    seeds = dict(seeds or {})
    tensors, kinds, aliases = named_tensors(model)
    on_meta = [n for n, t in tensors.items() if t.is_meta]
    if on_meta:
        raise ValueError(f"cannot record tensors on the meta device (no values): {on_meta[:8]}")
    records = {}
    for name, t in tensors.items():
        kind = kinds[name]
        source = sources.get(name)
        if source is None:
            source = next((sources[a] for a in aliases[name] if a in sources), None)
        if source is None:
            source = (
                {"kind": "module"} if kind in ("buffer", "transient") else {"kind": "untouched"}
            )
        drawn = source.get("kind") in ("plan", "own_init")
        records[name] = TensorRecord(
            name=name,
            kind=kind,
            shape=tuple(t.shape),
            dtype=dtype_name(t.dtype),
            source=source,
            seed=seeds.get(name, seed if drawn else None),
            stats=tensor_stats(t),
            sha256=tensor_hash(t),
            tied=tuple(aliases[name]),
        )
    return Receipt(records, origin=origin, seed=seed)
