"""The numbers of a comparison: one row per scheme, the ranking by a metric, its sentences.

Definitions used in every table (accuracies are fractions, shown as percent; losses are the
test cross-entropy in nats, mean over every target element, per token for a language model):

- final accuracy / final loss: the test value after the last epoch of each *finished* run,
  mean and sample standard deviation (ddof=1; undefined for a single run: "n/a" in the table,
  empty in ``summary.csv``) over seeds; diverged runs are excluded;
- best accuracy / best loss: the highest accuracy (lowest loss) of any epoch of any run of the
  scheme, the finite epochs of diverged runs included;
- loss after epoch 1: mean training loss of epoch 1, averaged over the runs that finished it;
- epochs to target: the first epoch whose test accuracy reaches the target, averaged over the
  runs that reached it, shown with how many did (``2.0 (3/3)``);
- diverged: diverged runs out of all runs, with the optimizer step (counted from the start of
  training, 1-based) of each run's first non-finite training loss.

Metrics (:data:`METRICS`) that rank the schemes: ``final_accuracy`` (the default; higher is
better, differences in percentage points), ``best_accuracy``, ``final_loss`` (lower is better,
nats) and ``final_bpc``: bits per character, the test cross-entropy in nats divided by ln 2
(A. Graves, "Generating Sequences With Recurrent Neural Networks", arXiv:1308.0850, 2013,
section 3.1), lower is better. :func:`config_metric` reads a comparison's choice from its config
(``metric`` "accuracy", "loss" or "bpc"; ``None``: bpc for the ``char-lm`` task, else accuracy).

The conclusion (:func:`summarize`, :func:`conclusions`): schemes ranked by the metric's mean,
the best named, and every other scheme's difference to it with a 95% Welch t interval over
seeds (:mod:`initlab.reports.stats`; Welch 1947).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from initlab._checks import ArgumentError
from initlab.reports.stats import welch_interval

__all__ = [
    "CONFIG_METRICS",
    "METRICS",
    "Metric",
    "SummaryRow",
    "at_chosen_rates",
    "choose_rates",
    "conclusions",
    "config_metric",
    "count",
    "format_conclusions",
    "summarize",
]

# ln 2 turns nats into bits: bits per character = cross-entropy in nats / ln 2 (Graves 2013).
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Metric:
    """How a ranking metric reads and is written.

    Attributes:
        key: its name in :data:`METRICS` and in ``summary.csv``'s ``metric`` column.
        name: its words in sentences and headings (``"final accuracy"``).
        higher_is_better: the direction of the ranking.
        unit: the unit differences are written in (``"points"``: percentage points).
        scale: factor from the stored value to the written one (100: a fraction in percent).
        decimals: digits written after the point.
    """

    key: str
    name: str
    higher_is_better: bool
    unit: str
    scale: float
    decimals: int

    @property
    def is_accuracy(self) -> bool:
        """Whether the metric is an accuracy (a fraction, written in percent)."""
        return self.unit == "points"

    def amount(self, value: float) -> str:
        """A mean as written in sentences: ``97.52%``, ``1.234 nats``, ``1.532 bits per ...``."""
        if self.is_accuracy:
            return f"{self.scale * value:.{self.decimals}f}%"
        return f"{self.scale * value:.{self.decimals}f} {self.unit}"

    def number(self, value: float, sign: str = "") -> str:
        """``value`` in the written unit, no unit: ``97.52`` (``sign="+"``: ``+0.12``)."""
        return f"{self.scale * value:{sign}.{self.decimals}f}"


METRICS = {
    "final_accuracy": Metric("final_accuracy", "final accuracy", True, "points", 100.0, 2),
    "best_accuracy": Metric("best_accuracy", "best accuracy", True, "points", 100.0, 2),
    "final_loss": Metric("final_loss", "final loss", False, "nats", 1.0, 3),
    "final_bpc": Metric("final_bpc", "final bpc", False, "bits per character", 1.0, 3),
}

# A comparison config's ``metric`` -> the key of :data:`METRICS` it ranks by.
CONFIG_METRICS = {"accuracy": "final_accuracy", "loss": "final_loss", "bpc": "final_bpc"}


def config_metric(config) -> str:
    """Return the :data:`METRICS` key a comparison ranks by, from its config.

    Reads ``config.metric`` (``"accuracy"``, ``"loss"``, ``"bpc"``; ``None`` or absent: the
    task's default, bpc for ``config.task == "char-lm"``, else accuracy).

    Raises:
        ArgumentError: ``config.metric`` is not one of :data:`CONFIG_METRICS`.
    """
    metric = getattr(config, "metric", None)
    if metric is None:
        metric = "bpc" if getattr(config, "task", "image") == "char-lm" else "accuracy"
    if metric not in CONFIG_METRICS:
        raise ArgumentError(
            "metric", f"metric must be one of {', '.join(CONFIG_METRICS)}, got {metric!r}"
        )
    return CONFIG_METRICS[metric]


def _metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise ArgumentError("metric", f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return METRICS[metric]


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
    # mean over its runs; the difference to the best scheme and its 95% Welch interval (in the
    # metric's stored unit: fractions for accuracies, nats for the loss, bits for bpc; the
    # best's own are 0); verdict: "best", "indistinguishable", "worse", "no interval" (a single
    # run on one side) or "no result"
    rank: int | None = None
    metric_runs: int = 0
    metric_mean: float | None = None
    diff_to_best: float | None = None
    diff_ci95_low: float | None = None
    diff_ci95_high: float | None = None
    verdict: str = "no result"
    # the scheme's learning rate chosen on the validation split (a grid's sweep; else None)
    lr: float | None = None
    # final and best test loss (cross-entropy, nats), defined like the accuracies
    final_loss_mean: float | None = None
    final_loss_std: float | None = None
    best_loss: float | None = None
    # the optimizer step (1-based, from the start of training) of each diverged run's first
    # non-finite loss, in run order; None where it cannot be told (no epoch length recorded)
    diverged_steps: tuple[int | None, ...] = ()
    # the key of METRICS the rows are ranked by
    metric: str = "final_accuracy"


def choose_rates(
    lines: Sequence[dict],
    schemes: Sequence[str],
    rates: Sequence[float],
    *,
    metric: str = "final_accuracy",
) -> tuple[dict[str, float], dict[str, dict[float, float | None]]]:
    """Choose each scheme's learning rate of a grid on the validation split.

    Rule: for each scheme and rate, the mean over seeds of the validation value after the final
    epoch (of each run's last epoch line): ``val_accuracy`` for the accuracy metrics (a run that
    diverged or did not finish counts as 0), ``val_loss`` for ``final_loss`` and ``val_loss /
    ln 2`` for ``final_bpc`` (such a run counts as infinite), so a rate that blows up a seed is
    not chosen for its other seeds. The chosen rate has the best mean (highest accuracy, lowest
    loss); ties go to the rate listed first in the grid. The test set plays no part.

    Args:
        lines: parsed lines of ``results.jsonl`` (each run's lines carry its ``lr``).
        schemes: the schemes.
        rates: the grid, in the order given.
        metric: a key of :data:`METRICS`.

    Returns:
        ``(chosen, means)``: the chosen rate per scheme, and per scheme and rate the mean
        validation value (a fraction, nats or bits; ``None`` where the rate has no run).

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS`.
    """
    kind = _metric(metric)
    runs = runs_of(lines)
    chosen: dict[str, float] = {}
    means: dict[str, dict[float, float | None]] = {}
    for scheme in schemes:
        means[scheme] = {}
        for lr in rates:
            own = [r for r in runs.values() if r["scheme"] == scheme and r.get("lr") == lr]
            means[scheme][lr] = _mean([_validation_value(r, kind) for r in own])
        scored = [lr for lr in rates if means[scheme][lr] is not None]
        sign = -1.0 if kind.higher_is_better else 1.0  # min of -accuracy: the first best
        best = min(scored, key=lambda lr: sign * means[scheme][lr]) if scored else rates[0]
        chosen[scheme] = best
    return chosen, means


def _validation_value(run: dict, metric: Metric) -> float:
    """One run's final validation value; a run without one counts as the worst value."""
    done = run["status"] == "finished" and run["epochs"]
    if metric.is_accuracy:
        return run["epochs"][-1].get("val_accuracy") or 0.0 if done else 0.0
    loss = run["epochs"][-1].get("val_loss") if done else None
    if loss is None:
        return math.inf
    return loss / LN2 if metric.key == "final_bpc" else loss


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
    its mean over runs (higher is better for accuracies, lower for losses; ties keep the order
    of ``schemes``), and every other scheme's difference to the best gets a 95% Welch t
    interval over seeds (:func:`initlab.reports.stats.welch_interval`; Welch 1947). Its
    verdict is ``"indistinguishable"`` when the interval contains 0, ``"worse"`` when it
    excludes 0, ``"no interval"`` when either side has a single run (no variance estimate).

    Args:
        lines: parsed lines of ``results.jsonl``.
        schemes: schemes in table order.
        target: target test accuracy as a fraction.
        metric: what to rank by, one of :data:`METRICS`: ``"final_accuracy"`` (test accuracy
            after the last epoch of each finished run), ``"best_accuracy"`` (each run's
            highest test accuracy of any epoch, diverged runs included), ``"final_loss"`` (test
            loss in nats after the last epoch of each finished run) or ``"final_bpc"`` (that
            loss in bits per character, divided by ln 2).

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS`.
    """
    kind = _metric(metric)
    runs = runs_of(lines)
    rows = [
        replace(
            _summarize_scheme(s, [r for r in runs.values() if r["scheme"] == s], target),
            metric=metric,
        )
        for s in schemes
    ]
    samples = {
        s: _metric_values([r for r in runs.values() if r["scheme"] == s], metric) for s in schemes
    }
    return _conclude(rows, samples, kind)


def _metric_values(runs: list[dict], metric: str) -> list[float]:
    """One value of ``metric`` per run that has one (a fraction, nats or bits)."""
    if metric == "best_accuracy":
        return [max(e["test_accuracy"] for e in r["epochs"]) for r in runs if r["epochs"]]
    finished = [r["epochs"][-1] for r in runs if r["status"] == "finished" and r["epochs"]]
    if metric == "final_accuracy":
        return [e["test_accuracy"] for e in finished]
    losses = [e["test_loss"] for e in finished if e.get("test_loss") is not None]
    return [v / LN2 for v in losses] if metric == "final_bpc" else losses


def _conclude(
    rows: list[SummaryRow], samples: dict[str, list[float]], metric: Metric
) -> list[SummaryRow]:
    """Fill each row's rank, difference to the best, Welch interval and verdict."""
    means = {s: sum(v) / len(v) for s, v in samples.items() if v}
    sign = -1.0 if metric.higher_is_better else 1.0
    order = sorted(means, key=lambda s: sign * means[s])  # stable: ties keep the given order
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


def _rows_metric(rows: Sequence[SummaryRow], metric: str | None) -> Metric:
    if metric is None:
        metric = rows[0].metric if rows else "final_accuracy"
    return _metric(metric)


def conclusions(rows: Sequence[SummaryRow], metric: str | None = None) -> list[str]:
    """Return the conclusion as plain sentences, best scheme first, then by rank.

    Differences are in the metric's unit (percentage points for accuracies, nats for the loss,
    bits per character for bpc), with the 95% Welch interval's half width (see
    :func:`summarize`); for example ``"xavier_uniform and kaiming_uniform are indistinguishable
    at 3 seeds (difference 0.09 ± 0.31 points, 95% Welch interval)"``, ``"kaiming_uniform is
    better than zeros by 87.12 ± 0.40 points (95% Welch interval, 3 seeds)"`` or ``"gpt2 and
    small_init are indistinguishable at 3 seeds (difference 0.012 ± 0.020 bits per character,
    95% Welch interval)"``. A scheme without a value of the metric (every run diverged) is
    named last.

    Args:
        rows: the rows of :func:`summarize` (any order).
        metric: the metric they were ranked by; ``None``: the rows' own ``metric``.

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS`.
    """
    kind = _rows_metric(rows, metric)
    ranked = sorted((r for r in rows if r.rank is not None), key=lambda r: r.rank)
    if not ranked:
        return ["No scheme has a result to rank: every run diverged or none ran."]
    best = ranked[0]
    unit = kind.unit
    sentences = [
        f"{best.scheme} is best: {kind.name} {kind.amount(best.metric_mean)}"
        f" (mean of {count(best.metric_runs, 'run')})."
    ]
    sign = -1.0 if kind.higher_is_better else 1.0
    for r in ranked[1:]:
        gap = kind.number(sign * r.diff_to_best)
        seeds = _seeds(r.metric_runs, best.metric_runs)
        if r.verdict == "no interval":
            sentences.append(
                f"{best.scheme} is ahead of {r.scheme} by {gap} {unit} at {seeds}: no"
                " interval with a single seed on one side, so whether the difference is real"
                " cannot be told (run more seeds)."
            )
            continue
        half_width = r.diff_ci95_high - r.diff_to_best
        half = kind.number(half_width)
        still = "; no spread over seeds" if kind.scale * half_width == 0.0 else ""
        if r.verdict == "indistinguishable":
            sentences.append(
                f"{r.scheme} and {best.scheme} are indistinguishable at {seeds}"
                f" (difference {gap} ± {half} {unit}, 95% Welch interval{still})."
            )
        else:
            sentences.append(
                f"{best.scheme} is better than {r.scheme} by {gap} ± {half} {unit}"
                f" (95% Welch interval, {seeds}{still})."
            )
    for r in rows:
        if r.rank is None:
            sentences.append(
                f"{r.scheme} has no {kind.name} ({r.diverged}/{r.runs} runs diverged): not ranked."
            )
    return sentences


def format_conclusions(rows: Sequence[SummaryRow], metric: str | None = None) -> str:
    """Return :func:`conclusions` as lines under a heading, for the terminal after the table."""
    kind = _rows_metric(rows, metric)
    lines = "\n".join(f"- {s}" for s in conclusions(rows, kind.key))
    return f"Conclusion (ranked by {kind.name} on the test set):\n{lines}"


def runs_of(lines: Sequence[dict]) -> dict[str, dict]:
    """Group ``results.jsonl`` lines by run id: scheme, lr, epoch lines, status, init record.

    A diverged run also gets ``diverged_at`` (its status line's epoch and 1-based step within
    that epoch) and ``diverged_step`` (the step counted from the start of training: the steps
    of its epochs before that one, else the sweep's epoch length times the epochs before, plus
    the step; ``None`` when no epoch length is recorded and the epoch is not the first).
    """
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
    epoch_steps = next(
        (line["steps"] for line in lines if line["type"] == "epoch" and "steps" in line), None
    )
    for run in runs.values():
        if "diverged_at" in run:
            run["diverged_step"] = _diverged_step(run, epoch_steps)
    return runs


def _diverged_step(run: dict, epoch_steps: int | None) -> int | None:
    epoch, step = run["diverged_at"]
    if step is None:
        return None
    epoch = epoch or 1
    before = [e["steps"] for e in run["epochs"] if e["epoch"] < epoch and "steps" in e]
    if len(before) == epoch - 1:
        return sum(before) + step
    return None if epoch_steps is None else epoch_steps * (epoch - 1) + step


def _summarize_scheme(scheme: str, runs: list[dict], target: float) -> SummaryRow:
    done = [r["epochs"][-1] for r in runs if r["status"] == "finished" and r["epochs"]]
    finals = [e["test_accuracy"] for e in done]
    accuracies = [e["test_accuracy"] for r in runs for e in r["epochs"]]
    first_losses = [r["epochs"][0]["train_loss"] for r in runs if r["epochs"]]
    reached = [
        next(e["epoch"] for e in r["epochs"] if e["test_accuracy"] >= target)
        for r in runs
        if any(e["test_accuracy"] >= target for e in r["epochs"])
    ]
    final_losses = [e["test_loss"] for e in done if e.get("test_loss") is not None]
    losses = [e["test_loss"] for r in runs for e in r["epochs"] if e.get("test_loss") is not None]
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
        final_loss_mean=_mean(final_losses),
        final_loss_std=_std(final_losses),
        best_loss=min(losses) if losses else None,
        diverged_steps=tuple(r["diverged_step"] for r in runs if r["status"] == "diverged"),
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


def count(n: int, noun: str) -> str:
    """Return ``n`` and ``noun``, singular for 1, else plural: ``"1 run"``, ``"2 runs"``.

    Example:
        >>> count(1, "epoch"), count(3, "seed")
        ('1 epoch', '3 seeds')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
