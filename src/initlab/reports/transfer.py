"""The report of a transfer sweep: optimal learning rate per width, its shift, the verdict.

Reads the lines of :func:`initlab.experiments.transfer.run_transfer` (plain dicts, so this
module needs nothing from the layers above). For each parameterization and cell (width,
depth), the optimal rate is the grid rate of the lowest validation loss, mean over seeds (a
rate at which any seed diverged counts as infinitely bad); the shift over an axis (width, or
depth) is how many grid steps the optimum moves: the largest minus the smallest grid index of
the optima. This is the transfer test of Yang et al. 2022 (Tensor Programs V, sec. 3 and
Fig. 1: under muP the optimum stays put as width grows, under the standard parameterization it
moves), stated as a number with a verdict: a parameterization of the muP family should move by
at most one grid step, the standard one by at least two (over a 16x width range;
Fig. 1 of the paper shows about 2^3 over 2^5 widths under SP with Adam).

Files: ``summary.csv`` (one row per cell and rate), ``report.md``, ``loss_vs_lr.png`` (one
panel per parameterization, validation loss against rate, a line per width) and
``optimal_lr.png`` (optimal rate against width, and against depth when depths were swept).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from initlab._files import atomic_write

__all__ = [
    "EXPECTED",
    "Cell",
    "Shift",
    "TransferSummary",
    "format_lr",
    "format_table",
    "summarize",
    "write_report",
]

#: What each parameterization should do over the axis's range (:data:`AXIS_RATIO`), per axis:
#: ("at most"|"at least", k).
EXPECTED: dict[tuple[str, str], tuple[str, int]] = {
    ("sp", "width"): ("at least", 2),
    ("mup", "width"): ("at most", 1),
    ("umup", "width"): ("at most", 1),
    ("depth-mup", "width"): ("at most", 1),
    ("completep", "width"): ("at most", 1),
    ("depth-mup", "depth"): ("at most", 1),
    ("completep", "depth"): ("at most", 1),
}
#: The width range over which the muP-against-SP transfer test is stated.
CHECK_RATIO = 16
#: The range each axis's expectation is stated over: 16x width, 8x depth (2 to 16 blocks).
AXIS_RATIO = {"width": CHECK_RATIO, "depth": 8}


@dataclass(frozen=True)
class Cell:
    """One (parameterization, width, depth): per grid rate the mean validation loss over seeds
    (``inf`` where a seed diverged, ``None`` where no run has a line) and the optimum."""

    parameterization: str
    width: int
    depth: int | None
    lrs: tuple[float, ...]
    mean_loss: tuple[float | None, ...]
    std_loss: tuple[float | None, ...]
    finished: tuple[int, ...]
    diverged: tuple[int, ...]

    @property
    def optimum(self) -> int | None:
        """Grid index of the lowest finite mean loss; ``None`` if there is none."""
        finite = [
            (v, i) for i, v in enumerate(self.mean_loss) if v is not None and math.isfinite(v)
        ]
        return min(finite)[1] if finite else None

    @property
    def optimal_lr(self) -> float | None:
        return None if self.optimum is None else self.lrs[self.optimum]

    @property
    def at_edge(self) -> bool:
        return self.optimum in (0, len(self.lrs) - 1)


@dataclass(frozen=True)
class Shift:
    """How far one parameterization's optimum moves over one axis (``"width"``/``"depth"``)."""

    parameterization: str
    axis: str
    values: tuple[int, ...]
    optima: tuple[float | None, ...]
    steps: int | None  # grid steps, max - min index; None when an optimum is missing
    ratio: float
    at_edge: bool

    @property
    def expected(self) -> tuple[str, int] | None:
        return EXPECTED.get((self.parameterization, self.axis))

    @property
    def as_expected(self) -> bool | None:
        if self.expected is None or self.steps is None:
            return None
        bound, k = self.expected
        return self.steps <= k if bound == "at most" else self.steps >= k

    def sentence(self) -> str:
        lo, hi = self.values[0], self.values[-1]
        if self.steps is None:
            missing = [v for v, o in zip(self.values, self.optima, strict=True) if o is None]
            return (
                f"{self.parameterization}: no optimum at {self.axis} {missing} "
                "(every rate diverged or is missing)"
            )
        text = (
            f"{self.parameterization}: the optimum moves by {self.steps} grid "
            f"step{'s' if self.steps != 1 else ''} over {self.ratio:g}x {self.axis} "
            f"({lo} -> {hi})"
        )
        if self.expected is not None:  # stated over AXIS_RATIO: a shorter range decides nothing
            bound, k = self.expected
            needed = AXIS_RATIO[self.axis]
            expected = f"{bound} {_steps_words(k)} expected over {needed}x {self.axis}"
            if self.ratio < needed:
                text += f"; not decided: {expected}, and this spans {self.ratio:g}x"
            else:
                text += f"; {'as expected' if self.as_expected else 'NOT as expected'} ({expected})"
        if self.at_edge:
            text += "; an optimum lies at the grid's edge, so the shift is a bound: widen the grid"
        return text


