"""Figures of diagnoses: activation std and back-propagated gradient against depth, per scheme.

This module reads a diagnosis through :class:`DepthProfile` (what
:class:`~initlab.diagnostics.records.Diagnosis` provides) and imports nothing of initlab, so
``Diagnosis.plot`` can call it without an import cycle, and matplotlib loads only for a figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from matplotlib.figure import Figure

__all__ = ["DepthProfile", "plot_depth_profiles"]


class _Row(Protocol):
    kind: str
    std: float
    grad_rms: float | None  # drawn when the row has no ``grad_norm``


class DepthProfile(Protocol):
    """What a figure reads of a diagnosis (a :class:`~initlab.diagnostics.records.Diagnosis`):
    its ``layers`` rows (``kind``, ``std``, ``grad_norm`` or ``grad_rms``) in execution order
    and its hidden ``signal()``."""

    @property
    def layers(self) -> Sequence[_Row]: ...

    def signal(self) -> Sequence[_Row]: ...


def plot_depth_profiles(
    diagnoses: Mapping[str, DepthProfile],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Write a two-panel PNG/PDF/SVG figure: activation std and output-gradient norm vs depth.

    Left: the std of each hidden signal (``Diagnosis.signal()``) against its depth index.
    Right: the per-example norm of the loss gradient with respect to each weight layer's
    output (``grad_norm``, the gradient verdict's unit; drawn only for diagnoses made with a
    loss). One curve per scheme, log y axis. Every positive value is drawn where it is, however
    small; only exact zeros, which a log axis cannot show, are drawn at a floor a decade below
    the panel's smallest positive value (1 when it has none), with a downward-triangle marker,
    and the floor is named in the panel's y label. NaN and inf are left out (gaps). The format
    follows ``path``'s suffix.

    Args:
        diagnoses: ``{scheme name: Diagnosis}``, in legend order (any :class:`DepthProfile`).
        path: output file; parent directories are created.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``diagnoses`` is empty.
    """
    if not diagnoses:
        raise ValueError("plot_depth_profiles needs at least one diagnosis; got none")
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    stds = {name: [r.std for r in d.signal()] for name, d in diagnoses.items()}
    grads = {
        name: [g for r in d.layers if r.kind == "weight" and (g := _grad(r)) is not None]
        for name, d in diagnoses.items()
    }
    left_floor = _draw(left, stds)
    right_floor = _draw(right, grads)
    left.set(xlabel="hidden layer", ylabel="activation std" + _floor_note(left_floor))
    left.set_title("forward: activation std")
    right.set(
        xlabel="weight layer",
        ylabel="|dLoss/d(layer output)| per example" + _floor_note(right_floor),
    )
    right.set_title("backward: output-gradient norm")
    left.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _grad(row) -> float | None:
    """The gradient a row is drawn at: ``grad_norm`` (per example), else ``grad_rms``."""
    value = getattr(row, "grad_norm", None)
    return row.grad_rms if value is None else value


def _draw(ax, curves: Mapping[str, Sequence[float]]) -> float | None:
    """Draw each curve on a log axis; exact zeros at a floor a decade below the smallest
    positive value of all curves (1 when none is positive), marked; return that floor, or
    None when no value is zero."""
    positive = [v for values in curves.values() for v in values if 0 < v < math.inf]
    floor = min(positive) / 10 if positive else 1.0
    any_zero = False
    for name, values in curves.items():
        if not values:
            continue
        xs = range(1, len(values) + 1)
        ys = [floor if v == 0 else (v if 0 < v < math.inf else math.nan) for v in values]
        (line,) = ax.plot(xs, ys, label=name)
        zeros = [(x, floor) for x, v in zip(xs, values, strict=True) if v == 0]
        if zeros:
            any_zero = True
            ax.plot(*zip(*zeros, strict=True), "v", color=line.get_color(), linestyle="none")
    ax.set_yscale("log")
    return floor if any_zero else None


def _floor_note(floor: float | None) -> str:
    return "" if floor is None else f"\n(v: exactly 0, drawn at {floor:.2g})"
