"""Phase diagrams of a grid: heatmaps of a metric with the mean-field predictions drawn on them.

A grid (:mod:`initlab.experiments.grid`) writes one ``cells.jsonl`` line per run. This module
turns them into heatmaps over two axes (:func:`heatmap`), one per value of the other axes:

- ``(sw2, depth)``: the order-to-chaos line ``chi_1 = 1`` (a vertical line at the critical
  ``sigma_w^2``) and the trainable-depth curve ``6 xi_c(sigma_w^2)`` (Schoenholz et al. 2017,
  "Deep Information Propagation", Sec. 5 and Fig. 5/6: networks train up to about 6 xi_c);
- ``(sw2, sb2)``: the order-to-chaos line ``sigma_w^2*(sigma_b^2)`` (Poole et al. 2016 Fig. 2;
  Schoenholz et al. 2017 Fig. 1) and, at the slice's depth L, the contour ``6 xi_c = L``;
- ``(lr, depth)``: no overlay.

The mean-field quantities come from :mod:`initlab.diagnostics.meanfield`. A cell's value is the
mean over its seeds that did not diverge; cells with a diverged seed are hatched, and a cell
whose seeds all diverged is hatched without a color (its value is NaN).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from initlab._checks import ArgumentError, one_of
from initlab._files import atomic_write
from initlab.diagnostics.meanfield import critical_weight_variance, mean_field
from initlab.reports.plotting import save_png

__all__ = [
    "METRICS",
    "PAIRS",
    "STEP_METRICS",
    "cell_grid",
    "heatmap",
    "order_to_chaos",
    "run_value",
    "trainable_depth",
    "write_grid_report",
]

#: What a heatmap can show, from a ``cells.jsonl`` epoch entry.
METRICS = {
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "train_loss": "training loss (epoch mean)",
    "train_accuracy": "training accuracy",
    "full_train_loss": "full-training-set loss",
}
#: The metrics measured at the training's ``eval_steps`` (a cell line's ``evals``), not at the
#: end of each epoch (its ``epochs``).
STEP_METRICS = ("train_accuracy", "full_train_loss")
#: The axis pairs drawn, as (x, y), when a grid varies both.
PAIRS = (("sw2", "depth"), ("sw2", "sb2"), ("lr", "depth"))
_LABELS = {
    "sw2": r"weight variance $\sigma_w^2$",
    "sb2": r"bias variance $\sigma_b^2$",
    "depth": "depth (hidden layers)",
    "lr": "learning rate",
    "width": "width",
}
log = logging.getLogger(__name__)

_MAX_SLICES = 8
_MAX_ANNOTATED = 150
_CURVE_POINTS = 80
_LINE_POINTS = 12
_CONTOUR_POINTS = 12


def order_to_chaos(activation: str, bias_vars: Sequence[float]) -> list[float]:
    """Return the critical weight variance (``chi_1 = 1``) at each bias variance.

    Source: Poole et al. 2016, eq. 7 (chi_1) and Fig. 2; computed by
    :func:`~initlab.diagnostics.meanfield.critical_weight_variance` (units: variances).

    Example:
        >>> [round(v, 3) for v in order_to_chaos("tanh", [0.0])]
        [1.0]
    """
    return [critical_weight_variance(activation, float(b), tol=1e-4) for b in bias_vars]


def trainable_depth(activation: str, weight_vars: Sequence[float], bias_var: float) -> list[float]:
    """Return ``6 xi_c`` (layers) at each weight variance: the depth up to which a network
    with that initialization trains (Schoenholz et al. 2017, Sec. 5, Fig. 5); ``inf`` at the
    edge of chaos.

    Example:
        >>> round(trainable_depth("tanh", [1.5], 0.05)[0], 1)
        94.7
    """
    return [mean_field(activation, float(w), bias_var).trainable_depth for w in weight_vars]


def run_value(line: dict, metric: str, step: int | None) -> float | None:
    """One run's ``metric`` at its last evaluation at or before ``step`` (``None``: its last).

    Evaluations are the ends of epochs, or for :data:`STEP_METRICS` the training's
    ``eval_steps``.

    Returns:
        The value; NaN when the run diverged at or before ``step`` (or, with ``step=None``, at
        all); ``None`` when it has no evaluation by then.
    """
    diverged = line.get("diverged_step")
    if diverged is not None and (step is None or diverged <= step):
        return math.nan
    source = line.get("evals", []) if metric in STEP_METRICS else line["epochs"]
    records = [e for e in source if step is None or e["step"] <= step]
    return records[-1][metric] if records else None


def cell_grid(
    cells: Sequence[dict], x: str, y: str, fixed: dict, metric: str, step: int | None
) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate the runs of one slice (``fixed``: axis -> value) over ``x`` and ``y``.

    Returns:
        ``(xs, ys, mean, diverged, runs)``: sorted axis values and ``(len(ys), len(xs))``
        arrays: the mean over non-diverged runs (NaN where none), the count of diverged runs,
        and the count of runs with a value.
    """
    chosen = [c for c in cells if all(c.get(k) == v for k, v in fixed.items())]
    xs = sorted({c[x] for c in chosen})
    ys = sorted({c[y] for c in chosen})
    mean = np.full((len(ys), len(xs)), math.nan)
    diverged = np.zeros((len(ys), len(xs)), dtype=int)
    runs = np.zeros((len(ys), len(xs)), dtype=int)
    values: dict[tuple[int, int], list[float]] = {}
    for c in chosen:
        v = run_value(c, metric, step)
        if v is None:
            continue
        at = (ys.index(c[y]), xs.index(c[x]))
        runs[at] += 1
        if math.isfinite(v):
            values.setdefault(at, []).append(v)
        else:
            diverged[at] += 1
    for at, vs in values.items():
        mean[at] = float(np.mean(vs))
    return xs, ys, mean, diverged, runs


