"""The figures of a comparison (drawn with :mod:`initlab.reports.plotting`: per scheme the mean
over seeds, a min..max band, its own style, an ``x`` at each diverged run's last point). Files:

- ``train_loss.png``: training loss against the optimizer step, log y, from the epoch lines'
  ``loss_curve`` windows (an epoch line without one, written before curves existed or with
  ``log_every=0``, counts as one window: its epoch mean at its last step);
- ``test_error.png``: test error ``1 - accuracy`` after each epoch, log y, so that 2.4% and
  2.6% separate while chance-level schemes (90%) stay on the same axes; schemes far above the
  others get their own panel (:func:`split_far`);
- ``activation_std_at_init.png``: per-layer activation std at initialization;
- ``train_loss_log_step.png``: the training loss windows against the optimizer step on a log x
  axis, which spreads the first steps, where schemes differ most (in bits per character,
  nats / ln 2, when the comparison ranks by bpc; Graves 2013);
- ``grad_norms.png``: small multiples, one panel per parameter tensor (at most
  :data:`MAX_PANELS`, evenly spaced in model order): the mean L2 norm of its gradient over the
  steps of each epoch (``grad_norms`` of the epoch lines; the first point is the first epoch),
  log y;
- ``grad_norms_first_steps.png`` and ``logit_scales.png``: a sequence model's trace, the
  gradient norms at each of the first steps and the attention and output logit scales against
  the step (:mod:`initlab.reports.trace_figures`);
- ``test_bpc.png``, for a language model (task ``char-lm``) in place of ``test_error.png``
  (1 - next-character accuracy says little about a language model): test bits per character
  after each epoch.

The others are written for every task; ``report.md`` shows :func:`report_figures`:
:data:`FIGURES` and, for a task other than ``image``, :data:`SEQUENCE_FIGURES` too, with a
language model's test figure in bits per character. Files are written atomically
(:func:`initlab._files.atomic_write`), so a reader never sees a half-written figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from initlab.reports.plotting import (
    DIVERGED_MARKER,
    band,
    finish,
    legend_extras,
    loss_points,
    mark_divergences,
    percent_log_ticks,
    plain_log_ticks,
    plot_band,
    save_png,
    scheme_style,
)
from initlab.reports.summary import LN2
from initlab.reports.trace_figures import (
    draw_first_steps,
    draw_logit_scales,
    draw_test_bpc,
    scheme_legend,
)

__all__ = [
    "DIVERGED_MARKER",
    "FAR_FACTOR",
    "FIGURES",
    "LM_TEST_FIGURE",
    "MAX_PANELS",
    "SEQUENCE_FIGURES",
    "report_figures",
    "split_far",
    "write_figures",
]

# report.md's figures: name -> file
FIGURES = {
    "training loss against step": "train_loss.png",
    "test error per epoch": "test_error.png",
    "activations": "activation_std_at_init.png",
}
SEQUENCE_FIGURES = {
    "training loss against step, log step axis": "train_loss_log_step.png",
    "gradient norm per parameter and epoch": "grad_norms.png",
    "gradient norm per parameter over the first steps": "grad_norms_first_steps.png",
    "largest attention logit and output logit scale against step": "logit_scales.png",
}
# a language model's test figure, in place of FIGURES' test error
LM_TEST_FIGURE = {"test bits per character per epoch": "test_bpc.png"}


def _language_model(config) -> bool:
    """Whether the comparison trains a language model (task ``char-lm``)."""
    return getattr(config, "task", "image") == "char-lm"


def report_figures(config) -> dict[str, str]:
    """The figures ``report.md`` shows for ``config``, name -> file, in order.

    :data:`FIGURES`; for a task other than ``image`` :data:`SEQUENCE_FIGURES` too; for a
    language model :data:`LM_TEST_FIGURE` in place of the test error.
    """
    task = getattr(config, "task", "image")
    shown = dict(FIGURES) if task == "image" else {**FIGURES, **SEQUENCE_FIGURES}
    if not _language_model(config):
        return shown
    (test,) = LM_TEST_FIGURE.items()  # in the test error's place
    return dict(test if k == "test error per epoch" else (k, v) for k, v in shown.items())


def write_figures(out: Path, runs: dict, config, *, bits: bool = False) -> None:
    """Write every figure of :data:`FIGURES` and :data:`SEQUENCE_FIGURES` into ``out``.

    A language model (task ``char-lm``) gets ``test_bpc.png`` instead of ``test_error.png``.

    Args:
        out: the comparison's directory.
        runs: the runs of :func:`initlab.reports.summary.runs_of`.
        config: the comparison's config (its ``schemes``, ``train.batch_size``,
            ``train.window``).
        bits: draw the log-step training curve in bits per character (nats / ln 2).
    """
    _loss_figure(out / FIGURES["training loss against step"], runs, config)
    if _language_model(config):
        draw_test_bpc(
            out / LM_TEST_FIGURE["test bits per character per epoch"], runs, config.schemes
        )
    else:
        _error_figure(out / FIGURES["test error per epoch"], runs, config.schemes)
    _activation_figure(out / FIGURES["activations"], runs, config.schemes)
    name = "training loss against step, log step axis"
    _loss_figure(out / SEQUENCE_FIGURES[name], runs, config, log_step=True, bits=bits)
    _grad_norm_figure(out / SEQUENCE_FIGURES["gradient norm per parameter and epoch"], runs, config)
    first = SEQUENCE_FIGURES["gradient norm per parameter over the first steps"]
    draw_first_steps(out / first, runs, config.schemes, _panel_names)
    scales = SEQUENCE_FIGURES["largest attention logit and output logit scale against step"]
    draw_logit_scales(out / scales, runs, config.schemes)


def _loss_figure(
    path: Path, runs: dict, config, *, log_step: bool = False, bits: bool = False
) -> Figure:
    """Draw and save ``train_loss.png``; return the figure (tests read its artists).

    ``log_step``: a log x axis (``train_loss_log_step.png``); ``bits``: the loss in bits per
    character (nats / ln 2; Graves 2013) instead of nats.
    """
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    steps_per_epoch = None
    marks, empty, finished_losses = [], [], []
    per = 1.0 / LN2 if bits else 1.0

    def points_of(epochs):
        points = loss_points(epochs)
        return [(s, per * v) for s, v in points] if bits else points

    for i, scheme in enumerate(config.schemes):
        style = scheme_style(i)
        own = [r for r in runs.values() if r["scheme"] == scheme]
        epochs = [r["epochs"] for r in own if r["epochs"]]
        if epochs:
            steps_per_epoch = steps_per_epoch or epochs[0][0]["steps"]
            plot_band(ax, *band([points_of(e) for e in epochs]), scheme, style, index=i)
        else:
            empty.append((scheme, style))
        for r in own:
            points = points_of(r["epochs"])
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
    if log_step:  # the first steps, where schemes differ most, get as much room as the rest
        ax.set_xscale("log", nonpositive="mask")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel(f"optimizer step (batches of {config.train.batch_size}, log scale)")
    else:
        ax.set_xlim(left=0)
        ax.set_xlabel(f"optimizer step (batches of {config.train.batch_size})")
    unit = "bits per character = nats / ln 2" if bits else "nats"
    ax.set_ylabel(f"training cross-entropy ({unit}, log scale)")
    if steps_per_epoch:
        top = ax.secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        top.set_xlabel("epoch")
        if log_step:
            plain_log_ticks(top.xaxis)
    mark_divergences(ax, marks)
    legend_extras(ax, empty, bool(marks))
    # log_every=0 leaves the epoch means: windows of a whole epoch
    window = config.train.window(steps_per_epoch) or steps_per_epoch if steps_per_epoch else "N"
    what = "Training bits per character" if bits else "Training loss"
    against = " against the optimizer step (log scale),\n" if log_step else ", "
    ax.set_title(
        f"{what}{against}mean over windows of {window} steps "
        "(line: mean over seeds, band: min..max)",
        fontsize="medium",
    )
    finish(ax, path)
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
            mean = band(series)[1]
            levels[scheme] = (min(mean), max(mean))
    near, far = split_far(levels)
    if not far:
        fig = Figure(figsize=(9, 4.8), layout="constrained")
        ax = fig.add_subplot()
        _draw_errors(ax, runs, schemes)
        finish(ax, path)
        return fig
    fig = Figure(figsize=(9, 6.4), layout="constrained")
    ax, ax_far = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    _draw_errors(ax, runs, schemes, only=set(near) | (set(schemes) - set(levels)))
    _draw_errors(ax_far, runs, schemes, only=set(far), extras=False)
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
    save_png(fig, path)
    return fig


def _draw_errors(ax, runs: dict, schemes: Sequence[str], only=None, *, extras: bool = True) -> None:
    """Draw test error per epoch on ``ax``: log y in percent, whole epochs on x.

    ``only``: the schemes to draw (default all); styles stay those of the scheme's position.
    """
    errors, last_epoch, marks, empty = [], 1, [], []
    for i, scheme in enumerate(schemes):
        if only is not None and scheme not in only:
            continue
        style = scheme_style(i)
        series = _error_series(runs, scheme)
        if series:
            plot_band(ax, *band(series), scheme, style, index=i)
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
    percent_log_ticks(ax, errors)
    # whole epochs only (MaxNLocator's integer=True still picks 0.6, 0.7, ... on a span of one
    # epoch), with half an epoch of margin so that a single epoch is one centered column
    if last_epoch <= 20:
        ax.set_xticks(range(1, last_epoch + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, last_epoch + 0.5)
    mark_divergences(ax, marks)
    if extras:
        diverged = bool(marks) or any(r.get("status") == "diverged" for r in runs.values())
        legend_extras(ax, empty, diverged)
    elif empty:
        legend_extras(ax, empty, False)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error = 1 - accuracy (%, log scale)")
    ax.set_title(
        "Test error after each epoch (line: mean over seeds, band: min..max)", fontsize="medium"
    )


def _activation_figure(path: Path, runs: dict, schemes: Sequence[str]) -> None:
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for i, scheme in enumerate(schemes):
        stds = [r["activation_std"] for r in runs.values() if r["scheme"] == scheme]
        stds = [s for s in stds if s]
        if not stds:
            ax.plot([], [], label=f"{scheme} (not recorded)", **scheme_style(i))
            continue
        layers = list(stds[0])
        mean = [sum(s[layer] for s in stds) / len(stds) for layer in layers]
        ax.plot(range(len(layers)), mean, label=scheme, **scheme_style(i))
        ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize="small")
    # symlog: the zeros scheme has std exactly 0, which a log axis cannot show.
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(bottom=0, top=max(2 * ax.get_ylim()[1], 1e-2))  # stds are >= 0
    ax.set_xlabel("layer output (forward order)")
    ax.set_ylabel("activation std at init (symlog scale)")
    ax.set_title("Per-layer activation std at initialization (mean over seeds)")
    finish(ax, path)


# More panels than this would shrink each below reading size; deeper models show an evenly
# spaced selection in model order, the first and last parameter always among them.
MAX_PANELS = 12


def _panel_names(names: Sequence[str], limit: int = MAX_PANELS) -> list[str]:
    """At most ``limit`` of ``names``, evenly spaced, the first and the last included.

    Example:
        >>> _panel_names([f"p{i}" for i in range(7)], limit=4)
        ['p0', 'p2', 'p4', 'p6']
    """
    if len(names) <= limit:
        return list(names)
    picks = sorted({round(k * (len(names) - 1) / (limit - 1)) for k in range(limit)})
    return [names[k] for k in picks]


def _norms(epoch: dict) -> dict[str, float]:
    return epoch.get("grad_norms") or {}


def _grad_norm_figure(path: Path, runs: dict, config) -> Figure:
    """Draw and save ``grad_norms.png``, one panel per parameter; return the figure."""
    names: list[str] = []  # model order: the order of the first run's grad_norms
    for r in runs.values():
        for e in r["epochs"]:
            names += [n for n in _norms(e) if n not in names]
    shown = _panel_names(names)
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    fig = Figure(figsize=(3.4 * columns + 2.2, 2.5 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    last_epoch, handles = 1, {}
    for ax, name in zip(axes, shown, strict=False):
        for i, scheme in enumerate(config.schemes):
            series = [
                [(e["epoch"], e["grad_norms"][name]) for e in r["epochs"] if name in _norms(e)]
                for r in runs.values()
                if r["scheme"] == scheme and r["epochs"]
            ]
            series = [s for s in series if s]
            if not series:
                continue
            line = plot_band(ax, *band(series), scheme, scheme_style(i), index=i)
            handles.setdefault(scheme, line)
            last_epoch = max(last_epoch, *(epoch for s in series for epoch, _ in s))
        ax.set_yscale("log", nonpositive="mask")  # an exactly zero gradient is not drawn
        plain_log_ticks(ax.yaxis)
        ax.set_title(name, fontsize="small")
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    for ax in axes[: len(shown)]:
        ax.set_xlim(0.5, last_epoch + 0.5)
        if last_epoch <= 20:
            ax.set_xticks(range(1, last_epoch + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[max(0, len(shown) - columns) : len(shown)]:
        ax.set_xlabel("epoch", fontsize="small")
    if not shown:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no gradient norms recorded", ha="center", va="center")
    scheme_legend(fig, config.schemes, handles)
    which = "" if len(shown) == len(names) else f" ({len(shown)} of {len(names)}, evenly spaced)"
    fig.suptitle(
        f"Gradient L2 norm per parameter{which}, mean over the steps of each epoch\n"
        "(log scale; line: mean over seeds, band: min..max; a zero norm is not drawn)",
        fontsize="medium",
    )
    save_png(fig, path)
    return fig
