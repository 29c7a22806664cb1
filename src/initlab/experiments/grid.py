"""Grids: one model family trained over the product of several axes, stacked where shapes allow.

A grid (:class:`GridConfig`) varies any of :data:`AXES` around a base
:class:`~initlab.experiments.config.CompareConfig` (model, data, optimization, seeds):

- ``depth``, ``width``, ``activation``: keyword arguments of the model (the zoo's ``mlp``);
- ``sw2``, ``sb2``: the mean-field Gaussian scheme's weight and bias variances
  (:data:`initlab.schemes.meanfield.MEANFIELD`, ``meanfield:sw2=..:sb2=..``); an axis left out
  takes the scheme's default (sw2 = 1, sb2 = 0). Not together with ``scheme``;
- ``scheme``: any scheme name of :mod:`initlab.schemes.registry`;
- ``lr``, ``optimizer``: the training settings.

Cells that differ only in ``sw2``, ``sb2``, ``scheme``, ``lr`` (and seed) share the model's
shapes and the optimizer, so they form one *group*, run as one comparison
(:func:`~initlab.experiments.sweep.run_sweep`, stacked) whose schemes are the cells' schemes and
whose rates (``lr_grid``, with ``select_rates=False`` recorded in its ``config.json``: every
rate trains on the whole training set, each run at its own rate in the one stack, and no rate
is chosen) are the cells' rates;
every other axis (:data:`GROUP_AXES`) starts a new group.

Output directory layout:

- ``grid.json``: the :class:`GridConfig`;
- ``groups/<name>/``: each group's comparison directory (its ``config.json``, ``results.jsonl``
  written epoch by epoch as training goes, ``summary.csv``, ``report.md``; with an ``lr`` axis
  ``summary.csv`` has one row per scheme and rate, and each rate's ``report.md`` and figures
  are in ``lr=<rate>/``); ``<name>`` spells the group's values, e.g. ``depth=20_width=64``
  (``all`` when no group axis varies);
- ``cells.jsonl``: one line per run (cell x seed), appended once its group has finished
  (:func:`cell_lines`): the cell's axis values, seed, status and per-epoch metrics;
- ``report.md`` and the heatmaps (:func:`initlab.reports.phase.write_grid_report`).

Resuming (``resume=True``) skips finished groups, continues an unfinished one from its
checkpoints (:func:`~initlab.experiments.sweep.run_sweep` with ``resume=True``) and starts the
rest. A grid whose estimated time (:func:`estimate_seconds`: a timed probe of training steps of
its largest model, scaled by parameter count) exceeds ``budget_minutes`` is refused before
anything is written (:class:`GridTooLargeError`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from initlab._checks import ArgumentError, one_of
from initlab._files import atomic_write
from initlab.experiments.config import CompareConfig
from initlab.experiments.core import PROGRESS_EVERY, TensorData
from initlab.experiments.data import head_params, load_data, tensor_data
from initlab.experiments.results import RESULTS, append_line, read_results
from initlab.experiments.stacked import train_group, vectorizable
from initlab.experiments.sweep import run_sweep
from initlab.experiments.trainer import train as train_step
from initlab.reports.phase import METRICS, STEP_METRICS, write_grid_report
from initlab.schemes.meanfield import meanfield_name
from initlab.zoo.models import build_model, model_defaults

__all__ = [
    "AXES",
    "GROUP_AXES",
    "Estimate",
    "GridConfig",
    "GridExistsError",
    "GridTooLargeError",
    "cell_lines",
    "estimate_seconds",
    "parse_axis",
    "run_grid",
]

log = logging.getLogger(__name__)

#: The axes a grid may vary, and how each value is read from text.
AXES: dict[str, type] = {
    "depth": int,
    "width": int,
    "activation": str,
    "sw2": float,
    "sb2": float,
    "scheme": str,
    "lr": float,
    "optimizer": str,
}
#: The axes that separate groups (model shapes, the optimizer); the others (``sw2``, ``sb2``,
#: ``scheme``: its schemes; ``lr``: its rates) are the runs of one stacked comparison.
GROUP_AXES = ("depth", "width", "activation", "optimizer")
GRID_FILE, CELLS, GROUPS = "grid.json", "cells.jsonl", "groups"
# The probe trains this many steps; progress is reported after PROGRESS_EVERY and after the
# last, and the steps between the two reports are timed (the first ones warm up).
_PROBE_STEPS = 15
# Seconds of a group besides its training steps and test passes: loading and standardizing
# MNIST, the initialization diagnosis of each run, the group's report.md and figures (8 to 12
# s per group of 13 runs measured on a shared 2-core x86-64, 1 thread).
_GROUP_SECONDS = 10.0


class GridExistsError(FileExistsError):
    """A new grid into a directory that already holds one (``grid.json``)."""


class GridTooLargeError(ArgumentError):
    """A grid whose estimated time exceeds its budget (argument ``budget_minutes``)."""


@dataclass(frozen=True)
class GridConfig:
    """A grid: ``axes`` (name -> values, in order) around the comparison ``base``.

    Attributes:
        axes: each of :data:`AXES` that varies, with at least one value and no repeats;
            ``depth``/``width`` ints >= 1, ``sw2``/``sb2`` floats >= 0, ``lr`` floats > 0.
        base: everything else (model, its other parameters, data, optimization, seeds, the
            scheme of cells without a ``scheme``/``sw2``/``sb2`` axis: ``base.schemes[0]``).
        budget_minutes: refuse to start when the estimated time exceeds it (``None``: no limit).
        stack_lr: the ``lr`` axis's rates are the runs of their group's stack (the default);
            ``False``: each rate is a group of its own, the layout of grids written before
            (a ``grid.json`` without this field reads as ``False``, so such a grid resumes into
            the groups it started).

    Raises:
        ArgumentError: (argument ``grid``) an unknown axis, an empty or repeated value list, a
            value of the wrong type, ``scheme`` together with ``sw2``/``sb2``, or a model axis
            the model does not take; (``budget_minutes``) a budget that is not > 0. The group
            configs are built here, so an unknown scheme, optimizer or activation is refused too.
    """

    axes: dict[str, tuple]
    base: CompareConfig = field(default_factory=lambda: CompareConfig(model="mlp"))
    budget_minutes: float | None = None
    stack_lr: bool = True

    def __post_init__(self) -> None:
        axes = {}
        for name, values in self.axes.items():
            _axis(name)
            values = tuple(values)
            if not values or len(set(values)) != len(values):
                raise ArgumentError(
                    "grid", f"axis {name} needs distinct values; got {name}={list(values)}"
                )
            axes[name] = tuple(_value(name, v) for v in values)
        if "scheme" in axes and ({"sw2", "sb2"} & axes.keys()):
            raise ArgumentError(
                "grid", "axis scheme cannot be combined with sw2/sb2 (they set the scheme)"
            )
        object.__setattr__(self, "axes", axes)
        takes = model_defaults(self.base.model)
        for name in ("depth", "width", "activation"):
            if name in axes and name not in takes:
                raise ArgumentError(
                    "grid",
                    f"axis {name} is a model argument, and model {self.base.model!r} takes none "
                    f"of that name (it takes: {', '.join(takes) or 'nothing'})",
                )
        if self.budget_minutes is not None and not 0 < self.budget_minutes < math.inf:
            raise ArgumentError(
                "budget_minutes", f"must be a number > 0; got budget_minutes={self.budget_minutes}"
            )
        try:
            self.groups()
        except (TypeError, ValueError) as error:
            if isinstance(error, ArgumentError):
                raise
            raise ArgumentError("grid", str(error)) from None

    def cells(self) -> list[dict]:
        """Every cell's axis values, in product order (the first axis varies slowest)."""
        names = list(self.axes)
        return [dict(zip(names, v, strict=True)) for v in itertools.product(*self.axes.values())]

    def scheme_of(self, cell: dict) -> str:
        """The scheme a cell trains under."""
        if "sw2" in cell or "sb2" in cell:
            return meanfield_name(cell.get("sw2", 1.0), cell.get("sb2", 0.0))
        return cell.get("scheme", self.base.schemes[0])

    def groups(self) -> dict[str, tuple[CompareConfig, dict[tuple, dict]]]:
        """Each group's name -> (its comparison config, ``(scheme, lr)`` -> the cell it trains).

        ``lr`` is the cell's rate with an ``lr`` axis (the config's ``lr_grid`` then holds the
        group's rates in axis order), else ``None``.

        Raises:
            ValueError, TypeError: as :class:`CompareConfig` for a group's settings.
        """
        out: dict[str, tuple[dict, dict[tuple, dict]]] = {}
        for cell in self.cells():
            key = {k: cell[k] for k in self._group_axes() if k in cell}
            name = "_".join(
                f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in key.items()
            )
            rate = cell.get("lr") if self.stack_lr else None
            out.setdefault(name or "all", (key, {}))[1][(self.scheme_of(cell), rate)] = cell
        return {name: (self._group_config(key, list(by)), by) for name, (key, by) in out.items()}

    def _group_axes(self) -> tuple[str, ...]:
        return GROUP_AXES if self.stack_lr else (*GROUP_AXES, "lr")

    def _group_config(self, key: dict, runs: list[tuple]) -> CompareConfig:
        schemes = list(dict.fromkeys(scheme for scheme, _ in runs))
        rates = list(dict.fromkeys(lr for _, lr in runs if lr is not None))
        base = self.base
        params = {
            **base.model_params,
            **{k: key[k] for k in ("depth", "width", "activation") if k in key},
        }
        train = dataclasses.replace(
            base.train, **{k: key[k] for k in ("optimizer", "lr") if k in key}
        )
        return dataclasses.replace(
            base,
            schemes=tuple(schemes),
            model_params=params,
            train=train,
            lr_grid=tuple(rates) if rates else None,
            select_rates=not rates,  # an lr axis: every rate is reported, no split held out
        )

    def runs(self) -> int:
        """The number of runs: cells x seeds."""
        return len(self.cells()) * self.base.seeds

    def to_json(self) -> str:
        """The config as JSON (round-trips through :meth:`from_json`)."""
        raw = {
            "axes": {k: list(v) for k, v in self.axes.items()},
            "base": json.loads(self.base.to_json()),
            "budget_minutes": self.budget_minutes,
            "stack_lr": self.stack_lr,
        }
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, text: str) -> GridConfig:
        """Rebuild a config written by :meth:`to_json`."""
        raw = json.loads(text)
        base = CompareConfig.from_json(json.dumps(raw["base"]))
        axes = {k: tuple(v) for k, v in raw["axes"].items()}
        return cls(axes, base, raw["budget_minutes"], raw.get("stack_lr", False))


