"""Time one training epoch: initlab's trainer against the seed's plain PyTorch loop.

The seed's loop, written as the seed would (without torchvision): the whole MNIST as float
tensors in [0, 1], a ``TensorDataset`` in a ``DataLoader(batch_size=64, shuffle=True)``,
AdamW (lr 1e-3, weight decay 0.01), ``running_loss += loss.item()`` per step, then a test pass
with a ``DataLoader(batch_size=1000)``. initlab's trainer runs the same model, optimizer and
data with index batching (plus its per-parameter gradient norms and divergence checks).

Both run in one process, alternating (seed, initlab, seed, initlab, ...) so that machine noise
hits both alike; the script prints each epoch time, the medians and the ratio. Both loops
usually print the same loss and accuracy: the DataLoader's sampler happens to draw the same
permutation as the trainer's shuffle stream for the same seed, so they train on the same
batches (a cross-check, not a requirement). Run it alone:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train.py --reps 3

``--train-subset`` / ``--test-subset`` shrink the data for a smoke run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from initlab.datasets.families import load_dataset
from initlab.experiments.trainer import TensorData, TrainConfig, build_initialized, train
from seed_loop import seed_loop_epoch


def seed_epoch(data: TensorData, seed: int) -> float:
    """One epoch of the seed's loop (train + test); returns its wall time in seconds."""
    model = build_initialized("initnet", "seed", seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    torch.manual_seed(seed)  # the DataLoader's shuffle draws from the global RNG
    return seed_loop_epoch(model, optimizer, data, "seed loop")


def initlab_epoch(data: TensorData, seed: int) -> float:
    """One epoch of :func:`initlab.experiments.trainer.train`; returns its wall time."""
    model = build_initialized("initnet", "seed", seed=seed)
    start = time.perf_counter()
    (record,) = train(model, data, TrainConfig(epochs=1, seed=seed)).epochs
    elapsed = time.perf_counter() - start
    print(
        f"  initlab:   loss {record.train_loss:.4f}, "
        f"accuracy {100 * record.test_accuracy:.2f}%, {elapsed:.3f} s"
    )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="epochs per loop (default: 3)")
    parser.add_argument("--train-subset", type=int, default=None, help="(default: all 60000)")
    parser.add_argument("--test-subset", type=int, default=None, help="(default: all 10000)")
    args = parser.parse_args()
    dataset = load_dataset("mnist")
    if args.train_subset is not None or args.test_subset is not None:
        dataset = dataset.subset(args.train_subset, args.test_subset)
    data = TensorData.from_dataset(dataset)
    print(f"threads: {torch.get_num_threads()}, train {len(data.train_y)}, test {len(data.test_y)}")
    seed_times, initlab_times = [], []
    for rep in range(args.reps):
        print(f"rep {rep + 1}/{args.reps}")
        seed_times.append(seed_epoch(data, rep))
        initlab_times.append(initlab_epoch(data, rep))
    seed_median = statistics.median(seed_times)
    initlab_median = statistics.median(initlab_times)
    print(f"median epoch: seed loop {seed_median:.3f} s, initlab {initlab_median:.3f} s")
    print(f"ratio initlab / seed loop: {initlab_median / seed_median:.2f} (< 1: initlab is faster)")


if __name__ == "__main__":
    main()
