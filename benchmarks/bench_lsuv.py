"""Time LSUV on a 30-layer MLP: ``initlab.lsuv_`` against the ``lsuv`` package from PyPI.

The goal: at least 10 times faster at equal tolerance.

Both run Mishkin and Matas's Algorithm 1 ("All you need is a good init", ICLR 2016) on the same
model and batch with the same settings: orthonormal pre-initialization, biases zero, target
output std 1, tolerance 0.1 on the std (``lsuv``: ``|std - 1| > std_tol`` keeps rescaling;
initlab: ``tol_on="std"``, ``|std / 1 - 1| <= tol`` stops), at most 10 rescalings per layer, no
mean correction (``lsuv`` has none). ``lsuv`` re-runs the whole network for every layer and
every rescaling (quadratic in depth); ``initlab.lsuv_`` runs it once, and a rescaled linear
layer's output is ``s * y``, not a re-run. Each copy starts from the same freshly built
model; the script checks afterwards that every layer's output std is within the tolerance for
both, then prints the median times over ``--reps`` alternating repetitions and their ratio, for
each batch size.

The ratio grows with the batch: initlab's time is mostly the fixed cost of the orthonormal
pre-initialization (Stewart's sampler, about 35 ms for 30 matrices of width 256 on one core,
where ``lsuv``'s QR factorizations take about 60 ms), while the passes that ``lsuv`` repeats
grow with the batch.

The ``lsuv`` package is not a dependency of initlab: install it only in a separate environment
for this benchmark (torch pinned as in the project):

    python3 -m venv /tmp/lsuvenv
    /tmp/lsuvenv/bin/pip install -c constraints.txt torch==2.13.0 lsuv==0.3.0 numpy
    /tmp/lsuvenv/bin/pip install --no-deps -e .
    /tmp/lsuvenv/bin/python benchmarks/bench_lsuv.py

(``numpy`` is the one initlab dependency this script needs; ``--no-deps`` skips the others.)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lsuv
import torch
from torch import nn

import initlab
from initlab.datasets.families import load_dataset

TOL = 0.1  # on the std, relative to the target 1.0: the lsuv package's default std_tol
MAX_ITER = 10  # rescalings per layer: both packages' default


def mlp(depth: int, width: int, seed: int) -> nn.Sequential:
    """``depth`` Linear layers 784 -> width -> ... -> 10 with ReLU between them."""
    torch.manual_seed(seed)
    sizes = [784] + [width] * (depth - 1) + [10]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def run_initlab(model: nn.Module, x: torch.Tensor, seed: int) -> float:
    """Time ``initlab.lsuv_`` with the package's semantics; returns seconds."""
    start = time.perf_counter()
    with torch.no_grad():
        for m in model.modules():  # lsuv's orthonormal step zeroes the biases too
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    initlab.lsuv_(
        model,
        x,
        target_std=1.0,
        tol=TOL,
        tol_on="std",
        max_iter=MAX_ITER,
        correct_mean=False,
        orthogonal_preinit=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return time.perf_counter() - start


def run_package(model: nn.Module, x: torch.Tensor) -> float:
    """Time ``lsuv.lsuv_with_singlebatch`` (lsuv 0.3.0); returns seconds."""
    start = time.perf_counter()
    lsuv.lsuv_with_singlebatch(
        model,
        x,
        needed_std=1.0,
        std_tol=TOL,
        max_attempts=MAX_ITER,
        do_orthonorm=True,
        verbose=False,
    )
    return time.perf_counter() - start


@torch.no_grad()
def worst_std_error(model: nn.Module, x: torch.Tensor) -> float:
    """Return max over Linear layers of ``|std(output) - 1|`` on ``x`` (eval mode)."""
    stds: list[float] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    try:
        model.eval()
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return max(abs(s - 1.0) for s in stds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=30, help="Linear layers (default: 30)")
    parser.add_argument("--width", type=int, default=256, help="hidden units (default: 256)")
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[128, 256, 512, 1024],
        help="MNIST batch sizes, one measurement each (default: 128 256 512 1024)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default: 3)")
    args = parser.parse_args()
    print(
        f"threads: {torch.get_num_threads()}; MLP {args.depth} x Linear, width {args.width}, "
        f"ReLU; tolerance {TOL} on the std"
    )
    images = load_dataset("mnist").train_images
    ratios = [measure(images, batch, args) for batch in args.batch]
    for batch, ratio in zip(args.batch, ratios, strict=True):
        print(f"batch {batch}: speed-up {ratio:.1f}x (goal: >= 10x)")


def measure(images: torch.Tensor, batch: int, args: argparse.Namespace) -> float:
    """Time both on ``batch`` images, ``args.reps`` times alternating; return the ratio."""
    x = images[:batch].reshape(batch, 784).float() / 255.0  # pixels in [0, 1], as in training
    print(f"batch of {batch} MNIST images")
    package_times, initlab_times = [], []
    for rep in range(args.reps):
        fresh = mlp(args.depth, args.width, seed=rep)
        theirs, ours = copy.deepcopy(fresh), copy.deepcopy(fresh)
        package_times.append(run_package(theirs, x))
        initlab_times.append(run_initlab(ours, x, seed=rep))
        print(
            f"  rep {rep + 1}: lsuv {package_times[-1]:.3f} s "
            f"(worst |std - 1| {worst_std_error(theirs, x):.3f}), "
            f"initlab {initlab_times[-1]:.3f} s "
            f"(worst |std - 1| {worst_std_error(ours, x):.3f})"
        )
    theirs_median = statistics.median(package_times)
    ours_median = statistics.median(initlab_times)
    print(f"  median: lsuv {theirs_median:.3f} s, initlab.lsuv_ {ours_median:.3f} s")
    return theirs_median / ours_median


if __name__ == "__main__":
    main()
