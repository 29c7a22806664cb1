"""Train one model on in-memory tensors, record per-epoch metrics, and detect divergence.

The whole dataset lives on the device as float tensors; each epoch draws a seeded
``torch.randperm`` and slices batches by index, so the loop does no per-sample Python work and
uses no DataLoader. The same seed gives identical numbers (on the same device and build).

Per epoch (:class:`EpochRecord`): mean training loss (mean of the per-step batch losses, as the
seed's ``running_loss / len(train_loader)``), test loss (mean cross-entropy over the test set),
test accuracy (a fraction in [0, 1]), per-parameter gradient norm (the mean over the epoch's
steps of each parameter's L2 gradient norm, measured before the optimizer step), wall time and
the loss curve: the mean training loss over windows of ``log_every`` consecutive steps, each
paired with the run's step count at the window's last step (the first epoch is where schemes
differ most; a per-epoch mean hides it).
A NaN or infinite training loss stops the run with status ``"diverged"`` and its epoch and step.

Between epochs a run is a :class:`TrainState` (weights, optimizer state, shuffle and dropout
streams, step count): :func:`train` hands one out after each epoch (``on_state``) and continues
from one (``start``) exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from initlab._checks import non_negative, one_of
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

__all__ = [
    "EpochRecord",
    "RunResult",
    "TensorData",
    "TrainState",
    "TrainConfig",
    "INIT_BATCH",
    "build_initialized",
    "check_classes",
    "cpu_copy",
    "label_classes",
    "init_batch",
    "evaluate",
    "load_optimizer_state",
    "loss_curve",
    "optimizer_state",
    "resolve_device",
    "run_seeds",
    "train",
    "train_scheme",
]

# The first INIT_BATCH training images are the batch that data-dependent schemes (LSUV) and the
# activation statistics at init see: fixed, so every scheme and seed sees the same data.
INIT_BATCH = 256
# How often (in steps) the loss is checked for NaN/inf: checking every step would force a
# device sync per step on CUDA; a diverged run only wastes these few steps.
_CHECK_EVERY = 50


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one run (defaults: the seed's AdamW, lr 1e-3, wd 0.01, 5 x 64).

    Attributes:
        optimizer: ``"adamw"`` (decoupled weight decay) or ``"sgd"`` (with ``momentum``).
        lr: learning rate, >= 0.
        weight_decay: weight decay, >= 0 (AdamW: decoupled; SGD: L2 added to the gradient).
        momentum: SGD momentum, >= 0; ignored by AdamW.
        batch_size: training batch size, >= 1 (the last batch of an epoch may be smaller).
        epochs: number of epochs, >= 1.
        seed: run seed; initialization, shuffling and dropout draw from streams derived from it.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available).
        max_steps: optional cap on optimizer steps per epoch, for short test runs.
        eval_batch_size: batch size for the test pass (no effect on results beyond rounding).
        log_every: steps per window of the loss curve (:attr:`EpochRecord.loss_curve`);
            ``None``: ``ceil(steps per epoch / 10)``, about ten windows per epoch; ``0``: none.
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

    def __post_init__(self) -> None:
        one_of("optimizer", self.optimizer, ("adamw", "sgd"))
        one_of("device", self.device, ("cpu", "cuda", "auto"))
        for name in ("lr", "weight_decay", "momentum"):
            non_negative(name, getattr(self, name))
        for name in ("batch_size", "epochs", "eval_batch_size"):
            _at_least_one(name, getattr(self, name))
        if self.max_steps is not None:
            _at_least_one("max_steps", self.max_steps)
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
class TensorData:
    """A dataset on one device: images ``(N, 1, H, W)`` float32 in [0, 1], labels ``(N,)`` int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset, device: str | torch.device = "cpu") -> TensorData:
        """Scale a :class:`~initlab.datasets.families.Dataset`'s uint8 pixels to [0, 1]."""

        def images(x: torch.Tensor) -> torch.Tensor:  # (N, H, W) uint8 -> (N, 1, H, W) float
            return x.to(device).unsqueeze(1).float().div_(255.0)

        return cls(
            images(dataset.train_images),
            dataset.train_labels.to(device, torch.int64),
            images(dataset.test_images),
            dataset.test_labels.to(device, torch.int64),
        )


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch (see the module docstring for their definitions).

    ``test_accuracy`` is a fraction; ``grad_norms`` maps parameter names to the mean L2 norm;
    ``wall_time_s`` covers the training steps and the test pass; ``steps`` counts optimizer steps.
    ``loss_curve`` holds ``(step, mean loss)`` per window of :attr:`TrainConfig.log_every`
    steps: the mean of the batch losses of the steps after the previous window's ``step`` up to
    ``step``, counted from the start of training (epoch 2's first window ends at
    ``steps + log_every``); an epoch's last window may be shorter. Empty when ``log_every=0``.
    """

    epoch: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    grad_norms: dict[str, float]
    wall_time_s: float
    steps: int
    loss_curve: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class RunResult:
    """Outcome of one run: ``status`` is ``"finished"`` or ``"diverged"``.

    ``diverged_epoch`` and ``diverged_step`` (1-based step within that epoch) locate the first
    non-finite training loss. ``epochs`` holds the records of the epochs trained by this call:
    all of them, or those after the :class:`TrainState` it started from.
    """

    status: str
    epochs: tuple[EpochRecord, ...] = field(default_factory=tuple)
    diverged_epoch: int | None = None
    diverged_step: int | None = None


@dataclass(frozen=True)
class TrainState:
    """A run between two epochs: what :func:`train` needs to continue it exactly.

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


