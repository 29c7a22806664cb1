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
- ``summary.csv``, ``report.md`` and PNG figures (:mod:`initlab.experiments.report`).

Resuming (``resume=True``) reads ``config.json`` and ``results.jsonl``, keeps finished and
diverged runs, drops the lines of every other run and reruns those from scratch. Training is
deterministic, so a resumed sweep ends with the same numbers as an uninterrupted one.

With ``vectorize=True`` the runs train together, stacked
(:mod:`initlab.experiments.vectorized`): the same numbers within float rounding, the init
lines of all runs first, then each epoch's lines as that epoch finishes for all runs. Models
that cannot be stacked (dropout, BatchNorm statistics, recurrent layers) train one by one.

Under ``torchrun`` (:mod:`initlab.experiments.distributed`) rank ``r`` trains runs ``r::world``
(streaming its lines to ``results.rank<r>.jsonl``), and rank 0 appends every rank's lines to
``results.jsonl`` and writes the report. Per-run files (``diagnosis/``, ``pretrained/``) are
written by the rank that trains the run: the output directory should be shared across
machines.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tqdm

from initlab._checks import one_of
from initlab.experiments import distributed, report
from initlab.experiments.datasets import load_dataset
from initlab.experiments.diagnosis import init_record
from initlab.experiments.models import MODELS, build_model, fit_classes
from initlab.experiments.pretrain import PRETRAINED, PretrainConfig, build_for_run
from initlab.experiments.schemes import initialize, parse_bias_init, parse_scheme
from initlab.experiments.trainer import (
    EpochRecord,
    RunResult,
    TensorData,
    TrainConfig,
    build_initialized,
    check_classes,
    init_batch,
    label_classes,
    resolve_device,
    train,
)
from initlab.experiments.vectorized import train_group, vectorizable

__all__ = [
    "DEFAULT_SCHEMES",
    "CompareConfig",
    "SweepResult",
    "read_results",
    "run_id",
    "run_sweep",
]

log = logging.getLogger(__name__)

DEFAULT_SCHEMES = ("seed", "zeros", "normal", "xavier_uniform", "kaiming_uniform", "orthogonal")
TERMINAL = ("finished", "diverged")


@dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison; saved as ``config.json``.

    Attributes:
        schemes: scheme names, each optionally with options (``"normal:std=0.1"``).
        seeds: number of seeds per scheme; run seeds are ``first_seed .. first_seed+seeds-1``.
        first_seed: the first run seed.
        model: zoo model name; ``model_params`` its keyword arguments.
        dataset: dataset name for :func:`~initlab.experiments.datasets.load_dataset`;
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
            already holds ``results.jsonl`` (resume it instead).
        resume: continue the sweep in ``out_dir``: finished and diverged runs are kept,
            unfinished ones rerun from scratch.
        progress: show a tqdm progress bar (on stderr) counting epochs.
        on_epoch: called with ``(run id, record)`` after each epoch is written (tests use it to
            simulate an interrupt).
        vectorize: train all runs together, stacked, when the model allows it (see the module
            docstring); ``initlab compare`` turns it on unless ``--no-vectorize``.

    Returns:
        A :class:`SweepResult`; its rows (one per scheme) are those of ``summary.csv``.

    Raises:
        FileExistsError: a new sweep into a directory that already has results.
        FileNotFoundError: resuming a directory without ``config.json``.
        KeyboardInterrupt: re-raised after recording the interrupted run; finished epochs and
            runs stay in ``results.jsonl``.
    """
    with distributed.session() as ranks:
        # torchrun ranks may have computed different default names (timestamps): use rank 0's
        out = Path(ranks.from_main(lambda: out_dir))
        config, pending = ranks.from_main(lambda: _plan(config, out, resume))
        mine = ranks.shard(pending)
        data = _load_data(config)
        fitted = fit_classes(config.model, config.model_params, label_classes(data))
        config = dataclasses.replace(config, model_params=fitted)
        with torch.random.fork_rng(devices=[]):  # before results.jsonl: a rerun is not refused
            model = build_model(config.model, **config.model_params)
            check_classes(model.to(data.train_x.device), data)
        results = out / "results.jsonl"
        own = results if ranks.rank == 0 else out / f"results.rank{ranks.rank}.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        with (
            tqdm.tqdm(
                total=len(mine) * config.train.epochs,
                disable=not progress or ranks.rank != 0,
                unit="epoch",
            ) as bar,
            open(own, "a" if own == results else "w", encoding="utf-8") as sink,
        ):
            _train_runs(config, mine, data, sink, bar, on_epoch, out, vectorize)
        _gather(ranks, results, own)
        rows = ranks.from_main(lambda: report.write_report(out, config, read_results(results)))
    return SweepResult(config, out, rows)


def _plan(config: CompareConfig | None, out: Path, resume: bool):
    """Prepare ``out`` (new sweep or resume); return the config and the runs still to train."""
    results = out / "results.jsonl"
    if resume:
        if not (out / "config.json").is_file():
            raise FileNotFoundError(
                f"{out} has no config.json, so there is no sweep to resume; start one with "
                f"initlab compare --out {out} (or run_sweep(config, out) without resume)"
            )
        config = CompareConfig.from_json((out / "config.json").read_text())
        _drop_unfinished(results)
    else:
        if results.exists():
            raise FileExistsError(f"{results} exists; resume it with --resume {out} or pick --out")
        _check_applicable(config)  # before anything is written: a rerun must not be refused
        out.mkdir(parents=True, exist_ok=True)
        report.write_atomic(out / "config.json", config.to_json() + "\n")
    done = _terminal_runs(read_results(results))
    pending = [
        (scheme, seed)
        for seed in config.seed_list()
        for scheme in config.schemes
        if run_id(scheme, seed) not in done
    ]
    log.info(
        "%s to train, %s already done, writing to %s",
        report.count(len(pending), "run"),
        len(done),
        out,
    )
    return config, pending


def _check_applicable(config: CompareConfig) -> None:
    """Build the model once and apply every weight-only scheme to a copy; raise if one fails.

    Data-dependent ``lsuv`` and ``pretrained`` are left to their runs (they need data).
    """
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG
        model = build_model(config.model, **config.model_params)
    for scheme in config.schemes:
        name = scheme.split(":")[0]
        if name in (PRETRAINED, "lsuv"):
            continue
        try:
            initialize(copy.deepcopy(model), scheme, generator=torch.Generator().manual_seed(0))
        except ValueError as error:
            hint = ""
            if name == "fixup":
                hint = (
                    " (fixup needs residual blocks: use model 'resmlp' or 'resnet', --model resmlp)"
                )
            raise ValueError(
                f"scheme {scheme!r} does not apply to model {config.model!r}{hint}: {error}"
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


def _train_runs(config, runs, data, sink, bar, on_epoch, out, vectorize) -> None:
    """Train ``runs`` as one stacked group when asked and possible, else one by one."""
    if not runs:  # a torchrun rank with no share of a small grid
        return
    reason = "not asked" if not vectorize else None
    if reason is None and len(runs) < 2:
        reason = "fewer than two runs"
    if reason is None:  # the architecture alone may already rule it out (no need to build all)
        with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws globally
            model = build_model(config.model, **config.model_params)
        reason = vectorizable([model.to(data.train_x.device)], data.train_x[:2])
    if reason is None:
        _run_group(config, runs, data, sink, bar, on_epoch, out)
        return
    if vectorize:
        log.info("training %s one after the other: %s", report.count(len(runs), "run"), reason)
    for scheme, seed in runs:
        bar.set_description(run_id(scheme, seed))
        _run_one(config, scheme, seed, data, sink, bar, on_epoch, out)


def _run_group(config, runs, data, sink, bar, on_epoch, out) -> None:
    bar.set_description(f"{len(runs)} runs stacked")
    models = [_start(config, scheme, seed, data, sink, out) for scheme, seed in runs]
    reason = vectorizable(models, data.train_x[:2])
    if reason is not None:
        log.info("training %s one after the other: %s", report.count(len(runs), "run"), reason)
        for (scheme, seed), model in zip(runs, models, strict=True):
            _run_one(config, scheme, seed, data, sink, bar, on_epoch, out, model)
        return
    log.info("training %d runs together, stacked", len(runs))
    bases = [_base(scheme, seed) for scheme, seed in runs]
    ended: set[int] = set()

    def done(index: int, result: RunResult) -> None:
        ended.add(index)
        _status(sink, bases[index], result, bar, config)

    try:
        train_group(
            models,
            data,
            config.train,
            [seed for _, seed in runs],
            on_epoch=lambda index, epoch: _record(sink, bases[index], epoch, bar, on_epoch),
            on_done=done,
        )
    except (KeyboardInterrupt, Exception) as error:
        for index in sorted(set(range(len(runs))) - ended):
            _stopped(sink, bases[index], error)
        raise


def _base(scheme: str, seed: int) -> dict:
    return {"run": run_id(scheme, seed), "scheme": scheme, "seed": seed}


def _run_one(config, scheme, seed, data, sink, bar, on_epoch, out, model=None) -> None:
    """Train one run (building it first unless ``model`` is given) and write its lines."""
    base = _base(scheme, seed)
    if model is None:
        model = _start(config, scheme, seed, data, sink, out)
    try:
        result = train(
            model,
            data,
            dataclasses.replace(config.train, seed=seed),
            on_epoch=lambda epoch: _record(sink, base, epoch, bar, on_epoch),
        )
    except (KeyboardInterrupt, Exception) as error:
        _stopped(sink, base, error)
        raise
    _status(sink, base, result, bar, config)


def _start(config, scheme, seed, data, sink, out):
    """Build and initialize one run's model on the data's device; write its init line."""
    rid = run_id(scheme, seed)
    base = _base(scheme, seed)
    if scheme == PRETRAINED:
        model = build_for_run(config, seed, out)
    else:
        model = build_initialized(
            config.model,
            scheme,
            seed=seed,
            model_params=config.model_params,
            bias_init=config.bias_init,
            batch=init_batch(data),
        )
    model = model.to(data.train_x.device)
    x = init_batch(data).to(data.train_x.device)
    diagnosis = init_record(
        model,
        (x, data.train_y[: len(x)]),
        Path(out) / "diagnosis" / f"{rid.replace('/', '-')}.json",
    )
    _append(sink, {"type": "init", **base, **diagnosis})
    return model


def _record(sink, base: dict, epoch: EpochRecord, bar, on_epoch) -> None:
    _append(sink, {"type": "epoch", **base, **dataclasses.asdict(epoch)})
    bar.update(1)
    if on_epoch is not None:
        on_epoch(base["run"], epoch)


def _status(sink, base: dict, result: RunResult, bar, config) -> None:
    status = {"type": "status", **base, "status": result.status}
    if result.status == "diverged":
        status.update(epoch=result.diverged_epoch, step=result.diverged_step)
        log.warning(
            "%s diverged at epoch %d, step %d", base["run"], status["epoch"], status["step"]
        )
        bar.update(config.train.epochs - len(result.epochs))
    _append(sink, status)


def _stopped(sink, base: dict, error: BaseException) -> None:
    """Record a run cut short: ``interrupted`` (Ctrl-C) or ``failed`` (with the error)."""
    if isinstance(error, KeyboardInterrupt):
        _append(sink, {"type": "status", **base, "status": "interrupted"})
    else:
        _append(sink, {"type": "status", **base, "status": "failed", "error": repr(error)})


def _load_data(config: CompareConfig) -> TensorData:
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
    if config.train_subset is not None or config.test_subset is not None:
        dataset = dataset.subset(config.train_subset, config.test_subset, seed=config.first_seed)
    return TensorData.from_dataset(dataset, resolve_device(config.train.device))


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


def _drop_unfinished(results: Path) -> None:
    lines = read_results(results)
    keep = _terminal_runs(lines)
    text = "".join(json.dumps(line) + "\n" for line in lines if line["run"] in keep)
    report.write_atomic(results, text)


def _terminal_runs(lines: Iterable[dict]) -> set[str]:
    return {
        line["run"] for line in lines if line["type"] == "status" and line["status"] in TERMINAL
    }
