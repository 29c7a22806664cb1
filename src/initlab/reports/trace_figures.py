"""The figures of a sequence model's trace, and a language model's test bits per character.

The trainers record a trace for sequence models (recurrent layers or attention; see
:mod:`initlab.experiments.core`): ``trace`` in each epoch line of ``results.jsonl``. Files:

- ``grad_norms_first_steps.png``: small multiples, one panel per parameter tensor other than
  a bias (at most :data:`~initlab.reports.figures.MAX_PANELS`, evenly spaced in model order):
  its gradient's L2 norm at each of the first optimizer steps (``grad_steps``,
  ``grad_norms``), log y;
- ``logit_scales.png``: against the optimizer step, on a fixed probe batch: the largest
  attention logit ``max |q k^T / sqrt(d_head)|`` (transformers only), the root mean square and
  the largest absolute value of the output logits (``logit_steps``, ``attn_logit_max``,
  ``logit_rms``, ``logit_max``), log y;
- ``test_bpc.png`` (language models, in place of ``test_error.png``): test bits per character
  after each epoch, the test cross-entropy in nats over ln 2 (Graves 2013, sec. 3).

Each is drawn per scheme as the other figures are (:mod:`initlab.reports.plotting`: mean over
seeds, min..max band). A comparison without a trace (an image model, results written before
traces existed) still gets the files, with a note that nothing was recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from initlab.reports.plotting import (
    band,
    finish,
    plain_log_ticks,
    plot_band,
    save_png,
    scheme_style,
)
from initlab.reports.summary import LN2

__all__ = ["LOGIT_PANELS", "draw_first_steps", "draw_logit_scales", "draw_test_bpc"]

#: The panels of ``logit_scales.png``: trace key -> axis label.
LOGIT_PANELS = {
    "attn_logit_max": "largest attention logit\nmax |q k^T / sqrt(d_head)|",
    "logit_rms": "output logit RMS\nsqrt(mean z^2)",
    "logit_max": "largest output logit\nmax |z|",
}

Series = list[list[tuple[float, float]]]


def _trace_series(runs: dict, scheme: str, steps: str, values: Callable[[dict], list]) -> Series:
    """Each run of ``scheme``: its ``(step, value)`` points over all epochs' traces."""
    series = []
    for r in runs.values():
        if r["scheme"] != scheme:
            continue
        points = []
        for e in r["epochs"]:
            trace = e.get("trace") or {}
            ys = values(trace)
            if steps in trace and ys is not None:
                points += [
                    (s, y)
                    for s, y in zip(trace[steps], ys, strict=True)
                    if y is not None and math.isfinite(y)
                ]
        if points:
            series.append(points)
    return series


def _draw_schemes(ax, runs: dict, schemes: Sequence[str], steps: str, values, handles) -> bool:
    """Draw every scheme's band on ``ax``; return whether anything was drawn."""
    drawn = False
    for i, scheme in enumerate(schemes):
        series = _trace_series(runs, scheme, steps, values)
        if not series:
            continue
        line = plot_band(ax, *band(series), scheme, scheme_style(i), index=i)
        handles.setdefault(scheme, line)
        drawn = True
    return drawn


def scheme_legend(fig: Figure, schemes: Sequence[str], handles: dict) -> None:
    """One figure legend outside on the right: a handle per scheme, in ``schemes``' order."""
    order = [s for s in schemes if s in handles]
    if order:
        fig.legend(
            [handles[s] for s in order],
            order,
            loc="outside right upper",
            fontsize="small",
            title="scheme",
        )


def _log_y(ax) -> None:
    """A log y axis labelled in plain numbers, minor ticks too when it spans under a decade."""
    ax.set_yscale("log", nonpositive="mask")  # an exactly zero value is not drawn
    plain_log_ticks(ax.yaxis)
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10:  # 1, 2, 5 would leave one label or none
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.tick_params(axis="y", which="minor", labelsize="xx-small")


def _nothing(ax, what: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, what, ha="center", va="center")