def resolve_device(device: str) -> torch.device:
    """Map ``"cpu" | "cuda" | "auto"`` to a ``torch.device``; ``auto`` picks cuda when available.

    Under torchrun (``LOCAL_RANK`` set), CUDA means this process's own GPU,
    ``cuda:{LOCAL_RANK mod device_count}``, so the ranks on one machine do not all share GPU 0.

    Raises:
        ValueError: unknown name, or ``"cuda"`` when CUDA is not available.
    """
    one_of("device", device, ("cpu", "cuda", "auto"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    local_rank = os.environ.get("LOCAL_RANK")
    if device == "cuda" and local_rank is not None:
        return torch.device("cuda", int(local_rank) % torch.cuda.device_count())
    return torch.device(device)


def run_seeds(seed: int) -> tuple[int, int, int]:
    """Derive independent ``(init, shuffle, dropout)`` seeds from a run seed.

    Initialization and shuffling use separate streams so that, for one seed, every scheme sees
    the same batch order (a fairer comparison: only the initialization differs).
    """
    draws = torch.randint(0, 2**62, (3,), generator=torch.Generator().manual_seed(seed))
    return tuple(int(d) for d in draws)


def build_initialized(
    model: str,
    scheme: str,
    *,
    seed: int,
    model_params: dict | None = None,
    bias_init: str | None = None,
    batch: torch.Tensor | None = None,
) -> nn.Module:
    """Build zoo ``model`` on the CPU and initialize it by ``scheme`` from the run ``seed``.

    ``batch`` (on the CPU) is the training batch of data-dependent schemes such as ``lsuv``.
    Construction runs PyTorch's default init from the global RNG; it happens under a forked
    RNG seeded from the init stream, so the global RNG is untouched and the result repeatable.
    """
    generator = torch.Generator().manual_seed(run_seeds(seed)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
        net = build_model(model, **(model_params or {}))
    return initialize(net, scheme, generator=generator, bias_init=bias_init, batch=batch)


def train_scheme(
    model: str,
    scheme: str,
    data: TensorData,
    config: TrainConfig,
    *,
    model_params: dict | None = None,
    bias_init: str | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> RunResult:
    """Build, initialize and train one run; see :func:`build_initialized` and :func:`train`."""
    net = build_initialized(
        model,
        scheme,
        seed=config.seed,
        model_params=model_params,
        bias_init=bias_init,
        batch=init_batch(data),
    )
    return train(net, data, config, on_epoch=on_epoch)


def init_batch(data: TensorData) -> torch.Tensor:
    """Return the first :data:`INIT_BATCH` training images on the CPU, ``(B, 1, H, W)``."""
    return data.train_x[:INIT_BATCH].cpu()


def label_classes(data: TensorData) -> int:
    """Return the number of logits the labels need: the largest label plus one (0 if none)."""
    return int(torch.cat([data.train_y, data.test_y]).max()) + 1 if len(data.train_y) else 0


def check_classes(model: nn.Module, data: TensorData) -> None:
    """Raise ValueError unless ``model`` has a logit for every label in ``data``.

    A 10-class zoo model on EMNIST letters (26 classes) would otherwise fail mid-training
    with a raw cross-entropy index error. One forward pass of two training images in eval
    mode (no batch-statistics update, no dropout draw), then the model's mode is restored.

    Raises:
        ValueError: the largest label is ``>=`` the number of logits; the message says how to
            set ``num_classes``.
    """
    classes = label_classes(data)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(data.train_x[:2]).shape[-1]
    finally:
        model.train(training)
    if classes > logits:
        raise ValueError(
            f"the labels need {classes} classes but the model returns {logits} logits; build "
            f"it with num_classes={classes} (--model-param num_classes={classes})"
        )


def train(
    model: nn.Module,
    data: TensorData,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    start: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
) -> RunResult:
    """Train ``model`` in place with cross-entropy and return the per-epoch record.

    Args:
        model: a classifier returning logits ``(B, classes)``; moved to ``config.device``.
        data: the dataset on that device (see :meth:`TensorData.from_dataset`).
        config: optimization settings.
        on_epoch: called with each finished epoch's record (printing, appending to a file).
            An exception there, such as KeyboardInterrupt, stops training and propagates.
        start: continue from this state, taken by ``on_state`` of a run of the same model,
            data and config: the weights, optimizer state, batch order, dropout masks and step
            count go on exactly as if training had not stopped (on the same device and build).
        on_state: called after ``on_epoch`` with the run's :class:`TrainState` (a checkpoint);
            an exception there stops training and propagates.

    Returns:
        A :class:`RunResult`, ``"finished"`` or ``"diverged"``.

    Raises:
        ValueError: the labels need more classes than the model has logits; ``start`` is past
            ``config.epochs`` or does not fit the model.

    Example:
        >>> result = train(net, data, TrainConfig(epochs=1))  # doctest: +SKIP
    """
    device = resolve_device(config.device)
    model.to(device)
    check_classes(model, data)
    optimizer = _optimizer(model, config)
    _, shuffle_seed, dropout_seed = run_seeds(config.seed)
    shuffle = torch.Generator().manual_seed(shuffle_seed)
    records: list[EpochRecord] = []
    done = 0  # steps of the finished epochs: the loss curve counts steps from the start
    if start is not None:
        _restore(model, optimizer, shuffle, start, config)
        done = start.steps
    # Denormals make CPU float math orders of magnitude slower when weights or activations get
    # tiny (e.g. near-zero inits); flushing them to zero costs nothing in accuracy here.
    torch.set_flush_denormal(True)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(dropout_seed)
            if start is not None:
                _set_rng(start.rng, device)
            for epoch in range(1 if start is None else start.epoch + 1, config.epochs + 1):
                begin = time.perf_counter()
                outcome = _train_epoch(model, optimizer, data, config, shuffle)
                if isinstance(outcome, int):
                    return RunResult("diverged", tuple(records), epoch, outcome)
                train_loss, grad_norms, losses = outcome
                steps = len(losses)
                test_loss, accuracy = evaluate(model, data, config.eval_batch_size)
                record = EpochRecord(
                    epoch,
                    train_loss,
                    test_loss,
                    accuracy,
                    grad_norms,
                    time.perf_counter() - begin,
                    steps,
                    loss_curve(losses, config.window(steps), done)[0],
                )
                done += steps
                records.append(record)
                if on_epoch is not None:
                    on_epoch(record)
                if on_state is not None:
                    on_state(_capture(model, optimizer, shuffle, epoch, done, device))
    finally:
        torch.set_flush_denormal(False)  # PyTorch's default; it has no getter to restore from
    return RunResult("finished", tuple(records))


def _capture(model, optimizer, shuffle, epoch: int, steps: int, device) -> TrainState:
    """Copy one run's state to the CPU (see :class:`TrainState`)."""
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return TrainState(
        epoch,
        steps,
        {name: cpu_copy(t) for name, t in model.state_dict().items()},
        optimizer_state(optimizer, dict(model.named_parameters())),
        shuffle.get_state(),
        rng,
    )


def _restore(model, optimizer, shuffle, state: TrainState, config: TrainConfig) -> None:
    if state.epoch > config.epochs:
        raise ValueError(
            f"the train state is after epoch {state.epoch}, past the config's "
            f"epochs={config.epochs}"
        )
    try:
        model.load_state_dict(state.model)
    except RuntimeError as error:  # missing, unexpected or mis-shaped tensors
        raise ValueError(f"the train state does not fit the model: {error}") from None
    load_optimizer_state(optimizer, list(dict(model.named_parameters())), state.optimizer)
    shuffle.set_state(state.shuffle)


def _set_rng(rng: dict[str, torch.Tensor], device: torch.device) -> None:
    """Set the forked global RNG to a captured state; an empty ``rng`` keeps the fresh seed."""
    if "cpu" in rng:
        torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


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


def _train_epoch(model, optimizer, data, config, shuffle):
    """Run one epoch; return ``(mean loss, grad norms, losses (steps,))`` or the diverged step.

    The diverged step is 1-based within the epoch.
    """
    model.train()
    n = data.train_x.shape[0]
    steps = config.steps_per_epoch(n)
    order = torch.randperm(n, generator=shuffle).to(data.train_x.device)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    grad_sum = torch.zeros(len(named), device=data.train_x.device)
    losses: list[torch.Tensor] = []
    for step in range(steps):
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_sum += torch.stack([_grad_norm(p) for _, p in named])
        optimizer.step()
        losses.append(loss.detach())
        if (step + 1) % _CHECK_EVERY == 0 or step + 1 == steps:
            bad = _first_non_finite(losses[-_CHECK_EVERY:])
            if bad is not None:
                return len(losses) - len(losses[-_CHECK_EVERY:]) + bad + 1
    per_step = torch.stack(losses)
    norms = {
        name: float(g) for (name, _), g in zip(named, (grad_sum / steps).tolist(), strict=True)
    }
    return float(per_step.mean()), norms, per_step


def loss_curve(losses: torch.Tensor, every: int, done: int) -> list[tuple[tuple[int, float], ...]]:
    """Return each run's ``((step, window mean), ...)`` from per-step ``losses``.

    Args:
        losses: one epoch's batch losses, ``(steps,)`` for one run or ``(steps, R)`` for ``R``
            stacked runs (the stacked trainer calls this too, so both average alike).
        every: window length in steps (an epoch's last window may be shorter); 0: no windows.
        done: steps of the epochs before this one; ``step`` is ``done`` plus the window's
            last step, 1-based.

    Returns:
        One tuple of ``(step, mean loss)`` pairs per run.

    Example:
        >>> loss_curve(torch.tensor([4.0, 2.0, 3.0]), every=2, done=10)
        [((12, 3.0), (13, 3.0))]
    """
    per_run = losses if losses.ndim == 2 else losses[:, None]  # (steps, R)
    if every == 0:
        return [() for _ in range(per_run.shape[1])]
    means = torch.stack([w.mean(0) for w in per_run.split(every)]).T.tolist()  # (R, windows)
    steps = per_run.shape[0]
    ends = [done + min(end, steps) for end in range(every, steps + every, every)]
    return [tuple(zip(ends, row, strict=True)) for row in means]


def _grad_norm(p: torch.Tensor) -> torch.Tensor:
    return p.grad.norm() if p.grad is not None else p.new_zeros(())


def _first_non_finite(losses: list[torch.Tensor]) -> int | None:
    finite = torch.isfinite(torch.stack(losses))
    if bool(finite.all()):
        return None
    return int((~finite).nonzero()[0])


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000) -> tuple[float, float]:
    """Return ``(mean test cross-entropy, test accuracy as a fraction)`` in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=data.test_x.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.test_x.device)
    for start in range(0, data.test_x.shape[0], batch_size):
        logits = model(data.test_x[start : start + batch_size])
        labels = data.test_y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(dim=1) == labels).sum()
    model.train()
    n = data.test_x.shape[0]
    return float(loss_sum) / n, int(correct) / n


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _at_least_one(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}")