@dataclass(frozen=True)
class TransferSummary:
    """Every cell, every shift and the verdict of the muP-against-SP width transfer test
    (``check_b``; ``None`` when not applicable)."""

    cells: tuple[Cell, ...]
    shifts: tuple[Shift, ...]
    check_b: str | None

    def sentences(self) -> list[str]:
        return [s.sentence() for s in self.shifts] + ([self.check_b] if self.check_b else [])


def summarize(
    lines: Sequence[dict], lrs: Sequence[float], base_width: int, base_depth: int | None
) -> TransferSummary:
    """Cells, shifts and the width transfer verdict from the run lines (``type == "run"``)."""
    runs = [line for line in lines if line.get("type") == "run"]
    keys = list(dict.fromkeys((r["parameterization"], r["width"], r["depth"]) for r in runs))
    lrs = tuple(sorted(lrs))
    cells = []
    for name, width, depth in keys:
        mine = [
            r
            for r in runs
            if (r["parameterization"], r["width"], r["depth"]) == (name, width, depth)
        ]
        means, stds, finished, diverged = [], [], [], []
        for lr in lrs:
            at = [r for r in mine if r["lr"] == lr]
            ok = [r["val_loss"] for r in at if r["status"] == "finished"]
            bad = len(at) - len(ok)
            finished.append(len(ok))
            diverged.append(bad)
            if not at:
                means.append(None)
                stds.append(None)
            elif bad:
                means.append(math.inf)
                stds.append(None)
            else:
                means.append(statistics.fmean(ok))
                stds.append(statistics.stdev(ok) if len(ok) > 1 else 0.0)
        cells.append(
            Cell(
                name, width, depth, lrs, tuple(means), tuple(stds), tuple(finished), tuple(diverged)
            )
        )
    shifts = []
    for name in dict.fromkeys(c.parameterization for c in cells):
        mine = [c for c in cells if c.parameterization == name]
        by_width = sorted((c for c in mine if c.depth == base_depth), key=lambda c: c.width)
        by_depth = sorted((c for c in mine if c.width == base_width), key=lambda c: c.depth or 0)
        for axis, row in (("width", by_width), ("depth", by_depth)):
            values = [c.width if axis == "width" else c.depth for c in row]
            if len(row) < 2 or len(set(values)) < 2:
                continue
            optima = [c.optimum for c in row]
            steps = None if None in optima else max(optima) - min(optima)
            shifts.append(
                Shift(
                    name,
                    axis,
                    tuple(values),
                    tuple(c.optimal_lr for c in row),
                    steps,
                    values[-1] / values[0],
                    any(c.at_edge for c in row),
                )
            )
    return TransferSummary(tuple(cells), tuple(shifts), _check_b(shifts))


