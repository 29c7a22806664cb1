"""Resume: a run's state between epochs, its checkpoint files, and where each run continues.

A run between two epochs is a :class:`TrainState` (weights, optimizer state, shuffle and
dropout streams, step count); both trainers hand one out after each epoch and continue from
one exactly as if they had never stopped.

A checkpoint file holds ``{"format": FORMAT, "runs": {run id: TrainState.to_dict()}}``: one run
trained alone, or every run of a stacked group. It is written with ``torch.save`` atomically
(:func:`initlab._files.atomic_write`: a temporary file in the same directory, fsync,
``os.replace``; then an fsync of the directory), so a crash leaves the previous version or the
new one, never half of one; it is read with ``torch.load(weights_only=True)``, which restores
dicts, strings, ints and tensors and unpickles nothing else.

A resumed comparison (:func:`resume_points`) continues each unfinished run from its latest
checkpoint whose epoch lines ``results.jsonl`` holds, and trims the lines and files it does
not continue from.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from initlab._checks import non_negative_int
from initlab._files import atomic_write
from initlab.experiments.config import CompareConfig
from initlab.experiments.results import RESULTS, read_results, run_id, terminal_runs, write_lines

__all__ = [
    "CHECKPOINTS",
    "FORMAT",
    "PendingRun",
    "TrainState",
    "cpu_copy",
    "latest_checkpoints",
    "load_checkpoint",
    "load_optimizer_state",
    "optimizer_state",
    "resume_points",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

#: The ``format`` entry of a checkpoint file; another value is refused on loading.
FORMAT = "initlab.checkpoint/1"
#: The folder of a comparison's checkpoint files, inside its output directory.
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainState:
    """A run between two epochs: what the trainers need to continue it exactly.

    Every tensor is a CPU copy; :meth:`to_dict` gives plain dicts, ints and tensors only, so a
    checkpoint loads with ``torch.load(..., weights_only=True)`` (nothing is unpickled).

    Attributes:
        epoch: epochs finished; training continues with epoch ``epoch + 1``.
        steps: optimizer steps taken so far (the loss curve counts steps from the start).
        model: the model's ``state_dict()``, parameters and buffers.
        optimizer: per parameter name, its optimizer state tensors (AdamW: ``step`` (0-dim),
            ``exp_avg``, ``exp_avg_sq``; SGD with momentum: ``momentum_buffer``).
        shuffle: the shuffle stream's ``torch.Generator.get_state()``, uint8.
        rng: the run's global RNG states inside its fork (dropout masks): ``"cpu"``, plus
            ``"cuda"`` on CUDA; empty when nothing draws from it (stacked runs have no dropout),
            which continues from the freshly seeded stream.
    """

    epoch: int
    steps: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, dict[str, torch.Tensor]]
    shuffle: torch.Tensor
    rng: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return the state as a dict of ints and (dicts of) tensors, for ``torch.save``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, raw: dict) -> TrainState:
        """Rebuild a state from :meth:`to_dict`'s output.

        Raises:
            ValueError: a key is missing or unknown.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or set(raw) != names:
            got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"a train state has the keys {sorted(names)}; got {got}")
        return cls(**raw)


def cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """Return a detached CPU copy that owns its memory (a slice's copy saves only the slice)."""
    return tensor.detach().to("cpu", copy=True)


def optimizer_state(
    optimizer: torch.optim.Optimizer, params: dict[str, torch.Tensor]
) -> dict[str, dict[str, torch.Tensor]]:
    """Return the optimizer's state tensors per parameter name, as CPU copies."""
    return {
        name: {k: cpu_copy(v) for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
        for name, p in params.items()
        if p in optimizer.state
    }


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    names: list[str],
    state: dict[str, dict[str, torch.Tensor]],
) -> None:
    """Load :func:`optimizer_state`'s output into ``optimizer`` built over ``names``' parameters.

    Hyperparameters stay the optimizer's own (they come from the config); ``load_state_dict``
    moves the tensors to each parameter's device and dtype. The tensors are cloned first: the
    optimizer updates its state in place, and ``state`` must stay what was saved.

    Raises:
        ValueError: ``state`` names a parameter that is not in ``names``.
    """
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise ValueError(f"the optimizer state names parameters the model lacks: {unknown}")
    index = {name: i for i, name in enumerate(names)}  # state_dict numbers params in order
    optimizer.load_state_dict(
        {
            "state": {
                index[name]: {k: v.clone() for k, v in tensors.items()}
                for name, tensors in state.items()
            },
            "param_groups": optimizer.state_dict()["param_groups"],
        }
    )


