"""Time initlab's trunc_normal_ and orthogonal_ side by side with plain PyTorch.

1. ``initlab.trunc_normal_`` (+-2 std) on a 64M-entry float32 tensor against a plain
   ``Tensor.normal_`` fill of the same tensor (target: at most 1.5x), with PyTorch 2.13's
   ``torch.nn.init.trunc_normal_`` and initlab's with timm's ViT arguments (std 0.02 cut at
   +-2 absolute) timed for the record. The filled tensor is then checked:
   exact bounds (min and max inside [-2, 2]) and a Kolmogorov-Smirnov test against
   ``scipy.stats.truncnorm(-2, 2)`` on 10^6 entries drawn at random positions.
2. ``initlab.orthogonal_`` against ``torch.nn.init.orthogonal_`` on a 4096 x 4096 float32
   matrix (target: no slower; both must give the same matrix bit for bit from equal
   generators), ``initlab.orthogonal_(method="householder")`` (Stewart's sampler: Haar, other
   draws) beside them, and ``initlab.orthogonal_`` in bfloat16 (PyTorch raises there), with
   the orthogonality errors ``max |W W^T - I|`` computed in float64.

Each contender runs in the same process, alternating (A, B, A, B, ...) so machine noise hits
both alike; the script prints every time, the medians and the median ratio. Run it alone, e.g.

    .venv/bin/python benchmarks/bench_initializers.py                     # all threads
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_initializers.py   # one thread

``--numel``, ``--size`` and ``--reps`` shrink it for a smoke run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from scipy import stats

import initlab as il


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(contenders: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Run every contender ``reps`` times, in turn, after one untimed warm-up each."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return times


def report(times: dict[str, list[float]], baseline: str) -> None:
    base = statistics.median(times[baseline])
    for name, values in times.items():
        runs = " ".join(f"{v:.3f}" for v in values)
        median = statistics.median(values)
        print(f"  {name:<34} median {median:8.3f} s  ratio {median / base:6.2f}x   ({runs})")


def bench_trunc_normal(numel: int, reps: int, torch_reps: int) -> None:
    print(f"trunc_normal_ (+-2 std) vs normal_ on {numel:,} float32 entries, {reps} reps")
    tensor = torch.empty(numel)
    g = torch.Generator().manual_seed(0)
    times = alternate(
        {
            "Tensor.normal_": lambda: tensor.normal_(0.0, 1.0, generator=g),
            "initlab.trunc_normal_": lambda: il.trunc_normal_(tensor, generator=g),
            # timm's ViT init: std 0.02 cut at +-2 absolute (100 std), the sparse-reject path
            "initlab std=0.02 [-2, 2] absolute": lambda: il.trunc_normal_(
                tensor, std=0.02, a=-2.0, b=2.0, bounds="absolute", generator=g
            ),
        },
        reps,
    )
    if torch_reps:
        # PyTorch redraws the whole tensor per rejection round: about 20x, so fewer reps
        times["torch.nn.init.trunc_normal_"] = [
            timed(lambda: torch.nn.init.trunc_normal_(tensor, generator=g))
            for _ in range(torch_reps)
        ]
    report(times, "Tensor.normal_")
    il.trunc_normal_(tensor, generator=torch.Generator().manual_seed(1))
    lo, hi = tensor.min().item(), tensor.max().item()
    positions = torch.randint(numel, (10**6,), generator=torch.Generator().manual_seed(2))
    ks = stats.kstest(tensor[positions].double().numpy(), stats.truncnorm(-2, 2).cdf)
    kept = "kept" if -2.0 <= lo <= hi <= 2.0 else "BROKEN"
    print(
        f"  check: min {lo:.7f} max {hi:.7f} (bounds [-2, 2] {kept}); KS vs truncnorm(-2, 2) "
        f"on 10^6 entries: D = {ks.statistic:.2e}, p = {ks.pvalue:.3f}"
    )


def bench_orthogonal(size: int, reps: int) -> None:
    print(f"orthogonal_ on {size} x {size}, {reps} reps")
    ours, theirs, stewart = (torch.empty(size, size) for _ in range(3))
    times = alternate(
        {
            "torch.nn.init.orthogonal_ float32": lambda: torch.nn.init.orthogonal_(
                theirs, generator=torch.Generator().manual_seed(0)
            ),
            "initlab.orthogonal_ float32": lambda: il.orthogonal_(
                ours, generator=torch.Generator().manual_seed(0)
            ),
            "initlab householder float32": lambda: il.orthogonal_(
                stewart, method="householder", generator=torch.Generator().manual_seed(0)
            ),
        },
        reps,
    )
    half = torch.empty(size, size, dtype=torch.bfloat16)
    times["initlab.orthogonal_ bfloat16"] = [
        timed(lambda: il.orthogonal_(half, generator=torch.Generator().manual_seed(0)))
        for _ in range(reps)
    ]
    report(times, "torch.nn.init.orthogonal_ float32")
    error, stewart_error = orthogonality_error(half), orthogonality_error(stewart)
    try:
        torch.nn.init.orthogonal_(torch.empty(4, 4, dtype=torch.bfloat16))
        theirs_bf16 = "works"
    except RuntimeError as exc:
        theirs_bf16 = f"raises: {str(exc).splitlines()[0]}"
    print(
        f"  check: float32 equal to PyTorch bit for bit: {torch.equal(ours, theirs)}; "
        f"householder float32 max |W W^T - I| = {stewart_error:.2e}; "
        f"bfloat16 max |W W^T - I| = {error:.2e} (bfloat16 eps 7.8e-3); "
        f"torch.nn.init.orthogonal_ bfloat16 {theirs_bf16}"
    )


def orthogonality_error(w: torch.Tensor) -> float:
    """Return ``max |W W^T - I|`` computed in float64."""
    gram = w.double() @ w.double().T
    return (gram - torch.eye(w.shape[0], dtype=torch.float64)).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=64 * 2**20, help="default: 64M entries")
    parser.add_argument("--size", type=int, default=4096, help="orthogonal size (default: 4096)")
    parser.add_argument("--reps", type=int, default=5, help="timed reps each (default: 5)")
    parser.add_argument(
        "--torch-reps", type=int, default=1, help="reps of torch's trunc_normal_ (default: 1)"
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_trunc_normal(args.numel, args.reps, args.torch_reps)
    bench_orthogonal(args.size, max(1, args.reps // 2))


if __name__ == "__main__":
    main()
