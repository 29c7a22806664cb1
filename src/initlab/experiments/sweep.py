"""The comparison runner: train every scheme x seed, stream results to disk, resume after a stop.

Output directory layout:

- ``config.json``: the resolved :class:`CompareConfig`;
- ``results.jsonl``: one JSON object per line, appended and fsync'ed as the sweep goes:
  ``{"type": "init", ...}`` (activation std per layer at initialization, one per run),
  ``{"type": "epoch", ...}`` (one per finished epoch of a run: an
  :class:`~initlab.experiments.trainer.EpochRecord`; files written before ``loss_curve``
  existed lack it, and the report then uses the epoch's mean loss) and
  ``{"type": "status", ...}`` with ``status`` ``finished``, ``diverged`` (with ``epoch`` and
  ``step``), ``interrupted`` (KeyboardInterrupt) or ``failed`` (any other exception, with
  ``error``);
- ``checkpoints/``: while runs are unfinished, one file per stacked group or lone run
  (:mod:`initlab.experiments.checkpoint`), overwritten atomically after each epoch but the
  last, deleted when its runs end and, with the folder, when the sweep is done;
- ``summary.csv``, ``report.md`` and PNG figures (:mod:`initlab.experiments.report`).

An epoch's lines are written before its checkpoint, so a checkpoint never runs ahead of the
lines. Resuming (``resume=True``) reads ``config.json`` and ``results.jsonl``, keeps finished
and diverged runs, and continues every other run from its latest checkpoint: its init line and
the epoch lines up to the checkpoint's epoch are kept, later lines (an epoch written but not
checkpointed when the sweep stopped) and its ``interrupted``/``failed`` line are dropped, and
training goes on with the saved weights, optimizer state, batch order and dropout stream, so the
resumed sweep writes the lines an uninterrupted one writes. A run without a usable checkpoint
(stopped in its first epoch) reruns from scratch; training is deterministic, so it too ends with
the same numbers.

Before anything is written (a new sweep's ``config.json``, a resumed one's trimmed
``results.jsonl``), the data are checked against the model (:func:`check_data`, the
``pretrained`` scheme's source too): no empty split, train and test images of one size that the
model takes, integer labels within its outputs. A new sweep that fails before its first line
leaves neither ``config.json`` nor ``results.jsonl`` behind, so the same ``--out`` can be used
again.

One sweep at a time writes into a directory: a sweep holds an exclusive lock on
``out_dir/.initlab-compare.lock`` (:mod:`filelock`: ``flock`` on POSIX, released by the
operating system if the process dies) from before it reads or writes anything there until it
returns or raises, and records its process id, host and start time in
``out_dir/.initlab-compare.holder.json`` for as long as it holds it. A second sweep on the same
directory, new or resumed, is refused (:class:`OutDirInUseError`, naming the holder) before it
touches a file. A new sweep into a directory that does not exist yet takes the lock once its
checks pass, so a refused config leaves no directory behind; the lock file itself stays.

With ``vectorize=True`` the runs train together, stacked
(:mod:`initlab.experiments.stacked`): the same numbers within float rounding, the init
lines of all runs first, then each epoch's lines as that epoch finishes for all runs. Models
that cannot be stacked (dropout, BatchNorm statistics, recurrent layers) train one by one.

Under ``torchrun`` (:mod:`initlab.experiments.distributed`) rank ``r`` trains runs ``r::world``
(streaming its lines to ``results.rank<r>.jsonl``), and rank 0 appends every rank's lines to
``results.jsonl`` and writes the report. A session stopped before that leaves the rank files;
resuming first appends their lines to ``results.jsonl``, so every rank's runs continue from
their checkpoints. Per-run files (``diagnosis/``, ``pretrained/``) are written by the rank
that trains the run: the output directory should be shared across machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import filelock
import torch
import tqdm
from torch import nn

from initlab._checks import one_of
from initlab.datasets.families import DATASETS, Dataset, load_dataset
from initlab.experiments import distributed, report
from initlab.experiments.checkpoint import load_checkpoint, save_checkpoint
from initlab.experiments.diagnosis import init_record
from initlab.experiments.pretrain import PRETRAINED, PretrainConfig, build_for_run
from initlab.experiments.stacked import train_group, vectorizable
from initlab.experiments.trainer import (
    EpochRecord,
    RunResult,
    TensorData,
    TrainConfig,
    TrainState,
    build_initialized,
    init_batch,
    resolve_device,
    train,
)
from initlab.schemes.registry import check_fits, parse_bias_init, parse_scheme
from initlab.zoo.models import MODELS, accepted_params, build_model, fit_classes

__all__ = [
    "DEFAULT_SCHEMES",
    "HOLDER_FILE",
    "LOCK_FILE",
    "CompareConfig",
    "OutDirInUseError",
    "SweepResult",
    "check_data",
    "head_params",
    "lock_out_dir",
    "read_results",
    "run_id",
    "run_sweep",
]

log = logging.getLogger(__name__)

DEFAULT_SCHEMES = ("seed", "zeros", "normal", "xavier_uniform", "kaiming_uniform", "orthogonal")
TERMINAL = ("finished", "diverged")
CHECKPOINTS = "checkpoints"
#: The file whose exclusive lock a sweep holds on its output directory (see the module docstring).
LOCK_FILE = ".initlab-compare.lock"
#: Beside it, while held: the holder's ``pid``, ``host`` and ``started`` time (JSON).
HOLDER_FILE = ".initlab-compare.holder.json"
# load_dataset's hints name the main dataset's options; the pretraining source has its own
# (and pretraining does not download).
_PRETRAIN_HINTS = (
    ("--data-dir DIR (data_dir=DIR)", "--pretrain-data-dir DIR (PretrainConfig(data_dir=DIR))"),
    ("(--data-dir)", "(--pretrain-data-dir)"),
    (" or fetch them with --download (download=True)", ""),
)


@dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison; saved as ``config.json``.

    Attributes:
        schemes: scheme names, each optionally with options (``"normal:std=0.1"``).
        seeds: number of seeds per scheme; run seeds are ``first_seed .. first_seed+seeds-1``.
        first_seed: the first run seed.
        model: zoo model name; ``model_params`` its keyword arguments.
        dataset: dataset name for :func:`~initlab.datasets.families.load_dataset`;
            ``data_dir`` an optional directory to read it from; ``download`` fetches missing files.
        bias_init: bias rule for every run (``None``: each scheme's default).
        target_accuracy: test accuracy (fraction) whose first epoch the report counts.
        train_subset, test_subset: optional sizes of seeded random subsets, for quick runs.
        train: optimization settings; its ``seed`` is replaced by each run's seed.
        pretrain: source of the ``pretrained`` scheme's weights (see
            :mod:`initlab.experiments.pretrain`); unused by the other schemes.
    """

    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    seeds: int = 3
    first_seed: int = 0
    model: str = "initnet"
    model_params: dict = field(default_factory=dict)
    dataset: str = "mnist"
    data_dir: str | None = None
    download: bool = False
    bias_init: str | None = None
    target_accuracy: float = 0.97
    train_subset: int | None = None
    test_subset: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        if not self.schemes:
            raise ValueError("schemes must name at least one scheme; got schemes=()")
        for scheme in self.schemes:
            if scheme.split(":")[0] == PRETRAINED and scheme != PRETRAINED:
                raise ValueError(
                    f"scheme {PRETRAINED!r} takes no options (its weights come from the pretrain "
                    f"config: --pretrain-dataset, --pretrain-data-dir, --pretrain-subset, "
                    f"--pretrain-epochs); got scheme={scheme!r}"
                )
            if scheme != PRETRAINED:  # not an init rule: it needs a checkpoint (pretrain.py)
                parse_scheme(scheme)
        if len(set(self.schemes)) != len(self.schemes):
            raise ValueError(f"schemes must not repeat; got schemes={list(self.schemes)}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1; got seeds={self.seeds!r}")
        one_of("model", self.model, MODELS)
        if self.bias_init is not None:
            parse_bias_init(self.bias_init)
        for name in ("train_subset", "test_subset"):  # 0 would leave an empty split
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be an integer >= 1 or None; got {name}={value!r}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(
                "target_accuracy is a fraction in (0, 1]; "
                f"got target_accuracy={self.target_accuracy!r}"
            )

    def to_json(self) -> str:
        """Return the config as indented JSON (round-trips through :meth:`from_json`)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompareConfig:
        """Rebuild a config written by :meth:`to_json`."""
        raw = json.loads(text)
        raw["schemes"] = tuple(raw["schemes"])
        raw["train"] = TrainConfig(**raw["train"])
        raw["pretrain"] = PretrainConfig(**raw.get("pretrain", {}))
        return cls(**raw)

    def seed_list(self) -> list[int]:
        """Return the run seeds."""
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep returns: its config, output directory and summary rows."""

    config: CompareConfig
    out_dir: Path
    rows: list[report.SummaryRow]


