"""What defines a run and a comparison: the train, pretrain and compare configs.

:class:`TrainConfig` (one run's optimization), :class:`PretrainConfig` (the ``pretrained``
scheme's source) and :class:`CompareConfig` (a whole comparison) are plain frozen dataclasses,
checked on construction (errors name the field and echo the value);
a comparison's config round-trips through ``config.json`` (:meth:`CompareConfig.to_json`,
:meth:`CompareConfig.from_json`), which is how a resumed sweep finds its settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from initlab._checks import ArgumentError, non_negative, one_of, positive_int
from initlab.datasets.sources import resolve_source
from initlab.datasets.split import check_fraction
from initlab.datasets.text import DEFAULT_CORPUS
from initlab.experiments.tasks import IMAGE_SCHEMES, METRICS, resolve_task
from initlab.schemes.registry import canonical_scheme, parse_bias_init, parse_scheme
from initlab.zoo.models import resolve_model

__all__ = [
    "DEFAULT_SCHEMES",
    "CompareConfig",
    "PretrainConfig",
    "TrainConfig",
]

#: The schemes of the default comparison (task ``image``), in table order.
DEFAULT_SCHEMES = IMAGE_SCHEMES


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one run (defaults: the seed's AdamW, lr 1e-3, wd 0.01, 5 x 64).

    Attributes:
        optimizer: ``"adamw"`` (decoupled weight decay), ``"adam"`` (L2 weight decay added to
            the gradient) or ``"sgd"`` (with ``momentum``).
        lr: learning rate, >= 0.
        weight_decay: weight decay, >= 0 (AdamW: decoupled; Adam, SGD: L2 added to the
            gradient).
        momentum: SGD momentum, >= 0; ignored by AdamW and Adam.
        batch_size: training batch size, >= 1 (the last batch of an epoch may be smaller).
        epochs: number of epochs, >= 1.
        seed: run seed; initialization, shuffling and dropout draw from streams derived from it.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available).
        max_steps: optional cap on optimizer steps per epoch, >= 1, for short test runs.
        eval_batch_size: batch size for the test pass, >= 1 (no effect on results beyond
            rounding).
        log_every: steps per window of the loss curve
            (:attr:`~initlab.experiments.core.EpochRecord.loss_curve`); ``None``:
            ``ceil(steps per epoch / 10)``, about ten windows per epoch; ``0``: none.
        eval_steps: optimizer steps, counted from the start of training (>= 1), after which
            the training accuracy and the full-training-set loss are measured
            (:attr:`~initlab.experiments.core.EpochRecord.train_evals`), besides the per-epoch
            test pass; stored sorted without repeats; ``()``: none (the default). A list is
            taken as a tuple.

    Raises:
        ValueError: a name that is not accepted, a negative rate, a count below 1.
        TypeError: a count that is not an int (a bool is refused).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 5
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    eval_batch_size: int = 1000
    log_every: int | None = None
    eval_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.eval_steps, tuple | list):
            raise TypeError(
                f"eval_steps must be a tuple of optimizer steps; got eval_steps={self.eval_steps!r}"
            )
        for step in self.eval_steps:
            positive_int("eval_steps", step)
        object.__setattr__(self, "eval_steps", tuple(sorted(set(self.eval_steps))))
        one_of("optimizer", self.optimizer, ("adamw", "adam", "sgd"))
        one_of("device", self.device, ("cpu", "cuda", "auto"))
        for name in ("lr", "weight_decay", "momentum"):
            non_negative(name, getattr(self, name))
        for name in ("batch_size", "epochs", "eval_batch_size"):
            positive_int(name, getattr(self, name))
        if self.max_steps is not None:
            positive_int("max_steps", self.max_steps)
        if self.log_every is not None and (
            isinstance(self.log_every, bool)
            or not isinstance(self.log_every, int)
            or self.log_every < 0
        ):
            raise ValueError(
                "log_every must be None (about ten windows per epoch), 0 (no loss curve) or an "
                f"integer >= 1; got log_every={self.log_every!r}"
            )

    def steps_per_epoch(self, n: int) -> int:
        """Return the optimizer steps of one epoch over ``n`` training images."""
        steps = math.ceil(n / self.batch_size)
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def window(self, steps: int) -> int:
        """Return the loss curve's window in steps for ``steps`` per epoch (0: no curve)."""
        return math.ceil(steps / 10) if self.log_every is None else self.log_every


