"""``initlab transfer``: does the learning rate tuned at one width stay right at another?"""

from __future__ import annotations

import argparse
import math
import sys
import time

from initlab.cli import print_error
from initlab.cli.train import positive_int

HELP = "learning-rate transfer across width (and depth) per parameterization: sweep, verdict"
#: The flag that sets each library argument an ArgumentError may name.
FLAGS = {
    "model": "--model",
    "task": "--task",
    "parameterizations": "--parameterizations",
    "parameterization": "--parameterizations",
    "widths": "--widths",
    "depths": "--depths",
    "base_width": "--base-width",
    "base": "--base-width",
    "base_depth": "--base-depth",
    "lrs": "--lr-grid",
    "steps": "--steps",
    "seeds": "--seeds",
    "device": "--device",
    "resume": "--resume",
    "optimizer": "--optimizer",
    "batch_size": "--batch-size",
    "model_params": "--model-arg",
    "out_dir": "--out",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "transfer",
        help=HELP,
        description=(
            "For each parameterization (sp, ntk, mup, umup, depth-mup, completep), each width "
            "(and with --depths each depth), each learning rate of the grid and each seed, "
            "train --steps steps and record the validation loss; print the loss-minimizing rate "
            "per width and how many grid steps it moves over the width range, with the verdict "
            "(muP: at most one grid step over 16x width; SP: at least two). The runs of one "
            "width train together, stacked over rates and seeds. Writes config.json, "
            "results.jsonl (as it goes), summary.csv, report.md and figures into --out; "
            "--resume DIR trains only the runs without a line. The default (MLP 784-w-w-10 on "
            "MNIST, sp and mup, widths 64..1024, 9 rates, 3 seeds, 200 Adam steps) takes about "
            "5 minutes on 2 idle CPU cores; its coordinate check alone (--coord-check-only) about "
            "15 seconds."
        ),
    )
    add = parser.add_argument
    add(
        "--model",
        default="mlp",
        help="mlp (784-w-...-w-10 on MNIST; depth: hidden layers), char-gpt (width d_model, "
        "depth n_layer, on Shakespeare) or your factory MODULE:FUNCTION taking width= (and "
        "depth=) (default: %(default)s)",
    )
    add(
        "--task",
        choices=("mnist", "char-lm"),
        default=None,
        help="the data: MNIST digits or next-character prediction on Shakespeare (default: "
        "char-lm for char-gpt, else mnist)",
    )
    add(
        "--parameterizations",
        default="sp,mup",
        help="comma-separated: sp, ntk, mup, umup, depth-mup, completep (default: %(default)s)",
    )
    add("--widths", type=_ints, default=(64, 128, 256, 512, 1024), metavar="W,W,...",
        help="hidden widths, at least two (default: 64,128,256,512,1024)")  # fmt: skip
    add("--depths", type=_ints, default=None, metavar="D,D,...",
        help="depths swept at the base width; needed by depth-mup and completep (default: "
        "none, the model's depth: 2)")  # fmt: skip
    add("--base-width", type=positive_int, default=None,
        help="the width the parameterizations scale from (default: the first width)")  # fmt: skip
    add("--base-depth", type=positive_int, default=None,
        help="depth of the width sweep and the base (default: first depth, else 2)")  # fmt: skip
    add("--lr-grid", type=_rates, default=None, metavar="LR,LR,...",
        help="learning rates, numbers or powers like 2^-8 (default: 2^-13,...,2^-5: one grid "
        "step is a factor 2)")  # fmt: skip
    add("--steps", type=positive_int, default=200, help="steps per run (default: %(default)s)")
    add("--seeds", type=positive_int, default=3,
        help="seeds per cell, from --first-seed (default: %(default)s)")  # fmt: skip
    add("--first-seed", type=int, default=0, help="first run seed (default: %(default)s)")
    add("--optimizer", default="adam", help="adam, adamw or sgd (default: %(default)s)")
    add("--batch-size", type=positive_int, default=64, help="default: %(default)s")
    add("--weight-decay", type=float, default=0.0, help="default: %(default)s")
    add("--model-arg", action="append", default=[], metavar="NAME=VALUE", dest="model_param",
        help="a further keyword argument of the model, repeatable")  # fmt: skip
    add("--device", default="cpu", choices=("cpu", "cuda", "auto"),
        help="where to train; auto picks cuda when available (default: %(default)s)")  # fmt: skip
    add("--out", default=None, help="output directory (default: runs/transfer-<UTC timestamp>)")
    add("--resume", default=None, metavar="DIR",
        help="resume the sweep in DIR (its saved config; other options ignored)")  # fmt: skip
    add("--coord-check-only", action="store_true",
        help="only the coordinate check (per-layer slopes against width), no sweep")  # fmt: skip
    parser.set_defaults(func=run)


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(positive_int(t.strip()) for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"give comma-separated integers; got {text!r}")
    return values


def _rates(text: str) -> tuple[float, ...]:
    """``1e-3,3e-3`` or ``2^-10,2^-9``: positive finite rates."""
    rates = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        try:
            if "^" in token:
                base, exponent = token.split("^", 1)
                value = float(base) ** float(exponent)
            else:
                value = float(token)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"{token!r} is not a rate (a number, or a power like 2^-8)"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"rates must be > 0; got {token!r}")
        rates.append(value)
    if not rates:
        raise argparse.ArgumentTypeError(f"give comma-separated rates; got {text!r}")
    return tuple(rates)


def _sweep(config, out: str, args: argparse.Namespace):
    """Run the sweep; after Ctrl-C say what is kept and how to go on, and return 130."""
    from pathlib import Path

    from initlab.experiments.transfer import run_transfer

    try:
        return run_transfer(config, out, resume=args.resume is not None)
    except KeyboardInterrupt:
        if (Path(out) / "config.json").is_file():
            message = (
                "Interrupted; the runs of finished cells are kept in results.jsonl; the others "
                f"train with: initlab transfer --resume {out}"
            )
        else:
            message = "Interrupted before anything was written; run the same command again"
        print(f"\n{message}", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    from initlab._checks import ArgumentError
    from initlab.cli._sweep import call_sweep
    from initlab.cli.train import model_params
    from initlab.experiments.transfer import (
        TransferConfig,
        default_lrs,
        run_coord_checks,
    )
    from initlab.reports.transfer import format_table

    out = args.resume or args.out or time.strftime("runs/transfer-%Y%m%d-%H%M%S", time.gmtime())
    try:
        config = None
        if args.coord_check_only and args.resume is not None:
            raise ArgumentError(
                "resume", "--coord-check-only starts no sweep, so there is nothing to resume: "
                "drop --resume (or --coord-check-only to go on with the sweep)"
            )  # fmt: skip
        if args.resume is None:
            _check_flags(args)
            config = TransferConfig(
                model=args.model,
                task=args.task,
                parameterizations=tuple(
                    p.strip() for p in args.parameterizations.split(",") if p.strip()
                ),
                widths=args.widths,
                depths=args.depths,
                base_width=args.base_width,
                base_depth=args.base_depth,
                lrs=args.lr_grid or default_lrs(),
                steps=args.steps,
                seeds=tuple(range(args.first_seed, args.first_seed + args.seeds)),
                optimizer=args.optimizer,
                batch_size=args.batch_size,
                weight_decay=args.weight_decay,
                model_params=model_params(args.model_param),
                device=args.device,
            )
        if args.coord_check_only:
            checks = run_coord_checks(config, out)
            for name, check in checks.items():
                print(f"{name}:\n{check.table()}\n")
            print(f"Wrote {out}: coord_check_<parameterization>.json and .png")
            return 0
        result = call_sweep(
            "transfer", out, args.resume is not None, lambda: _sweep(config, out, args)
        )
    except (ArgumentError, ValueError, TypeError) as error:
        return print_error("transfer", error, FLAGS)
    if isinstance(result, int):
        return result
    print(format_table(result.summary))
    print("\n" + "\n".join(f"- {s}" for s in result.summary.sentences()))
    print(f"\nWrote {result.out_dir}: config.json, results.jsonl, summary.csv, report.md, figures")
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse, in the flags' words, what the library would refuse in its arguments' words:
    an unknown parameterization, fewer than two distinct widths, ``--device cuda`` without
    CUDA.

    Raises:
        ArgumentError: (``parameterizations``, ``widths``, ``device``) as above.
    """
    import difflib

    import torch

    from initlab._checks import ArgumentError
    from initlab.experiments.transfer import PARAMETERIZATIONS

    for name in (p.strip() for p in args.parameterizations.split(",")):
        if name not in PARAMETERIZATIONS:
            close = difflib.get_close_matches(name, PARAMETERIZATIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ArgumentError(
                "parameterizations",
                f"unknown parameterization {name!r} in {args.parameterizations!r}{hint}; give "
                f"comma-separated names of: {', '.join(PARAMETERIZATIONS)}",
            )
    if len(set(args.widths)) < 2:
        raise ArgumentError(
            "widths",
            "give at least two distinct widths, e.g. --widths 64,1024 (the optimal rate is "
            f"compared across them); got --widths {','.join(map(str, args.widths))}",
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(
            "device",
            "CUDA is not available on this machine (PyTorch "
            f"{torch.__version__}); use --device cpu, or --device auto to take CUDA only "
            "where there is one",
        )
