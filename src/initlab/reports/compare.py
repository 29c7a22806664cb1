"""The report of ``initlab compare``: ``summary.csv``, ``report.md`` and PNG figures.

:func:`write_report` puts together the parts, each a module of :mod:`initlab.reports`:

- :mod:`~initlab.reports.summary`: one row per scheme from the result lines, the ranking by a
  metric with 95% Welch intervals (:mod:`~initlab.reports.stats`), its sentences, and the
  learning rate chosen per scheme on the validation split;
- :mod:`~initlab.reports.tables`: the text and Markdown table, ``summary.csv``;
- :mod:`~initlab.reports.markdown`: ``report.md``;
- :mod:`~initlab.reports.figures`: the figures, drawn with :mod:`~initlab.reports.plotting`.

The names of those modules are importable from here too, as they were when this module held
them all. Every file is written atomically (:func:`initlab._files.atomic_write`: a temporary
file, then ``os.replace``), so a reader never sees a half-written report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from initlab._files import atomic_write
from initlab.reports.figures import FAR_FACTOR, FIGURES, SEQUENCE_FIGURES, split_far, write_figures
from initlab.reports.figures import _draw_errors as _draw_errors
from initlab.reports.figures import _error_figure as _error_figure
from initlab.reports.figures import _loss_figure as _loss_figure
from initlab.reports.markdown import render_report
from initlab.reports.plotting import band, loss_points
from initlab.reports.summary import (
    METRICS,
    SummaryRow,
    at_chosen_rates,
    choose_rates,
    conclusions,
    config_metric,
    count,
    format_conclusions,
    runs_of,
    summarize,
)
from initlab.reports.tables import format_loss, format_table, write_summary

# the names these had when this module held the figures too
_band, _loss_points = band, loss_points

__all__ = [
    "FAR_FACTOR",
    "FIGURES",
    "METRICS",
    "SEQUENCE_FIGURES",
    "SummaryRow",
    "at_chosen_rates",
    "choose_rates",
    "conclusions",
    "config_metric",
    "count",
    "format_conclusions",
    "format_loss",
    "format_table",
    "split_far",
    "summarize",
    "write_report",
    "write_summary",
]


def write_report(
    out_dir: str | os.PathLike, config, lines: Sequence[dict], *, metric: str | None = None
) -> list[SummaryRow]:
    """Write ``summary.csv``, ``report.md`` and the figures of a comparison into ``out_dir``.

    Args:
        out_dir: the comparison's directory.
        config: its :class:`~initlab.experiments.config.CompareConfig` (read here: ``schemes``,
            ``target_accuracy``, ``lr_grid``, ``train``; ``task`` and ``metric`` where present).
        lines: parsed lines of its ``results.jsonl``.
        metric: what the conclusion ranks by, one of :data:`METRICS` (see
            :func:`~initlab.reports.summary.summarize`); ``None``: the config's
            (:func:`~initlab.reports.summary.config_metric`: accuracy, or bpc for ``char-lm``).

    Returns:
        The summary rows, in the order of ``config.schemes``.

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS`, or the config's ``metric`` is
            not one of "accuracy", "loss", "bpc".
    """
    out = Path(out_dir)
    metric = config_metric(config) if metric is None else metric
    grid = None
    if getattr(config, "lr_grid", None):  # final numbers: the test results at the chosen rates
        grid = choose_rates(lines, config.schemes, config.lr_grid, metric=metric)
        lines = at_chosen_rates(lines, grid[0])
    rows = summarize(lines, config.schemes, config.target_accuracy, metric=metric)
    if grid:
        rows = [replace(r, lr=grid[0][r.scheme]) for r in rows]
    write_summary(out / "summary.csv", rows)
    runs = runs_of(lines)
    write_figures(out, runs, config, bits=metric == "final_bpc")
    atomic_write(out / "report.md", render_report(config, rows, runs, grid=grid))
    return rows
