"""The sequential trainer: train one model on in-memory tensors, record metrics, detect divergence.

The whole dataset lives on the device as float tensors; each epoch draws a seeded
``torch.randperm`` and slices batches by index, so the loop does no per-sample Python work and
uses no DataLoader. The same seed gives identical numbers (on the same device and build).

Per epoch (:class:`~initlab.experiments.core.EpochRecord`): mean training loss (mean of the
per-step batch losses, as the seed's ``running_loss / len(train_loader)``), test loss (mean
cross-entropy over the test set), test accuracy (a fraction in [0, 1]), per-parameter gradient
norm (the mean over the epoch's steps of each parameter's L2 gradient norm, measured before the
optimizer step), wall time and the loss curve: the mean training loss over windows of
``log_every`` consecutive steps, each paired with the run's step count at the window's last
step (the first epoch is where schemes differ most; a per-epoch mean hides it).
A NaN or infinite training loss stops the run with status ``"diverged"`` and its epoch and step.
The optimizer, gradient norms, divergence check and evaluation are the stacked trainer's too
(:mod:`initlab.experiments.core`).

Between epochs a run is a :class:`~initlab.experiments.checkpoint.TrainState` (weights,
optimizer state, shuffle and dropout streams, step count): :func:`train` hands one out after
each epoch (``on_state``) and continues from one (``start``) exactly as if it had never stopped.

The names that moved to :mod:`~initlab.experiments.config`, :mod:`~initlab.experiments.core`
and :mod:`~initlab.experiments.checkpoint` (``TrainConfig``, ``TensorData``, ``EpochRecord``,
``RunResult``, ``TrainState``, ...) are importable from here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from initlab.experiments.checkpoint import (
    TrainState,
    cpu_copy,
    load_optimizer_state,
    optimizer_state,
)
from initlab.experiments.config import TrainConfig
from initlab.experiments.core import (
    CHECK_EVERY,
    TRACE_BATCH,
    TRACE_EVERY,
    TRACE_STEPS,
    EpochRecord,
    RunResult,
    TensorData,
    check_due,
    evaluate_logits,
    first_non_finite,
    grad_norms,
    has_attention,
    logit_scales,
    loss_curve,
    make_optimizer,
    progress_due,
    resolve_device,
    run_seeds,
    sequence_cross_entropy,
    trace_lines,
    traced,
    training_view,
)
from initlab.introspect.hooks import flush_denormal
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

__all__ = [
    "CHECK_EVERY",
    "INIT_BATCH",
    "EpochRecord",
    "RunResult",
    "TensorData",
    "TrainConfig",
    "TrainState",
    "build_initialized",
    "check_classes",
    "cpu_copy",
    "evaluate",
    "init_batch",
    "label_classes",
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


def build_initialized(
    model: str,
    scheme: str,
    *,
    seed: int,
    model_params: dict | None = None,
    bias_init: str | None = None,
    batch: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    source=None,
) -> nn.Module:
    """Build zoo ``model`` on the CPU and initialize it by ``scheme`` from the run ``seed``.

    ``batch`` (on the CPU) is what data-dependent steps read: inputs, or ``(inputs, labels)``
    (:func:`scheme_batch`) for ``lsuv`` (inputs) and the ``class_prior`` head bias (labels);
    ``source`` the checkpoint of schemes that load one (``pretrained``; see
    :func:`initlab.experiments.pretrain.source_for_run`).
    Construction runs PyTorch's default init from the global RNG; it happens under a forked
    RNG seeded from the init stream, so the global RNG is untouched and the result repeatable.
    """
    generator = torch.Generator().manual_seed(run_seeds(seed)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
        net = build_model(model, **(model_params or {}))
    return initialize(
        net, scheme, generator=generator, bias_init=bias_init, batch=batch, source=source
    )


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
        batch=scheme_batch(data),
    )
    return train(net, data, config, on_epoch=on_epoch)


def init_batch(data: TensorData) -> torch.Tensor:
    """Return the first :data:`INIT_BATCH` training images on the CPU, ``(B, 1, H, W)``."""
    return data.train_x[:INIT_BATCH].cpu()


def scheme_batch(data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
    """Return what a scheme's data steps read: ``(init_batch(data), every training label)``.

    Steps that need inputs (LSUV, ``auto``'s trace) read ``batch[0]``; the class-prior head
    bias reads ``batch[1]``, so its prior is the whole training split's, not the first batch's.
    """
    return init_batch(data), data.train_y.cpu()


def label_classes(data: TensorData) -> int:
    """Return the number of logits the labels need: the largest label plus one (0 if none).

    Labels ``(N,)`` or a language model's targets ``(N, T)``: then the vocabulary size the
    tokens need.
    """
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
            f"it with num_classes={classes}"
        )


def train(
    model: nn.Module,
    data: TensorData,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    start: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Train ``model`` in place with cross-entropy and return the per-epoch record.

    The loss is :func:`~initlab.experiments.core.sequence_cross_entropy`: per image for a
    classifier, per token (mean over all positions) for a language model.

    Args:
        model: a classifier returning logits ``(B, classes)``, or a language model taking
            tokens ``(B, T)`` and returning ``(B, T, vocab)``; moved to ``config.device``.
        data: the dataset on that device (see :meth:`TensorData.from_dataset`).
        config: optimization settings.
        on_epoch: called with each finished epoch's record (printing, appending to a file).
            An exception there, such as KeyboardInterrupt, stops training and propagates.
        start: continue from this state, taken by ``on_state`` of a run of the same model,
            data and config: the weights, optimizer state, batch order, dropout masks and step
            count go on exactly as if training had not stopped (on the same device and build).
        on_state: called after ``on_epoch`` with the run's :class:`TrainState` (a checkpoint);
            an exception there stops training and propagates.
        on_step: called with the number of optimizer steps taken since its previous call,
            every :data:`~initlab.experiments.core.PROGRESS_EVERY` steps and after an epoch's
            last step (before the test pass), for a progress bar; it sees every step of a
            finished epoch, and those up to the check that found a divergence. It does not
            change the training.

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
    optimizer = make_optimizer(model.parameters(), config)
    _, shuffle_seed, dropout_seed = run_seeds(config.seed)
    shuffle = torch.Generator().manual_seed(shuffle_seed)
    records: list[EpochRecord] = []
    done = 0  # steps of the finished epochs: the loss curve counts steps from the start
    if start is not None:
        _restore(model, optimizer, shuffle, start, config)
        done = start.steps
    fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with flush_denormal(), fork:
        torch.manual_seed(dropout_seed)
        if start is not None:
            _set_rng(start.rng, device)
        for epoch in range(1 if start is None else start.epoch + 1, config.epochs + 1):
            begin = time.perf_counter()
            outcome = _train_epoch(model, optimizer, data, config, shuffle, on_step, done)
            if isinstance(outcome, int):
                return RunResult("diverged", tuple(records), epoch, outcome)
            train_loss, norms, losses, trace, train_evals = outcome
            steps = len(losses)
            test_loss, accuracy = evaluate(model, data, config.eval_batch_size)
            val = (None, None)
            if data.val_x is not None:
                val = evaluate(model, data.validation(), config.eval_batch_size)
            record = EpochRecord(
                epoch,
                train_loss,
                test_loss,
                accuracy,
                norms,
                time.perf_counter() - begin,
                steps,
                loss_curve(losses, config.window(steps), done)[0],
                *val,
                trace,
                train_evals,
            )
            done += steps
            records.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if on_state is not None:
                on_state(_capture(model, optimizer, shuffle, epoch, done, device))
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


def _train_epoch(model, optimizer, data, config, shuffle, on_step=None, done=0):
    """Run one epoch; return ``(mean loss, grad norms, losses (steps,), trace, train_evals)``
    or the diverged step.

    The diverged step is 1-based within the epoch; ``done`` counts the steps before it (the
    trace's steps count from the start: :func:`~initlab.experiments.core.trace_lines`).
    """
    model.train()
    n = data.train_x.shape[0]
    steps = config.steps_per_epoch(n)
    order = torch.randperm(n, generator=shuffle).to(data.train_x.device)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    grad_sum = torch.zeros(len(named), device=data.train_x.device)
    losses: list[torch.Tensor] = []
    reported = 0  # steps already passed to on_step
    eval_size = config.eval_batch_size
    tracing, probe_x = traced(model), data.train_x[:TRACE_BATCH]
    grad_steps, grads, probe_steps, probes = [], [], [], []  # as the stacked trainer's trace
    if tracing and done == 0:
        probe_steps.append(0)
        probes.append(_probe(model, probe_x))
    evals = []  # EpochRecord.train_evals: (step, full-training-set loss, accuracy)
    for step in range(steps):
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        loss = sequence_cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = grad_norms(params)
        grad_sum += norms
        if tracing and done + step < TRACE_STEPS:
            grad_steps.append(done + step + 1)
            grads.append(norms[None])
        optimizer.step()
        if tracing and (done + step + 1) % TRACE_EVERY == 0:
            probe_steps.append(done + step + 1)
            probes.append(_probe(model, probe_x))
        if done + step + 1 in config.eval_steps:  # evaluation draws nothing: same training
            evals.append((done + step + 1, *evaluate(model, training_view(data), eval_size)))
        losses.append(loss.detach())
        if on_step is not None and (progress_due(step, steps) or check_due(step, steps)):
            on_step(len(losses) - reported)
            reported = len(losses)
        if check_due(step, steps):
            bad = first_non_finite(losses[-CHECK_EVERY:], len(losses))
            if bad:
                return bad[0]
    per_step = torch.stack(losses)
    norms = {
        name: float(g) for (name, _), g in zip(named, (grad_sum / steps).tolist(), strict=True)
    }
    names = [name for name, _ in named]
    trace = trace_lines(
        names, grad_steps, grads, probe_steps, probes, attention=has_attention(model)
    )
    return float(per_step.mean()), norms, per_step, trace[0] if trace else {}, tuple(evals)


def _probe(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """:func:`~initlab.experiments.core.logit_scales` ``(1, 3)`` in eval mode (no dropout
    draw: the run's random stream stays that of an untraced run)."""
    model.eval()
    try:
        return logit_scales(model, x)[None]
    finally:
        model.train()


def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000) -> tuple[float, float]:
    """Return ``(mean test cross-entropy, test accuracy as a fraction)`` in eval mode.

    The model is left in training mode (:func:`~initlab.experiments.core.evaluate_logits`).
    """
    model.eval()
    try:
        (loss,), (accuracy,) = evaluate_logits(model, data, batch_size)
    finally:
        model.train()
    return loss, accuracy
