"""Reproduce the classic results on initialization with initlab's own commands, over seeds.

Usage (from the repository root, after ``make run`` or ``pip install -e .``)::

    python examples/classic_results.py glorot      # activation std through a 50-layer tanh MLP
    python examples/classic_results.py he          # 30-layer ReLU MLP: He vs Xavier vs orthogonal
    python examples/classic_results.py zeros       # the reference net, zero init: symmetry
    python examples/classic_results.py lsuv        # LSUV on deep tanh and ReLU MLPs
    python examples/classic_results.py fixup       # 50-block residual MLP without normalization
    python examples/classic_results.py zero_gamma  # residual MLP with BatchNorm: last gamma 0
    python examples/classic_results.py selu        # 30-layer SELU MLP: LeCun vs He
    python examples/classic_results.py edge        # 50-layer tanh MLP around the edge of chaos
    python examples/classic_results.py forget      # LSTM remembering the first token
    python examples/classic_results.py saxe        # deep linear nets: learning time vs depth
    python examples/classic_results.py jacobian    # input-output Jacobian spectra at init
    python examples/classic_results.py all
    python examples/classic_results.py he --dry-run   # print the commands, run nothing

Every experiment is one or more ``initlab compare`` / ``initlab diagnose`` commands, printed
before they run (type them yourself to get the full report, figures and ``summary.csv`` in
``--out``), with ``--seeds`` seeds (3 by default), then a table of the mean and the
``[min, max]`` over seeds: test accuracy after every 100 SGD steps (2,000 MNIST test images),
or the diagnosis' numbers; ``saxe`` runs ``initlab deeplinear`` and ``jacobian`` runs
``initlab spectrum``, which print their own bands. Trainings use SGD with momentum: Adam's
per-parameter step sizes rescale every layer's update and hide initialization failures (a
Xavier-initialized deep ReLU net that stalls under SGD trains under Adam), so SGD is the fair
judge of an initialization. The exception is ``forget``, the LSTM task ``first-token``, which
trains with its task's AdamW 0.01. One thread.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

import initlab as il
from initlab.cli import COMMANDS
from initlab.cli import main as initlab_main
from initlab.experiments.results import read_results


# SGD 0.01 with momentum 0.9, batch 128, 5 evaluations 100 steps apart, on 20,000 training and
# 2,000 test images: the settings of every training below unless it says otherwise.
def _sgd(lr: float = 0.01) -> str:
    return (
        f"--optimizer sgd --lr {lr} --momentum 0.9 --weight-decay 0 --batch-size 128 "
        "--epochs 5 --max-steps 100 --train-subset 20000 --test-subset 2000 --no-progress"
    )


def _mlp(depth: int, width: int, activation: str) -> str:
    return f"--model mlp --model-arg depth={depth} --model-arg width={width} " + (
        f"--model-arg activation={activation}"
    )


#: The commands that exited with an error; the script's exit status is 1 when there is one.
FAILED: list[str] = []


def _run(command: str, args) -> int:
    """Print ``initlab COMMAND`` and run it in this process (unless ``--dry-run``); a command
    that fails is recorded in :data:`FAILED` and the script goes on with the next one."""
    print(f"\n$ initlab {command}", flush=True)
    if args.dry_run:
        return 0
    argv = shlex.split(command)
    if argv[0] in COMMANDS:
        status = initlab_main(argv)
    else:  # a command module not yet listed in initlab.cli.COMMANDS: its own register()
        parser = argparse.ArgumentParser(prog="initlab")
        importlib.import_module(f"initlab.cli.{argv[0]}").register(parser.add_subparsers())
        parsed = parser.parse_args(argv)
        status = parsed.func(parsed)
    if status:
        FAILED.append(f"initlab {command} (exit status {status})")
    return status


def _band(values: list[float], fmt: str = "{:.1%}") -> str:
    """``mean [min, max]`` of ``values``; ``-`` for none."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{fmt.format(mean)} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


