"""Verify a model at step zero: are its tensors what was planned or loaded?

:func:`verify` checks every parameter and buffer of a model (or every tensor of a state dict)
against a :class:`~initlab.policy.receipt.Receipt` when one is given, and against what can be
known from the model alone, and returns a :class:`VerifyReport`: one verdict per tensor with
the evidence. It never writes into the model.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from initlab.policy.own_init import run_own_inits
from initlab.policy.receipt import (
    Receipt,
    TensorRecord,
    dtype_name,
    named_tensors,
    plan_source,
    read_receipt,
    tensor_hash,
    tensor_stats,
)

__all__ = ["Finding", "TensorVerdict", "VerifyReport", "verify"]

# |x| above this is no initializer's draw (std 1e9 would be needed); uninitialized memory read as
# floats has such magnitudes in most of its bit patterns.
HUGE = 1e10
# z of the std check: a correct draw fails with probability about 2e-9 per tensor (normal tail).
Z = 6.0
# Relative rounding of one value in each dtype (half an ulp), added to the std tolerance.
_ROUNDING = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
_STATUS_ORDER = {"ok": 0, "warn": 1, "fail": 2}
_SHARDS = (2, 4, 8)


@dataclass(frozen=True)
class Finding:
    """One check of one tensor: ``check`` (its name), ``status`` (``"ok"``, ``"warn"`` or
    ``"fail"``) and ``evidence`` (the numbers it rests on)."""

    check: str
    status: str
    evidence: str


@dataclass(frozen=True)
class TensorVerdict:
    """Every finding about one tensor; ``status`` is the worst of them (``"ok"`` if none)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    source: str
    findings: tuple[Finding, ...]

    @property
    def status(self) -> str:
        return max((f.status for f in self.findings), key=_STATUS_ORDER.get, default="ok")

    def evidence(self) -> str:
        """The evidence of the worst findings, joined (or which checks passed)."""
        worst = [f for f in self.findings if f.status == self.status]
        if self.status == "ok":
            return "passed: " + (", ".join(f.check for f in worst) or "no check applies")
        return "; ".join(f"{f.check}: {f.evidence}" for f in worst)


