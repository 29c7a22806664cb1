"""What the sequential and the stacked trainer share: data, records, optimizer, evaluation, checks.

Both trainers (:mod:`initlab.experiments.trainer`, one model; :mod:`initlab.experiments.stacked`,
``R`` runs of one architecture stacked along a leading axis) build their optimizer, measure
gradient norms, check for divergence and evaluate through the functions here, so that a run
gives the same numbers, up to float rounding, whichever trainer trains it. A stacked quantity
has a leading run axis: ``R`` losses per step, ``(R, P)`` gradient norms for ``P`` parameters;
a single model's has none.

Definitions (see :class:`EpochRecord`): the training loss of an epoch is the mean of its
per-step batch losses; the gradient norm of a parameter is the L2 norm of its gradient before
the optimizer step, averaged over the epoch's steps; the test loss is the mean cross-entropy
over the test set's target elements (its images, or its tokens for a language model: see
:func:`sequence_cross_entropy`) and the accuracy the fraction of them predicted right. A NaN
or infinite training loss diverges the run: losses are checked every :data:`CHECK_EVERY`
steps and at an epoch's last.

A sequence model (:func:`traced`: a recurrent layer, or an attention ``score`` hook point) also
records a trace in its epoch records (:attr:`EpochRecord.trace`): every parameter's gradient
norm at each of the first :data:`TRACE_STEPS` optimizer steps, and every :data:`TRACE_EVERY`
steps (and at step 0, before training) the logit scales of a fixed probe batch, the first
:data:`TRACE_BATCH` training examples (:func:`logit_scales`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from initlab._checks import ArgumentError, one_of
from initlab.experiments.config import TrainConfig

__all__ = [
    "CHECK_EVERY",
    "PROGRESS_EVERY",
    "TRACE_BATCH",
    "TRACE_EVERY",
    "TRACE_STEPS",
    "EpochRecord",
    "RunResult",
    "TensorData",
    "check_due",
    "evaluate_logits",
    "first_non_finite",
    "grad_norms",
    "has_attention",
    "logit_scales",
    "loss_curve",
    "make_optimizer",
    "progress_due",
    "resolve_device",
    "run_seeds",
    "sequence_cross_entropy",
    "training_view",
    "trace_lines",
    "traced",
]

# How often (in steps) the loss is checked for NaN/inf: checking every step would force a
# device sync per step on CUDA; a diverged run only wastes these few steps.
CHECK_EVERY = 50

# How often (in steps) a trainer reports its progress (``on_step``): often enough for a bar to
# move within an epoch, rarely enough to cost nothing next to a step.
PROGRESS_EVERY = 10

# The trace of a sequence model (see the module docstring): per-step gradient norms over the
# first TRACE_STEPS steps, where schemes differ most (the per-epoch mean hides them); logit
# scales every TRACE_EVERY steps on TRACE_BATCH examples: one small forward per run every ten
# steps, about 1% of a char-lm epoch's time.
TRACE_STEPS = 50
TRACE_EVERY = 10
TRACE_BATCH = 8


@dataclass(frozen=True)
class TensorData:
    """A dataset on one device: images ``(N, 1, H, W)`` float32 in [0, 1], labels ``(N,)`` int64.

    Or a language model's windows: inputs ``(N, T)`` int64 tokens and targets ``(N, T)``, the
    inputs shifted by one (:func:`initlab.experiments.data.lm_data`).

    ``val_x``, ``val_y``: an optional validation split held out from the training data
    (:func:`~initlab.datasets.split.hold_out`); the trainers then evaluate it after each epoch
    too (:attr:`EpochRecord.val_accuracy`).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    def validation(self) -> TensorData:
        """The same data with the validation split as its test split (for the evaluation)."""
        return TensorData(self.train_x, self.train_y, self.val_x, self.val_y)

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
    ``loss_curve`` holds ``(step, mean loss)`` per window of
    :attr:`~initlab.experiments.config.TrainConfig.log_every` steps: the mean of the batch
    losses of the steps after the previous window's ``step`` up to ``step``, counted from the
    start of training (epoch 2's first window ends at ``steps + log_every``); an epoch's last
    window may be shorter. Empty when ``log_every=0``. ``val_loss`` and ``val_accuracy``: the
    same measures on the validation split, ``None`` without one (:class:`TensorData`).
    ``trace``: a sequence model's trace of this epoch (:func:`trace_lines`), empty otherwise.
    ``train_evals``: ``(step, full-training-set loss, training accuracy)`` after each of this
    epoch's steps listed in :attr:`~initlab.experiments.config.TrainConfig.eval_steps` (steps
    counted from the start of training), measured as the test pass measures (eval mode, the
    mean cross-entropy and the fraction right over every training example); empty otherwise.
    """

    epoch: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    grad_norms: dict[str, float]
    wall_time_s: float
    steps: int
    loss_curve: tuple[tuple[int, float], ...] = ()
    val_loss: float | None = None
    val_accuracy: float | None = None
    trace: dict = field(default_factory=dict)
    train_evals: tuple[tuple[int, float, float], ...] = ()

    @property
    def test_bpc(self) -> float:
        """The test loss in bits per character, ``test_loss / ln 2`` (a language model's
        per-token cross-entropy in nats, Graves 2013 sec. 3)."""
        return self.test_loss / math.log(2)

    @property
    def val_bpc(self) -> float | None:
        """The validation loss in bits per character, ``None`` without a validation split."""
        return None if self.val_loss is None else self.val_loss / math.log(2)

    def line(self) -> dict:
        """The record as a ``results.jsonl`` line's fields; no validation keys without one."""
        fields = dataclasses.asdict(self)
        if self.val_accuracy is None:
            del fields["val_loss"], fields["val_accuracy"]
        if not self.trace:
            del fields["trace"]
        if not self.train_evals:
            del fields["train_evals"]
        return fields


