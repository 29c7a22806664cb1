"""The drawing vocabulary of the report's figures: scheme styles, seed bands, divergence marks.

Every figure draws one line per scheme, the mean over seeds, and a band from the minimum to the
maximum over seeds (:func:`band`, :func:`plot_band`); each scheme has its own color, dash
pattern and marker (:func:`scheme_style`), so that coinciding curves stay visible; an ``x``
(:data:`DIVERGED_MARKER`) marks each diverged run's last finite point
(:func:`mark_divergences`). Figures use matplotlib's object API (no pyplot: no global state) and
are written atomically (:func:`save_png`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from initlab._files import atomic_write

__all__ = [
    "DIVERGED_MARKER",
    "band",
    "finish",
    "legend_extras",
    "loss_points",
    "mark_divergences",
    "percent_log_ticks",
    "plain_log_ticks",
    "plot_band",
    "save_png",
    "scheme_style",
]


def loss_points(epochs: Sequence[dict]) -> list[tuple[int, float]]:
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


def band(series: Sequence[Sequence[tuple[float, float]]]) -> tuple[list, list, list, list]:
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


def scheme_style(index: int) -> dict:
    """Matplotlib line properties of the ``index``-th scheme."""
    # markers shrink along the scheme order: where curves coincide, a later (smaller) marker
    # sits inside an earlier one and both show
    return {
        "color": f"C{index % 10}",
        "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
        "marker": _MARKERS[index % len(_MARKERS)],
        "markersize": 8.0 - 1.5 * (index % 4),
    }


def plot_band(ax, x, mean, low, high, label: str, style: dict, *, index: int = 0):
    """Draw a scheme's mean line and its min..max band; return the line.

    Markers are placed on about 8 points per line, shifted per scheme, so that coinciding
    curves show every scheme's marker.
    """
    every = max(1, len(x) // 8)
    (line,) = ax.plot(x, mean, label=label, markevery=(index % every, every), **style)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    return line


def mark_divergences(ax, marks: Sequence[tuple[float, float | None, str]]) -> None:
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


def legend_extras(ax, schemes_without_points: Sequence[tuple[str, dict]], diverged: bool):
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


def percent_log_ticks(ax, errors: Sequence[float]) -> None:
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


def plain_log_ticks(axis) -> None:
    """Label a log axis at 1, 2 and 5 x 10^k as plain numbers (``20``, ``0.05``, ``1e+04``)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def finish(ax, path: Path) -> None:
    """Grid, the legend outside the axes (it never covers a curve), and save."""
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title="scheme")
    save_png(ax.figure, path)


def save_png(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())
