"""``report.md`` of a comparison: settings, the table, the conclusion, figures and notes.

Sections, in order: the settings; the table (:func:`initlab.reports.tables.format_table`); the
conclusion (sentences and a ranking table with each difference's 95% Welch interval); how the
numbers and curves are made; the figures; then, where they apply, the learning rate chosen per
scheme (a grid's sweep), the diverged runs (each with its step; excluded from the final means),
and the diagnosis at initialization.
"""

from __future__ import annotations

from collections.abc import Sequence

from initlab.reports.figures import report_figures
from initlab.reports.summary import METRICS, Metric, SummaryRow, conclusions, count
from initlab.reports.tables import diverged_steps_words, format_table

__all__ = ["render_report"]

# the unit of the conclusion's differences, in words
_UNIT_WORDS = {
    "points": "percentage points",
    "nats": "nats (the test cross-entropy, natural logarithm)",
    "bits per character": (
        "bits per character (the test cross-entropy in nats divided by ln 2; Graves 2013)"
    ),
}


def render_report(
    config,
    rows: Sequence[SummaryRow],
    runs: dict,
    *,
    grid: tuple[dict, dict] | None = None,
) -> str:
    """Return the text of ``report.md``.

    Args:
        config: the comparison's config (its settings are written; ``task`` other than
            ``"image"`` also lists :data:`~initlab.reports.figures.SEQUENCE_FIGURES`).
        rows: the rows of :func:`~initlab.reports.summary.summarize`, in table order; their
            ``metric`` is the conclusion's.
        runs: the runs of :func:`~initlab.reports.summary.runs_of` (verdicts at init).
        grid: ``(chosen, means)`` of :func:`~initlab.reports.summary.choose_rates` for a
            learning-rate grid's sweep, else ``None``.
    """
    metric = rows[0].metric if rows else "final_accuracy"
    section = _grid_section(config, *grid, METRICS[metric]) if grid else ""
    return (
        _markdown(config, rows, metric)
        + section
        + _diverged(rows, METRICS[metric])
        + _verdicts(runs, config.schemes)
    )


def _grid_section(config, chosen: dict[str, float], means: dict, metric: Metric) -> str:
    """``report.md``'s account of the learning-rate choice: the rule and every mean."""
    rates = list(config.lr_grid)
    head = "| scheme | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | chosen |"
    table = [head, "|" + "---|" * (len(rates) + 2)]
    for scheme in config.schemes:
        cells = [_validation_cell(means[scheme][lr], metric) for lr in rates]
        table.append(f"| {scheme} | " + " | ".join(cells) + f" | {chosen[scheme]:g} |")
    if metric.is_accuracy:
        rule = "the highest mean validation accuracy"
        worst, what = "0", "Mean validation accuracy"
    else:
        unit = "bits per character" if metric.key == "final_bpc" else "nats"
        rule = f"the lowest mean validation loss (in {unit})"
        worst, what = "infinite", f"Mean validation loss ({unit})"
    if getattr(config, "task", "image") == "char-lm":  # the corpus's split is fixed, unseeded
        where = (
            "the corpus's training part; the rate is chosen on its fixed validation part (the "
            "5% of the text after the training part)"
        )
    else:
        where = (
            "the training data less a validation split of "
            f"{100 * config.val_fraction:g}% (seeded with the first seed)"
        )
    return (
        "\n## Learning rate per scheme\n\n"
        f"Each scheme trained at every rate of the grid on {where}. Its rate is the "
        f"one with {rule} over seeds after the final epoch (a "
        f"diverged run counts as {worst}; ties go to the rate listed first); the test set plays "
        "no part in the choice, and the numbers above are the test results of the runs at the "
        f"chosen rate. {what}:\n\n" + "\n".join(table) + "\n"
    )


def _validation_cell(mean: float | None, metric: Metric) -> str:
    if mean is None:
        return "-"
    if metric.is_accuracy:
        return f"{100 * mean:.2f}%"
    return "diverged" if mean == float("inf") else f"{mean:.{metric.decimals}f}"