class VerifyReport:
    """The verdicts of :func:`verify`.

    Attributes:
        verdicts: one :class:`TensorVerdict` per tensor (tied names: one each), model order.
        receipt: a description of what the model was checked against (``None``: itself only).
    """

    def __init__(self, verdicts: list[TensorVerdict], receipt: str | None):
        self.verdicts = verdicts
        self.receipt = receipt

    @property
    def ok(self) -> bool:
        """True if no tensor failed a check (warnings allowed)."""
        return not self.failures

    @property
    def failures(self) -> list[TensorVerdict]:
        return [v for v in self.verdicts if v.status == "fail"]

    @property
    def warnings(self) -> list[TensorVerdict]:
        return [v for v in self.verdicts if v.status == "warn"]

    def __getitem__(self, name: str) -> TensorVerdict:
        for v in self.verdicts:
            if v.name == name:
                return v
        raise KeyError(f"no verdict for {name!r}")

    def __repr__(self) -> str:
        return f"VerifyReport({self.summary()})"

    def summary(self) -> str:
        against = f"receipt {self.receipt}" if self.receipt else "the model alone (no receipt)"
        return (
            f"{len(self.verdicts)} tensors checked against {against}: "
            f"{len(self.failures)} failed, {len(self.warnings)} warned"
        )

    def table(self, *, only_problems: bool = False) -> str:
        """A fixed-width table, one line per tensor (``only_problems``: failed and warned)."""
        header = ("tensor", "shape", "dtype", "verdict", "evidence")
        rows = [header]
        for v in self.verdicts:
            if only_problems and v.status == "ok":
                continue
            shape = "x".join(map(str, v.shape)) or "scalar"
            rows.append((v.name, shape, v.dtype, v.status.upper(), v.evidence()))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
                 for r in rows]  # fmt: skip
        lines.append(f"({self.summary()})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready data: ``ok``, ``receipt``, counts and every verdict with its findings."""
        return {
            "format": "initlab.VerifyReport",
            "ok": self.ok,
            "receipt": self.receipt,
            "failed": len(self.failures),
            "warned": len(self.warnings),
            "tensors": [
                {
                    "name": v.name,
                    "kind": v.kind,
                    "shape": list(v.shape),
                    "dtype": v.dtype,
                    "source": v.source,
                    "status": v.status,
                    "findings": [f.__dict__.copy() for f in v.findings],
                }
                for v in self.verdicts
            ],
        }


def verify(model, receipt=None) -> VerifyReport:
    r"""Check a model's tensors at step zero; return a verdict per tensor with its evidence.

    Checks, each a :class:`Finding` (``fail`` unless said otherwise):

    * **receipt** (with a receipt): the dtype is the recorded one and the SHA-256 of the
      values equals the recorded hash. A difference says how the values moved (std, mean,
      zeros before and after) and recognizes a transposed tensor (the transpose has the recorded
      hash: a checkpoint read in another layout), values rounded through bfloat16 (the low 16
      bits of every float32 are zero) and all-zero tensors. For a tensor loaded from a checkpoint
      the recorded hash is that of the checkpoint's values as copied, so equality means "equal
      to its checkpoint bytes".
    * **finite**: no NaN or infinite entry (unless the receipt or the module's constructor has
      the same values, as a ``-inf`` mask).
    * **uninitialized**: no subnormal entry (in float32, float64 and bfloat16, whose smallest
      normal number is about 1.2e-38: no initializer draws below it, but the bit patterns of
      integers read as floats, and much of uninitialized memory, are subnormal) and no
      magnitude above 1e10.
    * **distribution** (the source is a plan row: from a receipt or an
      :class:`~initlab.policy.plan.InitPlan` given as ``receipt``): the values can come from
      the planned distribution. Uniform and truncated normal: no entry beyond the bound (times
      1 + the dtype's rounding). Constant: every entry is one of the planned values. Normal,
      uniform, truncated normal, orthogonal: the root mean square r of the n entries (mean
      zero planned) is within ``6 * sqrt((kappa - 1) / (4 n))`` of the planned std s, relative,
      plus the dtype's rounding. Why: r^2 is the mean of n iid x^2 with mean s^2 and variance
      (kappa - 1) s^4 (kappa the kurtosis: 3 normal, 1.8 uniform, below 3 for a truncated
      normal, which is bounded by 3 here), so r^2 has relative standard error
      sqrt((kappa - 1) / n) and r, by the delta method, half of it. At z = 6 a correct draw
      fails with probability about 2e-9; a std off by 2x fails from n = 20 entries on. Padding
      rows the plan zeroes are counted out (s scaled by sqrt(1 - zeroed/rows)).
    * **tie**: every name the receipt records as one tensor is still one tensor (a model
      materialized by ``to_empty`` gives each module its own Parameter). In a state dict a tied
      name may be absent (safetensors stores shared tensors once) or hold equal values.
    * **duplicate**: no two parameters that were drawn independently (or, without a receipt,
      no two parameters at all) hold identical non-constant values: a re-seeded or reused
      initializer. Exempt: tensors loaded from a checkpoint (the checkpoint decides), frozen
      parameters and tensors at least half zeros (identity, dirac and sinusoid tables are
      equal by design).
    * **shards**: no parameter consists of 2, 4 or 8 identical blocks along its first or last
      dimension: what ranks that each initialize their shard with the same seed produce.
    * **constructor** (buffers of an ``nn.Module``): the buffer equals what its module's
      own code computes (rotary frequencies, position ids, BatchNorm running statistics),
      recomputed on a copy of the model whose parameters live on the meta device, by the
      machinery :meth:`InitPlan.apply` restores buffers with (:mod:`initlab.policy.own_init`);
      a buffer no own init computes deterministically is not checked. A difference fails for
      a non-persistent buffer or one the receipt says the module computed, and warns for a
      persistent buffer without a receipt (it may have been loaded).
    * **zeros** (warning, parameters of 2 or more dimensions without a receipt): every entry
      is 0 (never initialized, or a deliberate zero init).

    Args:
        model: an ``nn.Module`` (any device) or a state dict (a mapping of names to tensors,
            e.g. a checkpoint file's contents). Never modified.
        receipt: a :class:`Receipt`, a path to a receipt file, receipt data (a dict), an
            :class:`~initlab.policy.plan.InitPlan` (its rows are the sources: distribution
            checks without hashes), or None (the model alone).

    Returns:
        A :class:`VerifyReport` (``.ok``, ``.table()``, ``.to_dict()``).

    Raises:
        ReceiptError: (a ValueError) the receipt file cannot be read or is damaged; names the
            file and what is wrong.
        ValueError: the receipt is another model's: the message names the first tensors that
            are missing from the model, not in the receipt, or of another shape; or a tensor
            is on the meta device.
        TypeError: ``model`` is neither an ``nn.Module`` nor a mapping of tensors, or
            ``receipt`` of an unsupported type.

    Cost: each tensor is read a few times (one SHA-256 pass, one count of zeros, min/max, a sum
    and a dot product); a GPT-2-small-sized model costs about one ``normal_`` fill of its
    parameters (``benchmarks/bench_verify.py``).
    """
    is_module = isinstance(model, nn.Module)
    if not is_module and not (
        isinstance(model, Mapping) and all(isinstance(t, torch.Tensor) for t in model.values())
    ):
        raise TypeError(
            f"model must be an nn.Module or a mapping of names to tensors; got "
            f"{type(model).__name__}"
        )
    rec, description = _as_receipt(receipt)
    tensors, kinds, aliases = named_tensors(model)
    on_meta = [n for n, t in tensors.items() if t.is_meta]
    if on_meta:
        raise ValueError(
            f"tensors {on_meta[:5]} are on the meta device and hold no values to verify: "
            "materialize the model (model.to_empty(device=...)) and initialize it first"
        )
    names = {} if rec is None else _fit(rec, tensors, aliases, is_module, description)
    stats = {n: tensor_stats(t) for n, t in tensors.items()}
    hashes = {n: tensor_hash(t) for n, t in tensors.items()}
    built = _constructor_buffers(model) if is_module else {}
    verdicts = []
    for name, t in tensors.items():
        record = rec.tensors[names[name]] if name in names else None
        findings = _tensor_findings(name, t, kinds[name], stats[name], hashes[name], record,
                                    built.get(name), rec is not None)  # fmt: skip
        if record is not None:
            findings += _tie_findings(record, name, aliases[name], tensors, is_module)
        verdicts.append([name, kinds[name], t, record, findings])
    _duplicate_findings(verdicts, stats, hashes, rec is not None)
    out = [
        TensorVerdict(
            name,
            kind,
            tuple(t.shape),
            dtype_name(t.dtype),
            _source_text(record),
            tuple(findings),
        )
        for name, kind, t, record, findings in verdicts
    ]
    return VerifyReport(out, description)


def _as_receipt(receipt) -> tuple[Receipt | None, str | None]:
    if receipt is None:
        return None, None
    if isinstance(receipt, Receipt):
        return receipt, f"({receipt.origin}, {len(receipt.tensors)} tensors)"
    if isinstance(receipt, (str, os.PathLike)):
        return read_receipt(receipt), os.fspath(receipt)
    if isinstance(receipt, dict):
        return Receipt.from_dict(receipt), "(receipt data)"
    if hasattr(receipt, "rows") and hasattr(receipt, "policy"):  # an InitPlan
        records = {
            row.name: TensorRecord(
                row.name, "parameter", tuple(row.shape), "", plan_source(row), tied=row.tied
            )
            for row in receipt.rows
        }
        return Receipt(records, origin="InitPlan"), f"InitPlan(policy={receipt.policy!r})"
    raise TypeError(
        "receipt must be a Receipt, a path to a receipt file, receipt data (dict), an InitPlan "
        f"or None; got {type(receipt).__name__}"
    )


def _fit(rec: Receipt, tensors, aliases, is_module: bool, description) -> dict[str, str]:
    """Model name -> receipt record name, or raise naming the first tensors that do not fit."""
    known = rec.names()
    model_names = {n: n for n in tensors}
    model_names.update({a: n for n, al in aliases.items() for a in al})
    out, missing, shapes = {}, [], []
    for record in rec.tensors.values():
        name = next(
            (n for n in (record.name, *record.tied) if n in model_names),
            None,
        )
        if name is None and not is_module:  # a checkpoint file: its own tensor names
            key = record.source.get("tensor")
            name = key if key in model_names else None
        if name is None:
            if is_module or record.kind != "transient":
                missing.append(record.name)
            continue
        t = tensors[model_names[name]]
        if tuple(t.shape) != tuple(record.shape):
            shapes.append(f"{name} (receipt {tuple(record.shape)}, model {tuple(t.shape)})")
        out[model_names[name]] = record.name
        for alias in aliases[model_names[name]]:
            out.setdefault(alias, record.name)
    extra = []
    if rec.origin != "InitPlan":  # a plan has no rows for buffers
        extra = [n for n in tensors if n not in out and n not in known]
    if missing or extra or shapes:
        parts = []
        for label, items in (
            ("missing from the model", missing),
            ("not in the receipt", extra),
            ("other shape", shapes),
        ):
            if items:
                more = f" and {len(items) - 5} more" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise ValueError(
            f"receipt {description} does not fit this model (a receipt of another model?): "
            + "; ".join(parts)
        )
    return out


def _source_text(record: TensorRecord | None) -> str:
    if record is None:
        return ""
    s = record.source
    kind = s.get("kind", "")
    if kind == "plan":
        draw = s.get("distribution", "")
        if s.get("std") is not None:
            draw += f" std {s['std']:.4g}"
        if s.get("bound") is not None:
            draw += f" bound {s['bound']:.4g}"
        return f"plan {s.get('rule', '')}: {draw}"
    if kind in ("checkpoint", "adapted"):
        return f"{kind} {s.get('tensor', '')} of {s.get('file', '')}"
    return kind


def _tensor_findings(name, t, kind, st, h, record, built, has_receipt) -> list[Finding]:
    findings: list[Finding] = []
    is_float = t.is_floating_point()
    source = record.source if record is not None else {}
    hash_ok = record is not None and record.sha256 is not None and record.sha256 == h
    # buffers: the module's own computation first; a value it computes is never suspicious
    same_as_built = False
    if built is not None:
        same_as_built = _equal(t, built)
        if same_as_built:
            findings.append(Finding("constructor", "ok", "equal to what its module computes"))
        elif kind == "transient" or source.get("kind") == "module":
            findings.append(Finding("constructor", "fail", _differs(t, built, "its module")))
        elif not has_receipt:
            findings.append(
                Finding("constructor", "warn", _differs(t, built, "its module") +
                        " (loaded from a checkpoint? then pass the load's receipt)")
            )  # fmt: skip
    if record is not None and record.dtype and record.dtype != dtype_name(t.dtype):
        findings.append(
            Finding("receipt", "fail", f"dtype {dtype_name(t.dtype)}, receipt {record.dtype}")
        )
    trusted = hash_ok or same_as_built
    if st["nonfinite"] and not trusted:
        n = int(st["nonfinite"])
        findings.append(Finding("finite", "fail", f"{n} of {t.numel()} entries are NaN or inf"))
    elif is_float and not trusted:
        findings.append(Finding("finite", "ok", "no NaN or inf"))
    if is_float and not trusted:
        peak = max(abs(st["min"]), abs(st["max"])) if t.numel() else 0.0
        if st["subnormal"] > 0:
            tiny = torch.finfo(t.dtype).tiny
            findings.append(Finding(
                "uninitialized", "fail",
                f"{st['subnormal']:.2%} of the entries are subnormal (0 < |x| < {tiny:.3g}): "
                "integer bit patterns or uninitialized memory, which no initializer draws",
            ))  # fmt: skip
        elif math.isfinite(peak) and peak > HUGE:
            findings.append(Finding(
                "uninitialized", "fail",
                f"largest |x| is {peak:.3g} > {HUGE:.0e}: no initializer draws this "
                "(uninitialized memory?)",
            ))  # fmt: skip
    if record is not None and record.sha256 is not None:
        if hash_ok:
            findings.append(Finding("receipt", "ok", "content hash equal to the receipt's"))
        else:
            findings.append(Finding("receipt", "fail", _hash_evidence(t, st, record)))
    if source.get("kind") == "plan" and is_float and t.numel():
        findings += _distribution_findings(t, st, source)
    if (
        kind in ("parameter", "tensor")
        and is_float
        and t.ndim >= 2
        and not has_receipt
        and st["zeros"] == 1.0
    ):
        findings.append(Finding(
            "zeros", "warn",
            "every entry is 0: never initialized? (or a deliberate zero init)",
        ))  # fmt: skip
    if kind in ("parameter", "tensor") and is_float and st["min"] != st["max"]:
        shard = _duplicated_shards(t)
        if shard:
            findings.append(Finding("shards", "fail", shard))
    return findings


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    b = b.to(a.device)
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _differs(t: torch.Tensor, built: torch.Tensor, what: str) -> str:
    if t.shape != built.shape or t.dtype != built.dtype:
        return f"{what} computes {tuple(built.shape)} {dtype_name(built.dtype)}"
    differ = t != built.to(t.device)
    count = int(differ.sum())
    first = int(torch.nonzero(differ.reshape(-1))[0]) if count else 0
    got, want = t.reshape(-1)[first].item(), built.reshape(-1)[first].item()
    return (
        f"differs from what {what} computes in {count} of {t.numel()} entries "
        f"(first at flat index {first}: {got:.6g}, computed {want:.6g})"
    )


def _hash_evidence(t: torch.Tensor, st: dict, record: TensorRecord) -> str:
    s = record.source
    if s.get("kind") in ("checkpoint", "adapted"):
        head = f"not the bytes loaded from checkpoint tensor {s.get('tensor')!r} of {s.get('file')}"
    else:
        head = f"values differ from the receipt ({_source_text(record) or 'recorded'})"
    r = record.stats
    moved = []
    for key in ("std", "mean", "zeros"):
        if key in r and not _close(r[key], st[key]):
            moved.append(f"{key} {r[key]:.4g} -> {st[key]:.4g}")
    why = []
    if t.ndim == 2 and t.shape[0] == t.shape[1] and tensor_hash(t.T) == record.sha256:
        why.append("it is the transpose of the recorded tensor (a checkpoint in another layout?)")
    if st["zeros"] == 1.0:
        why.append("every entry is 0")
    elif (
        t.dtype == torch.float32
        and t.numel()
        and bool((t.detach().contiguous().view(torch.int32) & 0xFFFF).eq(0).all())
    ):
        why.append("every value carries bfloat16 precision only: rounded through bfloat16")
    return "; ".join([head, *moved, *why]) if (moved or why) else head + " (same statistics)"


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-30)


