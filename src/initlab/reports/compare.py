"""Summarize a comparison: the table, ``summary.csv``, ``report.md`` and PNG figures.

Definitions used in every table (accuracies are fractions, shown as percent):

- final accuracy: test accuracy after the last epoch of each *finished* run, mean and sample
  standard deviation (ddof=1; undefined for a single run: "n/a" in the table, empty in
  ``summary.csv``) over seeds; diverged runs are excluded;
- best accuracy: the highest test accuracy of any epoch of any run of the scheme;
- loss after epoch 1: mean training loss of epoch 1, averaged over the runs that finished it;
- epochs to target: the first epoch whose test accuracy reaches the target, averaged over the
  runs that reached it, shown with how many did (``2.0 (3/3)``);
- diverged: diverged runs out of all runs.

Figures (line: mean over seeds; band: min to max over seeds; one color per scheme):

- ``train_loss.png``: training loss against the optimizer step, log y, from the epoch lines'
  ``loss_curve`` windows (an epoch line without one, written before curves existed or with
  ``log_every=0``, counts as one window: its epoch mean at its last step);
- ``test_error.png``: test error ``1 - accuracy`` after each epoch, log y, so that 2.4% and
  2.6% separate while chance-level schemes (90%) stay on the same axes;
- ``activation_std_at_init.png``: per-layer activation std at initialization.

Files are written atomically (:func:`initlab._files.atomic_write`: a temporary file, then
``os.replace``), so a reader never sees a half-written report.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, PercentFormatter

from initlab._files import atomic_write

__all__ = [
    "SummaryRow",
    "count",
    "format_loss",
    "format_table",
    "summarize",
    "write_report",
]

FIGURES = {
    "training loss against step": "train_loss.png",
    "test error per epoch": "test_error.png",
    "activations": "activation_std_at_init.png",
}


@dataclass(frozen=True)
class SummaryRow:
    """One scheme's line of the table; accuracies are fractions, ``None`` when undefined."""

    scheme: str
    runs: int
    final_accuracy_mean: float | None
    final_accuracy_std: float | None
    best_accuracy: float | None
    loss_epoch1: float | None
    epochs_to_target: float | None
    reached_target: int
    diverged: int


def summarize(lines: Sequence[dict], schemes: Sequence[str], target: float) -> list[SummaryRow]:
    """Return one :class:`SummaryRow` per scheme from ``results.jsonl`` lines.

    Args:
        lines: parsed lines of ``results.jsonl``.
        schemes: schemes in table order.
        target: target test accuracy as a fraction.
    """
    runs = _runs(lines)
    return [
        _summarize_scheme(s, [r for r in runs.values() if r["scheme"] == s], target)
        for s in schemes
    ]


def _runs(lines: Sequence[dict]) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for line in lines:
        run = runs.setdefault(
            line["run"],
            {"scheme": line["scheme"], "epochs": [], "status": None, "activation_std": {}},
        )
        if line["type"] == "epoch":
            run["epochs"].append(line)
        elif line["type"] == "status":
            run["status"] = line["status"]
        elif line["type"] == "init":
            run["activation_std"] = line["activation_std"]
            run["verdicts"] = line.get("verdicts", [])
    return runs


