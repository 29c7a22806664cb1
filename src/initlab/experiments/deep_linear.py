r"""Learning time of deep linear networks on a linear teacher: Saxe et al.'s depth experiment.

Saxe, McClelland and Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks" (ICLR 2014), Sec. 3-4: with random orthogonal weights (every singular
value of the input-output map 1: dynamical isometry) the time a deep linear network takes to
learn is nearly independent of its depth, while with scaled Gaussian weights (N(0, 1/n)) it
grows with depth, at the best learning rate for each depth.

Here a zoo ``mlp`` with ``activation="linear"`` (``depth`` hidden layers of ``width`` units, so
``depth + 1`` weight matrices drawn by the scheme; the biases are set to 0 and not trained, as
Saxe et al.'s networks have none) learns ``y = A x`` from
:func:`~initlab.datasets.synthetic.linear_teacher` by full-batch gradient descent on the mean
squared error. The loss is reported relative to the targets' mean square,
``mean((f(x) - y)^2) / mean(y^2)``: the fraction of the target's power not yet explained (1
for a network that outputs 0). The learning time is :func:`steps_to_threshold`: the first
step count after which that fraction is at or below ``threshold``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from initlab._checks import ArgumentError
from initlab.datasets.synthetic import linear_teacher
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

__all__ = [
    "LearningTime",
    "format_learning_times",
    "learning_time",
    "learning_time_table",
    "steps_to_threshold",
]


def steps_to_threshold(losses: Sequence[float], threshold: float) -> int | None:
    """Return the first ``i`` with ``losses[i] <= threshold``; ``None`` if there is none.

    ``losses[i]`` is the loss after ``i`` optimizer steps (``losses[0]``: at initialization),
    so the result counts steps. A NaN never reaches the threshold.

    Raises:
        ArgumentError: ``threshold`` is not a finite number (argument ``threshold``).

    Example:
        >>> steps_to_threshold([1.0, 0.5, 0.2, 0.05, 0.01], 0.1), steps_to_threshold([1.0], 0.1)
        (3, None)
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ArgumentError("threshold", f"threshold must be a number; got threshold={threshold!r}")
    if not math.isfinite(threshold):
        raise ArgumentError("threshold", f"threshold must be finite; got threshold={threshold!r}")
    for step, loss in enumerate(losses):
        if loss <= threshold:
            return step
    return None


@dataclass(frozen=True)
class LearningTime:
    """One training run of :func:`learning_time`.

    Attributes:
        scheme, depth, lr, seed: what ran (``seed`` drew the weights).
        steps: :func:`steps_to_threshold` of ``losses``; ``None`` if not reached.
        losses: the relative loss at initialization and after each step, up to the step that
            reached the threshold, the step cap, or the first non-finite value (included).
        diverged: the loss became NaN or infinite.
    """

    scheme: str
    depth: int
    lr: float
    seed: int
    steps: int | None
    losses: tuple[float, ...]
    diverged: bool = False