def _planned(source: dict, shape) -> tuple[float | None, float, float | None]:
    """(std, kurtosis, bound) of the planned distribution (std None: no std check)."""
    dist, std, bound = source.get("distribution"), source.get("std"), source.get("bound")
    if dist == "normal":
        return std, 3.0, None
    if dist == "uniform" and bound is not None:
        return bound / math.sqrt(3.0), 1.8, bound
    if dist == "truncated_normal" and std is not None and bound is not None:
        # Johnson, Kotz, Balakrishnan, "Continuous Univariate Distributions" vol. 1 (1994),
        # eq. 13.134: the variance of N(0, s^2) cut to +-a s is s^2 (1 - 2 a phi(a) / Z),
        # Z = 2 Phi(a) - 1; its kurtosis is below 3, so 3 bounds the tolerance
        a = bound / std
        z = math.erf(a / math.sqrt(2.0))
        phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        return std * math.sqrt(max(1 - 2 * a * phi / z, 0.0)), 3.0, bound
    if dist == "orthogonal":
        return std, 3.0, None
    return None, 3.0, None


def _distribution_findings(t, st, source) -> list[Finding]:
    dist = source.get("distribution")
    eps = _ROUNDING.get(t.dtype, 0.0)
    peak = max(abs(st["min"]), abs(st["max"]))
    if dist == "constant":
        values = [float(v) for v in source.get("value") or ()]
        if not values:
            return []
        lo, hi = min(values), max(values)
        slack = eps * max(abs(lo), abs(hi))
        if st["min"] < lo - slack or st["max"] > hi + slack:
            return [Finding("distribution", "fail",
                            f"values in [{st['min']:.4g}, {st['max']:.4g}]; planned constant "
                            f"{', '.join(f'{v:g}' for v in sorted(set(values)))}")]  # fmt: skip
        return [Finding("distribution", "ok", "the planned constant")]
    std, kurtosis, bound = _planned(source, t.shape)
    out = []
    if bound is not None and peak > bound * (1 + eps) + 1e-30:
        out.append(Finding("distribution", "fail",
                           f"largest |x| {peak:.4g} beyond the planned bound {bound:.4g}: no "
                           f"{dist} draw gives it"))  # fmt: skip
    if std is None or std <= 0:
        return out
    n = t.numel()
    zero_rows = len(source.get("zero_rows") or ())
    if zero_rows and t.ndim and t.shape[0]:
        keep = (t.shape[0] - zero_rows) / t.shape[0]
        std, n = std * math.sqrt(keep), max(1, round(n * keep))
    rms = math.sqrt(st["std"] ** 2 + st["mean"] ** 2)
    tolerance = Z * math.sqrt((kurtosis - 1) / (4 * n)) + eps
    if tolerance >= 1:  # too few entries to tell
        return out
    ratio = rms / std
    text = (f"rms {rms:.4g} vs planned std {std:.4g} (ratio {ratio:.4f}, tolerance "
            f"+-{tolerance:.4f} for n={n})")  # fmt: skip
    bad = abs(ratio - 1) > tolerance
    out.append(Finding("distribution", "fail" if bad else "ok", text))
    return out