def _check_b(shifts: Sequence[Shift]) -> str | None:
    """The width transfer test: over >= 16x width, muP moves by at most one grid step, SP by at
    least two."""
    width = {s.parameterization: s for s in shifts if s.axis == "width"}
    if "sp" not in width or "mup" not in width:
        return None
    sp, mup = width["sp"], width["mup"]
    claim = (
        f"muP against SP (the optimal rate moves by at most one grid step over {CHECK_RATIO}x "
        "width under muP, at least two under SP): "
    )
    if min(sp.ratio, mup.ratio) < CHECK_RATIO:
        ratio = min(sp.ratio, mup.ratio)
        return claim + f"not decided: the widths span {ratio:g}x, {CHECK_RATIO}x are needed"
    if sp.steps is None or mup.steps is None:
        return claim + "not decided: a width has no optimum (every rate diverged or is missing)"
    passed = bool(mup.as_expected) and bool(sp.as_expected)
    edge = " (an optimum at the grid's edge: widen the grid)" if sp.at_edge or mup.at_edge else ""
    return claim + (
        f"{'holds' if passed else 'does not hold'}: muP's optimum moves by "
        f"{_steps_words(mup.steps)}, SP's by {_steps_words(sp.steps)} over {mup.ratio:g}x "
        f"width{edge}"
    )


def format_lr(lr: float | None) -> str:
    """``2^-8`` for a power of two, else 3 significant digits; ``-`` for ``None``."""
    if lr is None:
        return "-"
    k = math.log2(lr)
    return f"2^{round(k)}" if abs(k - round(k)) < 1e-9 else f"{lr:.3g}"


def format_table(summary: TransferSummary, *, markdown: bool = False) -> str:
    """The optimal rate per parameterization (rows) and width/depth (columns), and the shift."""
    names = list(dict.fromkeys(c.parameterization for c in summary.cells))
    columns = list(dict.fromkeys((c.width, c.depth) for c in summary.cells))
    header = ["parameterization"] + [f"w{w}" + ("" if d is None else f" d{d}") for w, d in columns]
    header.append("width shift")
    rows = []
    for name in names:
        found = {(c.width, c.depth): c for c in summary.cells if c.parameterization == name}
        row = [name] + [format_lr(found[k].optimal_lr) if k in found else "" for k in columns]
        shift = [s for s in summary.shifts if s.parameterization == name and s.axis == "width"]
        row.append("-" if not shift or shift[0].steps is None else _steps_words(shift[0].steps))
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def write_report(out: str | Path, config: dict, lines: Sequence[dict]) -> TransferSummary:
    """Write ``summary.csv``, ``report.md`` and the figures into ``out``; return the summary.

    Args:
        out: the sweep's directory.
        config: the sweep's config as saved (``lrs``, ``resolved_base_width``,
            ``resolved_base_depth``, ``steps``, ``optimizer``, ``model`` are read).
        lines: the result lines.
    """
    out = Path(out)
    summary = summarize(
        lines, config["lrs"], config["resolved_base_width"], config["resolved_base_depth"]
    )
    _write_csv(out / "summary.csv", summary)
    _figures(out, summary)
    text = [
        "# Learning-rate transfer",
        "",
        f"Model `{config['model']}`, optimizer {config['optimizer']}, {config['steps']} steps, "
        f"seeds {list(config['seeds'])}; optimal rate: lowest validation loss, mean over seeds "
        "(a rate where any seed diverged is excluded).",
        "",
        format_table(summary, markdown=True),
        "",
        *[f"- {s}" for s in summary.sentences()],
        "",
        "![validation loss against learning rate](loss_vs_lr.png)",
        "",
        "![optimal learning rate against width](optimal_lr.png)",
        "",
        *_coord_section(out),
    ]
    atomic_write(out / "report.md", "\n".join(text))
    return summary