def _axis(name: str) -> None:
    try:
        one_of("grid axis", name, AXES)
    except ValueError as error:
        raise ArgumentError("grid", str(error)) from None


def _value(name: str, value):
    kind = AXES[name]
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ArgumentError("grid", f"axis {name} takes names; got {name}={value!r}")
        return value
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if kind is int and (bad or value != int(value) or value < 1):
        raise ArgumentError("grid", f"axis {name} takes integers >= 1; got {name}={value!r}")
    if kind is float and (bad or not 0 <= value < math.inf or (name == "lr" and value == 0)):
        lower = "> 0" if name == "lr" else ">= 0"
        raise ArgumentError(
            "grid", f"axis {name} takes finite numbers {lower}; got {name}={value!r}"
        )
    return kind(value)


def parse_axis(text: str) -> tuple[str, tuple]:
    """Parse ``"name=v1,v2,..."`` (the ``--grid`` syntax) into ``(name, values)``.

    Raises:
        ArgumentError: (argument ``grid``) no ``=``, an unknown axis, or a value that is not
            of the axis's type.

    Example:
        >>> parse_axis("depth=10,20")
        ('depth', (10, 20))
    """
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ArgumentError("grid", f"expected NAME=V1,V2,... e.g. depth=10,20; got {text!r}")
    _axis(name)
    kind = AXES[name]
    values = []
    for part in rest.split(","):
        try:
            values.append(part if kind is str else kind(part))
        except ValueError:
            raise ArgumentError(
                "grid", f"axis {name} takes {kind.__name__} values; got {part!r} in {text!r}"
            ) from None
    return name, tuple(_value(name, v) for v in values)