def _duplicated_shards(t: torch.Tensor) -> str | None:
    """Say whether ``t`` is k identical blocks (k in 2, 4, 8) along its first or last dim."""
    x = t.detach()
    for dim in sorted({0, x.ndim - 1}):
        size = x.shape[dim]
        for k in _SHARDS:
            if size % k or size < k:
                continue
            step = size // k
            if x.numel() // k < 2:
                continue
            first = x.narrow(dim, 0, 1)
            if not all(torch.equal(first, x.narrow(dim, j * step, 1)) for j in range(1, k)):
                continue
            block = x.narrow(dim, 0, step)
            if all(torch.equal(block, x.narrow(dim, j * step, step)) for j in range(1, k)):
                return (
                    f"its {k} blocks of {step} along dim {dim} are identical: each shard drawn "
                    "from the same seed (a sharded init that differs from the single-process one)"
                )
    return None


def _tie_findings(record, name, my_aliases, tensors, is_module) -> list[Finding]:
    if name != record.name and name not in record.tied:
        return []
    group = {name, *my_aliases}
    out = []
    for alias in (record.name, *record.tied):
        if alias in group:
            continue
        other = tensors.get(alias)
        if other is None:  # an alias of this group known under another first name, or absent
            continue
        same = _equal(tensors[name].detach(), other.detach())
        values = "equal" if same else "different"
        if is_module:
            out.append(Finding(
                "tie", "fail",
                f"{alias!r} and {name!r} were one tensor; now two ({values} values): a tie"
                " broken (by to_empty?); re-tie them (model.tie_weights())",
            ))  # fmt: skip
        elif not same:
            out.append(Finding("tie", "fail", f"tied names {alias!r} and {name!r} differ"))
    if record.tied and not out and name == record.name:
        out.append(Finding("tie", "ok", f"still one tensor with {', '.join(record.tied)}"))
    return out


