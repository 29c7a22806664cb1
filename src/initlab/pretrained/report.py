"""The report of a pretrained load: what was loaded, missing, unexpected, mismatched, adapted,
re-initialized, left as constructed, ignored and frozen; printable as a table, serializable as a
dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from initlab.policy.receipt import Receipt

__all__ = [
    "LoadReport",
    "Loaded",
    "Mismatched",
    "Adapted",
    "Reinitialized",
    "Constructed",
    "Ignored",
]


@dataclass(frozen=True)
class Loaded:
    """A model tensor copied from the checkpoint (``source_key`` is its checkpoint name)."""

    name: str
    source_key: str
    shape: tuple[int, ...]
    source_dtype: str
    dtype: str


@dataclass(frozen=True)
class Mismatched:
    """A checkpoint tensor whose shape differs from the model's; it was never partly copied."""

    name: str
    source_key: str
    source_shape: tuple[int, ...]
    model_shape: tuple[int, ...]
    action: str  # "re-initialized", "left as constructed" or "loaded through a tied name"


@dataclass(frozen=True)
class Adapted:
    """A model tensor computed from a checkpoint tensor of another shape by a documented rule."""

    name: str
    source_key: str
    source_shape: tuple[int, ...]
    shape: tuple[int, ...]
    rule: str


@dataclass(frozen=True)
class Reinitialized:
    """A parameter not loaded, and how the policy wrote it (``rule`` from the policy's plan)."""

    name: str
    shape: tuple[int, ...]
    reason: str  # "missing from checkpoint", "shape mismatch" or "new head"
    rule: str


@dataclass(frozen=True)
class Constructed:
    """A parameter not loaded and not written either: it holds the value it was built with.

    ``detail`` says why nothing wrote it: ``init_rest=None``, no rule of the policy covers it,
    the policy skips it (frozen), or its module's own init left it unchanged (a weight-normed
    layer's ``reset_parameters`` writes the computed ``weight``, not ``weight_g``/``weight_v``).
    """

    name: str
    shape: tuple[int, ...]
    reason: str  # as Reinitialized.reason
    detail: str


@dataclass(frozen=True)
class Ignored:
    """A checkpoint tensor deliberately not loaded, with the reason (not an unexpected one)."""

    source_key: str
    reason: str


@dataclass(frozen=True)
class LoadReport:
    """Everything :func:`initlab.load_pretrained` did, one entry per tensor.

    Attributes:
        source: a description of the checkpoint (its path, or "in-memory state_dict").
        alignment: how names were aligned (e.g. "stripped 'module.' from checkpoint names"),
            empty when names were used as they are.
        loaded: model tensors copied bit for bit from the checkpoint (cast only if the dtypes
            differ, see ``source_dtype``/``dtype``).
        missing: model state_dict names (parameters and persistent buffers) that the checkpoint
            does not provide, new-head parameters excluded.
        unexpected: checkpoint names that match nothing in the model.
        mismatched: checkpoint tensors whose shape differs from the model's (both shapes).
        adapted: tensors computed from a checkpoint tensor of another shape (first conv).
        reinitialized: parameters not loaded and written by the policy ``init_rest``, with
            the reason and the rule.
        constructed: parameters not loaded that nothing wrote (``init_rest=None``, or the
            policy's plan leaves them: no rule covers them, frozen, or an own init that left
            them unchanged), with the reason and why; they hold their constructed values.
        ignored: checkpoint tensors skipped on purpose: non-persistent buffers the model
            computes itself, new-head tensors, tensors a key map dropped.
        frozen: loaded or adapted parameters set to ``requires_grad=False``.
        init_plan: the policy plan's ``to_dict()`` for the re-initialized parameters, or None.
        receipt: the :class:`~initlab.policy.receipt.Receipt` of every tensor after the load
            (``load_pretrained(..., receipt=...)``), or None when none was asked for.
    """

    source: str
    alignment: str = ""
    loaded: tuple[Loaded, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[Mismatched, ...] = ()
    adapted: tuple[Adapted, ...] = ()
    reinitialized: tuple[Reinitialized, ...] = ()
    constructed: tuple[Constructed, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    frozen: tuple[str, ...] = ()
    init_plan: dict | None = field(default=None, compare=False)
    receipt: Receipt | None = field(default=None, compare=False, repr=False)

    @property
    def clean(self) -> bool:
        """True when nothing is missing, unexpected or mismatched: the checkpoint fits exactly."""
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def loaded_names(self) -> tuple[str, ...]:
        """Names of the model tensors copied from the checkpoint."""
        return tuple(row.name for row in self.loaded)

    def summary(self) -> str:
        """Return one line of counts, e.g. ``103 loaded, 2 missing, 0 unexpected, ...``."""
        counts = [
            f"{len(self.loaded)} loaded",
            f"{len(self.missing)} missing",
            f"{len(self.unexpected)} unexpected",
            f"{len(self.mismatched)} mismatched",
            f"{len(self.adapted)} adapted",
            f"{len(self.reinitialized)} re-initialized",
            f"{len(self.constructed)} left as constructed",
            f"{len(self.ignored)} ignored",
            f"{len(self.frozen)} frozen",
        ]
        return ", ".join(counts)

    def table(self, *, show_loaded: bool = True) -> str:
        """Return a plain-text table: a header, then one row per tensor, problems first.

        Args:
            show_loaded: also list every loaded tensor (the other rows are always listed).
        """
        rows = [("status", "model name", "checkpoint name", "shape", "detail")]
        rows += [("unexpected", "-", k, "", "matches no model name") for k in self.unexpected]
        rows += [
            ("mismatched", m.name, m.source_key, _shape(m.model_shape), _mismatch(m))
            for m in self.mismatched
        ]
        rows += [("missing", n, "-", "", "not in checkpoint") for n in self.missing]
        rows += [("adapted", a.name, a.source_key, _shape(a.shape), a.rule) for a in self.adapted]
        rows += [
            ("re-initialized", r.name, "-", _shape(r.shape), f"{r.reason}: {r.rule}")
            for r in self.reinitialized
        ]
        rows += [
            ("as constructed", c.name, "-", _shape(c.shape), f"{c.reason}: {c.detail}")
            for c in self.constructed
        ]
        rows += [("ignored", "-", i.source_key, "", i.reason) for i in self.ignored]
        rows += [("frozen", n, "", "", "requires_grad=False") for n in self.frozen]
        if show_loaded:
            rows += [
                ("loaded", r.name, r.source_key, _shape(r.shape), _dtypes(r)) for r in self.loaded
            ]
        head = [f"source: {self.source}"]
        if self.alignment:
            head.append(f"names: {self.alignment}")
        head.append(self.summary())
        if len(rows) == 1:  # nothing to list: no header without rows
            return "\n".join(head)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
            for row in rows
        ]
        return "\n".join(head + [line.rstrip() for line in lines])

    def to_dict(self) -> dict:
        """Return the report as JSON-serializable plain data (tuples become lists)."""
        data = asdict(replace(self, receipt=None))
        data["receipt"] = None if self.receipt is None else self.receipt.to_dict()
        data["clean"] = self.clean
        return _lists(data)

    def __str__(self) -> str:
        return self.table(show_loaded=False)


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def _mismatch(m: Mismatched) -> str:
    return f"checkpoint {_shape(m.source_shape)} vs model {_shape(m.model_shape)}: {m.action}"


def _dtypes(row: Loaded) -> str:
    return row.dtype if row.dtype == row.source_dtype else f"{row.source_dtype} -> {row.dtype}"


def _lists(obj):
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj
