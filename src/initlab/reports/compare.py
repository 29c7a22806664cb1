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

Conclusion (:func:`summarize`, :func:`conclusions`): schemes ranked by a metric (final test
accuracy by default), the best named, and every other scheme's difference to it with a 95%
Welch t interval over seeds (:mod:`initlab.reports.stats`; Welch 1947), in sentences after the
table and in ``summary.csv`` columns. The table itself keeps the order of the schemes given.

Figures (line: mean over seeds; band: min to max over seeds; per scheme one color, dash pattern
and marker, so that coinciding curves stay visible; an ``x`` marks each diverged run's last
finite point; schemes far above the others in test error get their own panel):

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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    PercentFormatter,
)

from initlab._checks import ArgumentError
from initlab._files import atomic_write
from initlab.reports.stats import welch_interval

__all__ = [
    "METRICS",
    "SummaryRow",
    "at_chosen_rates",
    "choose_rates",
    "conclusions",
    "count",
    "format_conclusions",
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
    # the conclusion (see :func:`summarize`): rank by the chosen metric, 1 = best; the metric's
    # mean over its runs; the difference to the best scheme and its 95% Welch interval
    # (fractions, like the accuracies; the best's own are 0); verdict: "best",
    # "indistinguishable", "worse", "no interval" (a single run on one side) or "no result"
    rank: int | None = None
    metric_runs: int = 0
    metric_mean: float | None = None
    diff_to_best: float | None = None
    diff_ci95_low: float | None = None
    diff_ci95_high: float | None = None
    verdict: str = "no result"
    # the scheme's learning rate chosen on the validation split (a grid's sweep; else None)
    lr: float | None = None


def choose_rates(
    lines: Sequence[dict], schemes: Sequence[str], rates: Sequence[float]
) -> tuple[dict[str, float], dict[str, dict[float, float | None]]]:
    """Choose each scheme's learning rate of a grid on the validation split.

    Rule: for each scheme and rate, the mean over seeds of the validation accuracy after the
    final epoch (``val_accuracy`` of each run's last epoch line); a run that diverged or did
    not finish counts as 0, so a rate that blows up a seed is not chosen for its other seeds.
    The chosen rate has the highest mean; ties go to the rate listed first in the grid. The
    test set plays no part in the choice.

    Args:
        lines: parsed lines of ``results.jsonl`` (each run's lines carry its ``lr``).
        schemes: the schemes.
        rates: the grid, in the order given.

    Returns:
        ``(chosen, means)``: the chosen rate per scheme, and per scheme and rate the mean
        validation accuracy (a fraction; ``None`` where the rate has no run).
    """
    runs = _runs(lines)
    chosen: dict[str, float] = {}
    means: dict[str, dict[float, float | None]] = {}
    for scheme in schemes:
        means[scheme] = {}
        for lr in rates:
            values = [
                r["epochs"][-1].get("val_accuracy") or 0.0
                if r["status"] == "finished" and r["epochs"]
                else 0.0
                for r in runs.values()
                if r["scheme"] == scheme and r.get("lr") == lr
            ]
            means[scheme][lr] = _mean(values)
        scored = [lr for lr in rates if means[scheme][lr] is not None]
        chosen[scheme] = max(scored, key=lambda lr: means[scheme][lr]) if scored else rates[0]
    return chosen, means


def at_chosen_rates(lines: Sequence[dict], chosen: dict[str, float]) -> list[dict]:
    """The lines of the runs at their scheme's chosen rate (the final numbers' runs)."""
    return [line for line in lines if chosen.get(line["scheme"]) == line.get("lr")]


def summarize(
    lines: Sequence[dict],
    schemes: Sequence[str],
    target: float,
    *,
    metric: str = "final_accuracy",
) -> list[SummaryRow]:
    """Return one :class:`SummaryRow` per scheme from ``results.jsonl`` lines, in ``schemes`` order.

    Each row also carries the conclusion: the schemes with a value of ``metric`` are ranked by
    its mean over runs (higher is better; ties keep the order of ``schemes``), and every other
    scheme's difference to the best gets a 95% Welch t interval over seeds
    (:func:`initlab.reports.stats.welch_interval`; Welch 1947). Its verdict is
    ``"indistinguishable"`` when the interval contains 0, ``"worse"`` when it lies below 0,
    ``"no interval"`` when either side has a single run (no variance estimate).

    Args:
        lines: parsed lines of ``results.jsonl``.
        schemes: schemes in table order.
        target: target test accuracy as a fraction.
        metric: what to rank by, one of :data:`METRICS`: ``"final_accuracy"`` (test accuracy
            after the last epoch of each finished run) or ``"best_accuracy"`` (each run's
            highest test accuracy of any epoch, diverged runs included).

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS`.
    """
    if metric not in METRICS:
        raise ArgumentError("metric", f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    runs = _runs(lines)
    rows = [
        _summarize_scheme(s, [r for r in runs.values() if r["scheme"] == s], target)
        for s in schemes
    ]
    samples = {
        s: _metric_values([r for r in runs.values() if r["scheme"] == s], metric) for s in schemes
    }
    return _conclude(rows, samples)


METRICS = {
    "final_accuracy": "final accuracy",
    "best_accuracy": "best accuracy",
}


def _metric_values(runs: list[dict], metric: str) -> list[float]:
    """One value of ``metric`` per run that has one (a fraction)."""
    if metric == "final_accuracy":
        return [
            r["epochs"][-1]["test_accuracy"]
            for r in runs
            if r["status"] == "finished" and r["epochs"]
        ]
    return [max(e["test_accuracy"] for e in r["epochs"]) for r in runs if r["epochs"]]


def _conclude(rows: list[SummaryRow], samples: dict[str, list[float]]) -> list[SummaryRow]:
    """Fill each row's rank, difference to the best, Welch interval and verdict."""
    means = {s: sum(v) / len(v) for s, v in samples.items() if v}
    order = sorted(means, key=lambda s: -means[s])  # stable: ties keep the given order
    if not order:
        return rows
    best = order[0]
    out = []
    for row in rows:
        s = row.scheme
        if s not in means:
            out.append(row)
            continue
        fields = {"rank": order.index(s) + 1, "metric_runs": len(samples[s])}
        fields["metric_mean"] = means[s]
        if s == best:
            fields.update(diff_to_best=0.0, diff_ci95_low=0.0, diff_ci95_high=0.0, verdict="best")
        else:
            w = welch_interval(samples[s], samples[best])
            verdict = (
                "no interval"
                if w.low is None
                else "worse"
                if w.excludes_zero
                else "indistinguishable"
            )
            fields.update(
                diff_to_best=w.difference,
                diff_ci95_low=w.low,
                diff_ci95_high=w.high,
                verdict=verdict,
            )
        out.append(replace(row, **fields))
    return out


def _seeds(n_a: int, n_b: int) -> str:
    return count(n_a, "seed") if n_a == n_b else f"{n_a} and {count(n_b, 'seed')}"


def conclusions(rows: Sequence[SummaryRow], metric: str = "final_accuracy") -> list[str]:
    """Return the conclusion as plain sentences, best scheme first, then by rank.

    Differences are in percentage points of ``metric``, with the 95% Welch interval's half
    width (see :func:`summarize`); for example ``"xavier_uniform and kaiming_uniform are
    indistinguishable at 3 seeds (difference 0.09 ± 0.31 points, 95% Welch interval)"`` or
    ``"kaiming_uniform is better than zeros by 87.12 ± 0.40 points (95% Welch interval, 3
    seeds)"``. A scheme without a value of the metric (every run diverged) is named last.

    Args:
        rows: the rows of :func:`summarize` (any order).
        metric: the metric they were ranked by, for the wording.
    """
    ranked = sorted((r for r in rows if r.rank is not None), key=lambda r: r.rank)
    if not ranked:
        return ["No scheme has a result to rank: every run diverged or none ran."]
    best = ranked[0]
    name = METRICS.get(metric, metric)
    sentences = [
        f"{best.scheme} is best: {name} {100 * best.metric_mean:.2f}%"
        f" (mean of {count(best.metric_runs, 'run')})."
    ]
    for r in ranked[1:]:
        gap = -100 * r.diff_to_best
        seeds = _seeds(r.metric_runs, best.metric_runs)
        if r.verdict == "no interval":
            sentences.append(
                f"{best.scheme} is ahead of {r.scheme} by {gap:.2f} points at {seeds}: no"
                " interval with a single seed on one side, so whether the difference is real"
                " cannot be told (run more seeds)."
            )
            continue
        half = 100 * (r.diff_ci95_high - r.diff_to_best)
        still = "; no spread over seeds" if half == 0.0 else ""
        if r.verdict == "indistinguishable":
            sentences.append(
                f"{r.scheme} and {best.scheme} are indistinguishable at {seeds}"
                f" (difference {gap:.2f} ± {half:.2f} points, 95% Welch interval{still})."
            )
        else:
            sentences.append(
                f"{best.scheme} is better than {r.scheme} by {gap:.2f} ± {half:.2f} points"
                f" (95% Welch interval, {seeds}{still})."
            )
    for r in rows:
        if r.rank is None:
            sentences.append(
                f"{r.scheme} has no {name} ({r.diverged}/{r.runs} runs diverged): not ranked."
            )
    return sentences


def format_conclusions(rows: Sequence[SummaryRow], metric: str = "final_accuracy") -> str:
    """Return :func:`conclusions` as lines under a heading, for the terminal after the table."""
    name = METRICS.get(metric, metric)
    lines = "\n".join(f"- {s}" for s in conclusions(rows, metric))
    return f"Conclusion (ranked by {name} on the test set):\n{lines}"


def _runs(lines: Sequence[dict]) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for line in lines:
        run = runs.setdefault(
            line["run"],
            {"scheme": line["scheme"], "epochs": [], "status": None, "activation_std": {}},
        )
        if "lr" in line:
            run["lr"] = line["lr"]
        if line["type"] == "epoch":
            run["epochs"].append(line)
        elif line["type"] == "status":
            run["status"] = line["status"]
            if line["status"] == "diverged":
                run["diverged_at"] = (line.get("epoch"), line.get("step"))
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
    lr = [] if row.lr is None else [f"{row.lr:g}"]
    return [
        row.scheme,
        *lr,
        final,
        pct(row.best_accuracy),
        "-" if row.loss_epoch1 is None else format_loss(row.loss_epoch1),
        f"{to_target} ({row.reached_target}/{row.runs})",
        f"{row.diverged}/{row.runs}",
    ]


def _headers(target: float, grid: bool = False) -> list[str]:
    return [
        "scheme",
        *(["lr"] if grid else []),
        "final test acc (mean ± std)",
        "best acc",
        "loss after epoch 1",
        f"epochs to {100 * target:g}%",
        "diverged",
    ]


def format_table(rows: Sequence[SummaryRow], target: float, *, markdown: bool = False) -> str:
    """Return the summary as an aligned text table, or a Markdown table if ``markdown``.

    Rows of a learning-rate grid's sweep (``lr`` set) get a column ``lr``, the chosen rate.
    """
    table = [_headers(target, any(r.lr is not None for r in rows))] + [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells) + " |" for cells in table]
        lines.insert(1, "|" + "|".join("---" for _ in table[0]) + "|")
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in table
    )


def write_report(
    out_dir: str | os.PathLike, config, lines: Sequence[dict], *, metric: str = "final_accuracy"
) -> list[SummaryRow]:
    """Write ``summary.csv``, ``report.md`` and the figures of a comparison into ``out_dir``.

    Args:
        out_dir: the comparison's directory.
        config: its :class:`~initlab.experiments.sweep.CompareConfig`.
        lines: parsed lines of its ``results.jsonl``.
        metric: what the conclusion ranks by, one of :data:`METRICS` (see :func:`summarize`).

    Returns:
        The summary rows, in the order of ``config.schemes``.

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS`.
    """
    out = Path(out_dir)
    grid = ""
    if getattr(config, "lr_grid", None):  # final numbers: the test results at the chosen rates
        chosen, means = choose_rates(lines, config.schemes, config.lr_grid)
        lines = at_chosen_rates(lines, chosen)
        grid = _grid_section(config, chosen, means)
    rows = summarize(lines, config.schemes, config.target_accuracy, metric=metric)
    if grid:
        rows = [replace(r, lr=chosen[r.scheme]) for r in rows]
    write_summary(out / "summary.csv", rows)
    runs = _runs(lines)
    _loss_figure(out / FIGURES["training loss against step"], runs, config)
    _error_figure(out / FIGURES["test error per epoch"], runs, config.schemes)
    _activation_figure(out / FIGURES["activations"], runs, config.schemes)
    atomic_write(
        out / "report.md",
        _markdown(config, rows, metric) + grid + _verdicts(runs, config.schemes),
    )
    return rows