def compare(name: str, title: str, options: str, args) -> None:
    """Run one ``initlab compare`` into ``--out/name`` and print accuracy bands per checkpoint."""
    out = Path(args.out) / name
    seeds = f"--seeds {args.seeds} --first-seed {args.first_seed}"
    print(f"\n{title}")
    if _run(f"compare {options} {seeds} --out {out}", args) or args.dry_run:
        return
    lines = read_results(out / "results.jsonl")
    accuracy: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    steps: dict[int, int] = {}
    diverged = defaultdict(int)
    for line in lines:
        if "run" in line:  # every scheme gets a row, also one whose runs all diverged early
            accuracy[line["run"].rsplit("/", 1)[0]]  # noqa: B018 (creates the row)
        if line.get("type") == "epoch":
            scheme = line["run"].rsplit("/", 1)[0]
            accuracy[scheme][line["epoch"]].append(line["test_accuracy"])
            steps[line["epoch"]] = line["steps"]
        if line.get("type") == "status" and line.get("status") == "diverged":
            diverged[line["run"].rsplit("/", 1)[0]] += 1
    epochs = sorted(steps)
    done = [sum(steps[e] for e in epochs if e <= epoch) for epoch in epochs]
    print(
        f"\n  test accuracy, mean [min, max] over {args.seeds} seeds (those that had not "
        "diverged by then), after this many steps:"
    )
    width = max([28, *map(len, accuracy)])  # long names (orthogonal:gain=...) stay aligned
    print(f"  {'scheme':<{width}} " + " ".join(f"{s:>22}" for s in done) + "  diverged")
    for scheme, by_epoch in accuracy.items():
        cells = " ".join(f"{_band(by_epoch.get(e, [])):>22}" for e in epochs)
        print(f"  {scheme:<{width}} {cells}  {diverged[scheme]}/{args.seeds}")


def glorot(args) -> None:
    """Glorot and Bengio 2010: activation std through a 50-layer tanh MLP at initialization."""
    schemes = "normal,xavier_normal,orthogonal:gain=1.6667,lsuv"
    ratios: dict[str, list[float]] = defaultdict(list)
    print("\nGlorot & Bengio 2010: 50-layer tanh MLP (width 256) at init, activation std")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        out = Path(args.out) / "glorot" / f"seed{seed}"
        command = (
            f"diagnose --model mlp --depth 50 --width 256 --activation tanh --schemes {schemes} "
            f"--seed {seed} --out {out}"
        )
        if _run(command, args) or args.dry_run:
            continue
        for scheme, diagnosis in json.loads((out / "diagnoses.json").read_text()).items():
            stds = [row["std"] for row in diagnosis["layers"] if row["kind"] == "activation"]
            ratios[scheme].append(stds[-1] / stds[0])
    print(f"\n  std of layer 50 / layer 1, mean [min, max] over {args.seeds} seeds:")
    for scheme, values in ratios.items():
        print(f"  {scheme:<28} {_band(values, '{:.3g}')}")


def he(args) -> None:
    """He et al. 2015 and Saxe et al. 2014: a 30-layer plain ReLU MLP under SGD."""
    schemes = "kaiming_normal,xavier_normal,orthogonal:gain=1.4142135623730951,orthogonal"
    title = "He et al. 2015 / Saxe et al. 2014: 30-layer ReLU MLP, width 256, SGD 0.01 m0.9"
    compare("he", title, f"{_mlp(30, 256, 'relu')} --schemes {schemes} {_sgd()}", args)


def zeros(args) -> None:
    """The symmetry problem: the reference 784-128-10 net with every weight at zero."""
    title = "Zero initialization of the reference net (784-128-10 ReLU), SGD 0.01 m0.9"
    compare("zeros", title, f"--model mlp-784-128-10 --schemes xavier-then-he,zeros {_sgd()}", args)


def lsuv(args) -> None:
    """Mishkin and Matas 2016: LSUV makes deep tanh and ReLU MLPs trainable."""
    # Unit pre-activation variance puts a tanh net at sigma_w^2 ~ 2.5, in the chaotic phase
    # (chi_1 ~ 1.18, see `initlab diagnose`): gradients grow with depth, so tanh needs lr 0.001.
    for activation, depth, baseline, lr in (("tanh", 50, "normal", 0.001),
                                            ("relu", 30, "xavier_normal", 0.01)):  # fmt: skip
        title = f"LSUV: {depth}-layer {activation} MLP, width 256, SGD {lr} m0.9"
        options = f"{_mlp(depth, 256, activation)} --schemes {baseline},lsuv {_sgd(lr)}"
        compare(f"lsuv_{activation}", title, options, args)


def fixup(args) -> None:
    """Zhang et al. 2019: Fixup trains a 50-block residual MLP without normalization."""
    title = "Fixup: 50-block residual ReLU MLP (width 128, no norm), SGD 0.01 m0.9"
    model = "--model resmlp --model-arg depth=50 --model-arg width=128"
    compare("fixup", title, f"{model} --schemes kaiming_normal,fixup {_sgd()}", args)