def save_checkpoint(path: str | os.PathLike, states: dict[str, TrainState]) -> None:
    """Write the runs' ``states`` to ``path`` atomically, replacing any previous version.

    Args:
        path: the checkpoint file; its directory must exist.
        states: run id -> its state, tensors on the CPU.
    """
    path = Path(path)
    payload = {"format": FORMAT, "runs": {run: s.to_dict() for run, s in states.items()}}
    atomic_write(path, lambda file: torch.save(payload, file))
    _fsync_directory(path.parent)


def load_checkpoint(path: str | os.PathLike) -> dict[str, TrainState]:
    """Read a file written by :func:`save_checkpoint`; return run id -> state.

    Raises:
        ValueError: the file is not an initlab checkpoint of this :data:`FORMAT`, or its
            ``runs`` entry is not a dict of run id (str) -> train state with the keys of
            :meth:`TrainState.to_dict` and integer ``epoch`` and ``steps`` (>= 0).
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
        for name in ("epoch", "steps"):  # the sweep compares and counts with them
            non_negative_int(name, getattr(state, name))
    except (TypeError, ValueError) as error:  # a damaged file: one kind of error
        raise ValueError(f"{path}, run {run!r}: {error}") from None
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


@dataclass(frozen=True)
class PendingRun:
    """A run still to train: from scratch (``epoch`` 0) or after ``epoch`` from ``source``."""

    scheme: str
    seed: int
    epoch: int = 0
    source: str | None = None  # the checkpoint file holding its state after ``epoch``
    lr: float | None = None  # its rate of the config's ``lr_grid``; None: ``train.lr``

    @property
    def run(self) -> str:
        return run_id(self.scheme, self.seed, self.lr)


def resume_points(out: Path, config: CompareConfig) -> list[PendingRun]:
    """Find where each unfinished run continues; trim ``results.jsonl`` and the checkpoints.

    A run continues from its checkpoint with the highest epoch ``k`` when ``results.jsonl``
    holds its init line and its epoch lines ``1..k``; it keeps those lines and loses later ones
    and its ``interrupted``/``failed`` line. A run without such a checkpoint loses all its lines
    and reruns from scratch. Checkpoint files that no run continues from are deleted.

    Args:
        out: the comparison's output directory.
        config: its config (the runs are its rates x schemes x seeds, in sweep order).

    Returns:
        The runs to train, in sweep order (rate-major, then seed), finished and diverged runs
        left out.
    """
    results = out / RESULTS
    lines = read_results(results)
    terminal = terminal_runs(lines)
    latest = latest_checkpoints(out / CHECKPOINTS)
    pending = []
    for lr in config.rates():
        for seed in config.seed_list():
            for scheme in config.schemes:
                rid = run_id(scheme, seed, lr)
                if rid in terminal:
                    continue
                epoch, source = latest.get(rid, (0, None))
                if epoch and not _lines_reach(lines, rid, epoch):
                    log.warning("%s: results.jsonl lacks lines up to its checkpoint; rerun", rid)
                    epoch, source = 0, None
                pending.append(PendingRun(scheme, seed, epoch, source, lr))
    upto = {run.run: run.epoch for run in pending}
    write_lines(results, [ln for ln in lines if ln["run"] in terminal or _continues(ln, upto)])
    sources = {run.source for run in pending}
    for path in (out / CHECKPOINTS).glob("*.pt"):
        if str(path) not in sources:
            path.unlink()
    return pending


def latest_checkpoints(folder: Path) -> dict[str, tuple[int, str]]:
    """Map each run id in ``folder``'s checkpoints to its highest epoch and that file.

    A file that does not load (foreign or damaged) is skipped with a warning: its runs restart.
    """
    latest: dict[str, tuple[int, str]] = {}
    for path in sorted(folder.glob("*.pt")):
        try:
            states = load_checkpoint(path)
        except Exception as error:  # a foreign or damaged file: the runs restart instead
            log.warning("ignoring checkpoint %s: %s", path, error)
            continue
        for rid, state in states.items():
            if state.epoch > latest.get(rid, (0, ""))[0]:
                latest[rid] = (state.epoch, str(path))
    return latest


def _lines_reach(lines: list[dict], rid: str, epoch: int) -> bool:
    """Whether ``rid`` has one init line and each epoch line ``1..epoch`` once (more may follow)."""
    mine = [line for line in lines if line["run"] == rid]
    inits = sum(1 for line in mine if line["type"] == "init")
    epochs = sorted(ln["epoch"] for ln in mine if ln["type"] == "epoch" and ln["epoch"] <= epoch)
    return inits == 1 and epochs == list(range(1, epoch + 1))


def _continues(line: dict, upto: dict[str, int]) -> bool:
    """Whether a pending run's line stays: its init and epoch lines up to its checkpoint."""
    epoch = upto.get(line["run"], 0)
    if epoch == 0:
        return False
    return line["type"] == "init" or (line["type"] == "epoch" and line["epoch"] <= epoch)