def _grid_section(config, chosen: dict[str, float], means: dict) -> str:
    """``report.md``'s account of the learning-rate choice: the rule and every mean."""
    rates = list(config.lr_grid)
    head = "| scheme | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | chosen |"
    table = [head, "|" + "---|" * (len(rates) + 2)]
    for scheme in config.schemes:
        cells = [
            "-" if means[scheme][lr] is None else f"{100 * means[scheme][lr]:.2f}%" for lr in rates
        ]
        table.append(f"| {scheme} | " + " | ".join(cells) + f" | {chosen[scheme]:g} |")
    return (
        "\n## Learning rate per scheme\n\n"
        f"Each scheme trained at every rate of the grid on the training data less a validation "
        f"split of {100 * config.val_fraction:g}% (seeded with the first seed). Its rate is the "
        "one with the highest mean validation accuracy over seeds after the final epoch (a "
        "diverged run counts as 0; ties go to the rate listed first); the test set plays no "
        "part in the choice, and the numbers above are the test results of the runs at the "
        "chosen rate. Mean validation accuracy:\n\n" + "\n".join(table) + "\n"
    )


def count(n: int, noun: str) -> str:
    """Return ``n`` and ``noun``, singular for 1, else plural: ``"1 run"``, ``"2 runs"``.

    Example:
        >>> count(1, "epoch"), count(3, "seed")
        ('1 epoch', '3 seeds')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ranking(rows: Sequence[SummaryRow], metric: str) -> str:
    """The conclusion of ``report.md``: sentences, then the schemes sorted by ``metric``."""
    name = METRICS.get(metric, metric)
    table = [f"| rank | scheme | {name} (mean) | difference to best, 95% interval | verdict |"]
    table.append("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.rank is None, r.rank or 0)):
        if r.rank is None:
            table.append(f"| - | {r.scheme} | - | - | {r.verdict} |")
            continue
        diff = f"{100 * r.diff_to_best:+.2f} points"
        if r.diff_ci95_low is not None and r.verdict != "best":
            diff += f" [{100 * r.diff_ci95_low:+.2f}, {100 * r.diff_ci95_high:+.2f}]"
        elif r.verdict == "no interval":
            diff += " (no interval: 1 seed)"
        table.append(
            f"| {r.rank} | {r.scheme} | {100 * r.metric_mean:.2f}% | {diff} | {r.verdict} |"
        )
    sentences = "\n".join(f"- {s}" for s in conclusions(rows, metric))
    return (
        f"## Conclusion\n\nRanked by {name} on the test set, higher is better. Each "
        "difference to the best scheme comes with a 95% Welch t interval over seeds "
        "(unequal variances, Welch–Satterthwaite degrees of freedom; Welch 1947): an "
        "interval that contains 0 means the difference does not exceed seed noise at this "
        "many seeds. Differences are in percentage points.\n\n"
        f"{sentences}\n\n" + "\n".join(table) + "\n\n"
    )


def _markdown(config, rows: Sequence[SummaryRow], metric: str = "final_accuracy") -> str:
    t = config.train
    settings = (
        f"model `{config.model}` {config.model_params or '(defaults)'}, dataset `{config.dataset}`"
        f" (train subset {config.train_subset or 'all'},"
        f" test subset {config.test_subset or 'all'}),"
        f" {t.optimizer} {_lr_words(config)} weight decay {t.weight_decay:g},"
        f" batch {t.batch_size},"
        f" {count(t.epochs, 'epoch')}, {count(config.seeds, 'seed')} from {config.first_seed},"
        f" bias init {config.bias_init or 'scheme default'}, device {t.device}"
    )
    figures = "\n".join(f"![{name}]({file})" for name, file in FIGURES.items())
    return (
        "# Comparison of initialization schemes\n\n"
        f"Settings: {settings}.\n\n"
        f"{format_table(rows, config.target_accuracy, markdown=True)}\n\n"
        f"{_ranking(rows, metric)}"
        "Final accuracy excludes diverged runs; std is over seeds (ddof=1). Bands in the curves "
        "span min to max over seeds; the line is the mean. The training loss is the mean over "
        f"windows of {_window_words(t)} (`loss_curve` in `results.jsonl`); test error is "
        "1 - accuracy, both on log axes.\n\n"
        f"{figures}\n"
    )


def _lr_words(config) -> str:
    grid = getattr(config, "lr_grid", None)
    if not grid:
        return f"lr {config.train.lr:g}"
    return "lr chosen per scheme from " + ", ".join(f"{lr:g}" for lr in grid)


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


# One style per scheme: color, dash pattern and marker all change, so that overlapping curves
# (schemes that train alike) stay distinguishable; "x" is kept for divergence marks.
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "<", ">", "h", "*")
DIVERGED_MARKER = "x"


def _style(index: int) -> dict:
    """Matplotlib line properties of the ``index``-th scheme."""
    # markers shrink along the scheme order: where curves coincide, a later (smaller) marker
    # sits inside an earlier one and both show
    return {
        "color": f"C{index % 10}",
        "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
        "marker": _MARKERS[index % len(_MARKERS)],
        "markersize": 8.0 - 1.5 * (index % 4),
    }


def _plot_band(ax, x, mean, low, high, label: str, style: dict, *, index: int = 0):
    """Draw a scheme's mean line and its min..max band; return the line.

    Markers are placed on about 8 points per line, shifted per scheme, so that coinciding
    curves show every scheme's marker.
    """
    every = max(1, len(x) // 8)
    (line,) = ax.plot(x, mean, label=label, markevery=(index % every, every), **style)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    return line


def _mark_divergences(ax, marks: Sequence[tuple[float, float | None, str]]) -> None:
    """Draw an ``x`` at each diverged run's last finite point ``(x, y, color)``.

    ``y`` is ``None`` for a run that diverged before its first point: the mark then sits at the
    top of the axes, at the divergence's ``x``; a ``y`` above the axes is drawn at the top.
    """
    if not marks:
        return
    top = ax.get_ylim()[1]
    for x, y, color in marks:
        if y is None or y > top:
            ax.plot(
                [x],
                [0.97],
                DIVERGED_MARKER,
                color=color,
                markersize=10,
                mew=2.5,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                zorder=5,
            )
        else:
            ax.plot([x], [y], DIVERGED_MARKER, color=color, markersize=10, mew=2.5, zorder=5)


def _legend_extras(ax, schemes_without_points: Sequence[tuple[str, dict]], diverged: bool):
    """Legend entries for schemes with nothing to draw and for the divergence mark."""
    for scheme, style in schemes_without_points:
        ax.plot([], [], label=f"{scheme} (no epoch finished)", **style)
    if diverged:
        ax.plot(
            [],
            [],
            DIVERGED_MARKER,
            color="0.3",
            markersize=8,
            mew=2,
            label="run diverged (its last finite point)",
        )


def _loss_figure(path: Path, runs: dict, config) -> Figure:
    """Draw and save ``train_loss.png``; return the figure (tests read its artists)."""
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    steps_per_epoch = None
    marks, empty, finished_losses = [], [], []
    for i, scheme in enumerate(config.schemes):
        style = _style(i)
        own = [r for r in runs.values() if r["scheme"] == scheme]
        epochs = [r["epochs"] for r in own if r["epochs"]]
        if epochs:
            steps_per_epoch = steps_per_epoch or epochs[0][0]["steps"]
            _plot_band(ax, *_band([_loss_points(e) for e in epochs]), scheme, style, index=i)
        else:
            empty.append((scheme, style))
        for r in own:
            points = _loss_points(r["epochs"])
            if r.get("status") != "diverged":
                finished_losses += [v for _, v in points if v > 0 and math.isfinite(v)]
                continue
            if points:
                marks.append((*points[-1], style["color"]))
            else:
                epoch, step = r.get("diverged_at", (1, 0))
                x = (steps_per_epoch or 0) * ((epoch or 1) - 1) + (step or 0)
                marks.append((x, None, style["color"]))
    # log y: the loss falls by orders of magnitude in the first epoch, where schemes differ
    ax.set_yscale("log", nonpositive="mask")
    if finished_losses:  # a diverging run's huge losses do not squeeze the others
        low, high = min(finished_losses) / 1.3, max(finished_losses) * 1.3
        ax.set_ylim(low, high)
        if high / low < 10:  # within a decade: plain numbers (1.5, 2), not 2 x 10^0
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"optimizer step (batches of {config.train.batch_size})")
    ax.set_ylabel("training cross-entropy (nats, log scale)")
    if steps_per_epoch:
        top = ax.secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        top.set_xlabel("epoch")
    _mark_divergences(ax, marks)
    _legend_extras(ax, empty, bool(marks))
    # log_every=0 leaves the epoch means: windows of a whole epoch
    window = config.train.window(steps_per_epoch) or steps_per_epoch if steps_per_epoch else "N"
    ax.set_title(
        f"Training loss, mean over windows of {window} steps "
        "(line: mean over seeds, band: min..max)",
        fontsize="medium",
    )
    _finish(ax, path)
    return fig


# A scheme whose lowest test error is this many times the highest error of the schemes below
# it (a scheme stuck at chance, 90%, against trained ones at 2-10%) gets its own panel.
FAR_FACTOR = 3.0


def _error_series(runs: dict, scheme: str) -> list[list[tuple[int, float]]]:
    return [
        [(e["epoch"], 1.0 - e["test_accuracy"]) for e in r["epochs"]]
        for r in runs.values()
        if r["scheme"] == scheme and r["epochs"]
    ]


def split_far(levels: dict[str, tuple[float, float]]) -> tuple[list[str], list[str]]:
    """Split schemes into (near, far) by their ``(lowest, highest)`` mean test error.

    Schemes sorted by lowest error join the near group until one's lowest error exceeds
    :data:`FAR_FACTOR` times the highest error of the near group so far: it and every scheme
    above it are far (drawn in their own panel so that they do not squeeze the others' range).

    Example:
        >>> split_far({"a": (0.02, 0.1), "b": (0.03, 0.12), "zeros": (0.9, 0.9)})
        (['a', 'b'], ['zeros'])
    """
    order = sorted(levels, key=lambda s: levels[s][0])
    near: list[str] = []
    high = 0.0
    for k, scheme in enumerate(order):
        low, top = levels[scheme]
        if near and low > FAR_FACTOR * high:
            return near, order[k:]
        near.append(scheme)
        high = max(high, top)
    return near, []


def _error_figure(path: Path, runs: dict, schemes: Sequence[str]) -> Figure:
    """Draw and save ``test_error.png`` (a second panel for far schemes); return the figure."""
    levels = {}
    for scheme in schemes:
        series = _error_series(runs, scheme)
        if series:
            mean = _band(series)[1]
            levels[scheme] = (min(mean), max(mean))
    near, far = split_far(levels)
    if not far:
        fig = Figure(figsize=(9, 4.8), layout="constrained")
        ax = fig.add_subplot()
        _draw_errors(ax, runs, schemes)
        _finish(ax, path)
        return fig
    fig = Figure(figsize=(9, 6.4), layout="constrained")
    ax, ax_far = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    _draw_errors(ax, runs, schemes, only=set(near) | (set(schemes) - set(levels)))
    _draw_errors(ax_far, runs, schemes, only=set(far), legend_extras=False)
    ax.set_xlabel("")
    ax_far.set_title(
        f"Schemes far above the others, on their own scale: {', '.join(far)}",
        fontsize="medium",
    )
    ax_far.set_ylabel("test error (%, log)")
    handles, labels = ax.get_legend_handles_labels()
    far_handles, far_labels = ax_far.get_legend_handles_labels()
    # one legend in the order of the schemes, the divergence mark last
    position = {s: i for i, s in enumerate(schemes)}
    pairs = sorted(
        zip(handles + far_handles, labels + far_labels, strict=True),
        key=lambda hl: position.get(hl[1], len(position)),
    )
    handles, labels = [h for h, _ in pairs], [lb for _, lb in pairs]
    ax_far.grid(alpha=0.3, which="both")
    ax.grid(alpha=0.3, which="both")
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        title="scheme",
    )
    _save(fig, path)
    return fig


def _draw_errors(
    ax, runs: dict, schemes: Sequence[str], only=None, *, legend_extras: bool = True
) -> None:
    """Draw test error per epoch on ``ax``: log y in percent, whole epochs on x.

    ``only``: the schemes to draw (default all); styles stay those of the scheme's position.
    """
    errors, last_epoch, marks, empty = [], 1, [], []
    for i, scheme in enumerate(schemes):
        if only is not None and scheme not in only:
            continue
        style = _style(i)
        series = _error_series(runs, scheme)
        if series:
            _plot_band(ax, *_band(series), scheme, style, index=i)
            errors += [err for points in series for _, err in points if err > 0]
            last_epoch = max(last_epoch, *(epoch for points in series for epoch, _ in points))
        else:
            empty.append((scheme, style))
        for r in runs.values():
            if r["scheme"] != scheme or r.get("status") != "diverged":
                continue
            if r["epochs"]:
                e = r["epochs"][-1]
                marks.append((e["epoch"], 1.0 - e["test_accuracy"], style["color"]))
            else:
                epoch = (r.get("diverged_at") or (1, 0))[0] or 1
                marks.append((epoch, None, style["color"]))
                last_epoch = max(last_epoch, epoch)
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
    _mark_divergences(ax, marks)
    if legend_extras:
        diverged = bool(marks) or any(r.get("status") == "diverged" for r in runs.values())
        _legend_extras(ax, empty, diverged)
    elif empty:
        _legend_extras(ax, empty, False)
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
    for i, scheme in enumerate(schemes):
        stds = [r["activation_std"] for r in runs.values() if r["scheme"] == scheme]
        stds = [s for s in stds if s]
        if not stds:
            ax.plot([], [], label=f"{scheme} (not recorded)", **_style(i))
            continue
        layers = list(stds[0])
        mean = [sum(s[layer] for s in stds) / len(stds) for layer in layers]
        ax.plot(range(len(layers)), mean, label=scheme, **_style(i))
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
    fields = [f for f in asdict(rows[0]) if f != "lr"]
    if any(getattr(r, "lr", None) is not None for r in rows):  # a grid's chosen rate
        fields.insert(1, "lr")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    atomic_write(path, buffer.getvalue())
