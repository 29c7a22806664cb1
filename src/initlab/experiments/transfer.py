"""Learning-rate transfer across width and depth: the sweep behind ``initlab transfer``.

A parameterization (:func:`initlab.parameterize.parametrize`) claims that the learning rate
tuned on a small model stays right on a wide one. This runner tests the claim as Tensor Programs
V does (Yang et al. 2022, "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
Hyperparameter Transfer", sec. 3 and Fig. 1): for each parameterization, each width (and, with
``depths``, each depth), each learning rate of a grid and each seed, train ``steps`` optimizer
steps and record the training and validation loss; the report
(:mod:`initlab.reports.transfer`) then finds the loss-minimizing rate per width and how far it
moves, in grid steps.

Models: ``mlp`` (784-w-...-w-10 on the embedded MNIST, ``depth`` hidden layers, 2 by default),
``char-gpt`` (width ``d_model``, depth ``n_layer``, on the embedded Shakespeare, task
``char-lm``) or a factory ``MODULE:FUNCTION`` called with ``width=`` (and ``depth=``).

Stacking: all runs of one cell (parameterization, width, depth) share the architecture and the
forward multipliers, so the ``lrs x seeds`` runs train as one stack: stacked parameters
``(R, *shape)``, one vmapped forward and backward (the stacked trainer's
:func:`~initlab.experiments.stacked.vectorizable` check and forward,
:mod:`initlab.experiments.stacked`), and :class:`StackedOptimizer`, an Adam/AdamW/SGD whose
hyperparameters are per run and per parameter: ``compare --lr-grid`` trains each rate in a
stack of its own, because ``torch.optim`` shares a stack's hyperparameters, whereas here every
run's rate (times its parameter's multiplier) is a tensor row of its own. A cell whose models
cannot be stacked trains run by run (stacks of one), with the reason logged.

Output directory (as ``compare``'s): ``config.json``; ``results.jsonl``, one ``{"type":
"run", ...}`` line per run, appended and fsync'ed as each cell ends (status ``finished`` or
``diverged`` with the 1-based ``step`` of the first non-finite loss); ``summary.csv``,
``report.md`` and figures. ``resume=True`` skips runs that have their line and trains the
others; runs are short, so an unfinished cell restarts from step 0 (no checkpoints): training
is deterministic per run, so the resumed lines equal an uninterrupted sweep's within the float
rounding of a stack of another size.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.func import vmap

from initlab._checks import ArgumentError, one_of, positive_int
from initlab._files import atomic_write
from initlab.experiments.core import (
    CHECK_EVERY,
    TensorData,
    evaluate_logits,
    first_non_finite,
    resolve_device,
    run_seeds,
    sequence_cross_entropy,
)
from initlab.experiments.data import lm_data, lm_params, load_split, tensor_data
from initlab.experiments.optim import StackedOptimizer
from initlab.experiments.results import (
    CONFIG,
    RESULTS,
    TERMINAL,
    append_line,
    lock_out_dir,
    read_results,
    refuse_existing,
    require_config,
)
from initlab.experiments.stacked import stack_parameters, stacked_forward, vectorizable
from initlab.introspect.hooks import flush_denormal
from initlab.reports import transfer as report
from initlab.zoo.factory import is_factory_spec
from initlab.zoo.models import build_model

__all__ = [
    "DEPTH_PARAMETERIZATIONS",
    "MODELS",
    "OPTIMIZERS",
    "PARAMETERIZATIONS",
    "StackedOptimizer",
    "TransferConfig",
    "TransferResult",
    "default_lrs",
    "run_coord_checks",
    "run_transfer",
]

log = logging.getLogger(__name__)

#: Parameterizations of :func:`initlab.parameterize.parametrize`.
PARAMETERIZATIONS = ("sp", "ntk", "mup", "umup", "depth-mup", "completep")
#: Those that scale with depth too (their cells include the ``depths``).
DEPTH_PARAMETERIZATIONS = ("depth-mup", "completep")
#: Optimizers every parameterization covers.
OPTIMIZERS = ("adam", "adamw", "sgd")
#: Zoo models with a width (and depth) keyword; any ``MODULE:FUNCTION`` factory works too.
MODELS = {"mlp": ("width", "depth"), "char-gpt": ("d_model", "n_layer")}
#: Tasks: MNIST classification, or next-character prediction on Shakespeare.
TASKS = ("mnist", "char-lm")


def _choice(name: str, value, allowed) -> str:
    """:func:`~initlab._checks.one_of` as an :class:`ArgumentError` naming ``name``."""
    try:
        return one_of(name, value, allowed)
    except ValueError as error:
        raise ArgumentError(name, str(error)) from None


def default_lrs() -> tuple[float, ...]:
    """The default grid: 2^-13 .. 2^-5 (1.2e-4 .. 3.1e-2), one grid step a factor 2."""
    return tuple(2.0**k for k in range(-13, -4))


@dataclass(frozen=True)
class TransferConfig:
    """One transfer sweep; saved as ``config.json`` (:meth:`to_dict`, :meth:`from_dict`).

    Args:
        model: ``"mlp"``, ``"char-gpt"`` or a factory ``MODULE:FUNCTION`` taking ``width=``
            (and ``depth=`` when ``depths`` is given).
        parameterizations: names of :data:`PARAMETERIZATIONS`.
        widths: hidden widths (``d_model`` for char-gpt), at least two, distinct.
        depths: depths to sweep at the base width (hidden layers for mlp, blocks for
            char-gpt); ``None``: the model's default depth only.
        base_width: the width the parameterizations are relative to; ``None``: ``widths[0]``.
        base_depth: the depth of the width cells and of the base model; ``None``:
            ``depths[0]`` if given, else the model's default (mlp: 2, char-gpt: 2).
        lrs: the learning-rate grid (sorted on construction); grid steps are its indices.
        steps: optimizer steps per run.
        seeds: run seeds; a seed fixes the initialization and the batch order, the same for
            every rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum ``momentum``).
        task: ``"mnist"`` or ``"char-lm"``; ``None``: ``char-lm`` for char-gpt, else MNIST.
        batch_size: examples (windows for char-lm) per step.
        weight_decay, momentum, eps: passed to the parameterization's optimizer groups.
        val_size: validation examples (windows) evaluated after the last step.
        seq_len: characters per window (char-lm).
        model_params: further keyword arguments of the model.
        device: ``"cpu"``, ``"cuda"``, ...

    Raises:
        ArgumentError: on construction, naming the field: an unknown model, parameterization,
            optimizer or task (the valid ones listed), fewer than two widths, a depth
            parameterization without ``depths``, a non-positive size or rate.
    """

    model: str = "mlp"
    parameterizations: tuple[str, ...] = ("sp", "mup")
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    depths: tuple[int, ...] | None = None
    base_width: int | None = None
    base_depth: int | None = None
    lrs: tuple[float, ...] = field(default_factory=default_lrs)
    steps: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    optimizer: str = "adam"
    task: str | None = None
    batch_size: int = 64
    weight_decay: float = 0.0
    momentum: float = 0.9
    eps: float = 1e-8
    val_size: int = 2000
    seq_len: int = 64
    model_params: dict = field(default_factory=dict)
    device: str = "cpu"

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.model not in MODELS and not is_factory_spec(self.model):
            raise ArgumentError(
                "model",
                f"model must be one of {sorted(MODELS)} or a factory MODULE:FUNCTION taking "
                f"width= (and depth=); got model={self.model!r}",
            )
        fix("parameterizations", tuple(self.parameterizations))
        if not self.parameterizations:
            raise ArgumentError("parameterizations", "give at least one parameterization")
        for name in self.parameterizations:
            _choice("parameterizations", name, PARAMETERIZATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        fix("task", self.task or ("char-lm" if self.model == "char-gpt" else "mnist"))
        _choice("task", self.task, TASKS)
        fix("widths", tuple(positive_int("widths", int(w)) for w in self.widths))
        if len(set(self.widths)) < 2:
            raise ArgumentError(
                "widths", f"give at least two distinct widths; got widths={self.widths!r}"
            )
        if self.depths is not None:
            fix("depths", tuple(positive_int("depths", int(d)) for d in self.depths))
        deep = [p for p in self.parameterizations if p in DEPTH_PARAMETERIZATIONS]
        if deep and not self.depths:
            raise ArgumentError(
                "depths", f"{deep[0]!r} scales with depth: give depths (at least one)"
            )
        fix("lrs", tuple(sorted(float(lr) for lr in self.lrs)))
        if not self.lrs or any(not (math.isfinite(lr) and lr > 0) for lr in self.lrs):
            raise ArgumentError("lrs", f"learning rates must be > 0; got lrs={self.lrs!r}")
        fix("seeds", tuple(int(s) for s in self.seeds))
        if not self.seeds:
            raise ArgumentError("seeds", "give at least one seed")
        for name in ("steps", "batch_size", "val_size", "seq_len"):
            positive_int(name, getattr(self, name))
        fix("model_params", dict(self.model_params))

    @property
    def resolved_base_width(self) -> int:
        return self.widths[0] if self.base_width is None else self.base_width

    @property
    def resolved_base_depth(self) -> int | None:
        if self.base_depth is not None:
            return self.base_depth
        if self.depths:
            return self.depths[0]
        return 2 if self.model in MODELS else None  # mlp 784-w-w-10; the char-lm task's 2

    def cells(self, parameterization: str) -> list[tuple[int, int | None]]:
        """The ``(width, depth)`` cells of one parameterization: every width at the base
        depth, then (with ``depths``) every other depth at the base width."""
        depth = self.resolved_base_depth
        cells = [(w, depth) for w in self.widths]
        for d in self.depths or ():
            if (self.resolved_base_width, d) not in cells:
                cells.append((self.resolved_base_width, d))
        return cells

    def to_dict(self) -> dict:
        """The fields, plus ``resolved_base_width`` and ``resolved_base_depth`` (for the
        report; :meth:`from_dict` ignores them)."""
        data = dataclasses.asdict(self)
        data.update(
            resolved_base_width=self.resolved_base_width,
            resolved_base_depth=self.resolved_base_depth,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TransferConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        )


@dataclass(frozen=True)
class TransferResult:
    """A finished sweep: its config, directory, result lines and summary."""

    config: TransferConfig
    out_dir: Path
    lines: list[dict]
    summary: report.TransferSummary


def run_id(parameterization: str, width: int, depth: int | None, lr: float, seed: int) -> str:
    """A run's identifier, e.g. ``"mup/w256/d2/lr0.001/s0"`` (the rate as ``repr`` writes it)."""
    d = "" if depth is None else f"/d{depth}"
    return f"{parameterization}/w{width}{d}/lr{lr!r}/s{seed}"