def learning_time(
    depth: int,
    scheme: str,
    *,
    lr: float,
    seed: int = 0,
    width: int = 16,
    examples: int = 256,
    threshold: float = 0.05,
    max_steps: int = 2000,
    data_seed: int = 0,
) -> LearningTime:
    """Train a deep linear network on a linear teacher until the loss reaches ``threshold``.

    Args:
        depth: hidden layers of the ``mlp`` (``depth + 1`` weight matrices), >= 1.
        scheme: an initialization scheme (``"orthogonal"``, ``"lecun_normal"``, any name with
            options).
        lr: the gradient-descent step size, > 0 (plain SGD, no momentum, full batch).
        seed: the weights' seed (a ``torch.Generator``).
        width: input, hidden and output size, >= 1.
        examples: training pairs of the teacher, >= 1.
        threshold: the relative loss that counts as learned, in (0, 1).
        max_steps: the step cap, >= 1.
        data_seed: the teacher's and the inputs' seed (the same data for every run).

    Returns:
        A :class:`LearningTime`.

    Raises:
        ArgumentError: an out-of-range argument (naming it), or an unknown scheme.
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise ArgumentError("lr", f"lr must be a finite number > 0; got lr={lr!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ArgumentError("threshold", f"threshold must be in (0, 1); got {threshold!r}")
    if not 0 < threshold < 1:
        raise ArgumentError("threshold", f"threshold must be in (0, 1); got {threshold!r}")
    for name, value in (("max_steps", max_steps), ("examples", examples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(name, f"{name} must be an int >= 1; got {name}={value!r}")
    data = linear_teacher(width, width, examples, seed=data_seed)
    model = build_model(
        "mlp", depth=depth, width=width, activation="linear", in_features=width, num_classes=width
    )
    initialize(model, scheme, generator=torch.Generator().manual_seed(seed))
    weights = []
    for param in model.parameters():  # Saxe et al.'s networks have no biases: 0, not trained
        if param.ndim < 2:
            param.detach().zero_()
            param.requires_grad_(False)
        else:
            weights.append(param)
    optimizer = torch.optim.SGD(weights, lr=lr)
    scale = float(data.y.square().mean())
    losses: list[float] = []
    for _ in range(max_steps + 1):
        loss = (model(data.x) - data.y).square().mean()  # (f(x) - y)^2 over examples, outputs
        value = float(loss.detach()) / scale
        losses.append(value)
        if not math.isfinite(value):
            return LearningTime(scheme, depth, lr, seed, None, tuple(losses), diverged=True)
        if value <= threshold or len(losses) == max_steps + 1:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return LearningTime(
        scheme, depth, lr, seed, steps_to_threshold(losses, threshold), tuple(losses)
    )


def learning_time_table(
    depths: Sequence[int],
    schemes: Sequence[str],
    lrs: Sequence[float],
    seeds: Sequence[int] = (0, 1, 2),
    **options,
) -> list[dict]:
    """Learning time per scheme and depth at each seed's best learning rate, over seeds.

    For every ``(scheme, depth, seed)`` each rate of ``lrs`` is tried (:func:`learning_time`)
    and the fewest steps kept (Saxe et al. 2014 compare depths at their best rate). A seed none
    of whose rates reaches the threshold counts as not learned.

    Args:
        depths, schemes, lrs, seeds: the grid (each non-empty).
        **options: passed to :func:`learning_time` (``width``, ``threshold``, ``max_steps``,
            ``examples``, ``data_seed``).

    Returns:
        One row per ``(scheme, depth)`` in grid order: ``scheme``, ``depth``, ``steps`` (per
        seed: the best step count or ``None``), ``best_lr`` (per seed, ``None`` if none
        learned), ``learned`` (how many seeds), and ``mean``, ``min``, ``max`` of the step
        counts of the seeds that learned (``None`` if none).

    Raises:
        ArgumentError: an empty grid axis (naming it), or as :func:`learning_time`.
    """
    for name, axis in (("depths", depths), ("schemes", schemes), ("lrs", lrs), ("seeds", seeds)):
        if len(axis) == 0:
            raise ArgumentError(name, f"{name} must hold at least one value; got {name}={axis!r}")
    rows = []
    for scheme in schemes:
        for depth in depths:
            steps, best = [], []
            for seed in seeds:
                runs = [learning_time(depth, scheme, lr=lr, seed=seed, **options) for lr in lrs]
                done = [r for r in runs if r.steps is not None]
                fastest = min(done, key=lambda r: r.steps, default=None)
                steps.append(None if fastest is None else fastest.steps)
                best.append(None if fastest is None else fastest.lr)
            learned = [s for s in steps if s is not None]
            rows.append(
                {
                    "scheme": scheme,
                    "depth": depth,
                    "steps": steps,
                    "best_lr": best,
                    "learned": len(learned),
                    "mean": statistics.fmean(learned) if learned else None,
                    "min": min(learned, default=None),
                    "max": max(learned, default=None),
                }
            )
    return rows


def format_learning_times(rows: Sequence[dict]) -> str:
    """Return :func:`learning_time_table`'s rows as a text table, one line per row.

    Columns: scheme, depth, mean steps with the ``[min, max]`` over the seeds that learned,
    how many seeds learned, and each seed's best rate.
    """
    width = max([len("scheme"), *(len(r["scheme"]) for r in rows)])
    lines = [f"{'scheme':<{width}}  depth  steps to threshold (mean [min, max])  learned  best lr"]
    for r in rows:
        band = "-" if r["mean"] is None else f"{r['mean']:.1f} [{r['min']}, {r['max']}]"
        lrs = ",".join("-" if lr is None else f"{lr:g}" for lr in r["best_lr"])
        learned = f"{r['learned']}/{len(r['steps'])}"
        lines.append(f"{r['scheme']:<{width}}  {r['depth']:>5}  {band:<36}  {learned:>7}  {lrs}")
    return "\n".join(lines)
