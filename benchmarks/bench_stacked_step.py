"""Time the default sweep's stacked training step: log_softmax's backward by autograd or by hand.

The stacked InitNet step (``initlab.experiments.stacked._initnet_step``) needs the gradient of
cross-entropy with respect to the logits, ``(softmax - onehot) / B``. The default comparison's
table depends on its rounding, so it is computed by log_softmax's own backward kernel, as
autograd computes it. Two ways to reach that kernel:

- public (what initlab runs): ``torch.autograd.grad`` through a graph of the one
  log_softmax node (``stacked._cross_entropy_and_grad``);
- private: a direct call of ``torch._log_softmax_backward_data``, no graph (the reference
  this benchmark times the public way against).

Both give the same losses and gradients bit for bit (checked first). The script times one
epoch of ``--steps`` steps of the default sweep (6 schemes x 3 seeds of the default model,
stacked, batch 64, full MNIST), alternating the two ways ``--reps`` times so that machine
noise hits both alike, and prints the median step times and their ratio. Run it alone:

    .venv/bin/python benchmarks/bench_stacked_step.py
    .venv/bin/python benchmarks/bench_stacked_step.py --steps 20 --reps 2  # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from initlab.datasets.families import load_dataset
from initlab.experiments import stacked
from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.core import TensorData
from initlab.experiments.trainer import build_initialized, init_batch
from initlab.introspect.hooks import flush_denormal


def private_cross_entropy_and_grad(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``stacked._cross_entropy_and_grad`` by a direct call of the private backward kernel."""
    target = y.unsqueeze(2)
    logp = logits.log_softmax(2)
    loss = -logp.gather(2, target).mean((1, 2))
    grad_logp = torch.zeros_like(logp).scatter_(2, target, -1 / logits.shape[1])
    return loss, torch._log_softmax_backward_data(grad_logp, logp, 2, logp.dtype)


WAYS = {"public": stacked._cross_entropy_and_grad, "private": private_cross_entropy_and_grad}


def default_group(data: TensorData, steps: int) -> stacked._Group:
    """The default sweep's 18 runs (6 schemes x 3 seeds), initialized as the sweep does."""
    config = CompareConfig()
    runs = [(scheme, seed) for seed in config.seed_list() for scheme in config.schemes]
    batch = init_batch(data)
    models = [build_initialized(config.model, s, seed=seed, batch=batch) for s, seed in runs]
    train = TrainConfig(max_steps=steps)
    return stacked._Group(models, train, [seed for _, seed in runs])


@torch.no_grad()
def check_equal(data: TensorData) -> None:
    """Both ways give the same losses and gradients on a batch of the default sweep."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(18, 64, 10, generator=generator) * 5
    y = torch.randint(0, 10, (18, 64), generator=generator)
    (loss_a, grad_a), (loss_b, grad_b) = (way(logits, y) for way in WAYS.values())
    same = torch.equal(loss_a, loss_b) and torch.equal(grad_a, grad_b)
    print(f"same losses and gradients, bit for bit: {same}")
    if not same:
        raise SystemExit("the two ways differ; the comparison is void")


def time_epoch(group: stacked._Group, data: TensorData, way: str) -> float:
    """One epoch of ``group`` with ``way``; return seconds per step."""
    stacked._cross_entropy_and_grad = WAYS[way]
    try:
        with flush_denormal():  # as train_group trains (denormals are slow on the CPU)
            start = time.perf_counter()
            outcome = group.train_epoch(data)
            return (time.perf_counter() - start) / outcome.steps
    finally:
        stacked._cross_entropy_and_grad = WAYS["public"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch")
    parser.add_argument("--reps", type=int, default=5, help="timed epochs per way")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = TensorData.from_dataset(load_dataset("mnist"))
    check_equal(data)
    group = default_group(data, args.steps)
    assert group.direct, "the default sweep's model takes the hand-written step"
    print(f"threads: {torch.get_num_threads()}; {len(group.active)} runs stacked, batch 64")
    time_epoch(group, data, "public")  # warm-up: allocations, gradient buffers
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(args.reps):
        for way in WAYS:
            times[way].append(time_epoch(group, data, way))
    medians = {way: statistics.median(t) for way, t in times.items()}
    for way, per_step in medians.items():
        runs = ", ".join(f"{1e3 * t:.2f}" for t in times[way])
        print(f"{way:8s} median {1e3 * per_step:.3f} ms/step  ({runs})")
    ratio = medians["public"] / medians["private"]
    print(f"public / private: {ratio:.3f} (kept public when <= 1.10)")


if __name__ == "__main__":
    main()
