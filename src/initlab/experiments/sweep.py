"""The comparison runner: train every scheme x seed, stream results to disk, resume after a stop.

This module orchestrates; the pieces live beside it: the configs
(:mod:`~initlab.experiments.config`), the data checks (:mod:`~initlab.experiments.data`), the
output directory's files and lock (:mod:`~initlab.experiments.results`), train states,
checkpoints and resume points (:mod:`~initlab.experiments.checkpoint`), the sequential and the
stacked trainer (:mod:`~initlab.experiments.trainer`, :mod:`~initlab.experiments.stacked`, on
one core: :mod:`~initlab.experiments.core`), torchrun ranks
(:mod:`~initlab.experiments.distributed`) and the report (:mod:`~initlab.reports.compare`).

Output directory layout:

- ``config.json``: the resolved :class:`~initlab.experiments.config.CompareConfig`;
- ``results.jsonl``: one JSON object per line, appended and fsync'ed as the sweep goes:
  ``{"type": "init", ...}`` (activation std per layer at initialization, one per run),
  ``{"type": "epoch", ...}`` (one per finished epoch of a run: an
  :class:`~initlab.experiments.core.EpochRecord`; files written before ``loss_curve``
  existed lack it, and the report then uses the epoch's mean loss) and
  ``{"type": "status", ...}`` with ``status`` ``finished``, ``diverged`` (with ``epoch`` and
  ``step``), ``interrupted`` (KeyboardInterrupt) or ``failed`` (any other exception, with
  ``error``);
- ``checkpoints/``: while runs are unfinished, one file per stacked group or lone run
  (:mod:`initlab.experiments.checkpoint`), overwritten atomically after each epoch but the
  last, deleted when its runs end and, with the folder, when the sweep is done;
- ``summary.csv``, ``report.md`` and PNG figures (:mod:`initlab.reports.compare`).

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
``results.jsonl``), the data are checked against the model
(:func:`~initlab.experiments.data.check_data`, the
``pretrained`` scheme's source too): no empty split, train and test images of one size that the
model takes, integer labels within its outputs. A new sweep that fails before its first line
leaves neither ``config.json`` nor ``results.jsonl`` behind, so the same ``out_dir`` can be
used again.

One sweep at a time writes into a directory: a sweep holds an exclusive lock on
``out_dir/.initlab-compare.lock`` (:mod:`filelock`: ``flock`` on POSIX, released by the
operating system if the process dies) from before it reads or writes anything there until it
returns or raises, and records its process id, host and start time in
``out_dir/.initlab-compare.holder.json`` for as long as it holds it. A second sweep on the same
directory, new or resumed, is refused
(:class:`~initlab.experiments.results.OutDirInUseError`, naming the holder) before it
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
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import tqdm
from torch import nn
from tqdm.contrib.logging import logging_redirect_tqdm

from initlab._checks import ArgumentError
from initlab._files import atomic_write
from initlab.datasets.families import DataNotFoundError, load_dataset
from initlab.experiments import distributed
from initlab.experiments.checkpoint import (
    CHECKPOINTS,
    PendingRun,
    load_checkpoint,
    resume_points,
    save_checkpoint,
)
from initlab.experiments.config import DEFAULT_SCHEMES, CompareConfig
from initlab.experiments.core import (
    EpochRecord,
    RunResult,
    TensorData,
    resolve_device,
    sequence_cross_entropy,
)
from initlab.experiments.data import (
    check_data,
    check_fit,
    head_params,
    lm_data,
    lm_params,
    load_data,
    load_split,
    tensor_data,
)
from initlab.experiments.diagnosis import init_record
from initlab.experiments.pretrain import source_for_run
from initlab.experiments.results import (
    CONFIG,
    HOLDER_FILE,
    LOCK_FILE,
    RESULTS,
    NothingToResumeError,
    OutDirInUseError,
    ResultsExistError,
    append_line,
    lock_out_dir,
    merge_rank_files,
    read_results,
    refuse_existing,
    require_config,
    run_id,
)
from initlab.experiments.stacked import train_group, vectorizable
from initlab.experiments.tasks import resolve_task
from initlab.experiments.tensorboard import TensorBoardLog
from initlab.experiments.trainer import (
    TrainState,
    build_initialized,
    init_batch,
    scheme_batch,
    train,
)
from initlab.reports import compare as report
from initlab.schemes.registry import check_fits, parse_scheme
from initlab.zoo.models import build_model

__all__ = [
    "DEFAULT_SCHEMES",
    "HOLDER_FILE",
    "LOCK_FILE",
    "CompareConfig",
    "NothingToResumeError",
    "OutDirInUseError",
    "ResultsExistError",
    "SweepResult",
    "check_data",
    "head_params",
    "lock_out_dir",
    "read_results",
    "run_id",
    "run_sweep",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep returns: its config, output directory and summary rows."""

    config: CompareConfig
    out_dir: Path
    rows: list[report.SummaryRow]