def _coord_section(out: Path) -> list[str]:
    """The coordinate check's slopes (output change against width) of the hidden and output
    layers, per parameterization and step, from ``coord_check_<name>.json``; none if absent."""
    import json

    lines = []
    for path in sorted(out.glob("coord_check_*.json")):
        name = path.stem.removeprefix("coord_check_")
        check = json.loads(path.read_text(encoding="utf-8"))
        lines += [
            f"### Coordinate check: {name} (lr {check.get('lr', '?')})",
            "",
            "| layer | role | step | slope ± stderr | verdict |",
            "|---|---|---|---|---|",
        ]
        for row in check["rows"]:
            if row["quantity"] == "change" and row["role"] in ("hidden", "output"):
                lines.append(
                    f"| {row['layer']} | {row['role']} | {row['step']} | "
                    f"{row['slope']:+.2f} ± {row['stderr']:.2f} | {row['verdict']} |"
                )
        lines += ["", f"![coordinate check, {name}]({path.with_suffix('.png').name})", ""]
    return lines


def _write_csv(path: Path, summary: TransferSummary) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "parameterization",
            "width",
            "depth",
            "lr",
            "mean_val_loss",
            "std_val_loss",
            "finished",
            "diverged",
            "optimal",
        ]
    )
    for c in summary.cells:
        for i, lr in enumerate(c.lrs):
            mean = c.mean_loss[i]
            writer.writerow(
                [
                    c.parameterization,
                    c.width,
                    "" if c.depth is None else c.depth,
                    repr(lr),
                    "" if mean is None else f"{mean:.6g}",
                    "" if c.std_loss[i] is None else f"{c.std_loss[i]:.6g}",
                    c.finished[i],
                    c.diverged[i],
                    int(i == c.optimum),
                ]
            )
    atomic_write(path, buffer.getvalue())


def _figures(out: Path, summary: TransferSummary) -> None:
    from matplotlib.figure import Figure

    from initlab.reports.plotting import save_png

    names = list(dict.fromkeys(c.parameterization for c in summary.cells))
    fig = Figure(figsize=(4.2 * len(names) + 1.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    for ax, name in zip(axes, names, strict=True):
        cells = sorted(
            (c for c in summary.cells if c.parameterization == name),
            key=lambda c: (c.depth or 0, c.width),
        )
        for index, c in enumerate(cells):
            points = [
                (lr, m)
                for lr, m in zip(c.lrs, c.mean_loss, strict=True)
                if m is not None and math.isfinite(m)
            ]
            if not points:
                continue
            label = f"w{c.width}" + ("" if c.depth is None else f" d{c.depth}")
            (line,) = ax.plot(
                *zip(*points, strict=True),
                marker="o",
                markersize=3,
                color=f"C{index % 10}",
                label=label,
            )
            if c.optimum is not None:
                ax.plot(
                    c.optimal_lr,
                    c.mean_loss[c.optimum],
                    marker="*",
                    markersize=11,
                    color=line.get_color(),
                )
        ax.set_xscale("log", base=2)
        ax.set_title(name)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("validation loss (mean over seeds)")
    save_png(fig, out / "loss_vs_lr.png")

    axes_used = list(dict.fromkeys(s.axis for s in summary.shifts)) or ["width"]
    fig = Figure(figsize=(4.6 * len(axes_used) + 1.0, 3.8), layout="constrained")
    axes = fig.subplots(1, len(axes_used), squeeze=False)[0]
    for ax, axis in zip(axes, axes_used, strict=True):
        for index, s in enumerate(x for x in summary.shifts if x.axis == axis):
            points = [(v, o) for v, o in zip(s.values, s.optima, strict=True) if o is not None]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker="o",
                    color=f"C{index % 10}",
                    label=s.parameterization,
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(axis)
        ax.set_ylabel("optimal learning rate")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    save_png(fig, out / "optimal_lr.png")


def _steps_words(steps: int) -> str:
    return f"{steps} step{'s' if steps != 1 else ''}"