@dataclass(frozen=True)
class RunResult:
    """Outcome of one run: ``status`` is ``"finished"`` or ``"diverged"``.

    ``diverged_epoch`` and ``diverged_step`` (1-based step within that epoch) locate the first
    non-finite training loss. ``epochs`` holds the records of the epochs trained by this call:
    all of them, or those after the train state it started from.
    """

    status: str
    epochs: tuple[EpochRecord, ...] = field(default_factory=tuple)
    diverged_epoch: int | None = None
    diverged_step: int | None = None


def resolve_device(device: str) -> torch.device:
    """Map ``"cpu" | "cuda" | "auto"`` to a ``torch.device``; ``auto`` picks cuda when available.

    Under torchrun (``LOCAL_RANK`` set), CUDA means this process's own GPU,
    ``cuda:{LOCAL_RANK mod device_count}``, so the ranks on one machine do not all share GPU 0.

    Raises:
        ArgumentError: (a ValueError naming ``device``) unknown name, or ``"cuda"`` when CUDA is
            not available.
    """
    one_of("device", device, ("cpu", "cuda", "auto"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(
            "device",
            f"device 'cuda' is not available on this machine (PyTorch {torch.__version__}); "
            "use 'cpu', or 'auto' to take CUDA only where there is one",
        )
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


def make_optimizer(
    params: Iterable[torch.Tensor], config: TrainConfig, *, fused: bool = False
) -> torch.optim.Optimizer:
    """Return the run's optimizer over ``params``: AdamW, Adam or SGD with momentum, as configured.

    The same optimizer steps a stacked tensor ``(R, *shape)`` exactly as it steps each run's
    slice alone: AdamW, Adam and SGD are element-wise given the gradient, with hyperparameters
    and a step count shared by all runs (runs of different learning rates stack through
    :class:`initlab.experiments.optim.StackedOptimizer`). Adam adds ``weight_decay`` to the
    gradient (L2, Kingma & Ba 2015 with PyTorch's coupled decay); AdamW decouples it
    (Loshchilov & Hutter 2019).

    Args:
        params: the parameters (a model's, or the stacked tensors).
        config: ``optimizer``, ``lr``, ``weight_decay`` and ``momentum`` are read.
        fused: use AdamW's fused kernel (``torch.optim.AdamW(fused=True)``), one pass over
            memory instead of about ten; it may round differently, within float tolerance. The
            stacked trainer asks for it (the single-tensor loop took 40% of a stacked step);
            Adam uses it too, SGD ignores it. Fused needs floating-point parameters on CPU or CUDA.
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    # fused only when asked: AdamW(fused=None), its default, is what the sequential trainer uses
    extra = {"fused": True} if fused else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **extra)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **extra)


def grad_norms(params: Sequence[torch.Tensor], runs: int | None = None) -> torch.Tensor:
    """Return each parameter's gradient L2 norm, 0 for a parameter without a gradient.

    Args:
        params: ``P`` parameters of one model, or ``P`` stacked parameters ``(R, *shape)``.
        runs: ``None`` for one model, else the number ``R`` of stacked runs.

    Returns:
        ``(P,)`` for one model; ``(R, P)``, one row per run, for stacked parameters (a 0-dim
        parameter stacks to ``(R,)``: its norm is the absolute gradient).
    """
    rows = 1 if runs is None else runs

    def norm(p: torch.Tensor) -> torch.Tensor:  # (rows,)
        if p.grad is None:
            return p.new_zeros(rows)
        # reshape, not flatten(1): a 0-dim parameter (resmlp's branch scalars) stacks to (R,)
        return p.grad.reshape(rows, -1).norm(dim=1)

    norms = torch.stack([norm(p) for p in params], dim=1)  # (rows, P)
    return norms[0] if runs is None else norms


def progress_due(step: int, steps: int) -> bool:
    """Whether progress is reported after ``step`` (0-based) of an epoch of ``steps``."""
    return (step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps


def check_due(step: int, steps: int) -> bool:
    """Whether the losses are checked after ``step`` (0-based) of an epoch of ``steps``."""
    return (step + 1) % CHECK_EVERY == 0 or step + 1 == steps


def first_non_finite(window: list[torch.Tensor], seen: int) -> dict[int, int]:
    """Map each run with a non-finite loss in ``window`` to the 1-based epoch step of its first.

    Args:
        window: the last steps' losses, each 0-dim (one model) or ``(R,)`` (stacked runs).
        seen: the steps of the epoch so far, ``window`` included.

    Returns:
        ``{row: step}`` for each run that went non-finite (row 0 for one model); empty when
        every loss is finite.
    """
    finite = torch.isfinite(torch.stack(window)).reshape(len(window), -1)  # (steps, R)
    if bool(finite.all()):
        return {}
    offset = seen - len(window)
    bad = (~finite).any(0).nonzero().flatten().tolist()
    return {row: offset + int((~finite[:, row]).nonzero()[0]) + 1 for row in bad}


def sequence_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of logits ``(..., C)`` against integer targets ``(...)``, in nats.

    The one loss of both trainers: a classifier's ``(B, C)`` logits against ``(B,)`` labels,
    or a language model's ``(B, T, V)`` next-token logits against ``(B, T)`` tokens (every
    position one prediction: the mean is over all ``B * T`` target elements, the usual
    per-token loss of character language models, Graves 2013 sec. 3, whose bits per
    character are this mean over ln 2). Both are flattened to ``(N, C)`` and ``(N,)``; for
    ``(B, C)`` logits that is no copy and the very call ``F.cross_entropy(logits, targets)``.

    Args:
        logits: float ``(..., C)``.
        targets: int64 ``(...)``, the leading shape of ``logits``, values in ``0 .. C-1``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (then ``(N,)``, flattened).

    Raises:
        ValueError: the targets' shape is not ``logits.shape[:-1]``.
    """
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets must have the logits' shape without the class axis, "
            f"{tuple(logits.shape[:-1])}; got targets {tuple(targets.shape)} for logits "
            f"{tuple(logits.shape)}"
        )
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction
    )