class OutDirInUseError(RuntimeError):
    """Another sweep holds the output directory's lock; nothing in it was read or changed.

    Attributes:
        out_dir: the directory.
        holder: what the holder recorded in :data:`HOLDER_FILE` (``pid``, ``host``,
            ``started``), or ``None`` when that file is missing or unreadable.
    """

    def __init__(self, out_dir: Path, holder: dict | None) -> None:
        self.out_dir = out_dir
        self.holder = holder
        super().__init__(
            f"out_dir {str(out_dir)!r} is in use by another sweep ({self.describe_holder()}); "
            "nothing was changed. Wait for that sweep to end (or stop it), then resume it, or "
            f"give another out_dir (lock file: {out_dir / LOCK_FILE})"
        )

    def describe_holder(self) -> str:
        """The holder in words: ``pid 123 on host h, started 2024-05-01 12:00:00 UTC``."""
        holder = self.holder
        if not holder:
            return f"holder not recorded: {self.out_dir / HOLDER_FILE} is missing or unreadable"
        return (
            f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}"
        )


@contextlib.contextmanager
def lock_out_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``out_dir``'s sweep lock for the ``with`` block; refuse at once if another has it.

    The lock is an exclusive :class:`filelock.FileLock` on ``out_dir/``:data:`LOCK_FILE`
    (``flock`` on POSIX: the operating system releases it when the holder's process ends, even
    when killed), taken without waiting. While it is held, :data:`HOLDER_FILE` beside it
    records the holder (``pid``, ``host``, ``started`` as UTC time), because a file lock does
    not say who holds it; the record is removed before the lock is released. ``out_dir`` is
    created if missing; the lock file stays after release (removing it would let a process
    that opened it before the removal and one that creates it anew both hold "the" lock).

    Yields:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        OutDirInUseError: another process (or another :func:`lock_out_dir` in this one) holds
            the lock; nothing was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OutDirInUseError(out, _read_holder(out / HOLDER_FILE)) from None
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        report.write_atomic(out / HOLDER_FILE, json.dumps(holder) + "\n")
        try:
            yield out
        finally:
            (out / HOLDER_FILE).unlink(missing_ok=True)
    finally:
        lock.release()


