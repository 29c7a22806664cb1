"""Reproduce the classic results on initialization with initlab, each in a few CPU minutes.

Usage (from the repository root, after ``make run`` or ``pip install -e .``)::

    python examples/classic_results.py glorot      # activation std through a 50-layer tanh MLP
    python examples/classic_results.py he          # 30-layer ReLU MLP: He vs Xavier vs orthogonal
    python examples/classic_results.py zeros       # the seed's net, zero init: symmetry
    python examples/classic_results.py lsuv        # LSUV on deep tanh and ReLU MLPs
    python examples/classic_results.py fixup       # 50-block residual MLP without normalization
    python examples/classic_results.py edge        # 50-layer tanh MLP around the edge of chaos
    python examples/classic_results.py all

Each prints a table (test accuracy on 2,000 MNIST test images after every ``--steps`` SGD steps)
and writes a figure into ``--out`` (default ``runs/classic``). All runs use SGD with momentum:
Adam's per-parameter step sizes rescale every layer's update and hide initialization failures
(a Xavier-initialized deep ReLU net that stalls under SGD trains under Adam), so SGD is the fair
judge of an initialization. One thread, fixed seeds.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

import initlab as il
from initlab.datasets.families import load_dataset
from initlab.diagnostics.plots import plot_depth_profiles
from initlab.experiments.diagnosis import diagnose_schemes, load_batch
from initlab.experiments.trainer import TensorData, TrainConfig, train
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

RELU_GAIN = math.sqrt(2.0)


def _data(n_train: int = 20000) -> TensorData:
    return TensorData.from_dataset(load_dataset("mnist").subset(n_train, 2000, seed=0))


def _build(model: str, params: dict, init, seed: int, batch) -> nn.Module:
    """Construct under a fixed seed, then initialize by scheme name or by a callable."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(model, **params)
    generator = torch.Generator().manual_seed(seed)
    if callable(init):
        init(net, generator)
    else:
        initialize(net, init, generator=generator, batch=batch)
    return net