@torch.no_grad()
def evaluate_logits(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    data: TensorData,
    batch_size: int,
    runs: int | None = None,
) -> tuple[list[float], list[float]]:
    """Return per run ``(mean test cross-entropy, test accuracy as a fraction)`` over the test set.

    Both are over the test targets' elements: per image for a classifier, per token for a
    language model (:func:`sequence_cross_entropy`; accuracy: the fraction of positions whose
    largest logit is the target).

    Args:
        logits_of: maps a batch of test inputs ``(B, ...)`` (images ``(B, 1, H, W)``, tokens
            ``(B, T)``) to logits, ``(B, ..., classes)`` for one model, ``(R, B, ...,
            classes)`` for ``R`` stacked runs; called under no_grad (the caller sets eval mode).
        data: the dataset; its test split is read in order.
        batch_size: test inputs per call of ``logits_of``.
        runs: ``None`` for one model, else ``R``.

    Returns:
        ``(losses, accuracies)``, one entry per run (one for a single model).
    """
    rows = 1 if runs is None else runs
    device = data.test_x.device
    loss_sum = torch.zeros(rows, device=device)
    correct = torch.zeros(rows, dtype=torch.int64, device=device)
    for start in range(0, data.test_x.shape[0], batch_size):
        logits = logits_of(data.test_x[start : start + batch_size])
        labels = data.test_y[start : start + batch_size]
        if runs is None:  # one model: cross_entropy's own sum, as a plain evaluation loop
            loss_sum += sequence_cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=-1) == labels).sum()
        else:  # every run's inputs in one call, summed per run
            every = labels.expand(runs, *labels.shape)
            flat = sequence_cross_entropy(logits, every, reduction="none")
            loss_sum += flat.view(runs, -1).sum(1)
            correct += (logits.argmax(dim=-1) == every).flatten(1).sum(1)
    n = data.test_y.numel()
    return [s / n for s in loss_sum.tolist()], [c / n for c in correct.tolist()]