def run_transfer(
    config: TransferConfig | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    parametrize: Callable | None = None,
    on_cell: Callable[[str, int, int | None], None] | None = None,
    coord_check: bool = True,
) -> TransferResult:
    """Run (or resume) a transfer sweep into ``out_dir``; write its summary, report, figures.

    Args:
        config: the sweep; ``None`` when resuming (read from ``out_dir/config.json``).
        out_dir: output directory, created if missing; locked for the sweep
            (:func:`~initlab.experiments.results.lock_out_dir`).
        resume: continue the sweep in ``out_dir``: runs with a line are kept, the others
            trained.
        parametrize: the parameterization function, called as
            ``parametrize(model, name, base=base_model, optimizer=..., example_input=...)``;
            ``None``:
            :func:`initlab.parameterize.parametrize`. Tests pass their own.
        on_cell: called with ``(parameterization, width, depth)`` after a cell's lines are
            written (tests interrupt there).
        coord_check: first run :func:`run_coord_checks` into ``out_dir`` (skipped when its
            files exist, as after a resume); the report quotes its verdicts.

    Returns:
        A :class:`TransferResult`.

    Raises:
        OutDirInUseError, ResultsExistError, NothingToResumeError: as
            :func:`~initlab.experiments.sweep.run_sweep`, before anything is written.
        ArgumentError: no config for a new sweep; the config's (see
            :class:`TransferConfig`), and the
            parameterization's own refusals (widths that match no base shape, an optimizer
            it does not cover), raised before any line is written.
        KeyboardInterrupt: re-raised; finished cells' lines stay in ``results.jsonl``.
    """
    out = Path(out_dir)
    if resume:
        require_config(out)
    elif config is None:
        raise ArgumentError("config", "give a TransferConfig, or resume=True")
    with lock_out_dir(out):
        if resume:
            config = TransferConfig.from_dict(_read_json(out / CONFIG))
        else:
            refuse_existing(out)
        if parametrize is None:
            from initlab.parameterize import parametrize
        data = _load_data(config)
        # every cell's parameterization is checked (built on meta) before a line is written
        for name in config.parameterizations:
            for width, depth in config.cells(name):
                _check_cell(config, parametrize, name, width, depth, data.train_x[:2])
        if not resume:
            atomic_write(out / CONFIG, _dumps(config.to_dict()))
        if coord_check and not all(
            (out / f"coord_check_{name}.json").is_file() for name in config.parameterizations
        ):
            run_coord_checks(config, out, parametrize=parametrize)
        done = {
            line["run"] for line in read_results(out / RESULTS) if line.get("status") in TERMINAL
        }
        with open(out / RESULTS, "a", encoding="utf-8") as sink, flush_denormal():
            for name in config.parameterizations:
                for width, depth in config.cells(name):
                    runs = [
                        (lr, seed)
                        for lr in config.lrs
                        for seed in config.seeds
                        if run_id(name, width, depth, lr, seed) not in done
                    ]
                    if not runs:
                        continue
                    for line in _train_cell(config, data, parametrize, name, width, depth, runs):
                        append_line(sink, line)
                    if on_cell is not None:
                        on_cell(name, width, depth)
        lines = read_results(out / RESULTS)
        summary = report.write_report(out, config.to_dict(), lines)
    return TransferResult(config, out, lines, summary)