def _position(values: Sequence[float], points) -> np.ndarray:
    """Map data values to cell-index coordinates (cell i spans [i - 0.5, i + 0.5]): linear
    between neighbouring axis values, extended linearly beyond the ends."""
    v = np.asarray(values, dtype=float)
    p = np.asarray(points, dtype=float)
    if len(v) == 1:
        return np.where(p == v[0], 0.0, np.where(p < v[0], -1.0, 1.0))
    out = np.interp(p, v, np.arange(len(v)))
    low, high = p < v[0], p > v[-1]
    out[low] = (p[low] - v[0]) / (v[1] - v[0])
    out[high] = len(v) - 1 + (p[high] - v[-1]) / (v[-1] - v[-2])
    return out


def heatmap(
    path: Path,
    xs: Sequence,
    ys: Sequence,
    mean: np.ndarray,
    diverged: np.ndarray,
    runs: np.ndarray,
    *,
    x: str,
    y: str,
    metric: str,
    title: str,
    overlays: Sequence[tuple[Sequence[float], Sequence[float], str, dict]] = (),
) -> Figure:
    """Draw one heatmap with a colorbar and save it as a PNG.

    One cell per axis value, evenly spaced whatever the values (ticks name them); overlay
    curves are placed linearly between neighbouring values (beyond the ends, by the spacing of
    the last two), so a curve crosses a cell boundary halfway between the two values.

    Args:
        path: where the PNG goes (written atomically).
        xs, ys, mean, diverged, runs: as :func:`cell_grid` returns them.
        x, y: the axis names (labels from a fixed table).
        metric: a key of :data:`METRICS` (accuracy in percent, losses as they are).
        title: the figure title.
        overlays: ``(x values, y values, label, line style)`` curves in data coordinates.

    Returns:
        The figure (already saved), for inspection.
    """
    accuracy = metric.endswith("accuracy")
    shown = mean * 100 if accuracy else mean
    fig = Figure(figsize=(1.0 + 0.55 * len(xs) + 2.2, 1.6 + 0.42 * len(ys)), layout="constrained")
    ax = fig.add_subplot()
    finite = shown[np.isfinite(shown)]
    norm = Normalize(*(finite.min(), finite.max()) if finite.size else (0, 1))
    cmap = "viridis" if accuracy else "viridis_r"  # bright is good in both

    def dark(value: float) -> bool:  # the map's dark half, where text is white
        return norm(value) < 0.5 if accuracy else norm(value) > 0.5

    image = ax.pcolormesh(
        np.arange(len(xs) + 1) - 0.5,
        np.arange(len(ys) + 1) - 0.5,
        np.ma.masked_invalid(shown),
        cmap=cmap,
        norm=norm,
    )
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(METRICS[metric] + (" (%)" if accuracy else ""))
    for (i, j), count in np.ndenumerate(diverged):
        if count:  # a diverged run: hatched, gray where no run is left to average
            ax.add_patch(
                Rectangle(
                    (j - 0.5, i - 0.5),
                    1,
                    1,
                    hatch="xx",
                    edgecolor="0.3",
                    linewidth=0,
                    facecolor="0.85" if count == runs[i, j] else "none",
                )
            )
        if len(xs) * len(ys) <= _MAX_ANNOTATED and runs[i, j]:
            text = "div" if count == runs[i, j] else f"{shown[i, j]:.3g}"
            if 0 < count < runs[i, j]:
                text += f"\n{count}/{runs[i, j]} div"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if math.isfinite(shown[i, j]) and dark(shown[i, j]) else "black",
            )
    for xv, yv, label, style in overlays:
        ax.plot(_position(xs, xv), _position(ys, yv), label=label, **style)
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    ax.set_xticks(range(len(xs)), [_text(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_text(v) for v in ys])
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel(_LABELS.get(y, y))
    ax.set_title(title, fontsize="medium")
    if overlays:
        fig.legend(loc="outside lower center", fontsize="small", ncols=2, facecolor="0.7")
    save_png(fig, path)
    return fig


def _overlays(x: str, y: str, xs, ys, fixed: dict, defaults: dict) -> list:
    """The mean-field curves for an (x, y) pair at a slice (see the module docstring); none
    for an activation :func:`~initlab.diagnostics.meanfield.mean_field` does not know or one
    without an edge of chaos."""
    setting = {**defaults, **fixed}
    activation = setting.get("activation")
    if x != "sw2" or y not in ("depth", "sb2") or activation is None:
        return []
    try:
        return _curves(y, xs, ys, setting, activation)
    except (TypeError, ValueError):  # unknown activation, or no edge of chaos (chi_1 < 1)
        return []


def _curves(y: str, xs, ys, setting: dict, activation: str) -> list:
    line = {"color": "white", "linestyle": "--", "linewidth": 2}
    curve = {"color": "red", "linestyle": "-", "linewidth": 2}
    if y == "depth":
        sb2 = float(setting.get("sb2", 0.0))
        crit = order_to_chaos(activation, [sb2])[0]
        grid = np.linspace(min(xs), max(xs), _CURVE_POINTS)
        depth = np.minimum(trainable_depth(activation, grid, sb2), 1e6)
        return [
            ([crit, crit], [min(ys) - 1e6, max(ys) + 1e6], r"order-to-chaos $\chi_1 = 1$", line),
            (grid, depth, r"$6\,\xi_c$ (trainable depth)", curve),
        ]
    sb2s = np.linspace(min(ys), max(ys), _LINE_POINTS)
    out = [(order_to_chaos(activation, sb2s), sb2s, r"order-to-chaos $\chi_1 = 1$", line)]
    if "depth" in setting:  # the contour 6 xi_c = L, found on a coarse grid
        sw2s = np.linspace(min(xs), max(xs), _CONTOUR_POINTS)
        cb2 = np.linspace(min(ys), max(ys), _CONTOUR_POINTS)
        depth = np.array([trainable_depth(activation, sw2s, b) for b in cb2])
        fig = Figure()
        found = fig.add_subplot().contour(sw2s, cb2, np.minimum(depth, 1e6), [setting["depth"]])
        label = rf"$6\,\xi_c = {setting['depth']}$ (trainable depth)"
        for segment in itertools.chain.from_iterable(found.allsegs):
            out.append((segment[:, 0], segment[:, 1], label, curve))
            label = "_nolegend_"  # one legend entry for every piece of the contour
    return out


def write_grid_report(
    out: str | Path,
    axes: dict[str, Sequence],
    cells: Sequence[dict],
    *,
    defaults: dict | None = None,
    metric: str = "test_accuracy",
    step: int | None = None,
) -> list[Path]:
    """Write ``report.md`` and one heatmap PNG per drawn pair and slice into ``out``.

    Args:
        out: the grid's output directory.
        axes: the grid's axes (name -> values).
        cells: the ``cells.jsonl`` lines (:func:`initlab.experiments.grid.cell_lines`).
        defaults: values of axes the grid does not vary (``activation``, ``sb2``, ``depth``),
            for the mean-field overlays.
        metric: a key of :data:`METRICS`.
        step: the optimizer step whose evaluation is shown (the last at or before it);
            ``None``: each run's last.

    Returns:
        The PNG paths written.

    Raises:
        ArgumentError: ``metric`` is not one of :data:`METRICS` (argument ``metric``).
    """
    try:
        one_of("metric", metric, METRICS)
    except ValueError as error:
        raise ArgumentError("metric", str(error)) from None
    out = Path(out)
    defaults = dict(defaults or {})
    figures = []
    for x, y in PAIRS:
        if len(axes.get(x, ())) < 2 or len(axes.get(y, ())) < 2:
            continue
        others = [k for k in axes if k not in (x, y) and len(axes[k]) > 1]
        slices = math.prod(len(axes[k]) for k in others)
        if slices > _MAX_SLICES:
            log.warning(
                "%s over %s: drawing the first %d of %d slices (%s)",
                y, x, _MAX_SLICES, slices, ", ".join(others),
            )  # fmt: skip
        for values in itertools.islice(itertools.product(*(axes[k] for k in others)), _MAX_SLICES):
            fixed = dict(zip(others, values, strict=True))
            for k in axes:  # single-valued axes are fixed too
                if k not in (x, y) and len(axes[k]) == 1:
                    fixed[k] = axes[k][0]
            xs, ys, mean, div, runs = cell_grid(cells, x, y, fixed, metric, step)
            if not xs or not ys:
                continue
            name = "_".join([f"{y}_vs_{x}", *(f"{k}={_text(v)}" for k, v in fixed.items())])
            where = ", ".join(f"{k}={_text(v)}" for k, v in fixed.items())
            at = "final" if step is None else f"step {step}"
            title = f"{METRICS[metric]} ({at}){', ' + where if where else ''}"
            path = out / f"{name}.png"
            overlays = _overlays(x, y, xs, ys, fixed, defaults)
            heatmap(
                path,
                xs,
                ys,
                mean,
                div,
                runs,
                x=x,
                y=y,
                metric=metric,
                title=title,
                overlays=overlays,
            )
            figures.append(path)
    atomic_write(out / "report.md", _markdown(axes, cells, figures, metric, step))
    return figures


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _markdown(axes, cells, figures, metric, step) -> str:
    diverged = sum(c["status"] == "diverged" for c in cells)
    lines = [
        "# Grid report",
        "",
        "Axes: " + "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in axes.items()) + ".",
        f"Runs: {len(cells)} ({diverged} diverged). Heatmaps: {METRICS[metric]} at "
        + ("each run's last evaluation" if step is None else f"the last evaluation by step {step}")
        + ", mean over the seeds that did not diverge; hatched cells had a diverged seed (gray: "
        "all diverged).",
        "",
        "Overlays (sw2 axes): the order-to-chaos line chi_1 = 1 (Poole et al. 2016, eq. 7) and "
        "the trainable depth 6 xi_c (Schoenholz et al. 2017, Sec. 5), from "
        "`initlab.diagnostics.meanfield`.",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    names = [k for k in axes]
    percent = metric.endswith("accuracy")  # as the heatmap and the other commands show it
    header = f"{METRICS[metric]} (%)" if percent else METRICS[metric]
    lines += ["", "| " + " | ".join([*names, "seeds", "diverged", header]) + " |"]
    lines.append("|" + "---|" * (len(names) + 3))
    for values in itertools.product(*axes.values()):
        runs = [c for c in cells if all(c.get(k) == v for k, v in zip(names, values, strict=True))]
        got = [run_value(c, metric, step) for c in runs]
        finite = [(100 * v if percent else v) for v in got if v is not None and math.isfinite(v)]
        spread = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
        shown = f"{np.mean(finite):.4g} ± {spread:.2g}" if finite else "-"
        div = sum(v is not None and not math.isfinite(v) for v in got)
        lines.append("| " + " | ".join([*map(str, values), str(len(runs)), str(div), shown]) + " |")
    return "\n".join(lines) + "\n"