def training_view(data: TensorData) -> TensorData:
    """``data`` with its training split as the test split: what :func:`evaluate_logits` reads
    for the full-training-set loss and accuracy of :attr:`EpochRecord.train_evals`."""
    return TensorData(data.train_x, data.train_y, data.train_x, data.train_y)


def loss_curve(losses: torch.Tensor, every: int, done: int) -> list[tuple[tuple[int, float], ...]]:
    """Return each run's ``((step, window mean), ...)`` from per-step ``losses``.

    Args:
        losses: one epoch's batch losses, ``(steps,)`` for one run or ``(steps, R)`` for ``R``
            stacked runs (both trainers call this, so both average alike).
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


def traced(model: nn.Module) -> bool:
    """Whether the trainers record a trace for ``model`` (see the module docstring).

    True for a sequence model: one with a recurrent layer (``nn.RNNBase``) or an attention
    score hook point (a submodule with an ``nn.Identity`` called ``score``, as the zoo's
    :class:`~initlab.zoo.transformer.Attention`).
    """
    return bool(_score_points(model)) or any(isinstance(m, nn.RNNBase) for m in model.modules())


def has_attention(model: nn.Module) -> bool:
    """Whether ``model`` has an attention score hook point (see :func:`traced`)."""
    return bool(_score_points(model))


def _score_points(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """``(score hook module, causal)`` of every attention in ``model``, in model order."""
    return [
        (m.score, bool(getattr(m, "causal", False)))
        for m in model.modules()
        if isinstance(getattr(m, "score", None), nn.Identity)
    ]


@torch.no_grad()
def logit_scales(
    model: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Return ``(largest attention logit, output logit RMS, largest |output logit|)`` for ``x``.

    The largest attention logit is ``max |q k^T / sqrt(d_head)|`` over every layer, head and
    attended position pair (a causal attention's masked pairs left out), read through each
    attention's ``score`` hook point; NaN for a model without one. The output logits are the
    model's output ``(B, ..., classes)``: their root mean square over all entries,
    ``sqrt(mean(z^2))``, and their largest absolute value. Attention logits that grow during
    training saturate the softmax, and output logits that drift make the loss diverge (Wortsman
    et al. 2024, "Small-scale proxies for large-scale Transformer training instabilities",
    Sec. 3.1 attention logit growth, Sec. 3.2 output logit divergence; Dehghani et al. 2023,
    "Scaling Vision Transformers to 22 Billion Parameters", QK normalization against the first).

    Args:
        model: the model (its forward is run under no_grad, in its current mode).
        x: an input batch ``(B, ...)``.
        params: parameters to run with instead of the model's own (a stacked run's slice,
            through ``torch.func.functional_call``); ``None``: the model's.

    Returns:
        A float32 tensor ``(3,)`` on ``x``'s device.
    """
    largest: list[torch.Tensor] = []

    def hook(causal: bool):
        def read(module, inputs, scores):  # (B, H, T, T)
            size = scores.abs()
            if causal:
                T = scores.shape[-1]
                mask = torch.ones(T, T, dtype=torch.bool, device=scores.device).tril()
                size = size.masked_fill(~mask, 0.0)
            largest.append(size.amax().float())

        return read

    handles = [m.register_forward_hook(hook(c)) for m, c in _score_points(model)]
    try:
        out = model(x) if params is None else functional_call(model, params, (x,))
    finally:
        for handle in handles:
            handle.remove()
    out = out.float()
    attention = torch.stack(largest).amax() if largest else out.new_tensor(math.nan)
    return torch.stack([attention, out.square().mean().sqrt(), out.abs().amax()])


