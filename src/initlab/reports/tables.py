"""Tables of a comparison: the text or Markdown table of the terminal and ``report.md``, and
``summary.csv``.

The columns follow the rows' metric (:data:`~initlab.reports.summary.METRICS`): for the
accuracies, final test accuracy (mean ± std), best accuracy, training loss after epoch 1,
epochs to the target accuracy and diverged runs; for the loss metrics, the final and best test
loss in nats (``final_loss``) or in bits per character (``final_bpc``: nats / ln 2; Graves
2013), the training loss after epoch 1 in the same unit, and diverged runs. A scheme with
diverged runs names the step of each divergence (``1/3 (at step 412)``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import asdict

from initlab._files import atomic_write
from initlab.reports.summary import LN2, METRICS, SummaryRow

__all__ = [
    "diverged_cell",
    "diverged_steps_words",
    "format_loss",
    "format_table",
    "write_summary",
]


def format_loss(loss: float) -> str:
    """Format a loss as the seed does (``0.2345``), but ``4.513e+10`` from 1e6 up, not 11 digits."""
    return f"{loss:.4f}" if abs(loss) < 1e6 else f"{loss:.4g}"


def diverged_cell(row: SummaryRow) -> str:
    """Diverged runs of ``row``: ``0/3``, or ``2/3 (at steps 130, 245)`` with their steps."""
    return f"{row.diverged}/{row.runs}{diverged_steps_words(row.diverged_steps)}"


def diverged_steps_words(steps: Sequence[int | None]) -> str:
    """`` (at steps 130, 245)``, ``?`` for a step not known; empty if none is known.

    Example:
        >>> diverged_steps_words([412]), diverged_steps_words([None, 9]), diverged_steps_words([])
        (' (at step 412)', ' (at steps ?, 9)', '')
    """
    if all(s is None for s in steps):
        return ""
    words = ", ".join("?" if s is None else str(s) for s in steps)
    return f" (at {'step' if len(steps) == 1 else 'steps'} {words})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _accuracy_cells(row: SummaryRow) -> list[str]:
    final = "-"
    if row.final_accuracy_mean is not None:
        mean, std = 100 * row.final_accuracy_mean, row.final_accuracy_std
        final = f"{mean:.2f}% ± n/a" if std is None else f"{mean:.2f} ± {100 * std:.2f}%"
    to_target = "-" if row.epochs_to_target is None else f"{row.epochs_to_target:.1f}"
    return [
        final,
        _pct(row.best_accuracy),
        "-" if row.loss_epoch1 is None else format_loss(row.loss_epoch1),
        f"{to_target} ({row.reached_target}/{row.runs})",
    ]


def _loss_cells(row: SummaryRow) -> list[str]:
    metric = METRICS[row.metric]
    per = 1.0 / LN2 if row.metric == "final_bpc" else 1.0  # nats -> bits for bpc

    def value(v: float | None) -> str:
        return "-" if v is None else f"{per * v:.{metric.decimals}f}"

    final = "-"
    if row.final_loss_mean is not None:
        std = "n/a" if row.final_loss_std is None else value(row.final_loss_std)
        final = f"{value(row.final_loss_mean)} ± {std}"
    first = "-" if row.loss_epoch1 is None else per * row.loss_epoch1
    return [
        final,
        value(row.best_loss),
        first if first == "-" else (f"{first:.3f}" if per != 1.0 else format_loss(first)),
    ]


def _cells(row: SummaryRow) -> list[str]:
    lr = [] if row.lr is None else [f"{row.lr:g}"]
    accuracy = METRICS[row.metric].is_accuracy
    numbers = _accuracy_cells(row) if accuracy else _loss_cells(row)
    return [row.scheme, *lr, *numbers, diverged_cell(row)]


def _headers(target: float, grid: bool = False, metric: str = "final_accuracy") -> list[str]:
    if METRICS[metric].is_accuracy:
        numbers = [
            "final test acc (mean ± std)",
            "best acc",
            "loss after epoch 1",
            f"epochs to {100 * target:g}%",
        ]
    elif metric == "final_bpc":
        numbers = ["final test bpc (mean ± std)", "best bpc", "train bpc after epoch 1"]
    else:
        numbers = ["final test loss (mean ± std)", "best loss", "loss after epoch 1"]
    return ["scheme", *(["lr"] if grid else []), *numbers, "diverged"]


def format_table(rows: Sequence[SummaryRow], target: float, *, markdown: bool = False) -> str:
    """Return the summary as an aligned text table, or a Markdown table if ``markdown``.

    The columns follow the rows' ``metric`` (see the module docstring). Rows of a learning-rate
    grid's sweep (``lr`` set) get a column ``lr``, the chosen rate.

    Args:
        rows: :class:`~initlab.reports.summary.SummaryRow` objects, one per scheme.
        target: the target test accuracy (a fraction), for the accuracies' column header.
        markdown: a Markdown table instead of aligned text.
    """
    metric = rows[0].metric if rows else "final_accuracy"
    headers = _headers(target, any(r.lr is not None for r in rows), metric)
    table = [headers] + [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells) + " |" for cells in table]
        lines.insert(1, "|" + "|".join("---" for _ in table[0]) + "|")
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in table
    )


# summary.csv columns that appear only when they say something: a grid's chosen rate, the loss
# columns of a loss metric, the steps of diverged runs, the metric when it is not the default
_OPTIONAL = ("lr", "final_loss_mean", "final_loss_std", "best_loss", "diverged_steps", "metric")


def write_summary(path: str | os.PathLike, rows: Sequence) -> None:
    """Write ``summary.csv``: a header of the rows' fields, one line per row (dataclasses).

    Columns: the fields of :class:`~initlab.reports.summary.SummaryRow` in order; ``lr`` (second)
    only for a grid's sweep; ``final_loss_mean``, ``final_loss_std``, ``best_loss`` (nats) after
    ``best_accuracy`` for ``final_loss``, as ``final_bpc_mean``, ``final_bpc_std``, ``best_bpc``
    (bits per character) for ``final_bpc``; ``diverged_steps`` (space-separated, ``?`` where
    unknown) after ``diverged`` when a run diverged; ``metric`` before ``rank`` when it is not
    ``final_accuracy``. The conclusion's columns (``metric_mean``, ``diff_*``) are in the
    metric's unit: fractions for accuracies, nats, or bits.

    Args:
        path: the file.
        rows: :class:`~initlab.reports.summary.SummaryRow` objects, at least one; an
            undefined value (``None``) is an empty cell.
    """
    fields = [f for f in asdict(rows[0]) if f not in _OPTIONAL]
    metric = getattr(rows[0], "metric", "final_accuracy")
    records = [asdict(r) for r in rows]
    if any(getattr(r, "lr", None) is not None for r in rows):  # a grid's chosen rate
        fields.insert(1, "lr")
    if metric in ("final_loss", "final_bpc"):
        names = ["final_loss_mean", "final_loss_std", "best_loss"]
        if metric == "final_bpc":  # nats -> bits per character (Graves 2013)
            bits = [n.replace("loss", "bpc") for n in names]
            for record in records:
                for n, b in zip(names, bits, strict=True):
                    record[b] = None if record[n] is None else record[n] / LN2
            names = bits
        at = fields.index("best_accuracy") + 1
        fields[at:at] = names
    if any(s is not None for r in rows for s in getattr(r, "diverged_steps", ())):
        fields.insert(fields.index("diverged") + 1, "diverged_steps")
        for record in records:
            steps = record["diverged_steps"]
            record["diverged_steps"] = " ".join("?" if s is None else str(s) for s in steps)
    if metric != "final_accuracy":
        fields.insert(fields.index("rank"), "metric")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write(path, buffer.getvalue())