def _train_curves(model, params, inits, args, lr=0.01) -> dict[str, list[float]]:
    """Test accuracy after every ``args.steps`` steps, per init; NaN once a run diverged."""
    data = _data()
    batch = (data.train_x[:512], data.train_y[:512])
    config = TrainConfig(
        optimizer="sgd", lr=lr, momentum=0.9, weight_decay=0.0, batch_size=128,
        epochs=args.checkpoints, max_steps=args.steps, eval_batch_size=2000, seed=args.seed,
    )  # fmt: skip
    curves = {}
    for name, init in inits.items():
        start = time.perf_counter()
        net = _build(model, params, init, args.seed, batch)
        result = train(net, data, config)
        accs = [e.test_accuracy for e in result.epochs]
        curves[name] = accs + [math.nan] * (args.checkpoints - len(accs))
        status = result.status + (
            f" at step {result.diverged_step} of checkpoint {result.diverged_epoch}"
            if result.status == "diverged" else ""
        )  # fmt: skip
        print(f"  {name:<24} " + " ".join(_pct(a) for a in curves[name]) + f"  {status}"
              f"  ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    return curves


def _pct(accuracy: float) -> str:
    return "     -" if math.isnan(accuracy) else f"{accuracy:6.1%}"


def _plot_curves(curves, args, name, title) -> None:
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    steps = [args.steps * (i + 1) for i in range(args.checkpoints)]
    for label, accs in curves.items():
        ax.plot(steps, [100 * a for a in accs], marker="o", label=label)
    ax.axhline(10, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="SGD steps (batch 128)", ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    ax.legend(fontsize="small")
    path = Path(args.out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    print(f"  wrote {path}")


def _header(args, text) -> None:
    steps = " ".join(f"{args.steps * (i + 1):>6}" for i in range(args.checkpoints))
    print(f"\n{text}\n  {'init':<24} {steps}   <- test accuracy after this many steps")


def glorot(args) -> None:
    """Glorot and Bengio 2010: activation std through a 50-layer tanh MLP at initialization."""
    schemes = ["normal", "xavier_normal", "orthogonal:gain=1.6667", "lsuv"]
    params = {"depth": 50, "width": 256, "activation": "tanh"}
    results = diagnose_schemes("mlp", schemes, load_batch(size=256), model_params=params)
    print("\nGlorot & Bengio 2010: 50-layer tanh MLP (width 256) at init, activation std")
    print(f"  {'init':<24} {'layer 1':>9} {'layer 10':>9} {'layer 50':>9} {'50 / 1':>9}  verdicts")
    for r in results:
        s = [x.std for x in r.diagnosis.signal()]
        verdicts = ", ".join(v.code for v in r.diagnosis.verdicts)
        print(
            f"  {r.scheme:<24} {s[0]:9.3g} {s[9]:9.3g} {s[-1]:9.3g} {s[-1] / s[0]:9.3g}  {verdicts}"
        )
    path = Path(args.out) / "glorot.png"
    plot_depth_profiles({r.scheme: r.diagnosis for r in results}, path, title="50-layer tanh MLP")
    print(f"  wrote {path}")


def he(args) -> None:
    """He et al. 2015 and Saxe et al. 2014: a 30-layer plain ReLU MLP under SGD."""
    _header(args, "He et al. 2015 / Saxe et al. 2014: 30-layer ReLU MLP, width 256, SGD 0.01 m0.9")
    inits = {
        "kaiming_normal": "kaiming_normal",
        "xavier_normal": "xavier_normal",
        "orthogonal gain sqrt2": f"orthogonal:gain={RELU_GAIN}",
        "orthogonal gain 1": "orthogonal",
    }
    params = {"depth": 30, "width": 256, "activation": "relu"}
    _plot_curves(_train_curves("mlp", params, inits, args), args, "he", "30-layer ReLU MLP")


def zeros(args) -> None:
    """The symmetry problem: the seed's 784-128-10 net with every weight at zero."""
    _header(args, "Zero initialization of the seed's net (784-128-10 ReLU), SGD 0.01 m0.9")
    inits = {"seed scheme": "seed", "zeros": "zeros"}
    curves = _train_curves("initnet", {}, inits, args)
    net = _build("initnet", {}, "zeros", args.seed, None)
    train(net, _data(), TrainConfig(optimizer="sgd", lr=0.01, epochs=1, max_steps=args.steps))
    d = il.diagnose(net, load_batch(size=256), loss_fn=nn.functional.cross_entropy)
    hidden = next(p for p in d.params if p.name == "fc1.weight")
    print(
        f"  after {args.steps} steps from zeros: {hidden.symmetric_fraction:.0%} of the 128 hidden "
        f"units identical to another; fc1 gradient norm {hidden.grad_norm or 0.0:.3g}"
    )
    _plot_curves(curves, args, "zeros", "784-128-10 ReLU net")


def lsuv(args) -> None:
    """Mishkin and Matas 2016: LSUV makes deep tanh and ReLU MLPs trainable."""
    # Unit pre-activation variance puts a tanh net at sigma_w^2 ~ 2.5, in the chaotic phase
    # (chi_1 ~ 1.18, see `initlab diagnose`): gradients grow with depth, so tanh needs lr 0.001.
    cases = (("tanh", 50, "normal", 0.001), ("relu", 30, "xavier_normal", 0.01))
    for activation, depth, baseline, lr in cases:
        _header(args, f"LSUV: {depth}-layer {activation} MLP, width 256, SGD {lr} m0.9")
        inits = {baseline: baseline, "lsuv": "lsuv"}
        params = {"depth": depth, "width": 256, "activation": activation}
        curves = _train_curves("mlp", params, inits, args, lr=lr)
        _plot_curves(curves, args, f"lsuv_{activation}", f"{depth}-layer {activation} MLP")


def fixup(args) -> None:
    """Zhang et al. 2019: Fixup trains a 50-block residual MLP without normalization."""
    _header(args, "Fixup: 50-block residual ReLU MLP (width 128, no norm), SGD 0.01 m0.9")
    inits = {"kaiming_normal": "kaiming_normal", "fixup": "fixup"}
    params = {"depth": 50, "width": 128, "activation": "relu"}
    _plot_curves(_train_curves("resmlp", params, inits, args), args, "fixup", "50-block res-MLP")


def edge(args) -> None:
    """Schoenholz et al. 2017: a 50-layer tanh MLP trains at the edge of chaos only."""
    bias_var = 0.05
    critical = il.critical_weight_variance("tanh", bias_var)
    variances = {"ordered": 0.5 * critical, "critical": critical, "chaotic": 4 * critical}
    _header(args, f"Edge of chaos: 50-layer tanh MLP, width 256, sigma_b^2={bias_var}")
    inits = {}
    for phase, weight_var in variances.items():
        mf = il.mean_field("tanh", weight_var, bias_var)
        label = f"{phase} s_w^2={weight_var:.2f}"
        print(
            f"  {label:<24} chi_1={mf.chi_1:.3f} xi_c={mf.xi_c:.3g} 6 xi_c={mf.trainable_depth:.3g}"
        )
        inits[label] = _gaussian_init(weight_var, bias_var)
    params = {"depth": 50, "width": 256, "activation": "tanh"}
    _plot_curves(_train_curves("mlp", params, inits, args), args, "edge", "50-layer tanh MLP")


def _gaussian_init(weight_var: float, bias_var: float):
    """W ~ N(0, weight_var / fan_in), b ~ N(0, bias_var): the mean-field ensemble."""

    def init(net: nn.Module, generator: torch.Generator) -> None:
        for m in net.modules():
            if isinstance(m, nn.Linear):
                il.variance_scaling_(m.weight, weight_var, "fan_in", "normal", generator=generator)
                il.normal_(m.bias, mean=0.0, std=math.sqrt(bias_var), generator=generator)

    return init


EXPERIMENTS = {f.__name__: f for f in (glorot, he, zeros, lsuv, fixup, edge)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--steps", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--checkpoints", type=int, default=5, help="number of evaluations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/classic")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, run in EXPERIMENTS.items():
        if args.experiment in (name, "all"):
            run(args)


if __name__ == "__main__":
    main()