def trace_lines(
    names: Sequence[str],
    grad_steps: Sequence[int],
    grads: Sequence[torch.Tensor],
    probe_steps: Sequence[int],
    probes: Sequence[torch.Tensor],
    *,
    attention: bool,
) -> list[dict]:
    """Each run's :attr:`EpochRecord.trace` from one epoch's per-step measurements.

    Args:
        names: the ``P`` parameter names, in the order of the gradient norms.
        grad_steps: the steps (1-based, counted from the start of training) whose gradient
            norms were kept; ``grads`` their norms, one ``(R, P)`` tensor per step.
        probe_steps: the steps of the probes (0: before training); ``probes`` one ``(R, 3)``
            tensor per probe (:func:`logit_scales` per run).
        attention: the model has attention (else the attention column, NaN, is left out).

    Returns:
        One dict per run: ``grad_steps`` and ``grad_norms`` (``{name: [norm per step]}``)
        when gradient steps were kept, ``logit_steps``, ``attn_logit_max`` (with
        ``attention``), ``logit_rms`` and ``logit_max`` when probes were taken; ``{}`` when
        neither.
    """
    runs = (grads[0] if grads else probes[0]).shape[0] if (grads or probes) else 0
    lines: list[dict] = [{} for _ in range(runs)]
    if grads:
        per_run = torch.stack(list(grads)).permute(1, 2, 0).tolist()  # (R, P, steps)
        for line, rows in zip(lines, per_run, strict=True):
            line["grad_steps"] = list(grad_steps)
            line["grad_norms"] = dict(zip(names, rows, strict=True))
    if probes:
        per_run = torch.stack(list(probes)).permute(1, 2, 0).tolist()  # (R, 3, probes)
        for line, (attn, rms, top) in zip(lines, per_run, strict=True):
            line["logit_steps"] = list(probe_steps)
            if attention:
                line["attn_logit_max"] = attn
            line["logit_rms"], line["logit_max"] = rms, top
    return lines