def _read_holder(path: Path) -> dict | None:
    """The holder record at ``path`` (JSON, never executed), or ``None`` if unreadable."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def run_id(scheme: str, seed: int) -> str:
    """Return the identifier of one run, e.g. ``"seed/0"``."""
    return f"{scheme}/{seed}"


def run_sweep(
    config: CompareConfig | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[str, EpochRecord], None] | None = None,
    vectorize: bool = False,
) -> SweepResult:
    """Run (or resume) a comparison into ``out_dir`` and write its summary, report and figures.

    Args:
        config: the comparison; ``None`` when resuming (read from ``out_dir/config.json``).
        out_dir: output directory; created if missing. A new sweep refuses a directory that
            already holds ``results.jsonl`` (resume it instead); every sweep refuses one that
            another sweep holds (:func:`lock_out_dir`), before touching a file in it.
        resume: continue the sweep in ``out_dir``: finished and diverged runs are kept,
            unfinished ones continue from their last checkpointed epoch (see the module
            docstring).
        progress: show a tqdm progress bar (on stderr) counting the epochs still to train, one
            per run and epoch; a stacked group advances by its number of runs once per epoch,
            and a diverged run's remaining epochs count as done. No bar when nothing is left.
        on_epoch: called with ``(run id, record)`` after each epoch's lines and checkpoint are
            written (stacked: after the whole group's epoch); tests use it to simulate an
            interrupt.
        vectorize: train all runs together, stacked, when the model allows it (see the module
            docstring); ``initlab compare`` turns it on unless ``--no-vectorize``.

    Returns:
        A :class:`SweepResult`; its rows (one per scheme) are those of ``summary.csv``.

    Raises:
        OutDirInUseError: another sweep holds ``out_dir``'s lock (see the module docstring);
            nothing in ``out_dir`` was read or changed.
        FileExistsError: a new sweep into a directory that already has results.
        FileNotFoundError: resuming a directory without ``config.json``; missing data.
        ValueError: the data do not fit the model (see :func:`check_data`), and the errors of
            :func:`~initlab.datasets.families.load_dataset`; raised before anything is
            written.
        KeyboardInterrupt: re-raised after recording the interrupted runs; finished epochs and
            runs stay in ``results.jsonl`` (under torchrun, ranks > 0's in their rank files,
            gathered on resume), checkpoints in ``checkpoints/``.
    """
    with distributed.session() as ranks, contextlib.ExitStack() as held:
        # torchrun ranks may have computed different default names (timestamps): use rank 0's
        out = Path(ranks.from_main(lambda: out_dir))

        def lock() -> None:  # rank 0 holds the directory for every rank, until the end
            held.enter_context(lock_out_dir(out))

        if resume:
            ranks.from_main(lambda: _require_config(out))  # not creating a directory to lock
        # lock before reading anything in an existing directory (a busy one is refused as
        # such); a new directory only once the checks pass, so a refused config leaves none
        locked = resume or ranks.from_main(out.is_dir)
        if locked:
            ranks.from_main(lock)
        saved = ranks.from_main(lambda: _checked_config(config, out, resume))
        config, data = _prepare(saved)
        if not locked:
            ranks.from_main(lock)
        pending, session = ranks.from_main(lambda: _begin(out, config, saved, resume))
        mine = ranks.shard(pending)
        results = out / "results.jsonl"
        own = results if ranks.rank == 0 else out / f"results.rank{ranks.rank}.jsonl"
        (out / CHECKPOINTS).mkdir(exist_ok=True)
        left = sum(config.train.epochs - run.epoch for run in mine)
        try:
            with (
                _bar(left, progress and ranks.rank == 0) as bar,
                open(own, "a" if own == results else "w", encoding="utf-8") as sink,
            ):
                context = _Context(config, data, out, session, sink, bar, on_epoch)
                _train_runs(context, mine, vectorize)
        except Exception:
            if not resume and ranks.world == 1:
                _discard_failed_start(out)
            raise
        _gather(ranks, results, own)
        if ranks.rank == 0:  # every run has ended: no checkpoint is needed any more
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        rows = ranks.from_main(lambda: report.write_report(out, config, read_results(results)))
    return SweepResult(config, out, rows)


def _bar(total: int, show: bool) -> tqdm.tqdm:
    """The progress bar over ``total`` run-epochs; none when nothing is left to train."""
    return tqdm.tqdm(
        total=total,
        disable=not show or total == 0,
        unit="epoch",
        mininterval=0,  # updates come once per epoch: show each one (no throttling)
        miniters=1,
    )


@dataclass(frozen=True)
class _Pending:
    """A run still to train: from scratch (``epoch`` 0) or after ``epoch`` from ``source``."""

    scheme: str
    seed: int
    epoch: int = 0
    source: str | None = None  # the checkpoint file holding its state after ``epoch``

    @property
    def run(self) -> str:
        return run_id(self.scheme, self.seed)


def _require_config(out: Path) -> None:
    """Raise FileNotFoundError unless ``out`` holds a sweep's ``config.json`` to resume."""
    if not (out / "config.json").is_file():
        raise FileNotFoundError(
            f"{out} has no config.json, so there is no sweep to resume; start one with "
            f"initlab compare --out {out} (or run_sweep(config, out) without resume)"
        )


def _refuse_existing(out: Path) -> None:
    results = out / "results.jsonl"
    if results.exists():
        raise FileExistsError(f"{results} exists; resume it with --resume {out} or pick --out")


def _checked_config(config: CompareConfig | None, out: Path, resume: bool) -> CompareConfig:
    """The sweep's config: a resumed one's ``config.json``, or ``config`` once checked.

    Reads, writes nothing. A new sweep is refused into a directory with results and when a
    scheme does not apply to the model.
    """
    if resume:
        _require_config(out)
        return CompareConfig.from_json((out / "config.json").read_text())
    _refuse_existing(out)
    _check_applicable(config)
    return config


def _begin(out: Path, config: CompareConfig, saved: CompareConfig, resume: bool):
    """Start the session under the directory's lock, once everything is checked.

    A new sweep writes ``saved`` (the config as given; ``config`` is it with the head fitted
    to the dataset) as ``config.json`` (see :func:`_create`); a resumed one gathers the lines
    an interrupted torchrun session left in its rank files, trims ``results.jsonl`` to what its
    runs continue from and removes unused checkpoints.

    Returns:
        ``(runs to train, session)``: ``session`` is a new token for this session's
        checkpoint names, so that no file a run continues from is overwritten before it is read
        (by any torchrun rank).
    """
    if resume:
        _merge_rank_files(out)
        pending = _resume_points(out, config)
        done = len(config.schemes) * config.seeds - len(pending)
    else:
        _refuse_existing(out)  # again, now under the lock: a sweep may have started meanwhile
        _create(out, saved)
        pending = [
            _Pending(scheme, seed) for seed in config.seed_list() for scheme in config.schemes
        ]
        done = 0
    log.info(
        "%s to train, %s already done, writing to %s",
        report.count(len(pending), "run"),
        done,
        out,
    )
    continued = [f"{run.run} after epoch {run.epoch}" for run in pending if run.epoch]
    if continued:
        log.info("continuing from checkpoints: %s", ", ".join(continued))
    return pending, uuid.uuid4().hex[:8]


def _create(out: Path, config: CompareConfig) -> None:
    """Start a new sweep's directory: ``config.json``, and no checkpoint of an earlier one."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    report.write_atomic(out / "config.json", config.to_json() + "\n")


def _discard_failed_start(out: Path) -> None:
    """Remove the files of a new sweep that failed before writing a line.

    Left behind, an empty ``results.jsonl`` would refuse the corrected command ("exists;
    resume it") and ``--resume`` would replay the failing config.
    """
    results = out / "results.jsonl"
    if results.exists() and results.stat().st_size == 0:
        results.unlink()
        (out / "config.json").unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        log.info("removed the empty results.jsonl and config.json of the failed start in %s", out)


def _merge_rank_files(out: Path) -> None:
    """Append the lines left in ``results.rank<r>.jsonl`` to ``results.jsonl``; delete the files.

    Ranks > 0 hand their lines to rank 0 only when the sweep ends (:func:`_gather`); an
    interrupted or crashed torchrun session leaves them in their own files, where
    :func:`_resume_points` would not see them (their runs would restart and the files be
    truncated). The lines are appended in rank order and fsync'ed before the files are
    deleted; a line ``results.jsonl`` already holds is skipped, so a merge cut short before the
    deletion adds nothing twice when it is repeated.
    """
    parts = sorted(
        (int(match[1]), path)
        for path in out.glob("results.rank*.jsonl")
        if (match := re.fullmatch(r"results\.rank(\d+)\.jsonl", path.name))
    )
    if not parts:
        return
    results = out / "results.jsonl"
    held = {json.dumps(line, sort_keys=True) for line in read_results(results)}
    new = []
    for _, path in parts:
        for line in read_results(path):
            key = json.dumps(line, sort_keys=True)
            if key not in held:
                held.add(key)
                new.append(line)
    with open(results, "ab+") as sink:
        sink.seek(0)
        # a torn last line (read_results skipped it) would otherwise join the first new line
        sink.truncate(sink.read().rfind(b"\n") + 1)
        sink.write("".join(json.dumps(line) + "\n" for line in new).encode("utf-8"))
        sink.flush()
        os.fsync(sink.fileno())
    for _, path in parts:
        path.unlink()
    log.info(
        "appended %s of %s left by an interrupted torchrun session to %s",
        report.count(len(new), "line"),
        report.count(len(parts), "rank file"),
        results,
    )


def _resume_points(out: Path, config: CompareConfig) -> list[_Pending]:
    """Find where each unfinished run continues; trim ``results.jsonl`` and the checkpoints.

    A run continues from its checkpoint with the highest epoch ``k`` when ``results.jsonl``
    holds its init line and its epoch lines ``1..k``; it keeps those lines and loses later ones
    and its ``interrupted``/``failed`` line. A run without such a checkpoint loses all its lines
    and reruns from scratch. Checkpoint files that no run continues from are deleted.
    """
    results = out / "results.jsonl"
    lines = read_results(results)
    terminal = _terminal_runs(lines)
    latest = _latest_checkpoints(out / CHECKPOINTS)
    pending = []
    for seed in config.seed_list():
        for scheme in config.schemes:
            rid = run_id(scheme, seed)
            if rid in terminal:
                continue
            epoch, source = latest.get(rid, (0, None))
            if epoch and not _lines_reach(lines, rid, epoch):
                log.warning("%s: results.jsonl lacks lines up to its checkpoint; rerun", rid)
                epoch, source = 0, None
            pending.append(_Pending(scheme, seed, epoch, source))
    upto = {run.run: run.epoch for run in pending}
    kept = [line for line in lines if line["run"] in terminal or _continues(line, upto)]
    report.write_atomic(results, "".join(json.dumps(line) + "\n" for line in kept))
    sources = {run.source for run in pending}
    for path in (out / CHECKPOINTS).glob("*.pt"):
        if str(path) not in sources:
            path.unlink()
    return pending


def _latest_checkpoints(folder: Path) -> dict[str, tuple[int, str]]:
    """Map each run id in ``folder``'s checkpoints to its highest epoch and that file."""
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


def _check_applicable(config: CompareConfig) -> None:
    """Build the model once and apply every weight-only scheme to a copy; raise if one fails.

    Data-dependent ``lsuv`` and ``pretrained`` are left to their runs (they need data).
    """
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG
        model = build_model(config.model, **config.model_params)
    for scheme in config.schemes:
        if scheme.split(":")[0] not in (PRETRAINED, "lsuv"):
            check_fits(model, scheme, config.model)


def _prepare(saved: CompareConfig) -> tuple[CompareConfig, TensorData]:
    """Load the data, fit the model's head to the dataset and check both; write nothing.

    Returns:
        ``(config, data)``: ``saved`` with :func:`head_params`, and the data on the device.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_dataset` and :func:`check_data`, for the
            sweep's dataset or the ``pretrained`` scheme's source.
    """
    dataset = load_dataset(saved.dataset, data_dir=saved.data_dir, download=saved.download)
    if saved.train_subset is not None or saved.test_subset is not None:
        dataset = dataset.subset(saved.train_subset, saved.test_subset, seed=saved.first_seed)
    params = head_params(saved.model, saved.model_params, saved.dataset)
    config = dataclasses.replace(saved, model_params=params)
    device = resolve_device(config.train.device)
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws globally
        model = build_model(config.model, **config.model_params).to(device)
    check_data(model, dataset, model_name=config.model, device=device)
    _check_pretrain_data(config, model, device)
    return config, TensorData.from_dataset(dataset, device)


def head_params(model: str, model_params: dict, dataset: str) -> dict:
    """Return zoo ``model``'s parameters with the head fitted to a known dataset's classes.

    A dataset of :data:`~initlab.datasets.families.DATASETS` has a published number of
    classes (26 for ``emnist-letters``, 47 for ``emnist-balanced``): the head gets that many
    outputs unless ``model_params`` sets ``num_classes``
    (:func:`~initlab.zoo.models.fit_classes`). Any other dataset name has no known
    class count, so the head keeps the model's ``num_classes`` (set or default); labels beyond
    it are an error in :func:`check_data`, never a silently wider head.

    Example:
        >>> head_params("mlp", {}, "emnist-letters"), head_params("mlp", {}, "glyphs")
        ({'num_classes': 26}, {})
    """
    info = DATASETS.get(dataset)
    if info is None:
        return dict(model_params)
    return fit_classes(model, model_params, info.num_classes)


def check_data(
    model: nn.Module,
    dataset: Dataset,
    *,
    model_name: str | None = None,
    device: str | torch.device = "cpu",
) -> int:
    """Check that ``model`` can be trained and tested on ``dataset``; return its class count.

    Checks, in this order, each raising with the dataset's name, the values and what fits:

    - neither split is empty;
    - labels are ``(N,)`` integer tensors (not bool, float or complex);
    - the test images have the training images' size;
    - the model takes a batch of two images of each split, scaled as
      :meth:`TensorData.from_dataset` does, ``(2, 1, H, W)`` float32 on ``device``, and returns
      logits ``(2, classes)`` (one forward pass per split, in eval mode and without gradients,
      so no BatchNorm statistic or dropout draw changes; the model's mode is restored);
    - every label lies in ``0 .. classes - 1``.

    The training loop itself would find these only when it reaches the offending batch: the
    test images after a whole epoch of training, a label beyond the head as a raw index error.

    Args:
        model: a classifier returning logits ``(B, classes)``, on ``device``.
        dataset: a :class:`~initlab.datasets.families.Dataset` (images ``(N, H, W)``).
        model_name: the zoo name of ``model``, for the hints (which parameters set its input
            size); ``None`` for another model.
        device: where ``model`` is.

    Returns:
        The number of logits, ``classes``.

    Raises:
        ValueError: a check fails.
    """
    name = dataset.name
    splits = (
        ("training", dataset.train_images, dataset.train_labels),
        ("test", dataset.test_images, dataset.test_labels),
    )
    for split, images, labels in splits:
        if len(images) == 0 or len(labels) == 0:
            raise ValueError(
                f"dataset {name!r} has no {split} images; a comparison trains on the training "
                "split and tests on the test split, so each needs at least one image"
            )
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex:
            raise ValueError(
                f"dataset {name!r}: the {split} labels must be (N,) integers; got shape "
                f"{tuple(labels.shape)} {labels.dtype}"
            )
        if labels.dtype == torch.bool:
            raise ValueError(f"dataset {name!r}: the {split} labels must be integers, not bool")
    size = tuple(dataset.train_images.shape[1:])
    if tuple(dataset.test_images.shape[1:]) != size:
        raise ValueError(
            f"dataset {name!r}: the test images are {_size(dataset.test_images)} but the "
            f"training images are {_size(dataset.train_images)}; train and test images must "
            "have one size"
        )
    classes = None
    for split, images, _ in splits:
        classes = _logits(model, images, split, name, model_name, device)
    low = min(int(labels.min()) for _, _, labels in splits)
    top = max(int(labels.max()) for _, _, labels in splits)
    if low < 0:
        raise ValueError(f"dataset {name!r}: labels must be >= 0; found {low}")
    if top >= classes:
        need = top + 1
        hint = (
            f"; {name!r} is not a known dataset, so its number of classes is not known and the "
            f"head keeps the model's {classes}"
            if name not in DATASETS
            else ""
        )
        raise ValueError(
            f"dataset {name!r}: the labels need {need} classes but the model returns {classes} "
            f"logits (labels {low}..{top}, logits for 0..{classes - 1}){hint}; build it with "
            f"num_classes={need} (--model-param num_classes={need})"
        )
    return classes


def _size(images: torch.Tensor) -> str:
    return "x".join(str(n) for n in images.shape[1:])


def _logits(model, images, split, name, model_name, device) -> int:
    """Run two images of a split through ``model``; return the number of logits."""
    x = images[:2].to(device).unsqueeze(1).float().div_(255.0)  # as TensorData.from_dataset
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(
            f"model {model_name or type(model).__name__!r} does not take the {split} images of "
            f"dataset {name!r}, {_size(images)} pixels (a batch of shape {tuple(x.shape)}): "
            f"{error}{_input_hint(model_name, images)}"
        ) from None
    finally:
        model.train(training)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != len(x):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"model {model_name or type(model).__name__!r} must return logits (B, classes) for "
            f"the {split} images of dataset {name!r}; for a batch of shape {tuple(x.shape)} it "
            f"returned {got}{_input_hint(model_name, images)}"
        )
    return logits.shape[1]


def _input_hint(model_name: str | None, images: torch.Tensor) -> str:
    """Which of the zoo model's parameters set its input size, for ``images``' size."""
    if model_name not in MODELS:
        return ""
    accepted = accepted_params(model_name)
    h, w = images.shape[1:]
    if "in_features" in accepted:
        return f"; for {h}x{w} images build it with in_features={h * w}"
    if "image_size" in accepted and h == w:
        return f"; for {h}x{w} images build it with image_size={h}"
    if "image_size" in accepted:
        return f"; model {model_name!r} takes square images only (image_size)"
    return f"; model {model_name!r} takes 28x28 images only"


def _check_pretrain_data(config: CompareConfig, model: nn.Module, device) -> None:
    """Load and check the ``pretrained`` scheme's source dataset, so a bad one fails up front.

    The source trains ``model``'s architecture (:mod:`initlab.experiments.pretrain`): its
    images and labels must fit it too (:func:`check_data`).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_dataset` and :func:`check_data`, with
            the ``--pretrain-*`` options in the hint.
    """
    if PRETRAINED not in config.schemes:
        return
    source = config.pretrain
    try:
        dataset = load_dataset(source.dataset, data_dir=source.data_dir)
        if source.subset is not None:
            dataset = dataset.subset(source.subset, None, seed=config.first_seed)
        check_data(model, dataset, model_name=config.model, device=device)
    except (FileNotFoundError, ValueError) as error:
        message = str(error)
        for old, new in _PRETRAIN_HINTS:
            message = message.replace(old, new)
        raise type(error)(
            f"scheme {PRETRAINED!r} pretrains on {source.dataset!r}: {message}"
        ) from None


def _gather(ranks: distributed.Ranks, results: Path, own: Path) -> None:
    """Append the other ranks' lines to rank 0's ``results.jsonl`` (rank order)."""
    if ranks.world == 1:
        return
    parts = ranks.gather([] if own == results else read_results(own))
    if parts is None:
        own.unlink()
        return
    with open(results, "a", encoding="utf-8") as sink:
        for line in (line for part in parts for line in part):
            _append(sink, line)


@dataclass(frozen=True)
class _Context:
    """What every run of this process uses: the config, data, output and hooks."""

    config: CompareConfig
    data: TensorData
    out: Path
    session: str  # part of the checkpoint names (see _plan)
    sink: TextIO  # this process's results file, appended to
    bar: tqdm.tqdm
    on_epoch: Callable[[str, EpochRecord], None] | None

    def write(self, line: dict) -> None:
        _append(self.sink, line)

    def checkpoint(self, runs: list[_Pending]) -> Path:
        """The file of a group or lone run: its first run's id and this session's token."""
        stem = runs[0].run.replace("/", "-")
        return self.out / CHECKPOINTS / f"{stem}.{self.session}.pt"

    def save(self, path: Path, states: dict[str, TrainState]) -> None:
        """Checkpoint ``states``; not after the last epoch (the status lines follow at once)."""
        if next(iter(states.values())).epoch < self.config.train.epochs:
            save_checkpoint(path, states)


def _train_runs(ctx: _Context, runs: list[_Pending], vectorize: bool) -> None:
    """Train ``runs``: those that start at the same epoch together as one stacked group when
    asked and possible, else one by one."""
    for epoch in sorted({run.epoch for run in runs}, reverse=True):
        same = [run for run in runs if run.epoch == epoch]
        _train_from(ctx, same, _load_states(same), vectorize)


def _load_states(runs: list[_Pending]) -> dict[str, TrainState]:
    """Each continued run's state from its checkpoint file (each file read once)."""
    files: dict[str, dict[str, TrainState]] = {}
    for source in {run.source for run in runs if run.source is not None}:
        files[source] = load_checkpoint(source)
    return {run.run: files[run.source][run.run] for run in runs if run.source is not None}


def _train_from(ctx: _Context, runs: list[_Pending], states: dict, vectorize: bool) -> None:
    reason = "not asked" if not vectorize else None
    if reason is None and len(runs) < 2:
        reason = "fewer than two runs"
    if reason is None:  # the architecture alone may already rule it out (no need to build all)
        reason = vectorizable([_bare_model(ctx)], ctx.data.train_x[:2])
    if reason is None:
        _run_group(ctx, runs, states)
        return
    if vectorize:
        log.info("training %s one after the other: %s", report.count(len(runs), "run"), reason)
    for run in runs:
        ctx.bar.set_description(run.run)
        _run_one(ctx, run, states.get(run.run))


def _run_group(ctx: _Context, runs: list[_Pending], states: dict) -> None:
    ctx.bar.set_description(f"{len(runs)} runs stacked")
    models = [_build(ctx, run, states.get(run.run)) for run in runs]
    reason = vectorizable(models, ctx.data.train_x[:2])
    if reason is not None:
        log.info("training %s one after the other: %s", report.count(len(runs), "run"), reason)
        for run, model in zip(runs, models, strict=True):
            _run_one(ctx, run, states.get(run.run), model)
        return
    log.info("training %d runs together, stacked", len(runs))
    bases = [_base(run) for run in runs]
    path = ctx.checkpoint(runs)
    ended: set[int] = set()
    written: list[tuple[int, EpochRecord]] = []  # this epoch's lines, for the bar and hook

    def line(index: int, record: EpochRecord) -> None:
        ctx.write({"type": "epoch", **bases[index], **dataclasses.asdict(record)})
        written.append((index, record))

    def saved(group: dict[int, TrainState]) -> None:
        ctx.save(path, {bases[index]["run"]: state for index, state in group.items()})
        ctx.bar.update(len(written))
        lines = list(written)
        written.clear()
        if ctx.on_epoch is not None:
            for index, record in lines:
                ctx.on_epoch(bases[index]["run"], record)

    def done(index: int, result: RunResult) -> None:
        ended.add(index)
        _status(ctx, bases[index], result)

    try:
        train_group(
            models,
            ctx.data,
            ctx.config.train,
            [run.seed for run in runs],
            on_epoch=line,
            on_done=done,
            start=[states[run.run] for run in runs] if runs[0].epoch else None,
            on_state=saved,
        )
    except (KeyboardInterrupt, Exception) as error:
        for index in sorted(set(range(len(runs))) - ended):
            _stopped(ctx, bases[index], error)
        raise
    path.unlink(missing_ok=True)


def _base(run: _Pending) -> dict:
    return {"run": run.run, "scheme": run.scheme, "seed": run.seed}


def _run_one(ctx: _Context, run: _Pending, state: TrainState | None, model=None) -> None:
    """Train one run (building it first unless ``model`` is given) and write its lines."""
    base = _base(run)
    if model is None:
        model = _build(ctx, run, state)
    path = ctx.checkpoint([run])
    records: list[EpochRecord] = []

    def line(record: EpochRecord) -> None:
        ctx.write({"type": "epoch", **base, **dataclasses.asdict(record)})
        ctx.bar.update(1)
        records.append(record)

    def saved(after: TrainState) -> None:
        ctx.save(path, {run.run: after})
        if ctx.on_epoch is not None:
            ctx.on_epoch(run.run, records[-1])

    try:
        result = train(
            model,
            ctx.data,
            dataclasses.replace(ctx.config.train, seed=run.seed),
            on_epoch=line,
            start=state,
            on_state=saved,
        )
    except (KeyboardInterrupt, Exception) as error:
        _stopped(ctx, base, error)
        raise
    _status(ctx, base, result)
    path.unlink(missing_ok=True)


def _build(ctx: _Context, run: _Pending, state: TrainState | None):
    """The run's model on the data's device: initialized (and its init line written), or,
    for a continued run, loaded from its state."""
    if state is None:
        return _start(ctx, run)
    model = _bare_model(ctx)
    model.load_state_dict(state.model)
    return model


def _bare_model(ctx: _Context):
    """The zoo model on the data's device, weights as constructed (they are overwritten)."""
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws globally
        model = build_model(ctx.config.model, **ctx.config.model_params)
    return model.to(ctx.data.train_x.device)


def _start(ctx: _Context, run: _Pending):
    """Build and initialize one run's model on the data's device; write its init line."""
    config, data = ctx.config, ctx.data
    if run.scheme == PRETRAINED:
        model = build_for_run(config, run.seed, ctx.out)
    else:
        model = build_initialized(
            config.model,
            run.scheme,
            seed=run.seed,
            model_params=config.model_params,
            bias_init=config.bias_init,
            batch=init_batch(data),
        )
    model = model.to(data.train_x.device)
    x = init_batch(data).to(data.train_x.device)
    diagnosis = init_record(
        model,
        (x, data.train_y[: len(x)]),
        ctx.out / "diagnosis" / f"{run.run.replace('/', '-')}.json",
    )
    ctx.write({"type": "init", **_base(run), **diagnosis})
    return model


def _status(ctx: _Context, base: dict, result: RunResult) -> None:
    status = {"type": "status", **base, "status": result.status}
    if result.status == "diverged":
        status.update(epoch=result.diverged_epoch, step=result.diverged_step)
        log.warning(
            "%s diverged at epoch %d, step %d", base["run"], status["epoch"], status["step"]
        )
        # the diverged epoch and the ones after it will not be trained
        ctx.bar.update(ctx.config.train.epochs - result.diverged_epoch + 1)
    ctx.write(status)


def _stopped(ctx: _Context, base: dict, error: BaseException) -> None:
    """Record a run cut short: ``interrupted`` (Ctrl-C) or ``failed`` (with the error)."""
    if isinstance(error, KeyboardInterrupt):
        ctx.write({"type": "status", **base, "status": "interrupted"})
    else:
        ctx.write({"type": "status", **base, "status": "failed", "error": repr(error)})


def _append(sink, line: dict) -> None:
    sink.write(json.dumps(line) + "\n")
    sink.flush()
    os.fsync(sink.fileno())  # a crash or power loss keeps every line written so far


def read_results(path: str | os.PathLike) -> list[dict]:
    """Read ``results.jsonl``; a missing file is empty, a torn last line (crash) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    parsed = []
    for number, text in enumerate(lines, 1):
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError:
            if number != len(lines):
                raise ValueError(f"{path}, line {number}: not valid JSON: {text[:80]!r}") from None
            log.warning("%s: skipping a torn last line (the sweep stopped while writing)", path)
    return parsed


def _terminal_runs(lines: Iterable[dict]) -> set[str]:
    return {
        line["run"] for line in lines if line["type"] == "status" and line["status"] in TERMINAL
    }