def _ranking(rows: Sequence[SummaryRow], metric: Metric) -> str:
    """The conclusion of ``report.md``: sentences, then the schemes sorted by ``metric``."""
    table = [
        f"| rank | scheme | {metric.name} (mean) | difference to best, 95% interval | verdict |"
    ]
    table.append("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.rank is None, r.rank or 0)):
        if r.rank is None:
            table.append(f"| - | {r.scheme} | - | - | {r.verdict} |")
            continue
        diff = f"{metric.number(r.diff_to_best, '+')} {metric.unit}"
        if r.diff_ci95_low is not None and r.verdict != "best":
            low, high = metric.number(r.diff_ci95_low, "+"), metric.number(r.diff_ci95_high, "+")
            diff += f" [{low}, {high}]"
        elif r.verdict == "no interval":
            diff += " (no interval: 1 seed)"
        mean = metric.amount(r.metric_mean) if metric.is_accuracy else metric.number(r.metric_mean)
        table.append(f"| {r.rank} | {r.scheme} | {mean} | {diff} | {r.verdict} |")
    sentences = "\n".join(f"- {s}" for s in conclusions(rows, metric.key))
    better = "higher" if metric.higher_is_better else "lower"
    return (
        f"## Conclusion\n\nRanked by {metric.name} on the test set, {better} is better. Each "
        "difference to the best scheme comes with a 95% Welch t interval over seeds "
        "(unequal variances, Welch–Satterthwaite degrees of freedom; Welch 1947): an "
        "interval that contains 0 means the difference does not exceed seed noise at this "
        f"many seeds. Differences are in {_UNIT_WORDS[metric.unit]}.\n\n"
        f"{sentences}\n\n" + "\n".join(table) + "\n\n"
    )


def _markdown(config, rows: Sequence[SummaryRow], metric: str = "final_accuracy") -> str:
    t = config.train
    settings = (
        f"model `{config.model}` {config.model_params or '(defaults)'}, {_data_words(config)},"
        f" {t.optimizer} {_lr_words(config)} weight decay {t.weight_decay:g},"
        f" batch {t.batch_size},"
        f" {count(t.epochs, 'epoch')}, {count(config.seeds, 'seed')} from {config.first_seed},"
        f" bias init {config.bias_init or 'scheme default'}, device {t.device}"
    )
    task = getattr(config, "task", "image")
    if task != "image":
        settings = f"task `{task}`, {settings}"
    figures = "\n".join(f"![{name}]({file})" for name, file in report_figures(config).items())
    final = {
        "final_loss": "The final loss",
        "final_bpc": "The final bpc (test cross-entropy in nats / ln 2)",
    }.get(metric, "Final accuracy")
    return (
        "# Comparison of initialization schemes\n\n"
        f"Settings: {settings}.\n\n"
        f"{format_table(rows, config.target_accuracy, markdown=True)}\n\n"
        f"{_ranking(rows, METRICS[metric])}"
        f"{final} excludes diverged runs; std is over seeds (ddof=1). Bands in the curves "
        "span min to max over seeds; the line is the mean. The training loss is the mean over "
        f"windows of {_window_words(t)} (`loss_curve` in `results.jsonl`); "
        f"{_test_words(config)}{_trace_words(task)}\n\n"
        f"{figures}\n"
    )


def _test_words(config) -> str:
    if getattr(config, "task", "image") == "char-lm":
        return (
            "the test curve is in bits per character (test cross-entropy in nats / ln 2) after "
            "each epoch; the training loss is on a log axis."
        )
    return "test error is 1 - accuracy, both on log axes."


def _trace_words(task: str) -> str:
    """How a sequence model's trace figures are made (none for the image task)."""
    if task == "image":
        return ""
    return (
        " A sequence model's trace (`trace` in `results.jsonl`'s epoch lines): every "
        "parameter's gradient L2 norm at each of the first 50 optimizer steps, and, every 10 "
        "steps and at step 0, on a fixed probe batch (the first 8 training examples), the "
        "largest attention logit max |q k^T / sqrt(d_head)| over layers, heads and attended "
        "positions (transformers), and the root mean square and largest absolute value of the "
        "output logits."
    )


def _data_words(config) -> str:
    """The data of the settings line: a dataset and its subsets, or a language model's corpus."""
    if getattr(config, "task", "image") == "char-lm":  # windows of a text, not a dataset
        text = getattr(config, "text_file", None)
        corpus = f"`{text}`" if text else "the embedded Shakespeare"
        length = getattr(config, "seq_len", None) or (config.model_params or {}).get("seq_len")
        windows = f"{length} characters" if length else "the task's default length"
        return f"corpus {corpus} in windows of {windows}"
    return (
        f"dataset `{config.dataset}`"
        f" (train subset {config.train_subset or 'all'},"
        f" test subset {config.test_subset or 'all'})"
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


def _diverged(rows: Sequence[SummaryRow], metric: Metric) -> str:
    """The diverged runs per scheme, with their steps, and what they leave out."""
    lines = []
    for r in rows:
        if not r.diverged:
            continue
        at = diverged_steps_words(r.diverged_steps)
        lines.append(f"- `{r.scheme}`: {r.diverged} of {count(r.runs, 'run')} diverged{at}.")
    if not lines:
        return ""
    final = "accuracy" if metric.is_accuracy else "loss"
    ranking = "" if metric.key == "best_accuracy" else f" and of the ranking by {metric.name}"
    return (
        "\n## Diverged runs\n\n"
        "A run diverges at its first non-finite training loss; its step counts optimizer steps "
        f"from the start of training. A diverged run is left out of the final {final}'s mean "
        f"and std{ranking}; its epochs before the divergence still "
        "count in the best values, the loss after epoch 1 and the curves, where an x marks "
        "its last finite point.\n\n" + "\n".join(lines) + "\n"
    )


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