def zero_gamma(args) -> None:
    """Goyal et al. 2017: the last BatchNorm gamma of each residual branch at 0."""
    # lr 0.05: at 0.1 both schemes diverged on some of 3 seeds (He on all 3, zero-gamma on 2;
    # docs/diagnostics.md); at 0.05 both train and zero-gamma halves the early training loss.
    title = "Zero-gamma: 20-block residual MLP with BatchNorm (width 128), SGD 0.05 m0.9"
    model = (
        "--model resmlp --model-arg depth=20 --model-arg width=128 --model-arg norm=batch "
        "--model-arg post_activation=false"
    )
    compare("zero_gamma", title, f"{model} --schemes kaiming_normal,zero_gamma {_sgd(0.05)}", args)


def selu(args) -> None:
    """Klambauer et al. 2017: SELU self-normalizes from LeCun-normal weights."""
    # lr 0.005: at 0.01 LeCun-normal diverged on 2 of 3 seeds too (docs/diagnostics.md)
    title = "SELU: 30-layer SELU MLP, width 256, SGD 0.005 m0.9"
    schemes = "lecun_normal,kaiming_normal,xavier_normal"
    compare("selu", title, f"{_mlp(30, 256, 'selu')} --schemes {schemes} {_sgd(0.005)}", args)


def edge(args) -> None:
    """Schoenholz et al. 2017: a 50-layer tanh MLP trains at the edge of chaos only."""
    bias_var = 0.05
    critical = il.critical_weight_variance("tanh", bias_var)
    print(f"\nEdge of chaos: 50-layer tanh MLP, width 256, sigma_b^2={bias_var}")
    schemes = []
    for phase, weight_var in (("ordered", 0.5 * critical), ("critical", critical),
                              ("chaotic", 4 * critical)):  # fmt: skip
        mf = il.mean_field("tanh", weight_var, bias_var)
        print(f"  {phase:<9} sigma_w^2={weight_var:.4f} chi_1={mf.chi_1:.3f} xi_c={mf.xi_c:.3g}")
        schemes.append(f"meanfield:sw2={weight_var:.4f}:sb2={bias_var}")
    # lr 0.005: at 0.01 one critical seed of 3 fell back to chance after 100 steps as its
    # training loss rose (docs/diagnostics.md), an optimization instability
    options = f"{_mlp(50, 256, 'tanh')} --schemes {','.join(schemes)} {_sgd(0.005)}"
    compare("edge", "Edge of chaos, SGD 0.005 m0.9", options, args)


def forget(args) -> None:
    """Jozefowicz et al. 2015: the LSTM forget-gate bias and a long memory."""
    # the task's defaults: 25 tokens (the first carried across 24 steps), LSTM of 32 units,
    # AdamW lr 0.01, batch 64, 4 evaluations 200 steps apart (experiments/tasks.py)
    title = "Remember the first of 25 tokens: LSTM forget bias, AdamW 0.01"
    compare("forget", title, "--task first-token", args)


def saxe(args) -> None:
    """Saxe et al. 2014: deep linear nets learn in a depth-independent time from orthogonal."""
    print("\nSaxe et al. 2014: deep linear nets (width 16) on a linear teacher, full-batch GD")
    seeds = f"--seeds {args.seeds} --first-seed {args.first_seed}"
    _run(f"deeplinear --depths 1,2,4,8,16,32 --schemes orthogonal,lecun_normal {seeds}", args)


def jacobian(args) -> None:
    """Saxe et al. 2014, Pennington et al. 2017: input-output Jacobian spectra at init."""
    print("\nJacobian singular values of 32-layer MLPs (width 128) on 16 Gaussian inputs")
    seeds = f"--seeds {args.seeds} --first-seed {args.first_seed}"
    cases = (("linear", "orthogonal,lecun_normal"), ("tanh", "orthogonal,xavier_normal"),
             ("relu", "kaiming_normal,orthogonal:gain=1.4142135623730951"))  # fmt: skip
    for activation, schemes in cases:
        square = " --model-arg in_features=128 --model-arg num_classes=128"  # 128 x 128 maps
        model = _mlp(32, 128, activation) + square
        out = Path(args.out) / f"jacobian_{activation}"
        command = f"spectrum {model} --schemes {schemes} --inputs gaussian {seeds} --out {out}"
        _run(command, args)


EXPERIMENTS = {
    f.__name__: f
    for f in (glorot, he, zeros, lsuv, fixup, zero_gamma, selu, edge, forget, saxe, jacobian)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scheme (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default="runs/classic")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, run in EXPERIMENTS.items():
        if args.experiment in (name, "all"):
            run(args)
    if FAILED:
        print("\nfailed:\n  " + "\n  ".join(FAILED), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
