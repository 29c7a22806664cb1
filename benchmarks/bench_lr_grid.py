"""Time ``initlab compare --lr-grid`` of 4 rates against the same sweep without it, per run.

The goal: an ``--lr-grid`` of 4 rates costs at most 1.5x the sweep without it per run
(stacking). Both are :func:`initlab.experiments.sweep.run_sweep` with
``vectorize=True``, end to end as ``initlab compare`` runs them (data, inits with their
diagnosis files, training stacked, results, report and figures) into temporary directories:

- without a grid: the default sweep, 6 schemes x 3 seeds of mlp-784-128-10, AdamW lr 1e-3,
  5 epochs on full MNIST (18 runs in one stack);
- with ``--lr-grid 1e-4,3e-4,1e-3,3e-3``: the same sweep at 4 rates, 72 runs in one stack
  (:class:`~initlab.experiments.optim.StackedOptimizer` steps each at its own rate). A grid
  holds out a validation split (10% of the training images) and evaluates it every epoch, so
  its runs take 10% fewer steps; the ratio is printed per run (the goal's measure) and per
  optimizer step of a run.
- with ``--per-rate``, also the way a grid trained before one stack held every rate: each rate
  as a sweep of its own (a one-rate grid: the same validation split, one stack of 18 runs).

The sweeps alternate ``--repeats`` times in one process (the same threads, the same warm
caches); the fastest of each is compared, the least disturbed by other work on the machine.
Run it alone (nothing else on the CPU):

    .venv/bin/python benchmarks/bench_lr_grid.py
    .venv/bin/python benchmarks/bench_lr_grid.py --train-subset 5000 --test-subset 1000 --epochs 1

The second line is a smoke run; the first is the measurement the goal refers to.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from initlab.experiments.sweep import CompareConfig, run_sweep
from initlab.experiments.trainer import TrainConfig

GRID = (1e-4, 3e-4, 1e-3, 3e-3)


def timed_sweep(config: CompareConfig) -> float:
    """Run one comparison, stacked, into a temporary directory; return its wall time (s)."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_sweep(config, out, progress=False, vectorize=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scheme (default: 3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default: 5)")
    parser.add_argument("--train-subset", type=int, default=None, help="(default: all 60000)")
    parser.add_argument("--test-subset", type=int, default=None, help="(default: all 10000)")
    parser.add_argument("--repeats", type=int, default=1, help="timings of each (default: 1)")
    parser.add_argument(
        "--per-rate", action="store_true", help="also time each rate as a sweep of its own"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    def config(grid: tuple[float, ...] | None) -> CompareConfig:
        return CompareConfig(
            seeds=args.seeds,
            train_subset=args.train_subset,
            test_subset=args.test_subset,
            train=TrainConfig(epochs=args.epochs),
            lr_grid=grid,
        )

    plain, grid = config(None), config(GRID)
    runs = len(plain.schemes) * plain.seeds
    train = args.train_subset if args.train_subset is not None else 60000
    steps = plain.train.steps_per_epoch(train)
    grid_steps = grid.train.steps_per_epoch(train - round(grid.val_fraction * train))
    print(
        f"threads {torch.get_num_threads()}; {runs} runs x {args.epochs} epochs without a grid "
        f"({steps} steps per epoch), {runs * len(GRID)} with --lr-grid "
        f"{','.join(map(str, GRID))} ({grid_steps} steps per epoch)"
    )
    times: dict[str, list[float]] = {"no grid": [], "grid": [], "per rate": []}
    for repeat in range(args.repeats):
        times["no grid"].append(timed_sweep(plain))
        times["grid"].append(timed_sweep(grid))
        if args.per_rate:
            times["per rate"].append(sum(timed_sweep(config((rate,))) for rate in GRID))
        print(
            f"repeat {repeat + 1}: "
            + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items() if v)
        )
    best = {k: min(v) for k, v in times.items() if v}
    per_run = {k: t / (runs if k == "no grid" else runs * len(GRID)) for k, t in best.items()}
    for name, seconds in per_run.items():
        print(f"{name:9s} {best[name]:7.1f} s, {seconds:.3f} s per run")
    ratio = per_run["grid"] / per_run["no grid"]
    per_step = ratio * steps / grid_steps
    print(f"--lr-grid of 4 rates / no grid, per run: {ratio:.2f}x (goal: <= 1.5x)")
    print(f"  per optimizer step of a run: {per_step:.2f}x")
    if "per rate" in per_run:
        before = per_run["per rate"] / per_run["no grid"]
        print(f"  each rate a stack of its own (before): {before:.2f}x")


if __name__ == "__main__":
    main()