@dataclass(frozen=True)
class Estimate:
    """A grid's estimated wall time and how it was estimated.

    Attributes:
        seconds: estimated wall time of the whole grid.
        seconds_per_run_step: measured seconds of one run's training step in the probed stack.
        probe_params: parameters of the probed (largest) model.
        probe_runs: runs in the probed stack (1 when the model cannot be stacked).
        run_steps: optimizer steps summed over runs.
    """

    seconds: float
    seconds_per_run_step: float
    probe_params: int
    probe_runs: int
    run_steps: int

    def describe(self) -> str:
        return (
            f"about {self.seconds / 60:.1f} min for {self.run_steps} run-steps, estimated from a "
            f"timed probe of {_PROBE_STEPS - PROGRESS_EVERY} training steps of the largest "
            f"model ({self.probe_params} parameters, {_n(self.probe_runs, 'run')} stacked: "
            f"{self.seconds_per_run_step * 1e3:.2f} ms per run-step), scaled by each group's "
            f"parameter count, plus test passes and {_GROUP_SECONDS:g} s per group"
        )


def estimate_seconds(config: GridConfig) -> Estimate:
    """Estimate the grid's wall time from a timed probe of training steps (nothing written).

    The largest group trains as the grid will train it (stacked when its model allows, else
    one run) for :data:`_PROBE_STEPS` steps at learning rate 0 on a subset of the grid's data;
    the steps after the first :data:`~initlab.experiments.core.PROGRESS_EVERY` (warm-up) are
    timed. Each group then costs ``runs x (steps + test passes) x`` that time per run-step
    ``x`` its parameters / the probe's, plus :data:`_GROUP_SECONDS` (data loading,
    initialization diagnosis, the group's report). A test pass over ``n`` images counts as
    ``n / batch / 3`` steps (a forward pass is one of a step's three matrix products per layer).
    """
    base = config.base
    data = load_data(
        base.dataset,
        base.data,
        data_dir=base.data_dir,
        download=base.download,
        train_subset=base.train_subset,
        test_subset=base.test_subset,
        seed=base.first_seed,
    )
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    groups = list(config.groups().values())
    with torch.random.fork_rng(devices=[]):
        sizes = [_params(cfg, data.num_classes) for cfg, _ in groups]
        big, cells = groups[max(range(len(groups)), key=sizes.__getitem__)]
        per_step, runs = _probe(big, len(cells) * big.seeds, data)
    seconds, run_steps = 0.0, 0
    for (cfg, cells), size in zip(groups, sizes, strict=True):
        steps = cfg.train.epochs * cfg.train.steps_per_epoch(n_train)
        tests = cfg.train.epochs * n_test / cfg.train.batch_size / 3
        run_steps += len(cells) * cfg.seeds * steps
        group = len(cells) * cfg.seeds * (steps + tests) * per_step * size / max(sizes)
        seconds += group + _GROUP_SECONDS
    return Estimate(seconds, per_step, max(sizes), runs, run_steps)


def _params(cfg: CompareConfig, classes: int) -> int:
    params = head_params(cfg.model, cfg.model_params, cfg.dataset, classes)
    return sum(p.numel() for p in build_model(cfg.model, **params).parameters())


def _probe(cfg: CompareConfig, runs: int, dataset) -> tuple[float, int]:
    """Seconds per run-step of ``runs`` runs of ``cfg``'s model trained as a sweep trains
    them, and the runs stacked (1 if the model cannot be stacked)."""
    batch = cfg.train.batch_size
    n_train, n_test = len(dataset.train_labels), len(dataset.test_labels)
    full = tensor_data(
        dataset.subset(min(n_train, batch * _PROBE_STEPS), min(n_test, batch), seed=0)
    )
    take = torch.arange(batch * _PROBE_STEPS) % len(full.train_y)  # repeated if it is small
    data = TensorData(
        full.train_x[take], full.train_y[take], full.test_x[:batch], full.test_y[:batch]
    )
    params = head_params(cfg.model, cfg.model_params, cfg.dataset, dataset.num_classes)
    models = [build_model(cfg.model, **params) for _ in range(runs)]
    train = dataclasses.replace(cfg.train, lr=0.0, epochs=1, max_steps=_PROBE_STEPS, log_every=0)
    times = []
    if vectorizable(models, data.train_x[:2]) is None:
        train_group(models, data, train, list(range(runs)), on_step=lambda _: times.append(_now()))
    else:
        runs = 1
        train_step(models[0], data, train, on_step=lambda _: times.append(_now()))
    return (times[-1] - times[0]) / (_PROBE_STEPS - PROGRESS_EVERY) / runs, runs


def _now() -> float:
    return time.perf_counter()


def run_grid(
    config: GridConfig | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    vectorize: bool = True,
    metric: str = "test_accuracy",
    step: int | None = None,
) -> Path:
    """Run (or resume) a grid into ``out_dir``; write ``cells.jsonl``, the report and heatmaps.

    Args:
        config: the grid; ``None`` when resuming (read from ``out_dir/grid.json``).
        out_dir: output directory (see the module docstring for its layout).
        resume: continue the grid in ``out_dir``: finished groups are kept, an unfinished one
            continues from its checkpoints, the rest start.
        progress: show each group's progress bar.
        vectorize: train each group's runs stacked (as ``initlab compare`` does by default).
        metric, step: what the heatmaps show (:func:`~initlab.reports.phase.write_grid_report`).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        GridTooLargeError: the estimated time exceeds ``config.budget_minutes``; raised before
            anything is written, its message gives the grid's size and the estimate.
        GridExistsError: a new grid into a directory that already holds ``grid.json``.
        FileNotFoundError: resuming a directory without ``grid.json``.
        ArgumentError: (argument ``metric``) not one of
            :data:`~initlab.reports.phase.METRICS`, or one measured at ``eval_steps`` by a grid
            without them; raised before anything is written.
        And the errors of :func:`~initlab.experiments.sweep.run_sweep`.
    """
    out = Path(out_dir)
    try:
        one_of("metric", metric, METRICS)
    except ValueError as error:
        raise ArgumentError("metric", str(error)) from None
    if resume:
        if not (out / GRID_FILE).is_file():
            raise FileNotFoundError(f"{out} has no {GRID_FILE}: there is no grid to resume")
        config = GridConfig.from_json((out / GRID_FILE).read_text())
    if metric in STEP_METRICS and not config.base.train.eval_steps:
        raise ArgumentError(
            "metric",
            f"metric {metric!r} is measured at the training's eval_steps, and this grid has "
            "none: set TrainConfig.eval_steps (initlab sweep --eval-steps), or pick "
            "test_accuracy, test_loss or train_loss",
        )
    if not resume:
        if (out / GRID_FILE).exists():
            raise GridExistsError(f"{out / GRID_FILE} exists; resume it or pick another out_dir")
        _check_budget(config)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / GRID_FILE, config.to_json() + "\n")
    groups = config.groups()
    log.info(
        "grid: %s x %s = %s in %s, writing to %s",
        _n(len(config.cells()), "cell"),
        _n(config.base.seeds, "seed"),
        _n(config.runs(), "run"),
        _n(len(groups), "group"),
        out,
    )
    written = {line["group"] for line in read_results(out / CELLS)}
    for index, (name, (cfg, cells)) in enumerate(groups.items(), 1):
        sub = out / GROUPS / name
        if name not in written:
            done = (sub / "summary.csv").is_file()
            if not done:
                log.info(
                    "group %d of %d: %s (%s)",
                    index,
                    len(groups),
                    name,
                    _n(len(cells) * cfg.seeds, "run"),
                )
                again = (sub / "config.json").is_file()
                if again:
                    _record_select_rates(sub, cfg)
                run_sweep(
                    None if again else cfg,
                    sub,
                    resume=again,
                    progress=progress,
                    vectorize=vectorize,
                )
            with open(out / CELLS, "a", encoding="utf-8") as sink:
                for line in cell_lines(name, cells, read_results(sub / RESULTS)):
                    append_line(sink, line)
    write_grid_report(
        out,
        config.axes,
        read_results(out / CELLS),
        defaults=_defaults(config),
        metric=metric,
        step=step,
    )
    return out