def run_coord_checks(
    config: TransferConfig,
    out_dir: str | os.PathLike,
    *,
    parametrize: Callable | None = None,
    lr: float | None = None,
) -> dict:
    """The coordinate check of every parameterization of ``config``, written to ``out_dir``.

    For each parameterization, :func:`initlab.parameterize.coord_check.coord_check` trains the
    model at every width of ``config`` (base depth) for steps 1, 2, 3 with ``config.seeds``, on
    the first three training batches (the seed-0 order), and fits per layer the log-log slope
    of the output change against width (Yang et al. 2022, Tensor Programs V, sec. 7.2: under SP
    with Adam hidden layers grow, slope about +1; under muP slope about 0). Files:
    ``coord_check_<parameterization>.json`` (:meth:`CoordCheck.to_dict`) and ``.png``.

    Args:
        config: the sweep (model, task, widths, seeds, optimizer, batch size are read).
        out_dir: created if missing.
        parametrize: as :func:`run_transfer`'s.
        lr: the base learning rate; ``None``: the grid's middle rate.

    Returns:
        ``{parameterization: CoordCheck}``.
    """
    from initlab.parameterize.coord_check import coord_check

    if parametrize is None:
        from initlab.parameterize import parametrize
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lr = config.lrs[len(config.lrs) // 2] if lr is None else lr
    data = _load_data(config)
    order = _batch_order(data, dataclasses.replace(config, steps=3), 0)
    batches = [(data.train_x[i], data.train_y[i]) for i in order]
    factory = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    checks = {}
    for name in config.parameterizations:

        def build_one(width: int, seed: int, name: str = name):
            model = build(config, width, config.resolved_base_depth).to(data.train_x.device)
            p = _parametrized(config, parametrize, name, model, batches[0][0][:2])
            p.apply_(seed=run_seeds(seed)[0])
            groups = p.param_groups(lr=lr, weight_decay=config.weight_decay, eps=config.eps)
            extra = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
            return model, factory[config.optimizer](groups, lr=lr, **extra), sequence_cross_entropy

        start = time.perf_counter()
        check = coord_check(build_one, config.widths, batches, seeds=config.seeds)
        log.info("coordinate check of %s in %.1f s", name, time.perf_counter() - start)
        atomic_write(out / f"coord_check_{name}.json", _dumps({"lr": lr, **check.to_dict()}))
        check.plot(out / f"coord_check_{name}.png", title=f"{name}, lr {lr:g}")
        checks[name] = check
    return checks


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _dumps(data: dict) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"


# ----------------------------------------------------------------------------- models and data


def build(config: TransferConfig, width: int, depth: int | None) -> nn.Module:
    """The sweep's model at ``width`` and ``depth`` (PyTorch's default init; it is redrawn)."""
    params = dict(config.model_params)
    if config.model in MODELS:
        width_key, depth_key = MODELS[config.model]
        params[width_key] = width
        if depth is not None:
            params[depth_key] = depth
        if config.model == "char-gpt":
            params.setdefault("n_head", 4)
            params = lm_params("char-gpt", params, _vocab_size(), config.seq_len)
    else:
        params["width"] = width
        if depth is not None and config.depths:
            params["depth"] = depth
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws globally
        return build_model(config.model, **params)


@functools.cache
def _vocab_size() -> int:
    """The embedded corpus's vocabulary size (read once per process)."""
    from initlab.datasets.text import char_corpus, load_text

    return char_corpus(load_text(None)).vocab_size


def _load_data(config: TransferConfig) -> TensorData:
    """The training data and ``val_size`` validation examples on the config's device."""
    device = resolve_device(config.device)
    if config.task == "char-lm":
        data, _ = lm_data(None, config.seq_len, device)
    else:
        fit, val = load_split("mnist", val_fraction=1 / 12, seed=0)  # 55,000 / 5,000
        data = tensor_data(fit, device, val)
    return TensorData(
        data.train_x, data.train_y, data.val_x[: config.val_size], data.val_y[: config.val_size]
    )


def _parametrized(config, parametrize, name, model, example):
    """``parametrize(model, name, base=..., example_input=...)`` against the base model, built
    on the meta device. Depths are counted by the parameterization from the two models'
    residual blocks, which it finds by tracing ``example`` (two training inputs)."""
    with torch.device("meta"):
        base = build(config, config.resolved_base_width, config.resolved_base_depth)
    return parametrize(model, name, base=base, optimizer=config.optimizer, example_input=example)


def _check_cell(config, parametrize, name, width, depth, example) -> None:
    with torch.device("meta"):
        model = build(config, width, depth)
    _parametrized(config, parametrize, name, model, example)


# ----------------------------------------------------------------------------- one cell


def _train_cell(config, data, parametrize, name, width, depth, runs) -> list[dict]:
    """Train ``runs`` (``(lr, seed)`` pairs) of one cell; return their result lines."""
    start = time.perf_counter()
    device = data.train_x.device
    models, groups = [], []
    for lr, seed in runs:
        model = build(config, width, depth).to(device)
        p = _parametrized(config, parametrize, name, model, data.train_x[:2])
        p.apply_(seed=run_seeds(seed)[0])
        models.append(model)
        groups.append(p.param_groups(lr=lr, weight_decay=config.weight_decay, eps=config.eps))
    reason = vectorizable(models, data.train_x[:2]) if len(models) > 1 else None
    if reason is None:
        stacks = [list(range(len(runs)))]
    else:
        log.info("%s w%s: training %d runs one by one: %s", name, width, len(runs), reason)
        stacks = [[i] for i in range(len(runs))]
    lines = []
    for rows in stacks:
        outcome = _train_stack(
            config,
            data,
            [models[i] for i in rows],
            [groups[i] for i in rows],
            [runs[i][1] for i in rows],
        )
        for i, result in zip(rows, outcome, strict=True):
            lr, seed = runs[i]
            base = {
                "type": "run",
                "run": run_id(name, width, depth, lr, seed),
                "parameterization": name,
                "width": width,
                "depth": depth,
                "lr": lr,
                "seed": seed,
                "steps": config.steps,
            }
            lines.append({**base, **result})
    log.info(
        "%s w%s d%s: %d runs in %.1f s", name, width, depth, len(runs), time.perf_counter() - start
    )
    return lines


def _per_run_hyper(models, groups, eps: float) -> dict[str, dict[str, list[float]]]:
    """``{parameter name: {"lr": [...], "eps": [...], "weight_decay": [...]}}`` per run.

    Raises:
        ValueError: a parameter of a model is in none of its groups, or in two.
    """
    table: dict[str, dict[str, list[float]]] = {}
    for model, model_groups in zip(models, groups, strict=True):
        names = {id(p): n for n, p in model.named_parameters()}
        seen = set()
        for group in model_groups:
            for p in group["params"]:
                n = names[id(p)]
                if n in seen:
                    raise ValueError(f"parameter {n!r} is in two optimizer groups")
                seen.add(n)
                entry = table.setdefault(n, {"lr": [], "eps": [], "weight_decay": []})
                entry["lr"].append(float(group["lr"]))
                entry["eps"].append(float(group.get("eps", eps)))
                entry["weight_decay"].append(float(group.get("weight_decay", 0.0)))
        missing = set(names.values()) - seen
        if missing:
            raise ValueError(f"parameters in no optimizer group: {sorted(missing)}")
    return table


def _train_stack(config, data, models, groups, seeds) -> list[dict]:
    """Train ``models`` stacked for ``config.steps``; one result dict per model."""
    R = len(models)
    params = {n: p.requires_grad_() for n, p in stack_parameters(models).items()}
    hyper = _per_run_hyper(models, groups, config.eps)
    optimizer = StackedOptimizer(
        params,
        {n: h["lr"] for n, h in hyper.items()},
        config.optimizer,
        eps={n: h["eps"] for n, h in hyper.items()},
        weight_decay={n: h["weight_decay"] for n, h in hyper.items()},
        momentum=config.momentum,
    )
    forward = stacked_forward(models[0])
    loss_of = vmap(lambda p, x, y: sequence_cross_entropy(forward(p, x), y))
    orders = torch.stack([_batch_order(data, config, s) for s in seeds])  # (R, steps, B)
    orders = orders.to(data.train_x.device)
    active = list(range(R))
    losses: list[torch.Tensor] = []  # (len(active),) per step; rows of dropped runs removed
    diverged: dict[int, int] = {}
    history = torch.full((config.steps, R), float("nan"))
    for step in range(config.steps):
        index = orders[active, step]  # (R', B)
        x = data.train_x[index]
        loss = loss_of(params, x, data.train_y[index])
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        losses.append(loss.detach())
        history[step, active] = loss.detach().cpu()
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == config.steps:
            bad = first_non_finite(losses[-CHECK_EVERY:], len(losses))
            if bad:
                keep = [row for row in range(len(active)) if row not in bad]
                diverged.update({active[row]: s for row, s in bad.items()})
                active = [active[row] for row in keep]
                params = {n: p.detach()[keep].requires_grad_() for n, p in params.items()}
                optimizer.keep(keep, params)
                losses = [step_loss[keep] for step_loss in losses]
                if not active:
                    break
    val = _validate(models[0], params, data, config, len(active)) if active else ([], [])
    results = []
    window = max(1, min(CHECK_EVERY, config.steps // 10))
    for r in range(R):
        curve = _curve(history[:, r], config.steps)
        if r in diverged:
            results.append({"status": "diverged", "step": diverged[r], "curve": curve})
            continue
        row = active.index(r)
        val_loss = val[0][row]
        train_loss = float(history[-window:, r].mean())
        if not math.isfinite(val_loss):
            results.append({"status": "diverged", "step": config.steps, "curve": curve})
            continue
        line = {
            "status": "finished",
            "train_loss": train_loss,
            "val_loss": val_loss,
            "curve": curve,
        }
        if config.task == "char-lm":
            line["val_bpc"] = val_loss / math.log(2)
        else:
            line["val_accuracy"] = val[1][row]
        results.append(line)
    return results


def _curve(losses: torch.Tensor, steps: int) -> list[list[float]]:
    """About 20 ``[step, mean training loss]`` points (window means; NaN after divergence)."""
    every = max(1, steps // 20)
    points = []
    for end in range(every, steps + every, every):
        end = min(end, steps)
        window = losses[end - every : end]
        value = float(window.mean())
        points.append([end, value if math.isfinite(value) else None])
    return points


def _batch_order(data: TensorData, config: TransferConfig, seed: int) -> torch.Tensor:
    """``(steps, batch_size)`` training indices: epochs of ``torch.randperm`` from the seed's
    shuffle stream (:func:`~initlab.experiments.core.run_seeds`), the last partial batch of
    each epoch dropped."""
    n, b = data.train_x.shape[0], config.batch_size
    if n < b:
        raise ArgumentError("batch_size", f"batch_size={b} exceeds the {n} training examples")
    per_epoch = n // b
    generator = torch.Generator().manual_seed(run_seeds(seed)[1])
    chunks = []
    for _ in range(math.ceil(config.steps / per_epoch)):
        chunks.append(torch.randperm(n, generator=generator)[: per_epoch * b].view(per_epoch, b))
    return torch.cat(chunks)[: config.steps]


@torch.no_grad()
def _validate(template, params, data, config, rows) -> tuple[list[float], list[float]]:
    forward = vmap(stacked_forward(template), (0, None))
    detached = {n: p.detach() for n, p in params.items()}
    size = max(1, 1000 // rows) if config.task == "mnist" else max(1, 64 // rows)
    return evaluate_logits(lambda x: forward(detached, x), data, size, rows)
