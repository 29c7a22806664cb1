"""Train many runs of one architecture together: stacked parameters, one vmapped step for all.

A comparison trains the same model under several schemes and seeds; each run alone is a string
of small matrix products dominated by Python and dispatch overhead. Here the ``R`` runs' weights
are stacked along a new leading axis (``(R, *shape)`` per parameter), one forward/backward of
``torch.func.vmap(torch.func.functional_call(...))`` computes all ``R`` losses and gradients
(batched matrix products), and one optimizer steps all stacked tensors. This is PyTorch's model
ensembling recipe (``torch.func.stack_module_state`` + ``vmap``; tutorial "Model ensembling",
pytorch.org/tutorials/intermediate/ensembling.html) extended to training, with two CPU-side
choices that keep a step cheap: linear layers compute ``W @ x.T`` so that the weight gradient
lands in the parameter's layout (:class:`_WeightTimesInput`), and AdamW uses its fused kernel.
The default comparison's model, ``mlp-784-128-10``
(:class:`~initlab.zoo.models.OneHiddenLayerMLP`, the seed's InitNet), skips vmap and the
network's autograd graph: its loss and gradients are written out as batched matrix products
(:func:`_initnet_step`), the same products in the same layout with autograd's own backward
kernels (log_softmax's through ``torch.autograd.grad`` on that one node), so its weight
gradients equal the vmapped step's bit for bit, in persistent gradient buffers.

The stacked and the sequential trainer share their optimizer, gradient norms, divergence check
and evaluation (:mod:`initlab.experiments.core`).

Per-run results equal separate :func:`~initlab.experiments.trainer.train` runs within float
rounding, because every piece is per run:

- data: run ``r`` draws its own ``torch.randperm`` from its own shuffle stream
  (:func:`~initlab.experiments.trainer.run_seeds`), and its batch is gathered as
  ``x[order_r[step]]``, so the step sees the same images as the sequential trainer (runs of
  one seed draw the same orders; the stack keeps them side by side, and ``mlp-784-128-10``
  gathers their batch once);
- gradients: the summed loss ``sum_r L_r`` has ``dL/dtheta_r = dL_r/dtheta_r``, since run
  ``r``'s parameters enter only its own loss;
- optimizer: AdamW and SGD (with momentum and weight decay) are element-wise given the
  gradient, with a step count and hyperparameters shared by all runs, so a step on the stacked
  tensor is the per-run step on each slice; runs at several learning rates (an ``--lr-grid``)
  share one stack too: :class:`~initlab.experiments.optim.StackedOptimizer` runs the same fused
  kernels on each run's slice with the run's own rate;
- divergence: a NaN or infinity stays inside its run's slice (nothing mixes runs); the loss is
  checked every ``_CHECK_EVERY`` steps as in the trainer, and a run that went non-finite is
  reported at its first bad step and removed from the stack (with its optimizer state).
- loss curve: the per-step losses ``(steps, R)`` go through the trainer's own
  :func:`~initlab.experiments.trainer.loss_curve`, so the windows and their steps match.

Only models whose forward is a pure function of parameters and input can be stacked:
:func:`vectorizable` refuses dropout (random masks), BatchNorm with running statistics (the
forward writes buffers) and anything ``vmap`` fails on or computes differently, such as the
fused kernels of ``nn.LSTM``/``nn.GRU`` (their flat weights); recurrent models whose steps are
written out stack.
Initialization, data-dependent schemes such as LSUV included, happens per run before training,
so it needs no fallback.

Checkpoints are per run (:class:`~initlab.experiments.trainer.TrainState`): a slice of the
stacked parameters and optimizer state with the run's shuffle stream, the same state the
sequential trainer hands out, so a run stopped in a stack can continue in a stack or alone.
Runs that continue together must stand at the same epoch (AdamW's step count is shared).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.overrides import TorchFunctionMode

from initlab.experiments.checkpoint import TrainState, cpu_copy, load_optimizer_state
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
from initlab.experiments.optim import StackedOptimizer
from initlab.introspect.hooks import flush_denormal
from initlab.zoo.models import OneHiddenLayerMLP

__all__ = ["train_group", "vectorizable"]

log = logging.getLogger(__name__)

# Modules that draw random masks in training mode (every public dropout class of torch.nn).
_DROPOUT = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
# Relative tolerance of the probe that compares the stacked forward with each model's own:
# batched and single matrix products may round differently (float32 eps is 1.2e-7).
_PROBE_RTOL = 1e-4


def vectorizable(models: Sequence[nn.Module], example: torch.Tensor | None = None) -> str | None:
    """Say why ``models`` cannot be trained as one stack, or return ``None`` if they can.

    They can when they share class, parameter names, shapes and dtypes, have equal buffers,
    hold no dropout or BatchNorm running statistics, and a vmapped forward of ``example``
    through the stack equals each model's own forward. A recurrent model passes when its
    forward is written out step by step (the zoo's keep an ``nn.LSTM`` for its parameters
    only); one that calls the fused ``nn.LSTM``/``nn.GRU`` kernel fails the vmapped forward.

    Args:
        models: the runs' models, all on one device, at least one.
        example: a small input batch on that device; ``None``: two zero images ``(2, 1, 28, 28)``.

    Returns:
        ``None``, or a short reason for a log line.

    Example:
        >>> vectorizable([OneHiddenLayerMLP(), OneHiddenLayerMLP()]) is None  # doctest: +SKIP
        True
    """
    first = models[0]
    for model in models:
        reason = _static_reason(first, model)
        if reason is not None:
            return reason
    if example is None:
        example = torch.zeros(2, 1, 28, 28, device=next(first.parameters()).device)
    return _probe_reason(models, example)


def _static_reason(first: nn.Module, model: nn.Module) -> str | None:
    for module in model.modules():
        if isinstance(module, _DROPOUT):
            return "dropout draws random masks"
        if getattr(module, "track_running_stats", False):
            return "BatchNorm-style running statistics are written by the forward pass"
    if type(model) is not type(first):
        return f"different model classes ({type(first).__name__}, {type(model).__name__})"
    if _signature(model.named_parameters()) != _signature(first.named_parameters()):
        return "different parameter names, shapes or dtypes"
    if any(not p.requires_grad for p in model.parameters()):
        return "frozen parameters"
    buffers, firsts = dict(model.named_buffers()), dict(first.named_buffers())
    if buffers.keys() != firsts.keys() or not all(
        torch.equal(b, firsts[n]) for n, b in buffers.items()
    ):
        return "different buffers"
    return None


def _signature(named) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(name, tuple(p.shape), p.dtype) for name, p in named]


@torch.no_grad()
def _probe_reason(models: Sequence[nn.Module], x: torch.Tensor) -> str | None:
    try:
        stacked = vmap(stacked_forward(models[0]), in_dims=(0, None))(stack_parameters(models), x)
    except Exception as error:  # any op vmap has no batching rule for
        hint = ""
        if any(isinstance(m, nn.RNNBase) for m in models[0].modules()):
            hint = (
                " (a recurrent layer's fused forward, nn.LSTM/GRU/RNN called as a module, "
                "cannot be stacked; the zoo's recurrent models write the steps out: "
                "initlab.zoo.recurrent.recurrent_forward)"
            )
        return f"torch.func.vmap failed on the forward pass: {error}{hint}"
    for r, model in enumerate(models):
        alone = model(x)
        # An overflowing init may give inf one way and nan the other: compare finite entries.
        both = torch.isfinite(alone) & torch.isfinite(stacked[r])
        if alone.shape != stacked[r].shape or not torch.allclose(
            stacked[r][both], alone[both], rtol=_PROBE_RTOL, atol=_PROBE_RTOL
        ):
            return "the stacked forward differs from the model's own forward"
    return None


def stacked_forward(template: nn.Module) -> Callable:
    """Return ``forward(params, x)``: ``template``'s forward with ``params`` (``{name: tensor}``)
    in place of its parameters, through ``torch.func.functional_call``; vmap it over a stack of
    :func:`stack_parameters`. Weight-times-input products of non-recurrent models go through
    ``_WeightTimesInput`` (one batched product per layer under vmap)."""
    # A recurrent model's F.linear calls run plain: W @ h^T per time step made its stacked
    # step 1.6x slower (char-rnn, seq-rnn; benchmarks/bench_sequence.py).
    recurrent = any(isinstance(m, nn.RNNBase) for m in template.modules())

    def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if recurrent:
            return functional_call(template, params, (x,))
        with _WeightTimesInput():
            return functional_call(template, params, (x,))

    return forward


class _WeightTimesInput(TorchFunctionMode):
    """Compute ``F.linear(x, W, b)`` as ``(W @ x.mT).mT + b``: the same product, faster stacked.

    Under vmap, ``x @ W.T`` makes autograd compute the weight gradient as ``x.T @ g`` in the
    transposed layout ``(R, in, out)`` and then copy it into the parameter's ``(R, out, in)``;
    with ``W @ x.T`` the gradient ``g.T @ x`` lands in the parameter's layout directly. On the
    default sweep (18 runs of mlp-784-128-10, batch 64) that copy and the slower transposed
    product were about 30% of a training step. The forward values are the same products, summed
    over ``in``.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Only a per-run batch of vectors (B, in): for (B, T, in), W @ x^T broadcasts W over
        # B (an (R * B)-batch of small products and a copy of W per sample), 1.2x to 3.7x slower
        # than F.linear's own batching (char-gpt, vit).
        if func is F.linear and args[0].ndim == 2:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            y = (weight @ x.mT).mT  # (..., B, in) -> (..., B, out)
            return y if bias is None else y + bias
        return func(*args, **kwargs)