def _defaults(config: GridConfig) -> dict:
    """The values of the overlay's axes that the grid does not vary: the model's activation
    and depth (its parameters, else its constructor's defaults), and sb2 = 0 (the scheme's)."""
    found = {"sb2": 0.0}
    found.update(
        {k: v for k, v in model_defaults(config.base.model).items() if k in ("activation", "depth")}
    )
    found.update({k: v for k, v in config.base.model_params.items() if k in found})
    return found


def _check_budget(config: GridConfig) -> None:
    if config.budget_minutes is None:
        return
    estimate = estimate_seconds(config)
    if estimate.seconds > config.budget_minutes * 60:
        raise GridTooLargeError(
            "budget_minutes",
            f"the grid has {_n(len(config.cells()), 'cell')} x {_n(config.base.seeds, 'seed')} "
            f"= {_n(config.runs(), 'run')} in {_n(len(config.groups()), 'group')}; "
            f"{estimate.describe()}: over the budget of {config.budget_minutes:g} min. Nothing "
            "was run: use fewer values, seeds or steps, or a larger budget",
        )
    log.info("grid estimate: %s", estimate.describe())


def _n(count: int, word: str) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def cell_lines(group: str, cells: dict[tuple, dict], results: list[dict]) -> list[dict]:
    """One ``cells.jsonl`` line per run of a finished group, from its ``results.jsonl`` lines.

    ``cells`` maps ``(scheme, lr)`` (``lr`` ``None`` for runs without one) to the cell's axis
    values, as :meth:`GridConfig.groups` gives it.

    Each line: ``type`` ``"cell"``, ``group``, the cell's axis values, ``scheme``, ``seed``,
    ``status`` (``finished`` or ``diverged``), ``diverged_step`` (optimizer steps from the start
    to the first non-finite loss, or ``None``), ``epochs``: per epoch ``step`` (steps from
    the start at its end), ``test_accuracy``, ``test_loss``, ``train_loss``, and ``evals``: per
    step of the training's ``eval_steps`` (reached before any divergence), ``step``,
    ``full_train_loss`` and ``train_accuracy`` (empty without ``eval_steps``).
    """
    epochs: dict[tuple, list[dict]] = {}
    status: dict[tuple, dict] = {}
    for line in results:
        key = (line.get("scheme"), line.get("lr"), line.get("seed"))
        if line.get("type") == "epoch":
            epochs.setdefault(key, []).append(line)
        elif line.get("type") == "status":
            status[key] = line
    out = []
    for key, end in status.items():
        scheme, lr, seed = key
        records, step = [], 0
        for record in sorted(epochs.get(key, []), key=lambda r: r["epoch"]):
            step += record["steps"]
            records.append(
                {
                    "epoch": record["epoch"],
                    "step": step,
                    **{k: record[k] for k in ("test_accuracy", "test_loss", "train_loss")},
                }
            )
        evals = [
            {"step": at, "full_train_loss": loss, "train_accuracy": accuracy}
            for record in sorted(epochs.get(key, []), key=lambda r: r["epoch"])
            for at, loss, accuracy in record.get("train_evals", ())
        ]
        diverged = None
        if end["status"] == "diverged":
            diverged = step + end["step"]
        out.append(
            {
                "type": "cell",
                "group": group,
                **cells[(scheme, lr)],
                "scheme": scheme,
                "seed": seed,
                "status": end["status"],
                "diverged_step": diverged,
                "epochs": records,
                "evals": evals,
            }
        )
    return out


def _record_select_rates(group: Path, config: CompareConfig) -> None:
    """Write ``select_rates=False`` into a group's ``config.json`` that lacks it.

    A group with an ``lr`` axis chooses no rate; its ``config.json`` records that since
    :attr:`CompareConfig.select_rates` exists. A group written before reads back as choosing
    (the field's default) and would resume holding out a validation split its finished runs
    never had, so the field is added before the group resumes; nothing else is changed.
    """
    path = group / "config.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if config.select_rates or "select_rates" in raw:
        return
    raw["select_rates"] = False
    atomic_write(path, json.dumps(raw, indent=2, sort_keys=True))
