"""Checkpoint files of a comparison's unfinished runs: the runs' states after an epoch.

A file holds ``{"format": FORMAT, "runs": {run id: TrainState.to_dict()}}`` (see
:class:`~initlab.experiments.trainer.TrainState`): one run trained alone, or every run of a
stacked group. It is written with ``torch.save`` atomically (a temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory), so a crash leaves the previous
version or the new one, never half of one; it is read with ``torch.load(weights_only=True)``,
which restores dicts, strings, ints and tensors and unpickles nothing else.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

from initlab.experiments.trainer import TrainState

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

#: The ``format`` entry of a checkpoint file; another value is refused on loading.
FORMAT = "initlab.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, states: dict[str, TrainState]) -> None:
    """Write the runs' ``states`` to ``path`` atomically, replacing any previous version.

    Args:
        path: the checkpoint file; its directory must exist.
        states: run id -> its state, tensors on the CPU.
    """
    path = Path(path)
    payload = {"format": FORMAT, "runs": {run: s.to_dict() for run, s in states.items()}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def load_checkpoint(path: str | os.PathLike) -> dict[str, TrainState]:
    """Read a file written by :func:`save_checkpoint`; return run id -> state.

    Raises:
        ValueError: the file is not an initlab checkpoint of this :data:`FORMAT`, or its
            ``runs`` entry is not a dict of run id (str) -> train state with the keys of
            :meth:`TrainState.to_dict` and integer ``epoch`` and ``steps``.
        pickle.UnpicklingError: the file holds objects other than dicts, strings, numbers and
            tensors (``weights_only=True`` refuses them).
    """
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{path} is not an initlab checkpoint ({FORMAT}); found {found!r}")
    runs = raw.get("runs")
    if not isinstance(runs, dict):
        found = "no 'runs' entry" if "runs" not in raw else f"a {type(runs).__name__}"
        raise ValueError(f"{path}: 'runs' must be a dict of run id -> train state; found {found}")
    return {run: _state(path, run, state) for run, state in runs.items()}


def _state(path: str | os.PathLike, run: object, raw: object) -> TrainState:
    """One entry of a checkpoint's ``runs``, checked; errors name the file and the run."""
    if not isinstance(run, str):
        raise ValueError(f"{path}: run ids must be strings; found {run!r}")
    try:
        state = TrainState.from_dict(raw)
    except ValueError as error:
        raise ValueError(f"{path}, run {run!r}: {error}") from None
    for name in ("epoch", "steps"):  # the sweep compares and counts with them
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"{path}, run {run!r}: {name} must be an integer >= 0; got {name}={value!r}"
            )
    return state


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); where directories cannot be opened, skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
