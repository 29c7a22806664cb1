"""Time the default sweep: ``initlab compare`` (runs stacked) against the seed's plain loop.

The goal: the default comparison, 6 schemes x 3 seeds of the
seed's InitNet, 5 epochs on full MNIST, at least 4 times faster than 18 sequential runs of the
seed's plain PyTorch loop.

- initlab: :func:`initlab.experiments.sweep.run_sweep` with ``vectorize=True``, end to end as
  ``initlab compare`` runs it (data loading, 18 inits with their diagnosis files, training
  all runs stacked, results.jsonl, summary, report and figures), into a temporary directory.
- the seed's loop, as the seed writes it (see ``benchmarks/bench_train.py``): a
  ``TensorDataset`` in a ``DataLoader(batch_size=64, shuffle=True)``, AdamW (lr 1e-3, weight
  decay 0.01), ``running_loss += loss.item()`` per step, a test pass with
  ``DataLoader(batch_size=1000)`` after every epoch. Every epoch runs the same steps on the
  same data, yet measured epoch times varied from 1.7 to 2.8 s between runs and schemes on one
  core. So it is timed on ``--plain-runs`` runs (default 6: one per scheme of the sweep, in the
  sweep's order) of ``--plain-epochs`` epochs, and the mean epoch is multiplied by the sweep's
  runs x epochs; the script says so.

Both run in one process with the same thread count. Run it alone (nothing else on the CPU):

    .venv/bin/python benchmarks/bench_sweep.py
    .venv/bin/python benchmarks/bench_sweep.py --train-subset 5000 --test-subset 1000 --epochs 1

The second line is a smoke run; the first is the measurement the goal refers to.

It also reports the sweep's arithmetic rate against the machine's large-GEMM rate, both
measured in the same process: the model's multiply-adds counted by hand (a training example:
forward 784*128 + 128*10, backward the weight gradients of both layers and the input gradient
of the second, 2 flops each; a test example: the forward), over the sweep's end-to-end time,
against float32 ``torch.mm`` of two 2048 x 2048 matrices (2 * 2048^3 flops each).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from initlab.datasets.families import load_dataset
from initlab.experiments.results import RESULTS, read_results
from initlab.experiments.sweep import DEFAULT_SCHEMES, CompareConfig, run_sweep
from initlab.experiments.trainer import TensorData, TrainConfig, build_initialized
from seed_loop import seed_loop_epoch


def plain_epochs(data: TensorData, runs: int, epochs: int) -> list[float]:
    """Time ``runs`` x ``epochs`` epochs of the plain loop, cycling through the schemes."""
    times = []
    for run in range(runs):
        scheme = DEFAULT_SCHEMES[run % len(DEFAULT_SCHEMES)]
        print(f"plain run {run + 1}/{runs}: {scheme}, seed {run}")
        torch.manual_seed(run)  # the DataLoader's shuffle draws from the global RNG
        model = build_initialized("initnet", scheme, seed=run)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        times += [seed_loop_epoch(model, optimizer, data, "plain loop") for _ in range(epochs)]
    return times


def initlab_sweep(config: CompareConfig) -> tuple[float, float]:
    """Run the whole comparison, stacked, into a temporary directory; return its wall time and
    that of its training epochs (steps and test passes: the group's epoch ``wall_time_s``)."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_sweep(config, out, progress=False, vectorize=True)
        elapsed = time.perf_counter() - start
        lines = read_results(Path(out) / RESULTS)
    first = next(line["run"] for line in lines if "epoch" in line)
    epochs = sum(
        line["wall_time_s"] for line in lines if line.get("run") == first and "epoch" in line
    )
    for row in result.rows:
        print(f"  {row.scheme:16s} final test accuracy {100 * row.final_accuracy_mean:.2f}%")
    return elapsed, epochs


def gemm_rate(n: int = 2048, seconds: float = 2.0) -> float:
    """Float32 GFLOP/s of ``torch.mm`` on two ``n x n`` matrices, the median of 1 s windows."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    rates = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < 0.5:
            torch.mm(a, b)
            reps += 1
        rates.append(2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def sweep_flops(train: int, test: int, runs: int, epochs: int) -> float:
    """The sweep's model flops: per run and epoch, ``train`` training and ``test`` test examples
    through 784 -> 128 -> 10 (see the module docstring)."""
    forward = 2 * (784 * 128 + 128 * 10)
    backward = 2 * (784 * 128 + 128 * 10) + 2 * (128 * 10)
    return float(runs * epochs * (train * (forward + backward) + test * forward))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scheme (default: 3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default: 5)")
    parser.add_argument("--train-subset", type=int, default=None, help="(default: all 60000)")
    parser.add_argument("--test-subset", type=int, default=None, help="(default: all 10000)")
    parser.add_argument(
        "--plain-runs", type=int, default=6, help="plain-loop runs timed (default: 6)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for both (default: torch's)"
    )
    parser.add_argument(
        "--plain-epochs", type=int, default=1, help="epochs per timed plain run (default: 1)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = CompareConfig(
        seeds=args.seeds,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        train=TrainConfig(epochs=args.epochs),
    )
    dataset = load_dataset("mnist")
    if args.train_subset is not None or args.test_subset is not None:
        dataset = dataset.subset(args.train_subset, args.test_subset, seed=config.first_seed)
    data = TensorData.from_dataset(dataset)
    runs = len(config.schemes) * config.seeds
    print(
        f"threads: {torch.get_num_threads()}, train {len(data.train_y)}, test "
        f"{len(data.test_y)}; sweep: {len(config.schemes)} schemes x {config.seeds} seeds x "
        f"{args.epochs} epochs = {runs * args.epochs} run-epochs"
    )
    plain = statistics.mean(plain_epochs(data, args.plain_runs, args.plain_epochs))
    plain_total = plain * runs * args.epochs
    print(f"initlab compare ({runs} runs stacked, end to end)")
    stacked, epochs = initlab_sweep(config)
    print(
        f"plain loop: mean epoch {plain:.2f} s (timed on {args.plain_runs} runs x "
        f"{args.plain_epochs} epochs) x {runs * args.epochs} run-epochs = {plain_total:.1f} s "
        "(scaled)"
    )
    print(f"initlab compare, stacked: {stacked:.1f} s (measured)")
    print(f"speed-up: {plain_total / stacked:.2f}x (goal: >= 4x)")
    flops = sweep_flops(len(data.train_y), len(data.test_y), runs, args.epochs)
    gemm = gemm_rate()
    rate = flops / stacked / 1e9
    print(
        f"sweep arithmetic: {flops / 1e12:.2f} TFLOP in {stacked:.1f} s = {rate:.1f} GFLOP/s, "
        f"{100 * rate / gemm:.0f}% of the large-GEMM rate ({gemm:.1f} GFLOP/s, 2048^2 float32 "
        "torch.mm, same threads)"
    )
    loop = flops / epochs / 1e9
    print(
        f"  of which the training epochs (steps and test passes): {epochs:.1f} s = {loop:.1f} "
        f"GFLOP/s, {100 * loop / gemm:.0f}% of the large-GEMM rate"
    )


if __name__ == "__main__":
    main()