def run_sweep(
    config: CompareConfig | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[str, EpochRecord], None] | None = None,
    vectorize: bool = False,
    tensorboard: str | os.PathLike | None = None,
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
        progress: show a tqdm progress bar (on stderr) counting the optimizer steps still to
            take, summed over runs (run-steps: runs x epochs left x steps per epoch); it moves
            every :data:`~initlab.experiments.core.PROGRESS_EVERY` steps within an epoch (a
            stacked group by its number of runs per step), and a diverged run's remaining
            steps count as done. No bar when nothing is left. While it runs, log records of
            the root logger's console handlers go through ``tqdm.write`` (tqdm's
            ``logging_redirect_tqdm``): on lines of their own above the bar.
        on_epoch: called with ``(run id, record)`` after each epoch's lines and checkpoint are
            written (stacked: after the whole group's epoch); tests use it to simulate an
            interrupt.
        vectorize: train all runs together, stacked, when the model allows it (see the module
            docstring); ``initlab compare`` turns it on unless ``--no-vectorize``.
        tensorboard: a TensorBoard log directory: each epoch's record is also written there as
            scalars, before ``on_epoch`` is called, one TensorBoard run per run id
            (:class:`~initlab.experiments.tensorboard.TensorBoardLog`; under torchrun each
            rank writes its own runs). ``None`` (the default): no TensorBoard logging.
    Returns:
        A :class:`SweepResult`; its rows (one per scheme; with an ``lr_grid`` and
        ``select_rates=False`` in the config, one per rate and scheme) are those of
        ``summary.csv``. With ``select_rates=False`` (see :class:`CompareConfig`) each rate's
        report and figures go to ``out_dir/lr=<rate>/`` and ``summary.csv`` has an ``lr``
        column.

    Raises:
        OutDirInUseError: another sweep holds ``out_dir``'s lock (see the module docstring);
            nothing in ``out_dir`` was read or changed.
        ResultsExistError: a new sweep into a directory that already has results (a
            ``FileExistsError`` naming ``out_dir``).
        NothingToResumeError: resuming a directory without ``config.json`` (a
            ``FileNotFoundError`` naming ``out_dir``).
        DataNotFoundError: the dataset's files are missing (argument ``data_dir``, or
            ``pretrain.data_dir`` for the ``pretrained`` scheme's source).
        ArgumentError: (argument ``tensorboard``) the ``tensorboard`` package is not
            installed; raised before anything is read or written.
        ValueError: the data do not fit the model (see :func:`check_data`; an
            ``ArgumentError`` naming ``model_params`` when the head is too small), and the
            errors of :func:`~initlab.datasets.families.load_dataset`; raised before anything
            is written.
        KeyboardInterrupt: re-raised after recording the interrupted runs; finished epochs and
            runs stay in ``results.jsonl`` (under torchrun, ranks > 0's in their rank files,
            gathered on resume), checkpoints in ``checkpoints/``.
    """
    # before anything runs: a missing tensorboard package is refused up front
    board = None if tensorboard is None else TensorBoardLog(tensorboard, argument="tensorboard")
    with distributed.session() as ranks, contextlib.ExitStack() as held:
        # torchrun ranks may have computed different default names (timestamps): use rank 0's
        out = Path(ranks.from_main(lambda: out_dir))
        if board is not None:  # closed (flushed) when the sweep ends, however it ends
            on_epoch = held.enter_context(board).then(on_epoch)

        def lock() -> None:  # rank 0 holds the directory for every rank, until the end
            held.enter_context(lock_out_dir(out))

        if resume:
            ranks.from_main(lambda: require_config(out))  # not creating a directory to lock
        # lock before reading anything in an existing directory (a busy one is refused as
        # such); a new directory only once the checks pass, so a refused config leaves none
        locked = resume or ranks.from_main(out.is_dir)
        if locked:
            ranks.from_main(lock)
        saved = ranks.from_main(lambda: _checked_config(config, out, resume))
        config, data = _prepare(saved, hold_out=saved.select_rates)
        if not locked:
            ranks.from_main(lock)
        pending, session = ranks.from_main(lambda: _begin(out, config, saved, resume))
        mine = ranks.shard(pending)
        results = out / RESULTS
        own = results if ranks.rank == 0 else out / f"results.rank{ranks.rank}.jsonl"
        (out / CHECKPOINTS).mkdir(exist_ok=True)
        steps = config.train.steps_per_epoch(data.train_x.shape[0])
        left = sum(config.train.epochs - run.epoch for run in mine) * steps
        try:
            with (
                _bar(left, progress and ranks.rank == 0) as bar,
                logging_redirect_tqdm(tqdm_class=tqdm.tqdm),
                open(own, "a" if own == results else "w", encoding="utf-8") as sink,
            ):
                context = _Context(
                    config, data, out, session, sink, bar, on_epoch, _Progress(bar, steps)
                )
                _train_runs(context, mine, vectorize)
        except Exception:
            if not resume and ranks.world == 1:
                _discard_failed_start(out)
            raise
        _gather(ranks, results, own)
        if ranks.rank == 0:  # every run has ended: no checkpoint is needed any more
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        rows = ranks.from_main(lambda: _write_report(out, config, read_results(results)))
    return SweepResult(config, out, rows)


def _bar(total: int, show: bool) -> tqdm.tqdm:
    """The progress bar over ``total`` run-steps; none when nothing is left to train."""
    # tqdm's default mininterval (0.1 s) throttles the redraws of the frequent step updates
    return tqdm.tqdm(total=total, disable=not show or total == 0, unit="step")


class _Progress:
    """The bar's bookkeeping in run-steps.

    The trainers report steps as they go (:meth:`step`); at an epoch's end the sweep knows
    exactly what the epoch completed (:meth:`owe`: each finished run's steps, each diverged
    run's remaining steps) and :meth:`settle` moves the bar by what the reports left out.
    Reports never exceed what is owed (a run reports at most its epoch's steps), so the bar
    only moves forward and ends at its total.
    """

    def __init__(self, bar: tqdm.tqdm, steps: int):
        self.bar = bar
        self.steps = steps  # optimizer steps per epoch
        self.moved = 0  # reported since the last settle
        self.owed = 0  # completed since the last settle

    def step(self, count: int) -> None:
        self.bar.update(count)
        self.moved += count

    def owe(self, count: int) -> None:
        self.owed += count

    def settle(self) -> None:
        self.bar.update(max(self.owed - self.moved, 0))
        self.moved = self.owed = 0


def _checked_config(config: CompareConfig | None, out: Path, resume: bool) -> CompareConfig:
    """The sweep's config: a resumed one's ``config.json``, or ``config`` once checked.

    Reads, writes nothing. A new sweep is refused into a directory with results and when a
    scheme does not apply to the model.
    """
    if resume:
        require_config(out)
        return CompareConfig.from_json((out / CONFIG).read_text())
    refuse_existing(out)
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
        merge_rank_files(out)
        pending = resume_points(out, config)
        done = len(config.schemes) * config.seeds * len(config.rates()) - len(pending)
    else:
        refuse_existing(out)  # again, now under the lock: a sweep may have started meanwhile
        _create(out, saved)
        pending = [
            PendingRun(scheme, seed, lr=lr)
            for lr in config.rates()
            for seed in config.seed_list()
            for scheme in config.schemes
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
    atomic_write(out / CONFIG, config.to_json() + "\n")


def _discard_failed_start(out: Path) -> None:
    """Remove the files of a new sweep that failed before writing a line.

    Left behind, an empty ``results.jsonl`` would refuse the corrected command ("exists;
    resume it") and ``--resume`` would replay the failing config.
    """
    results = out / RESULTS
    if results.exists() and results.stat().st_size == 0:
        results.unlink()
        (out / CONFIG).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        log.info("removed the empty results.jsonl and config.json of the failed start in %s", out)


def _check_applicable(config: CompareConfig, data: TensorData) -> None:
    """Build the model once and apply every scheme to a copy; raise if one fails.

    The policy traces the data's first inputs (``auto`` on vectors, not a 28x28 probe); steps
    that need more data (LSUV's batch, a source checkpoint) are left to the runs.
    """
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG
        model = build_model(config.model, **config.model_params)
    for scheme in config.schemes:
        check_fits(model, scheme, config.model, batch=init_batch(data))


def _write_report(out: Path, config: CompareConfig, lines: list[dict]) -> list[report.SummaryRow]:
    """The sweep's report; with ``select_rates=False`` one per rate (see :func:`run_sweep`)."""
    if config.select_rates or config.lr_grid is None:
        return report.write_report(out, config, lines)
    rows = []
    for lr in config.lr_grid:
        own = dataclasses.replace(
            config, lr_grid=None, train=dataclasses.replace(config.train, lr=lr)
        )
        sub = out / f"lr={lr!r}"
        sub.mkdir(exist_ok=True)
        at = [line for line in lines if line.get("lr") == lr]
        rows += [dataclasses.replace(r, lr=lr) for r in report.write_report(sub, own, at)]
    report.write_summary(out / "summary.csv", rows)
    return rows


def _prepare(saved: CompareConfig, hold_out: bool = True) -> tuple[CompareConfig, TensorData]:
    """Load the data, fit the model's head to the dataset and check both; write nothing.

    With the config's ``lr_grid`` and ``hold_out``, a validation split is held out of the
    training data (to choose the rates on).

    Returns:
        ``(config, data)``: ``saved`` with :func:`head_params`, and the data on the device.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_dataset` and :func:`check_data`, for the
            sweep's dataset or the ``pretrained`` scheme's source.
    """
    options = dict(
        data_dir=saved.data_dir,
        download=saved.download,
        train_subset=saved.train_subset,
        test_subset=saved.test_subset,
        seed=saved.first_seed,
        standardize=saved.standardize,
    )
    task = resolve_task(saved.task)
    if task.kind == "lm":
        return _prepare_lm(saved)
    val = None
    try:
        if saved.lr_grid is None or not hold_out:
            dataset = load_data(saved.dataset, saved.data, **options)
        else:  # the rates are chosen on a split held out of the training data, never on the test
            dataset, val = load_split(
                saved.dataset, saved.data, val_fraction=saved.val_fraction, **options
            )
    except DataNotFoundError as error:
        if not task.needs_files or saved.dataset != task.dataset:
            raise
        context = (
            f"task {task.name!r} trains on {task.dataset!r}, which initlab does not embed "
            "(give data_dir or download=True): "
        )
        raise error.reworded(error.argument, fetchable=True, context=context) from None
    params = head_params(saved.model, saved.model_params, saved.dataset, dataset.num_classes)
    config = dataclasses.replace(saved, model_params=params)
    device = resolve_device(config.train.device)
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws globally
        model = build_model(config.model, **config.model_params).to(device)
    check_data(model, dataset, model_name=config.model, device=device)
    _check_pretrain_data(config, model, device)
    data = tensor_data(dataset, device, val)
    _check_applicable(config, data)
    return config, data


def _prepare_lm(saved: CompareConfig) -> tuple[CompareConfig, TensorData]:
    """:func:`_prepare` for a language-model task: the corpus's windows, the vocabulary filled
    in, the model probed (:func:`~initlab.experiments.data.check_fit`) and every scheme
    applied to a copy; nothing written."""
    device = resolve_device(saved.train.device)
    data, vocab = lm_data(
        saved.text_file,
        saved.resolved_seq_len(),
        device,
        train_subset=saved.train_subset,
        test_subset=saved.test_subset,
    )
    params = lm_params(saved.model, saved.model_params, vocab, saved.resolved_seq_len())
    config = dataclasses.replace(saved, model_params=params)
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws globally
        model = build_model(config.model, **config.model_params).to(device)
    check_fit(resolve_task(config.task), model, data, config.model)
    _check_applicable(config, data)
    return config, data


def _check_pretrain_data(config: CompareConfig, model: nn.Module, device) -> None:
    """Load and check the ``pretrained`` scheme's source dataset, so a bad one fails up front.

    The source trains ``model``'s architecture (:mod:`initlab.experiments.pretrain`): its
    images and labels must fit it too (:func:`check_data`).

    Raises:
        DataNotFoundError: the source's files are missing; it names the argument
            ``pretrain.data_dir`` (the source does not download).
        ArgumentError, FileNotFoundError, ValueError: as :func:`load_dataset` and
            :func:`check_data`, the message led by the scheme and its source dataset.
    """
    loading = [s for s in config.schemes if parse_scheme(s)[0].needs_source]
    if not loading:
        return
    source = config.pretrain
    context = f"scheme {loading[0]!r} pretrains on {source.dataset!r}: "
    try:
        dataset = load_dataset(source.dataset, data_dir=source.data_dir)
        if source.subset is not None:
            dataset = dataset.subset(source.subset, None, seed=config.first_seed)
        check_data(model, dataset, model_name=config.model, device=device)
    except DataNotFoundError as error:  # the source's own directory argument; no download
        raise error.reworded("pretrain.data_dir", fetchable=False, context=context) from None
    except ArgumentError as error:  # an argument the source shares with the comparison
        raise ArgumentError(error.argument, f"{context}{error}") from None
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"{context}{error}") from None


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
            append_line(sink, line)


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
    progress: _Progress

    def write(self, line: dict) -> None:
        append_line(self.sink, line)

    def epoch_line(self, base: dict, record: EpochRecord) -> dict:
        """A run's epoch line; a language model's adds its losses in bits per character."""
        line = {"type": "epoch", **base, **record.line()}
        if resolve_task(self.config.task).kind == "lm":
            line["test_bpc"] = record.test_bpc
            if record.val_bpc is not None:
                line["val_bpc"] = record.val_bpc
        return line

    def checkpoint(self, runs: list[PendingRun]) -> Path:
        """The file of a group or lone run: its first run's id and this session's token."""
        stem = runs[0].run.replace("/", "-")
        return self.out / CHECKPOINTS / f"{stem}.{self.session}.pt"

    def save(self, path: Path, states: dict[str, TrainState]) -> None:
        """Checkpoint ``states``; not after the last epoch (the status lines follow at once)."""
        if next(iter(states.values())).epoch < self.config.train.epochs:
            save_checkpoint(path, states)


def _train_runs(ctx: _Context, runs: list[PendingRun], vectorize: bool) -> None:
    """Train ``runs``: those that start at the same epoch together as one stacked group when
    asked and possible, else one by one (latest epoch first; within it, a grid's rates in
    grid order).

    A grid's rates share a stack: each run steps at its own rate
    (:func:`~initlab.experiments.stacked.train_group`'s ``lrs``,
    :class:`~initlab.experiments.optim.StackedOptimizer`), so an ``--lr-grid`` of ``k`` rates
    is one stack of ``k`` times the runs, not ``k`` stacks.
    """
    for epoch in sorted({run.epoch for run in runs}, reverse=True):
        # stable: a rate's runs keep their order, as when each rate was a group of its own
        same = [run for run in runs if run.epoch == epoch]
        same.sort(key=lambda run: _rate_order(ctx, run.lr))
        _train_from(ctx, same, _load_states(same), vectorize)


def _rate_order(ctx: _Context, lr: float | None) -> int:
    return 0 if lr is None else ctx.config.rates().index(lr)


def _train_config(ctx: _Context, run: PendingRun):
    """The run's optimization settings: the config's, at the run's grid rate if it has one."""
    train = ctx.config.train
    return train if run.lr is None else dataclasses.replace(train, lr=run.lr)


def _load_states(runs: list[PendingRun]) -> dict[str, TrainState]:
    """Each continued run's state from its checkpoint file (each file read once)."""
    files: dict[str, dict[str, TrainState]] = {}
    for source in {run.source for run in runs if run.source is not None}:
        files[source] = load_checkpoint(source)
    return {run.run: files[run.source][run.run] for run in runs if run.source is not None}


def _train_from(ctx: _Context, runs: list[PendingRun], states: dict, vectorize: bool) -> None:
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


def _run_group(ctx: _Context, runs: list[PendingRun], states: dict) -> None:
    ctx.bar.set_description(f"{len(runs)} runs stacked")
    models = [_build(ctx, run, states.get(run.run)) for run in runs]
    classes = _buffer_classes(models)
    if len(classes) == 1:
        _run_stack(ctx, runs, models, states)
        return
    # Buffers are shared by a stack (the vmapped forward reads the first model's), so runs
    # whose buffers differ (deepnorm's residual_scale against the other schemes' 1) train as
    # one stack per class of equal buffers.
    log.info(
        "the runs' buffers differ: training %s of equal buffers",
        report.count(len(classes), "stack"),
    )
    for members in classes:
        if len(members) == 1:
            (i,) = members
            _run_one(ctx, runs[i], states.get(runs[i].run), models[i])
        else:
            _run_stack(ctx, [runs[i] for i in members], [models[i] for i in members], states)


def _buffer_classes(models: list[nn.Module]) -> list[list[int]]:
    """Partition model indices into classes of equal buffers (names, shapes and values),
    in order of first appearance."""
    classes: list[list[int]] = []
    for i, model in enumerate(models):
        buffers = dict(model.named_buffers())
        for members in classes:
            first = dict(models[members[0]].named_buffers())
            if first.keys() == buffers.keys() and all(
                first[n].shape == b.shape and torch.equal(first[n], b) for n, b in buffers.items()
            ):
                members.append(i)
                break
        else:
            classes.append([i])
    return classes


def _run_stack(ctx: _Context, runs: list[PendingRun], models: list, states: dict) -> None:
    """Train ``runs`` (their ``models`` built) as one stack, or one by one if they cannot."""
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
        ctx.write(ctx.epoch_line(bases[index], record))
        written.append((index, record))

    def saved(group: dict[int, TrainState]) -> None:
        ctx.save(path, {bases[index]["run"]: state for index, state in group.items()})
        ctx.progress.owe(len(written) * ctx.progress.steps)
        ctx.progress.settle()
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
            on_step=ctx.progress.step,
            lrs=[ctx.config.train.lr if run.lr is None else run.lr for run in runs],
        )
        ctx.progress.settle()  # an epoch in which every run diverged has no on_state call
    except (KeyboardInterrupt, Exception) as error:
        for index in sorted(set(range(len(runs))) - ended):
            _stopped(ctx, bases[index], error)
        raise
    path.unlink(missing_ok=True)


def _base(run: PendingRun) -> dict:
    base = {"run": run.run, "scheme": run.scheme, "seed": run.seed}
    if run.lr is not None:  # a grid's run carries its rate; others' lines are as before
        base["lr"] = run.lr
    return base


def _run_one(ctx: _Context, run: PendingRun, state: TrainState | None, model=None) -> None:
    """Train one run (building it first unless ``model`` is given) and write its lines."""
    base = _base(run)
    if model is None:
        model = _build(ctx, run, state)
    path = ctx.checkpoint([run])
    records: list[EpochRecord] = []

    def line(record: EpochRecord) -> None:
        ctx.write(ctx.epoch_line(base, record))
        ctx.progress.owe(ctx.progress.steps)
        ctx.progress.settle()
        records.append(record)

    def saved(after: TrainState) -> None:
        ctx.save(path, {run.run: after})
        if ctx.on_epoch is not None:
            ctx.on_epoch(run.run, records[-1])

    try:
        result = train(
            model,
            ctx.data,
            dataclasses.replace(_train_config(ctx, run), seed=run.seed),
            on_epoch=line,
            start=state,
            on_state=saved,
            on_step=ctx.progress.step,
        )
    except (KeyboardInterrupt, Exception) as error:
        _stopped(ctx, base, error)
        raise
    _status(ctx, base, result)
    ctx.progress.settle()
    path.unlink(missing_ok=True)


def _build(ctx: _Context, run: PendingRun, state: TrainState | None):
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


def _start(ctx: _Context, run: PendingRun):
    """Build and initialize one run's model on the data's device; write its init line."""
    config, data = ctx.config, ctx.data
    source = None
    if parse_scheme(run.scheme)[0].needs_source:  # e.g. pretrained: pretrain (or reuse) it
        source = source_for_run(config, run.seed, ctx.out)
    model = build_initialized(
        config.model,
        run.scheme,
        seed=run.seed,
        model_params=config.model_params,
        bias_init=config.bias_init,
        batch=scheme_batch(data),
        source=source,
    )
    model = model.to(data.train_x.device)
    x = init_batch(data).to(data.train_x.device)
    diagnosis = init_record(
        model,
        (x, data.train_y[: len(x)]),
        ctx.out / "diagnosis" / f"{run.run.replace('/', '-')}.json",
        loss_fn=sequence_cross_entropy if resolve_task(config.task).kind == "lm" else None,
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
        # the diverged epoch and the ones after it will not be trained: they count as done
        left = ctx.config.train.epochs - result.diverged_epoch + 1
        ctx.progress.owe(left * ctx.progress.steps)
    ctx.write(status)


def _stopped(ctx: _Context, base: dict, error: BaseException) -> None:
    """Record a run cut short: ``interrupted`` (Ctrl-C) or ``failed`` (with the error)."""
    if isinstance(error, KeyboardInterrupt):
        ctx.write({"type": "status", **base, "status": "interrupted"})
    else:
        ctx.write({"type": "status", **base, "status": "failed", "error": repr(error)})
