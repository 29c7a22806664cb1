"""Figures of diagnoses: activation std and back-propagated gradient against depth, per scheme.

This module reads a diagnosis through :class:`DepthProfile` (what
:class:`~initlab.diagnostics.records.Diagnosis` provides) and imports nothing of initlab, so
``Diagnosis.plot`` can call it without an import cycle, and matplotlib loads only for a figure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from matplotlib.figure import Figure

__all__ = ["DepthProfile", "plot_depth_profiles"]


class _Row(Protocol):
    kind: str
    std: float
    grad_rms: float | None


class DepthProfile(Protocol):
    """What a figure reads of a diagnosis (a :class:`~initlab.diagnostics.records.Diagnosis`):
    its ``layers`` rows (``kind``, ``std``, ``grad_rms``) in execution order and its hidden
    ``signal()``."""

    @property
    def layers(self) -> Sequence[_Row]: ...

    def signal(self) -> Sequence[_Row]: ...


# Log axes cannot show 0: a signal that vanished completely (flushed to zero) is drawn at the
# smallest normal float32, 1.2e-38, so it stays visible at the bottom of the panel.
_FLOOR = 1.1754943508222875e-38


def plot_depth_profiles(
    diagnoses: Mapping[str, DepthProfile],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Write a two-panel PNG/PDF/SVG figure: activation std and output-gradient RMS vs depth.

    Left: the std of each hidden signal (``Diagnosis.signal()``) against its depth index.
    Right: the RMS gradient of the loss with respect to each weight layer's output (drawn only
    for diagnoses made with a loss). One curve per scheme, log y axis; exact zeros are drawn
    at 1.2e-38. The format follows ``path``'s suffix.

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
    for name, d in diagnoses.items():
        stds = [max(r.std, _FLOOR) for r in d.signal()]
        left.plot(range(1, len(stds) + 1), stds, label=name)
        grads = [r.grad_rms for r in d.layers if r.kind == "weight" and r.grad_rms is not None]
        if grads:
            right.plot(range(1, len(grads) + 1), [max(g, _FLOOR) for g in grads], label=name)
    left.set(xlabel="hidden layer", ylabel="activation std", yscale="log")
    left.set_title("forward: activation std")
    right.set(xlabel="weight layer", ylabel="RMS dLoss/d(layer output)", yscale="log")
    right.set_title("backward: output-gradient RMS")
    left.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