def _summarize_scheme(scheme: str, runs: list[dict], target: float) -> SummaryRow:
    finals = [
        r["epochs"][-1]["test_accuracy"] for r in runs if r["status"] == "finished" and r["epochs"]
    ]
    accuracies = [e["test_accuracy"] for r in runs for e in r["epochs"]]
    first_losses = [r["epochs"][0]["train_loss"] for r in runs if r["epochs"]]
    reached = [
        next(e["epoch"] for e in r["epochs"] if e["test_accuracy"] >= target)
        for r in runs
        if any(e["test_accuracy"] >= target for e in r["epochs"])
    ]
    return SummaryRow(
        scheme=scheme,
        runs=len(runs),
        final_accuracy_mean=_mean(finals),
        final_accuracy_std=_std(finals),
        best_accuracy=max(accuracies) if accuracies else None,
        loss_epoch1=_mean(first_losses),
        epochs_to_target=_mean(reached),
        reached_target=len(reached),
        diverged=sum(r["status"] == "diverged" for r in runs),
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: Sequence[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:  # ddof=1 divides by n - 1 = 0: undefined, not 0
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_loss(loss: float) -> str:
    """Format a loss as the seed does (``0.2345``), but ``4.513e+10`` from 1e6 up, not 11 digits."""
    return f"{loss:.4f}" if abs(loss) < 1e6 else f"{loss:.4g}"


def _cells(row: SummaryRow) -> list[str]:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    final = "-"
    if row.final_accuracy_mean is not None:
        mean, std = 100 * row.final_accuracy_mean, row.final_accuracy_std
        final = f"{mean:.2f}% ± n/a" if std is None else f"{mean:.2f} ± {100 * std:.2f}%"
    to_target = "-" if row.epochs_to_target is None else f"{row.epochs_to_target:.1f}"
    return [
        row.scheme,
        final,
        pct(row.best_accuracy),
        "-" if row.loss_epoch1 is None else format_loss(row.loss_epoch1),
        f"{to_target} ({row.reached_target}/{row.runs})",
        f"{row.diverged}/{row.runs}",
    ]


def _headers(target: float) -> list[str]:
    return [
        "scheme",
        "final test acc (mean ± std)",
        "best acc",
        "loss after epoch 1",
        f"epochs to {100 * target:g}%",
        "diverged",
    ]


def format_table(rows: Sequence[SummaryRow], target: float, *, markdown: bool = False) -> str:
    """Return the summary as an aligned text table, or a Markdown table if ``markdown``."""
    table = [_headers(target)] + [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells) + " |" for cells in table]
        lines.insert(1, "|" + "|".join("---" for _ in table[0]) + "|")
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in table
    )


def write_report(out_dir: str | os.PathLike, config, lines: Sequence[dict]) -> list[SummaryRow]:
    """Write ``summary.csv``, ``report.md`` and the figures of a comparison into ``out_dir``.

    Args:
        out_dir: the comparison's directory.
        config: its :class:`~initlab.experiments.sweep.CompareConfig`.
        lines: parsed lines of its ``results.jsonl``.

    Returns:
        The summary rows.
    """
    out = Path(out_dir)
    rows = summarize(lines, config.schemes, config.target_accuracy)
    write_summary(out / "summary.csv", rows)
    runs = _runs(lines)
    _loss_figure(out / FIGURES["training loss against step"], runs, config)
    _error_figure(out / FIGURES["test error per epoch"], runs, config.schemes)
    _activation_figure(out / FIGURES["activations"], runs, config.schemes)
    atomic_write(out / "report.md", _markdown(config, rows) + _verdicts(runs, config.schemes))
    return rows