@dataclass(frozen=True)
class PretrainConfig:
    """Where the ``pretrained`` scheme's weights come from; saved inside ``config.json``.

    Attributes:
        dataset: source dataset name for :func:`~initlab.datasets.families.load_dataset`.
        data_dir: directory to read it from (``None``: embedded MNIST or the system paths).
        subset: train on a seeded random subset of this size (``None``: the whole training set).
        epochs: pretraining epochs, >= 1.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    subset: int | None = None
    epochs: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"pretrain epochs must be an int >= 1; got epochs={self.epochs!r}")


@dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison; saved as ``config.json``.

    Attributes:
        schemes: scheme names, each optionally with options (``"normal:std=0.1"``).
        seeds: number of seeds per scheme, >= 1; run seeds are
            ``first_seed .. first_seed+seeds-1``.
        first_seed: the first run seed.
        model: zoo model name, or a factory spec ``MODULE:FUNCTION`` naming any importable
            callable that returns an ``nn.Module`` (:mod:`initlab.zoo.factory`; imported again
            when ``config.json`` is read, so ``--resume`` rebuilds it); ``model_params`` its
            keyword arguments (JSON values: they are saved in ``config.json``).
        dataset: dataset name for :func:`~initlab.datasets.families.load_dataset`;
            ``data_dir`` an optional directory to read it from; ``download`` fetches missing files.
            User data instead: ``dataset`` ``"npz"`` or ``"folder"`` with ``data`` the file or
            folder, or ``dataset`` a factory ``"package.module:function"``
            (:mod:`initlab.datasets.sources`); ``config.json`` records both, so ``--resume``
            reloads the same source.
        standardize: standardize the inputs with the training split's mean and std
            (:func:`~initlab.datasets.arrays.standardize`): ``True`` per channel, ``"pixel"``
            per input position; off (``False``) by default.
        bias_init: bias rule for every run (``None``: each scheme's default).
        target_accuracy: test accuracy (fraction) whose first epoch the report counts.
        train_subset, test_subset: optional sizes (>= 1) of seeded random subsets, for quick
            runs.
        train: optimization settings; its ``seed`` is replaced by each run's seed.
        pretrain: where the source checkpoint of schemes that load one (``pretrained``) is
            pretrained (see :mod:`initlab.experiments.pretrain`); unused by the other schemes.
        lr_grid: learning rates (each > 0, no repeats) to try for every scheme, or ``None``
            (the default: every run uses ``train.lr``). With a grid the runs are schemes x
            rates x seeds, trained on the training data less a validation split of
            ``val_fraction`` (drawn with ``first_seed``:
            :func:`~initlab.datasets.split.hold_out`); each scheme's rate is chosen on that
            split (:func:`~initlab.reports.compare.choose_rates`) and the test set gives only
            the final numbers. ``config.json`` records both only
            when a grid is given (a config without one is written as before).
        val_fraction: the held-out fraction of the training data, in (0, 1); used only with
            ``lr_grid``.
        select_rates: with ``lr_grid``, choose each scheme's rate on the validation split (the
            default, ``initlab compare --lr-grid``). ``False``: no split is held out and no
            rate chosen; every rate's runs train on the whole training set and are reported
            rate by rate (a grid's ``lr`` axis, :func:`~initlab.experiments.grid.run_grid`;
            see :func:`~initlab.experiments.sweep.run_sweep`). ``config.json`` records it only
            when ``False``, so a resumed sweep reads it back.
        task: what is trained (:data:`~initlab.experiments.tasks.TASKS`): ``"image"`` (the
            default: images -> classes), ``"char-lm"`` (a character language model on
            ``text_file``, the embedded Shakespeare when ``None``), ``"seq-mnist"``,
            ``"seq-mnist-permuted"``, ``"vit"``. A zoo ``model`` must be one of the task's
            models. A language-model task reads no ``dataset``: its data are the corpus's
            windows of ``seq_len`` characters (``None``: the task's 64) with the fixed 5%
            validation split (:func:`~initlab.experiments.data.lm_data`); ``model_params``
            get ``vocab_size`` (and char-gpt's ``seq_len``) from the corpus unless given.
        text_file, seq_len: a language-model task's corpus and window; refused for others.
        metric: what the comparison is judged by: ``"accuracy"``, ``"loss"`` or ``"bpc"``
            (bits per character, language-model tasks only); ``None``: the task's default
            (:attr:`~initlab.experiments.tasks.Task.metric`).
        ``config.json`` records ``task``, ``text_file``, ``seq_len`` and ``metric`` only when
        they are not the defaults, so the default comparison's file is as before. A
        language-model task's file records its ``corpus`` (``text_file`` or the embedded
        Shakespeare) and leaves out what it does not read at its default (``dataset``,
        ``data``, ``data_dir``, ``download``, ``standardize``, ``target_accuracy``; ``pretrain``
        unless a scheme loads a source checkpoint).

    Raises:
        ValueError: no scheme, a repeated or unknown scheme or model, a count below 1, a
            target accuracy outside (0, 1]; an unknown task or metric, a zoo model that does
            not fit the task, ``text_file``/``seq_len``/``bpc`` for a task that is no language
            model, a ``dataset`` or ``data`` for one that is (``ArgumentError`` naming the
            argument).
        TypeError: a count that is not an int; a ``select_rates`` that is not a bool.
    """

    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    seeds: int = 3
    first_seed: int = 0
    model: str = "mlp-784-128-10"
    model_params: dict = field(default_factory=dict)
    dataset: str = "mnist"
    data_dir: str | None = None
    download: bool = False
    data: str | None = None
    standardize: bool | str = False
    bias_init: str | None = None
    target_accuracy: float = 0.97
    train_subset: int | None = None
    test_subset: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    lr_grid: tuple[float, ...] | None = None
    val_fraction: float = 0.1
    select_rates: bool = True
    task: str = "image"
    text_file: str | None = None
    seq_len: int | None = None
    metric: str | None = None

    def __post_init__(self) -> None:
        self._check_task()
        if self.lr_grid is not None:
            object.__setattr__(self, "lr_grid", _check_grid(self.lr_grid))
        check_fraction(self.val_fraction)
        if not isinstance(self.select_rates, bool):
            raise TypeError(f"select_rates must be True or False; got {self.select_rates!r}")
        if not self.schemes:
            raise ValueError("schemes must name at least one scheme; got schemes=()")
        for scheme in self.schemes:
            parse_scheme(scheme)
        if len({canonical_scheme(s) for s in self.schemes}) != len(self.schemes):  # seed = alias
            raise ValueError(f"schemes must not repeat; got schemes={list(self.schemes)}")
        positive_int("seeds", self.seeds)
        resolve_model(self.model)
        if self.bias_init is not None:
            parse_bias_init(self.bias_init)
        for name in ("train_subset", "test_subset"):  # 0 would leave an empty split
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        # the data source, checked without reading it; "auto" resolved to "npz" or "folder"
        dataset, _ = resolve_source(self.dataset, self.data, data_dir=self.data_dir)
        object.__setattr__(self, "dataset", dataset)
        if not (isinstance(self.standardize, bool) or self.standardize == "pixel"):
            raise TypeError(
                f"standardize must be True, False or 'pixel'; got standardize={self.standardize!r}"
            )
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(
                "target_accuracy is a fraction in (0, 1]; "
                f"got target_accuracy={self.target_accuracy!r}"
            )

    def _check_task(self) -> None:
        """Check the task and its options (see the class docstring)."""
        task = resolve_task(self.task)
        lm = task.kind == "lm"
        if not lm:
            for name in ("text_file", "seq_len"):
                if getattr(self, name) is not None:
                    raise ArgumentError(
                        name,
                        f"{name} is for language-model tasks (char-lm); got {name}="
                        f"{getattr(self, name)!r} with task={self.task!r}",
                    )
        elif self.dataset != "mnist" or self.data is not None:
            raise ArgumentError(
                "dataset",
                f"task {self.task!r} trains on a text corpus (text_file), not on a dataset; "
                f"got dataset={self.dataset!r}, data={self.data!r}",
            )
        if self.seq_len is not None:
            positive_int("seq_len", self.seq_len)
        if self.metric is not None:
            one_of("metric", self.metric, METRICS)
            if self.metric == "bpc" and not lm:
                raise ArgumentError(
                    "metric",
                    f"metric='bpc' (bits per character) is for language-model tasks; task "
                    f"{self.task!r} is judged by 'accuracy' or 'loss'",
                )
        task.check_model(self.model)

    @property
    def resolved_metric(self) -> str:
        """The metric the comparison is judged by: ``metric``, or the task's default."""
        return self.metric or resolve_task(self.task).metric

    def resolved_seq_len(self) -> int | None:
        """A language-model task's window length: ``seq_len``, or the task's default."""
        return self.seq_len or resolve_task(self.task).seq_len

    @classmethod
    def for_task(cls, task: str, **overrides) -> CompareConfig:
        """A config with ``task``'s defaults (model and its parameters, dataset, schemes,
        epochs, batch size, learning rate, steps cap), then ``overrides``.

        ``train`` overrides replace the task's training settings as a whole; ``model``
        given without ``model_params`` gets none of the task's (they are its default
        model's).

        Example:
            >>> CompareConfig.for_task("char-lm", seeds=1).model  # doctest: +SKIP
            'char-gpt'
        """
        spec = resolve_task(task)
        fields = dict(
            task=task,
            schemes=spec.schemes,
            model=spec.model,
            model_params=dict(spec.model_params),
            train=TrainConfig(
                epochs=spec.epochs,
                batch_size=spec.batch_size,
                lr=spec.lr,
                max_steps=spec.max_steps,
            ),
        )
        if spec.kind != "lm":
            fields["dataset"] = spec.dataset
        if "model" in overrides and "model_params" not in overrides:
            fields["model_params"] = {}
        return cls(**{**fields, **overrides})

    def to_json(self) -> str:
        """Return the config as indented JSON (round-trips through :meth:`from_json`)."""
        raw = dataclasses.asdict(self)
        defaults = {"task": "image", "text_file": None, "seq_len": None, "metric": None}
        for name, default in defaults.items():  # as written before tasks existed
            if raw[name] == default:
                del raw[name]
        if not self.train.eval_steps:  # as written before step evaluations existed
            del raw["train"]["eval_steps"]
        else:
            raw["train"]["eval_steps"] = list(self.train.eval_steps)
        if self.select_rates:  # as written before rate-by-rate reports existed
            del raw["select_rates"]
        if self.lr_grid is None:  # as written before grids existed
            del raw["lr_grid"], raw["val_fraction"]
        else:
            raw["lr_grid"] = list(self.lr_grid)
        if resolve_task(self.task).kind == "lm":
            _language_model_json(raw, self)
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompareConfig:
        """Rebuild a config written by :meth:`to_json`."""
        raw = json.loads(text)
        raw.pop("corpus", None)  # a language model's record of its text (see to_json)
        raw["schemes"] = tuple(raw["schemes"])
        raw["train"] = TrainConfig(**raw["train"])
        raw["pretrain"] = PretrainConfig(**raw.get("pretrain", {}))
        if raw.get("lr_grid") is not None:
            raw["lr_grid"] = tuple(raw["lr_grid"])
        return cls(**raw)

    def rates(self) -> list[float | None]:
        """Return the grid's learning rates, or ``[None]`` (every run at ``train.lr``)."""
        return [None] if self.lr_grid is None else list(self.lr_grid)

    def seed_list(self) -> list[int]:
        """Return the run seeds."""
        return list(range(self.first_seed, self.first_seed + self.seeds))