def _duplicate_findings(verdicts, stats, hashes, has_receipt) -> None:
    groups: dict[str, list[list]] = {}
    for v in verdicts:
        name, kind, t, record, _ = v
        st = stats[name]
        if kind not in ("parameter", "tensor") or t.numel() < 2 or st["min"] == st["max"]:
            continue
        if st["zeros"] >= 0.5 or (kind == "parameter" and not t.requires_grad):
            continue  # structured (identity, dirac) or frozen (sinusoid tables): by design
        if record is not None and record.source.get("kind") not in ("plan", "own_init"):
            continue  # loaded or untouched: the checkpoint or the constructor decides
        groups.setdefault(hashes[name], []).append(v)
    for group in groups.values():
        if len(group) < 2:
            continue
        for v in group:
            others = [w[0] for w in group if w is not v]
            v[4].append(Finding(
                "duplicate", "fail",
                f"identical to {', '.join(others)}: two independent draws cannot be equal (a "
                "reused or re-seeded initializer?)",
            ))  # fmt: skip


def _constructor_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Buffer name -> the value its module's own code computes, for the buffers it computes
    deterministically; recomputed on a copy whose parameters are on the meta device."""
    buffers = dict(model.named_buffers(remove_duplicate=False))
    if not buffers:
        return {}
    try:
        memo = {}
        for p in model.parameters():
            memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
        twin = copy.deepcopy(model, memo)
    except Exception:  # a model that cannot be copied: its buffers are not checked
        return {}
    names = list(dict(twin.named_buffers()).keys())
    twin_buffers = dict(twin.named_buffers(remove_duplicate=False))
    out = {}
    try:
        with torch.no_grad():
            run_own_inits(twin, [], {n: "buffer" for n in names}, 0)
        out = {n: twin_buffers[n] for n in names}
    except Exception:  # some buffer has no deterministic own init: one at a time
        for n in names:
            try:
                with torch.no_grad():
                    run_own_inits(twin, [], {n: "buffer"}, 0)
                out[n] = twin_buffers[n]
            except Exception:
                continue
    aliases = {a: n for a, b in twin_buffers.items() for n in out if twin_buffers[n] is b}
    return {a: out[n] for a, n in aliases.items()}