def count(n: int, noun: str) -> str:
    """Return ``n`` and ``noun``, singular for 1, else plural: ``"1 run"``, ``"2 runs"``.

    Example:
        >>> count(1, "epoch"), count(3, "seed")
        ('1 epoch', '3 seeds')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _markdown(config, rows: Sequence[SummaryRow]) -> str:
    t = config.train
    settings = (
        f"model `{config.model}` {config.model_params or '(defaults)'}, dataset `{config.dataset}`"
        f" (train subset {config.train_subset or 'all'},"
        f" test subset {config.test_subset or 'all'}),"
        f" {t.optimizer} lr {t.lr:g} weight decay {t.weight_decay:g}, batch {t.batch_size},"
        f" {count(t.epochs, 'epoch')}, {count(config.seeds, 'seed')} from {config.first_seed},"
        f" bias init {config.bias_init or 'scheme default'}, device {t.device}"
    )
    figures = "\n".join(f"![{name}]({file})" for name, file in FIGURES.items())
    return (
        "# Comparison of initialization schemes\n\n"
        f"Settings: {settings}.\n\n"
        f"{format_table(rows, config.target_accuracy, markdown=True)}\n\n"
        "Final accuracy excludes diverged runs; std is over seeds (ddof=1). Bands in the curves "
        "span min to max over seeds; the line is the mean. The training loss is the mean over "
        f"windows of {_window_words(t)} (`loss_curve` in `results.jsonl`); test error is "
        "1 - accuracy, both on log axes.\n\n"
        f"{figures}\n"
    )


def _window_words(train) -> str:
    if train.log_every == 0:
        return "a whole epoch (log_every=0)"
    if train.log_every is None:
        return "about a tenth of an epoch"
    return f"{train.log_every} steps"


def _verdicts(runs: dict, schemes: Sequence[str]) -> str:
    """The init diagnosis per scheme: its verdicts over all seeds (see ``initlab.diagnose``)."""
    lines = []
    for scheme in schemes:
        codes = {c for r in runs.values() if r["scheme"] == scheme for c in r.get("verdicts", [])}
        if codes:
            lines.append(f"- `{scheme}`: " + ", ".join(sorted(codes)))
    if not lines:
        return ""
    return (
        "\n## Diagnosis at initialization\n\n" + "\n".join(lines) + "\n\nPer-layer statistics, "
        "thresholds and hints of every run: `diagnosis/<scheme>-<seed>.json`.\n"
    )


def _loss_points(epochs: Sequence[dict]) -> list[tuple[int, float]]:
    """Return one run's ``(step, mean training loss)`` points from its epoch lines.

    An epoch's ``loss_curve`` windows where recorded; otherwise (older files, ``log_every=0``)
    the epoch's mean loss as one window ending at its last step. Steps count from the start.
    """
    points, done = [], 0
    for e in sorted(epochs, key=lambda e: e["epoch"]):
        curve = e.get("loss_curve")
        points += [(s, v) for s, v in curve] if curve else [(done + e["steps"], e["train_loss"])]
        done += e["steps"]
    return points


def _band(series: Sequence[Sequence[tuple[float, float]]]) -> tuple[list, list, list, list]:
    """Return ``(x, mean, min, max)`` over runs of ``(x, y)`` points, x ascending.

    Each ``x`` aggregates the runs that have a point there (a diverged run stops early).
    """
    by_x: dict[float, list[float]] = {}
    for points in series:
        for x, y in points:
            by_x.setdefault(x, []).append(y)
    xs = sorted(by_x)
    return (
        xs,
        [sum(by_x[x]) / len(by_x[x]) for x in xs],
        [min(by_x[x]) for x in xs],
        [max(by_x[x]) for x in xs],
    )


def _plot_band(ax, x, mean, low, high, label: str, marker: str | None = None) -> None:
    (line,) = ax.plot(x, mean, marker=marker, markersize=4, label=label)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def _loss_figure(path: Path, runs: dict, config) -> None:
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    steps_per_epoch = None
    for scheme in config.schemes:
        epochs = [r["epochs"] for r in runs.values() if r["scheme"] == scheme and r["epochs"]]
        if epochs:
            steps_per_epoch = steps_per_epoch or epochs[0][0]["steps"]
            _plot_band(ax, *_band([_loss_points(e) for e in epochs]), label=scheme)
    # log y: the loss falls by orders of magnitude in the first epoch, where schemes differ
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlim(left=0)
    ax.set_xlabel(f"optimizer step (batches of {config.train.batch_size})")
    ax.set_ylabel("training cross-entropy (nats, log scale)")
    if steps_per_epoch:
        top = ax.secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        top.set_xlabel("epoch")
    # log_every=0 leaves the epoch means: windows of a whole epoch
    window = config.train.window(steps_per_epoch) or steps_per_epoch if steps_per_epoch else "N"
    ax.set_title(
        f"Training loss, mean over windows of {window} steps "
        "(line: mean over seeds, band: min..max)",
        fontsize="medium",
    )
    _finish(ax, path)


def _error_figure(path: Path, runs: dict, schemes: Sequence[str]) -> None:
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    _draw_errors(ax, runs, schemes)
    _finish(ax, path)


def _draw_errors(ax, runs: dict, schemes: Sequence[str]) -> None:
    """Draw test error per epoch on ``ax``: log y in percent, whole epochs on x."""
    errors, last_epoch = [], 1
    for scheme in schemes:
        series = [
            [(e["epoch"], 1.0 - e["test_accuracy"]) for e in r["epochs"]]
            for r in runs.values()
            if r["scheme"] == scheme and r["epochs"]
        ]
        if series:
            _plot_band(ax, *_band(series), label=scheme, marker="o")
            errors += [err for points in series for _, err in points if err > 0]
            last_epoch = max(last_epoch, *(epoch for points in series for epoch, _ in points))
    # log y: 2.4% and 2.6% error separate, and a chance-level scheme (90%) still shows;
    # an error of exactly 0 (a tiny test subset) cannot be drawn there and is left out.
    ax.set_yscale("log", nonpositive="mask")
    _percent_log_ticks(ax, errors)
    # whole epochs only (MaxNLocator's integer=True still picks 0.6, 0.7, ... on a span of one
    # epoch), with half an epoch of margin so that a single epoch is one centered column
    if last_epoch <= 20:
        ax.set_xticks(range(1, last_epoch + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, last_epoch + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error = 1 - accuracy (%, log scale)")
    ax.set_title(
        "Test error after each epoch (line: mean over seeds, band: min..max)", fontsize="medium"
    )


def _percent_log_ticks(ax, errors: Sequence[float]) -> None:
    """Label a log y axis in percent only (no 6x10^-1) with room above the largest error."""
    if errors:
        # a factor 1.3 of margin on a log axis: the top point and its label stay inside
        low, high = min(errors) / 1.3, max(errors) * 1.3
        ax.set_ylim(low, high)
        # under one decade, label every 1..9 x 10^k, else 1, 2, 3, 5, 7 (about 5 per decade)
        few = math.log10(high / low) <= 1.0
        subs = tuple(range(1, 10)) if few else (1.0, 2.0, 3.0, 5.0, 7.0)
        ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    ax.yaxis.set_minor_formatter(NullFormatter())  # minor ticks mark, the majors carry labels


def _finish(ax, path: Path) -> None:
    """Grid, the legend outside the axes (it never covers a curve), and save."""
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title="scheme")
    _save(ax.figure, path)


def _activation_figure(path: Path, runs: dict, schemes: Sequence[str]) -> None:
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for scheme in schemes:
        stds = [r["activation_std"] for r in runs.values() if r["scheme"] == scheme]
        stds = [s for s in stds if s]
        if not stds:
            continue
        layers = list(stds[0])
        mean = [sum(s[layer] for s in stds) / len(stds) for layer in layers]
        ax.plot(range(len(layers)), mean, marker="o", label=scheme)
        ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize="small")
    # symlog: the zeros scheme has std exactly 0, which a log axis cannot show.
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(bottom=0, top=max(2 * ax.get_ylim()[1], 1e-2))  # stds are >= 0
    ax.set_xlabel("layer output (forward order)")
    ax.set_ylabel("activation std at init (symlog scale)")
    ax.set_title("Per-layer activation std at initialization (mean over seeds)")
    _finish(ax, path)


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())


def write_summary(path: str | os.PathLike, rows: Sequence) -> None:
    """Write ``summary.csv``: a header of the rows' fields, one line per row (dataclasses).

    Args:
        path: the file.
        rows: :class:`SummaryRow` objects, at least one; an
            undefined value (``None``) is an empty cell.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    atomic_write(path, buffer.getvalue())