# What a language-model task does not read, with the defaults it then has: left out of its
# config.json (from_json restores them).
_IMAGE_ONLY = {
    "dataset": "mnist",
    "data": None,
    "data_dir": None,
    "download": False,
    "standardize": False,
    "target_accuracy": 0.97,
}


def _language_model_json(raw: dict, config: CompareConfig) -> None:
    """Shape a language-model task's ``config.json``: its corpus in place of a dataset.

    ``corpus`` names the text: ``text_file``, or the embedded one
    (:data:`~initlab.datasets.text.DEFAULT_CORPUS`). The image options and the target
    accuracy are left out at their defaults (a language model is judged in bits per character
    or nats), and ``pretrain`` unless a scheme loads a source checkpoint.
    """
    raw["corpus"] = config.text_file or f"{DEFAULT_CORPUS} (embedded)"
    for name, default in _IMAGE_ONLY.items():
        if raw[name] == default:
            del raw[name]
    if not any(parse_scheme(s)[0].needs_source for s in config.schemes):
        del raw["pretrain"]


def _check_grid(grid) -> tuple[float, ...]:
    """Return ``grid`` as a tuple of floats: at least one rate, each finite and > 0, no repeats.

    Raises:
        ArgumentError: (argument ``lr_grid``) naming the value and what is accepted.
    """
    rates = tuple(grid) if isinstance(grid, (list, tuple)) else None
    if not rates or any(
        isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < math.inf
        for r in rates
    ):
        raise ArgumentError(
            "lr_grid",
            f"lr_grid must be a non-empty list of finite learning rates > 0; got {grid!r}",
        )
    if len(set(rates)) != len(rates):
        raise ArgumentError("lr_grid", f"lr_grid must not repeat a rate; got {list(rates)}")
    return tuple(float(r) for r in rates)