def stack_parameters(models: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """Stack every parameter over runs: ``{name: (R, *shape)}``, detached."""
    names = [name for name, _ in models[0].named_parameters()]
    return {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n in names}


def train_group(
    models: Sequence[nn.Module],
    data: TensorData,
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    on_epoch: Callable[[int, EpochRecord], None] | None = None,
    on_done: Callable[[int, RunResult], None] | None = None,
    start: Sequence[TrainState] | None = None,
    on_state: Callable[[dict[int, TrainState]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    lrs: Sequence[float] | None = None,
) -> list[RunResult]:
    """Train ``models[r]`` with run seed ``seeds[r]`` for every ``r``, all in one stack.

    Equivalent to ``[train(m, data, replace(config, seed=s)) for m, s in zip(models, seeds)]``
    within float rounding (see the module docstring for why), with the same records, divergence
    rule and in-place result: each model ends with its trained parameters.

    Args:
        models: models accepted by :func:`vectorizable`, at least one.
        data: the dataset on ``config.device``.
        config: optimization settings shared by all runs; its ``seed`` is ignored.
        seeds: one run seed per model; it picks the run's shuffle stream.
        on_epoch: called with ``(run index, record)`` for each run after each epoch, in run
            order; an exception there stops training and propagates.
        on_done: called with ``(run index, result)`` when a run ends: at the end of the epoch
            in which it diverged (before that epoch's ``on_epoch`` calls of the other runs), or
            after the last epoch.
        start: one :class:`~initlab.experiments.trainer.TrainState` per model, all after the
            same epoch, to continue from (as :func:`~initlab.experiments.trainer.train`'s
            ``start``); the models are loaded from them.
        on_state: called after each epoch's ``on_epoch`` calls with ``{run index: state}`` of
            the runs still training; an exception there stops training and propagates.
        on_step: called with the run-steps (optimizer steps times the runs in the stack)
            taken since its previous call, every
            :data:`~initlab.experiments.core.PROGRESS_EVERY` steps, after an epoch's last step
            and before diverged runs leave the stack, for a progress bar. It does not change
            the training.
        lrs: one learning rate per model (an ``--lr-grid``'s rates in one stack); ``None``:
            ``config.lr`` for every model. With two or more distinct rates the stack steps with
            :class:`~initlab.experiments.optim.StackedOptimizer` (per-run rates, the same fused
            kernels on each run's slice); with one rate, ``config``'s optimizer at that rate.

    Returns:
        One :class:`~initlab.experiments.trainer.RunResult` per model, in order, with the
        records of the epochs trained by this call. The epoch records' ``wall_time_s`` is the
        wall time of the whole group's epoch.

    Raises:
        ValueError: ``len(seeds)``, ``len(start)`` or ``len(lrs)`` is not ``len(models)``;
            the states stand at different epochs or past ``config.epochs``; the models cannot
            be stacked (the message gives :func:`vectorizable`'s reason).

    Example:
        >>> results = train_group(models, data, TrainConfig(epochs=1), [0, 0, 1])  # doctest: +SKIP
    """
    if len(seeds) != len(models) or not models:
        raise ValueError(
            f"seeds must give one seed per model; got {len(seeds)} seeds for {len(models)} models"
        )
    if lrs is not None and len(lrs) != len(models):
        raise ValueError(f"lrs must give one rate per model; got {len(lrs)} for {len(models)}")
    first = _start_epoch(start, len(models), config.epochs)
    device = resolve_device(config.device)
    for r, model in enumerate(models):
        model.to(device).train()
        if start is not None:
            model.load_state_dict(start[r].model)
    reason = vectorizable(models, data.train_x[:2])
    if reason is not None:
        raise ValueError(f"models cannot be trained as one stack: {reason}")
    if lrs is not None and len(set(lrs)) == 1:  # one rate: the config's optimizer at that rate
        config = dataclasses.replace(config, lr=float(lrs[0]))
    group = _Group(models, config, seeds, start, lrs)
    group.on_step = on_step
    with flush_denormal():
        for epoch in range(first, config.epochs + 1):
            group.run_epoch(epoch, data, on_epoch, on_done)
            if not group.active:
                break
            if on_state is not None:
                on_state({r: group.state(r, epoch) for r in sorted(group.active)})
    for r in sorted(group.active):
        group.finish(r, "finished", on_done)
    return [group.results[r] for r in range(len(models))]


def _start_epoch(start: Sequence[TrainState] | None, runs: int, epochs: int) -> int:
    """Return the first epoch to train: 1, or the one after the states' common epoch."""
    if start is None:
        return 1
    if len(start) != runs:
        raise ValueError(f"start must give one state per model; got {len(start)} for {runs}")
    stands = sorted({(s.epoch, s.steps) for s in start})
    if len(stands) != 1 or stands[0][0] > epochs:
        raise ValueError(
            "stacked runs continue together from one epoch, at most the config's "
            f"epochs={epochs}; got (epoch, steps) {stands}"
        )
    return stands[0][0] + 1


class _Group:
    """The stacked state of the runs still training: parameters, optimizer, shuffle streams."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        config: TrainConfig,
        seeds: Sequence[int],
        start: Sequence[TrainState] | None = None,
        lrs: Sequence[float] | None = None,
    ):
        self.models = list(models)
        self.config = config
        # run index of each row of the stack: the runs of one seed side by side (a stable sort),
        # so that rows drawing the same batches form blocks (see _shared_batches)
        self.active = sorted(range(len(models)), key=lambda r: seeds[r])
        stack = [self.models[r] for r in self.active]
        self.params = {n: p.requires_grad_() for n, p in stack_parameters(stack).items()}
        # runs at several rates: per-run hyperparameters (StackedOptimizer); else torch.optim's
        self.lrs = None if lrs is None or len(set(lrs)) < 2 else [float(lr) for lr in lrs]
        self.optimizer = self._make_optimizer()
        self.shuffles = [torch.Generator().manual_seed(run_seeds(s)[1]) for s in seeds]
        self.records: list[list[EpochRecord]] = [[] for _ in models]
        self.results: dict[int, RunResult] = {}
        self.done = 0  # steps of the finished epochs, for the loss curve's step counts
        self.on_step: Callable[[int], None] | None = None  # progress (see train_group)
        forward = stacked_forward(models[0])
        # (R, B, ...) inputs and (R, B, ...) targets -> (R,) mean cross-entropy per run
        self.loss = vmap(lambda p, x, y: sequence_cross_entropy(forward(p, x), y))
        # mlp-784-128-10 (784 -> 128 -> ReLU -> 10) gets a hand-written step without vmap.
        self.direct = type(models[0]) is OneHiddenLayerMLP
        # a sequence model's trace (core's module docstring): early gradient norms, logit scales
        self.tracing = traced(models[0])
        self.attention = has_attention(models[0])
        if start is not None:
            self.done = start[0].steps
            if self.lrs is not None:
                for row, r in enumerate(self.active):
                    self.optimizer.load_run_state(row, start[r].optimizer)
            else:
                states = _stack_states([start[r] for r in self.active])
                load_optimizer_state(self.optimizer, list(self.params), states)
            for shuffle, state in zip(self.shuffles, start, strict=True):
                shuffle.set_state(state.shuffle)

    def _make_optimizer(self) -> torch.optim.Optimizer | StackedOptimizer:
        """The optimizer over the stack: torch.optim's (one rate), else per-run rates."""
        if self.lrs is None:
            return make_optimizer(list(self.params.values()), self.config, fused=True)
        rows = len(self.active)
        return StackedOptimizer(
            self.params,
            {name: [self.lrs[r] for r in self.active] for name in self.params},
            self.config.optimizer,
            weight_decay={name: [self.config.weight_decay] * rows for name in self.params},
            momentum=self.config.momentum,
        )

    def state(self, r: int, epoch: int) -> TrainState:
        """Run ``r``'s :class:`TrainState` after ``epoch``: its slice of the stack, on the CPU."""
        row = self.active.index(r)
        self._write_back([row])  # the model's state_dict then holds the run's own weights
        if self.lrs is not None:  # already per run, in torch.optim's layout
            optimizer = {
                name: {k: cpu_copy(v) for k, v in entries.items()}
                for name, entries in self.optimizer.run_state(row).items()
            }
            model = {name: cpu_copy(t) for name, t in self.models[r].state_dict().items()}
            return TrainState(epoch, self.done, model, optimizer, self.shuffles[r].get_state())
        optimizer = {
            name: {
                k: cpu_copy(v[row] if _is_stacked(k, v) else v)
                for k, v in self.optimizer.state[p].items()
                if torch.is_tensor(v)
            }
            for name, p in self.params.items()
            if p in self.optimizer.state
        }
        model = {name: cpu_copy(t) for name, t in self.models[r].state_dict().items()}
        return TrainState(epoch, self.done, model, optimizer, self.shuffles[r].get_state())

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-run losses ``(R,)`` of the batch; leaves each run's gradient in ``p.grad``.

        ``x`` holds one batch per run, ``(R, B, ...)``; for ``mlp-784-128-10``, also one per
        block of runs that draw the same batches, ``(G, B, ...)`` with ``G`` dividing ``R``
        (see :func:`_initnet_step`). ``y`` is ``(R, B)``.
        """
        if self.direct:
            return _initnet_step(self.params, x, y)
        loss = self.loss(self.params, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        return loss.detach()

    def run_epoch(self, epoch, data, on_epoch, on_done) -> None:
        start = time.perf_counter()
        outcome = self.train_epoch(data)
        evaluated = _evaluate(self, data) if self.active else ([], [])
        rows = len(self.active)
        val = ([None] * rows, [None] * rows)
        if data.val_x is not None and self.active:
            val = _evaluate(self, data.validation())
        elapsed = time.perf_counter() - start
        # A diverged run ends before the others' epoch lines, as it would have run alone first.
        for r, step in sorted(outcome.diverged.items()):
            self.results[r] = RunResult("diverged", tuple(self.records[r]), epoch, step)
            if on_done is not None:
                on_done(r, self.results[r])
        for r in sorted(self.active):  # in run order, whatever the order of the stack
            row = self.active.index(r)
            record = EpochRecord(
                epoch,
                outcome.losses[row],
                evaluated[0][row],
                evaluated[1][row],
                outcome.grad_norms[row],
                elapsed,
                outcome.steps,
                outcome.curves[row],
                val[0][row],
                val[1][row],
                outcome.traces[row],
                outcome.train_evals[row],
            )
            self.records[r].append(record)
            if on_epoch is not None:
                on_epoch(r, record)
        self.done += outcome.steps

    def train_epoch(self, data: TensorData) -> _EpochOutcome:
        """One epoch for every active run; diverged runs leave the stack (see the module doc)."""
        n = data.train_x.shape[0]
        size = self.config.batch_size
        steps = self.config.steps_per_epoch(n)
        device = data.train_x.device
        # (R, n): each run's own permutation from its own stream, as in the sequential trainer
        orders = torch.stack([torch.randperm(n, generator=self.shuffles[r]) for r in self.active])
        orders = orders.to(device)
        grad_sum = torch.zeros(len(self.active), len(self.params), device=device)
        losses: list[torch.Tensor] = []  # (R,) per step
        diverged: dict[int, int] = {}
        reported = 0  # steps already passed to on_step
        # the trace: (steps, (R, P) norms) of the first steps, (steps, (R, 3) logit scales)
        grad_steps, grads, probe_steps, probes = [], [], [], []
        if self.tracing and self.done == 0:
            probe_steps.append(0)
            probes.append(self.probe(data))
        # EpochRecord.train_evals: (step, ([loss per row], [accuracy per row])) per eval step
        evals: list[tuple[int, tuple[list[float], list[float]]]] = []
        # mlp-784-128-10: rows that draw the same batches (runs of one seed) share one gather
        # and one product per block of rows (_initnet_step)
        shared = _shared_batches(orders) if self.direct else 1
        for step in range(steps):
            index = orders[:, step * size : (step + 1) * size]  # (R, B)
            x = _gather(data, index[::shared])  # (R / shared, B, ...)
            loss = self.loss_and_grads(x, data.train_y[index])  # (R,)
            norms = grad_norms(list(self.params.values()), len(self.active))  # (R, P)
            grad_sum += norms
            if self.tracing and self.done + step < TRACE_STEPS:
                grad_steps.append(self.done + step + 1)
                grads.append(norms)
            self.optimizer.step()
            if self.tracing and (self.done + step + 1) % TRACE_EVERY == 0:
                probe_steps.append(self.done + step + 1)
                probes.append(self.probe(data))
            if self.done + step + 1 in self.config.eval_steps:
                evals.append((self.done + step + 1, _evaluate(self, training_view(data))))
            losses.append(loss)
            if self.on_step is not None and (progress_due(step, steps) or check_due(step, steps)):
                # before a check: steps taken with runs about to leave count for them too
                self.on_step((len(losses) - reported) * len(self.active))
                reported = len(losses)
            if check_due(step, steps):
                bad = first_non_finite(losses[-CHECK_EVERY:], len(losses))
                if bad:
                    keep = [row for row in range(len(self.active)) if row not in bad]
                    diverged.update({self.active[row]: s for row, s in bad.items()})
                    self._remove(bad)
                    orders, grad_sum = orders[keep], grad_sum[keep]
                    shared = _shared_batches(orders) if self.direct else 1
                    losses = [step_losses[keep] for step_losses in losses]
                    grads = [norms[keep] for norms in grads]
                    probes = [scales[keep] for scales in probes]
                    evals = [
                        (at, ([loss[r] for r in keep], [acc[r] for r in keep]))
                        for at, (loss, acc) in evals
                    ]
                    if not self.active:
                        break
        per_step = torch.stack(losses) if self.active else torch.zeros(steps, 0)  # (steps, R)
        mean = per_step.mean(0).tolist()
        curves = loss_curve(per_step, self.config.window(steps), self.done)
        norms = (grad_sum / steps).tolist()
        names = list(self.params)
        per_run = [dict(zip(names, row, strict=True)) for row in norms]
        traces = [{} for _ in self.active]
        if self.active and (grads or probes):
            traces = trace_lines(
                names, grad_steps, grads, probe_steps, probes, attention=self.attention
            )
        train_evals = [
            tuple((at, loss[row], acc[row]) for at, (loss, acc) in evals)
            for row in range(len(self.active))
        ]
        return _EpochOutcome(mean, per_run, curves, steps, diverged, traces, train_evals)

    @torch.no_grad()
    def probe(self, data: TensorData) -> torch.Tensor:
        """Each active run's :func:`~initlab.experiments.core.logit_scales` on the probe batch
        (the first :data:`~initlab.experiments.core.TRACE_BATCH` training examples): ``(R, 3)``.
        """
        x = data.train_x[:TRACE_BATCH]
        template = self.models[0]
        rows = range(len(self.active))
        return torch.stack(
            [logit_scales(template, x, {n: p[r] for n, p in self.params.items()}) for r in rows]
        )

    def _remove(self, rows: dict[int, int]) -> None:
        """Write the parameters of ``rows`` back to their models and drop them from the stack."""
        self._write_back(list(rows))
        keep = [row for row in range(len(self.active)) if row not in rows]
        self.active = [self.active[row] for row in keep]
        old = self.params
        self.params = {n: p.detach()[keep].requires_grad_() for n, p in old.items()}
        if self.lrs is not None:
            self.optimizer.keep(keep, self.params)
            return
        state = self.optimizer.state
        optimizer = make_optimizer(list(self.params.values()), self.config, fused=True)
        for name, p in self.params.items():
            if old[name] in state:
                optimizer.state[p] = {
                    k: v[keep] if _is_stacked(k, v) else v for k, v in state[old[name]].items()
                }
        self.optimizer = optimizer

    def _write_back(self, rows: Sequence[int]) -> None:
        with torch.no_grad():
            for row in rows:
                model = self.models[self.active[row]]
                for name, p in self.params.items():
                    model.get_parameter(name).copy_(p[row])

    def finish(self, r: int, status: str, on_done) -> None:
        self._write_back([self.active.index(r)])
        self.results[r] = RunResult(status, tuple(self.records[r]))
        if on_done is not None:
            on_done(r, self.results[r])


def _is_stacked(key: str, value) -> bool:
    """Whether an optimizer state entry has one slice per run (moments) or is shared (step).

    Decided by name, not shape: for a 0-dim parameter the moments and AdamW's ``step`` are all
    0-dim per run.
    """
    return torch.is_tensor(value) and key != "step"


def _stack_states(states: Sequence[TrainState]) -> dict[str, dict[str, torch.Tensor]]:
    """Stack the runs' optimizer states per parameter; shared entries (``step``) must agree.

    Raises:
        ValueError: the runs' states have different entries or disagree on a shared one.
    """
    stacked: dict[str, dict[str, torch.Tensor]] = {}
    for name, first in states[0].optimizer.items():
        per_run = [s.optimizer.get(name, {}) for s in states]
        if any(entry.keys() != first.keys() for entry in per_run):
            raise ValueError(f"the runs' optimizer states differ in their entries for {name!r}")
        stacked[name] = {}
        for key, value in first.items():
            values = [entry[key] for entry in per_run]
            if _is_stacked(key, value):  # a per-run moment: stack
                stacked[name][key] = torch.stack(values)
            elif all(torch.equal(v, value) for v in values):  # shared by the stack (step)
                stacked[name][key] = value
            else:
                raise ValueError(f"the runs disagree on the shared optimizer entry {name}.{key}")
    return stacked


@dataclass(frozen=True)
class _EpochOutcome:
    """Per active run (in stack order): mean loss, grad norms, loss curve; plus steps and
    diverged runs."""

    losses: list[float]
    grad_norms: list[dict[str, float]]
    curves: list[tuple[tuple[int, float], ...]]
    steps: int
    diverged: dict[int, int]  # run index -> 1-based step of its first non-finite loss
    traces: list[dict]  # EpochRecord.trace per active run
    train_evals: list[tuple]  # EpochRecord.train_evals per active run


def _gather(data: TensorData, index: torch.Tensor) -> torch.Tensor:
    """The training images ``(R, B, *image)`` of ``index (R, B)``.

    ``index_select`` on the flattened images is the same gather as ``train_x[index]``, about
    twice as fast on the CPU (measured: 0.5 against 1.1 ms for 18 x 64 MNIST images).
    """
    x = data.train_x.flatten(1).index_select(0, index.flatten())
    return x.view(*index.shape, *data.train_x.shape[1:])


def _shared_batches(orders: torch.Tensor) -> int:
    """How many consecutive rows of the stack share each batch order: ``k`` when the rows of
    ``orders (R, n)`` fall into blocks of ``k`` identical rows (runs of one seed, side by side
    in the stack), else 1."""
    rows = orders.shape[0]
    starts = [0] + [r for r in range(1, rows) if not torch.equal(orders[r], orders[r - 1])]
    sizes = {b - a for a, b in zip(starts, [*starts[1:], rows], strict=True)}
    return sizes.pop() if len(sizes) == 1 else 1


def _products_per_block(blocks: int, shared: int) -> int:
    """Into how many batched products each block of ``shared`` runs is cut: the fewest (the
    largest products) that give each of torch's threads the same number, at most one per run."""
    threads = torch.get_num_threads()
    for cut in range(1, shared + 1):
        if shared % cut == 0 and blocks * cut % threads == 0:
            return cut
    return shared


@torch.no_grad()
def _initnet_step(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
    """mlp-784-128-10's stacked loss and backward pass, by hand: ``(G, B, 1, 28, 28)`` -> ``(R,)``.

    ``x`` holds ``G`` batches, ``G`` dividing the number of runs ``R``: batch ``g`` is that of
    runs ``g R/G .. (g+1) R/G - 1`` (``G = R``: a batch per run; runs of one seed draw the same
    batches). The first layer of the runs that share a batch is one product,
    ``[W1_a; W1_b; ...] @ x^T``, and so is its weight gradient, cut into
    :func:`_products_per_block` pieces so that every thread gets as many: one gather and larger
    products instead of one per run (5 to 7% of a step of the default sweep, on 2 and 1
    threads). Each output is still one 784-term dot product of a run's weights and an image;
    measured here the results equal the per-run products bit for bit, and in general they are
    within the products' rounding bound (tests/test_vectorized.py).

    The same products as the vmapped autograd step, as batched matrix products, for ``R`` runs
    of ``logits = W2 relu(W1 x + b1) + b2`` with mean cross-entropy over the ``B`` images:
    ``dL/dlogits = (softmax(logits) - onehot(y)) / B``, ``dL/dW2 = g^T h``, ``dL/db2 = sum g``,
    ``dL/dh = g W2`` masked by ``W1 x + b1 > 0`` (ReLU's derivative, 0 at 0 as in autograd),
    ``dL/dW1 = g_h^T x``, ``dL/db1 = sum g_h`` (backpropagation; Rumelhart, Hinton and
    Williams 1986). Gradients are written into persistent ``p.grad`` buffers: no autograd graph
    of the network, vmap dispatch or 7 MB gradient allocation per step (the vmapped path was
    60% of a step in Python and dispatch on the default sweep); only log_softmax's backward
    goes through autograd (:func:`_cross_entropy_and_grad`).
    """
    w1, b1 = params["fc1.weight"], params["fc1.bias"]
    w2, b2 = params["fc2.weight"], params["fc2.bias"]
    runs, units, pixels = w1.shape
    blocks, size = x.shape[0], x.shape[1]
    cut = _products_per_block(blocks, runs // blocks)
    x = x.reshape(blocks, size, pixels)
    if cut > 1:
        x = x.repeat_interleave(cut, 0)  # (blocks * cut, B, 784)
    rows = runs // (blocks * cut) * units  # the weight rows of one product
    # Products in _WeightTimesInput's layout (W @ x^T), which the vmapped path rounds like;
    # the activations are kept feature-major, (R, 128, B), the products' own layout, so the
    # element-wise steps run in place on contiguous memory (the same values in any layout).
    hidden = torch.bmm(w1.view(-1, rows, pixels), x.mT).view(runs, units, size)
    hidden = hidden.add_(b1.unsqueeze(2)).clamp_min_(0)  # (R, 128, B)
    loss, grad = _cross_entropy_and_grad(torch.bmm(w2, hidden).mT + b2.unsqueeze(1), y)
    _set_grad(w2, lambda out: torch.bmm(grad.mT, hidden.mT, out=out))
    _set_grad(b2, lambda out: torch.sum(grad, 1, out=out))
    # ReLU's backward, autograd's own kernel: zero where the output is <= 0.
    grad_hidden = torch.ops.aten.threshold_backward(torch.bmm(w2.mT, grad.mT), hidden, 0)
    _set_grad(
        w1,
        lambda out: torch.bmm(grad_hidden.view(-1, rows, size), x, out=out.view(-1, rows, pixels)),
    )
    _set_grad(b1, lambda out: torch.sum(grad_hidden, 2, out=out))
    return loss


def _cross_entropy_and_grad(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run's mean cross-entropy and its gradient with respect to the logits.

    Shapes: logits ``(R, B, C)`` and labels ``(R, B)`` -> loss ``(R,)`` and gradient
    ``(R, B, C)``.

    The gradient is ``(softmax(logits) - onehot(y)) / B``, computed as autograd computes it: the
    nll loss's gradient (``-1/B`` at the target) through log_softmax's own backward kernel, by
    ``torch.autograd.grad`` on a graph of the one log_softmax node. The default comparison's
    table depends on this rounding: the closed form rounds differently, and so does restating
    the kernel's formula (``g - exp(logp) * sum(g)``) with other ops. Autograd runs the very
    kernel the vmapped step runs (the same numbers as calling the private
    ``torch._log_softmax_backward_data`` directly, bit for bit); the one-node graph costs 4 to
    6% of a step of the default sweep, under the goal of 10%
    (``benchmarks/bench_stacked_step.py``).
    """
    target = y.unsqueeze(2)
    with torch.enable_grad():
        z = logits.detach().requires_grad_()
        logp = z.log_softmax(2)  # (R, B, C)
    loss = -logp.detach().gather(2, target).mean((1, 2))
    grad_logp = torch.zeros_like(logp).scatter_(2, target, -1 / logits.shape[1])
    (grad,) = torch.autograd.grad(logp, z, grad_logp)
    return loss, grad


def _initnet_logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """mlp-784-128-10's forward of one batch for every run: ``(B, 1, 28, 28)`` -> ``(R, B, 10)``."""
    w1 = params["fc1.weight"]
    # All runs' first layers as one (R * 128, 784) matrix: one product with the shared images.
    hidden = (w1.flatten(0, 1) @ x.reshape(x.shape[0], -1).mT).view(*w1.shape[:2], -1)
    hidden = hidden.add_(params["fc1.bias"].unsqueeze(2)).relu_()  # (R, 128, B)
    logits = torch.bmm(params["fc2.weight"], hidden).add_(params["fc2.bias"].unsqueeze(2))
    return logits.mT


def _set_grad(p: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Write ``compute(out)`` into ``p.grad``, allocating it once per stacked parameter."""
    if p.grad is None:
        p.grad = torch.empty_like(p)
    compute(p.grad)


def _evaluate(group: _Group, data: TensorData) -> tuple[list[float], list[float]]:
    """Per active run: (mean test cross-entropy, test accuracy), as the sequential trainer's."""
    forward = _initnet_logits if group.direct else vmap(stacked_forward(group.models[0]), (0, None))
    params = {n: p.detach() for n, p in group.params.items()}
    rows = len(group.active)
    # R runs x this many images: the activations of one run's eval_batch_size, the trainer's
    # peak (a CNN's 18 x 1000 images would hold about 1 GB of feature maps); mlp-784-128-10's 128
    # hidden units hold 9 MB for 18 x 1000 images, so it takes eval_batch_size per run.
    size = group.config.eval_batch_size
    if not group.direct:
        size = math.ceil(size / rows)
    return evaluate_logits(lambda x: forward(params, x), data, size, rows)