def draw_first_steps(
    path: Path, runs: dict, schemes: Sequence[str], pick: Callable[[list[str]], list[str]]
) -> Figure:
    """Draw and save ``grad_norms_first_steps.png``; return the figure (tests read it).

    ``pick`` chooses the panels from the parameter names (the per-epoch figure's choice).
    """
    names: list[str] = []  # model order: the order of the first trace's grad_norms
    for r in runs.values():
        for e in r["epochs"]:
            names += [n for n in (e.get("trace") or {}).get("grad_norms", {}) if n not in names]
    # per layer: its weights (biases, recorded too, are left out of the figure)
    names = [n for n in names if not n.endswith("bias")]
    shown = pick(names)
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    fig = Figure(figsize=(3.4 * columns + 2.2, 2.5 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    handles: dict = {}
    for ax, name in zip(axes, shown, strict=False):
        norms = lambda t, n=name: t.get("grad_norms", {}).get(n)  # noqa: E731
        _draw_schemes(ax, runs, schemes, "grad_steps", norms, handles)
        _log_y(ax)
        ax.set_title(name, fontsize="small")
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize="x-small")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    for ax in axes[max(0, len(shown) - columns) : len(shown)]:
        ax.set_xlabel("optimizer step", fontsize="small")
    if not shown:
        _nothing(axes[0], "no per-step gradient norms recorded (sequence models only)")
    scheme_legend(fig, schemes, handles)
    which = "" if len(shown) == len(names) else f" ({len(shown)} of {len(names)}, evenly spaced)"
    fig.suptitle(
        f"Gradient L2 norm per parameter{which} at each of the first optimizer steps\n"
        "(log scale; line: mean over seeds, band: min..max; a zero norm is not drawn)",
        fontsize="medium",
    )
    save_png(fig, path)
    return fig


def draw_logit_scales(path: Path, runs: dict, schemes: Sequence[str]) -> Figure:
    """Draw and save ``logit_scales.png``, one panel per recorded scale; return the figure."""
    keys = [
        k
        for k in LOGIT_PANELS
        if any(k in (e.get("trace") or {}) for r in runs.values() for e in r["epochs"])
    ]
    fig = Figure(figsize=(4.2 * max(1, len(keys)) + 2.2, 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False).ravel()
    handles: dict = {}
    for ax, key in zip(axes, keys, strict=False):
        _draw_schemes(ax, runs, schemes, "logit_steps", lambda t, k=key: t.get(k), handles)
        _log_y(ax)
        ax.set_ylabel(LOGIT_PANELS[key], fontsize="small")
        ax.set_xlabel("optimizer step (0: at initialization)", fontsize="small")
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize="x-small")
    if not keys:
        _nothing(axes[0], "no logit scales recorded (sequence models only)")
    scheme_legend(fig, schemes, handles)
    fig.suptitle(
        "Logit scales on a fixed probe batch (the first training examples) during training\n"
        "(log scale; line: mean over seeds, band: min..max)",
        fontsize="medium",
    )
    save_png(fig, path)
    return fig


def draw_test_bpc(path: Path, runs: dict, schemes: Sequence[str]) -> Figure:
    """Draw and save ``test_bpc.png``: test bits per character after each epoch."""
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    last = 1
    for i, scheme in enumerate(schemes):
        series = [
            [(e["epoch"], e["test_loss"] / LN2) for e in r["epochs"] if "test_loss" in e]
            for r in runs.values()
            if r["scheme"] == scheme and r["epochs"]
        ]
        series = [s for s in series if s]
        if not series:
            continue
        plot_band(ax, *band(series), scheme, scheme_style(i), index=i)
        last = max(last, *(epoch for s in series for epoch, _ in s))
    if last <= 20:
        ax.set_xticks(range(1, last + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, last + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test bits per character (nats / ln 2)")
    ax.set_title(
        "Test bits per character after each epoch (line: mean over seeds, band: min..max)",
        fontsize="medium",
    )
    finish(ax, path)
    return fig
