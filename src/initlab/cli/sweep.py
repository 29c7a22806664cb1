"""``initlab sweep``: train a model family over a grid of axes; phase diagrams and a report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from initlab.cli import FLAGS as COMMON_FLAGS
from initlab.cli import print_error
from initlab.cli.train import (
    add_common_options,
    compare_config,
    model_flags,
    model_params,
    non_negative_int,
    positive_int,
    train_config,
)

HELP = "train a model over a grid (depth, width, activation, sw2, sb2, scheme, lr, optimizer)"
FLAGS = {
    **COMMON_FLAGS,
    "grid": "--grid",
    "grid axis": "--grid",
    "resume": "--resume",
    "budget_minutes": "--budget-minutes",
    "metric": "--metric",
    "eval_steps": "--eval-steps",
    "seeds": "--seeds",
    "scheme": "--scheme",
    "schemes": "--scheme",
    "train_subset": "--train-subset",
    "test_subset": "--test-subset",
}
#: What the heatmaps can show: :data:`initlab.reports.phase.METRICS` (not imported here, to keep
#: ``--help`` fast).
METRICS = ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "full_train_loss")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help=HELP,
        description=(
            "Train a model family (default: the zoo's mlp) over the product of --grid axes, "
            "every cell over --seeds seeds. Cells that differ only in sw2, sb2, scheme or lr "
            "train together, stacked, each run at its own rate (no validation split held out); "
            "each other combination (depth, width, activation, optimizer) is a group, run as "
            "an `initlab compare` into OUT/groups/NAME. Writes "
            "grid.json, cells.jsonl (a line per run as its group ends), report.md and heatmaps "
            "with the mean-field overlays (order-to-chaos line, 6 xi_c trainable depth). "
            "sw2/sb2 cells use the mean-field Gaussian scheme meanfield:sw2=..:sb2=.. "
            "(weights N(0, sw2/fan_in), biases N(0, sb2)). Ctrl-C keeps finished epochs; "
            "--resume OUT continues. With --budget-minutes a grid estimated to take longer "
            "is refused before anything runs."
        ),
    )
    add = parser.add_argument
    add(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="an axis and its values, repeatable: depth, width (ints), activation, sw2, sb2 "
        "(variances), scheme, lr, optimizer; e.g. --grid depth=10,20,40 --grid sw2=1,1.5,2 "
        "--grid sb2=0.05 (a single value fixes it)",
    )
    add("--seeds", type=positive_int, default=3, help="seeds per cell (default: %(default)s)")
    add("--first-seed", type=int, default=0, help="first run seed (default: %(default)s)")
    add(
        "--scheme",
        default="auto",
        help="the scheme of cells without a scheme/sw2/sb2 axis (default: %(default)s)",
    )
    add(
        "--budget-minutes",
        type=float,
        default=None,
        help="refuse, before anything runs, a grid whose estimated time (a timed probe of the "
        "largest model's training steps, scaled by parameter count) exceeds this (default: none)",
    )
    add(
        "--metric",
        choices=METRICS,
        default="test_accuracy",
        help="what the heatmaps show: at the end of each epoch test_accuracy, test_loss, "
        "train_loss (the epoch's mean batch loss); at --eval-steps train_accuracy, "
        "full_train_loss (default: %(default)s)",
    )
    add(
        "--step",
        type=non_negative_int,
        default=None,
        help="show each run's last evaluation at or before this optimizer step (the ends of "
        "epochs, or --eval-steps; default: the last)",
    )
    add(
        "--eval-steps",
        type=_steps,
        default=(),
        metavar="STEP,STEP,...",
        help="optimizer steps (from the start) after which every run measures its training "
        "accuracy and full-training-set loss, for --metric train_accuracy or full_train_loss; "
        "each costs a forward pass over the training set (default: none)",
    )
    add("--out", default=None, help="output directory (default: runs/sweep-<UTC timestamp>)")
    add(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the grid in DIR with its saved grid.json (other options are ignored)",
    )
    add("--no-progress", action="store_true", help="hide the progress bars")
    add(
        "--no-vectorize",
        action="store_true",
        help="train runs one after the other instead of stacked (default: stacked)",
    )
    add_common_options(parser)
    parser.set_defaults(func=run, model="mlp")


def run(args: argparse.Namespace) -> int:
    from initlab.experiments.grid import GridConfig, GridExistsError, parse_axis, run_grid
    from initlab.experiments.results import OutDirInUseError

    out = args.resume or args.out or time.strftime("runs/sweep-%Y%m%d-%H%M%S", time.gmtime())
    try:
        config = None
        if args.resume is None:
            if not args.grid:
                raise _argument("grid", "give at least one axis, e.g. --grid depth=10,20")
            for text in args.grid:
                _check_axis_name(text)
            axes = dict(parse_axis(text) for text in args.grid)
            if len(axes) != len(args.grid):
                raise _argument("grid", f"an axis is given twice: {args.grid}")
            base = compare_config(
                args,
                schemes=(args.scheme,),
                seeds=args.seeds,
                first_seed=args.first_seed,
                model_params=model_params(args.model_param),
                train=dataclasses.replace(
                    train_config(args, args.first_seed), eval_steps=args.eval_steps
                ),
            )
            config = GridConfig(axes, base, args.budget_minutes)
            _check_cells(config)
        elif not (Path(out) / "grid.json").is_file():
            raise _argument(
                "resume",
                f"{out} has no grid.json, so there is no grid to resume; start one with "
                f"initlab sweep --grid ... --out {out}",
            )
        path = run_grid(
            config,
            out,
            resume=args.resume is not None,
            progress=not args.no_progress,
            vectorize=not args.no_vectorize,
            metric=args.metric,
            step=args.step,
        )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted; finished epochs are kept. Continue with: initlab sweep --resume {out}",
            file=sys.stderr,
        )
        return 130
    except (GridExistsError, OutDirInUseError) as error:
        print(f"initlab sweep: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as error:
        flags = model_flags(FLAGS, args)
        if any(text.partition("=")[0] == "scheme" for text in args.grid):
            flags.update(scheme="--grid", schemes="--grid")  # the schemes came from the grid
        return print_error("sweep", error, flags)
    figures = sorted(p.name for p in Path(path).glob("*.png"))
    print(
        f"Wrote {path}: grid.json, cells.jsonl, groups/, report.md, "
        f"{len(figures)} heatmap{'' if len(figures) == 1 else 's'}"
    )
    for name in figures:
        print(f"  {name}")
    if not figures:
        print(_no_heatmap(path))
    return 0


def _check_axis_name(text: str) -> None:
    """Refuse an unknown axis in ``--grid NAME=...`` in the flag's words, with a close match."""
    import difflib

    from initlab.experiments.grid import AXES

    name = text.partition("=")[0]
    if name in AXES:
        return
    close = difflib.get_close_matches(name, list(AXES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise _argument("grid", f"unknown axis {name!r} in {text!r}{hint}; the axes: {', '.join(AXES)}")


def _check_cells(config) -> None:
    """Build every cell's model once (on the meta device: no memory, no random draws), so a
    value the model refuses (``--grid activation=tanh,foo``) stops the grid before its first
    group trains.

    Raises:
        ArgumentError: (argument ``grid``) a cell's model refuses its values (ValueError,
            TypeError). The model failing without the grid's values, or failing on the meta
            device otherwise, is left to the run (its own flags, e.g. --model-arg).
    """
    import torch

    from initlab.experiments.grid import GROUP_AXES
    from initlab.zoo.models import build_model

    base = config.base
    try:
        with torch.device("meta"):
            build_model(base.model, **base.model_params)
    except Exception:  # noqa: BLE001 - not the grid's fault (or a model the meta device cannot
        return  # build): the run reports it under its own flag
    seen = set()
    for cfg, cells in config.groups().values():
        key = repr(sorted(cfg.model_params.items()))
        if key in seen:
            continue
        seen.add(key)
        cell = next(iter(cells.values()))
        values = " ".join(f"{k}={cell[k]}" for k in GROUP_AXES if k in cell)
        try:
            with torch.device("meta"):
                build_model(cfg.model, **cfg.model_params)
        except (ValueError, TypeError) as error:
            raise _argument(
                "grid", f"the cell {values} fails: model {cfg.model!r} refuses it: {error}"
            ) from None
        except Exception:  # noqa: BLE001 - e.g. an operation the meta device lacks: the run checks
            continue


def _no_heatmap(path) -> str:
    """Why a finished grid drew no heatmap: the axis pairs that are drawn, and this grid's."""
    import json

    from initlab.reports.phase import PAIRS

    axes = json.loads((Path(path) / "grid.json").read_text())["axes"]
    varied = [k for k, v in axes.items() if len(v) > 1]
    pairs = ", ".join(f"{x}-{y}" for x, y in PAIRS)
    return (
        f"No heatmap: one is drawn for each of the axis pairs {pairs} that the grid varies both "
        f"of (with at least two values each); this grid varies "
        f"{', '.join(varied) or 'no axis'}. report.md has every cell's numbers."
    )


def _steps(text: str) -> tuple[int, ...]:
    """Parse ``100,200,300``: optimizer steps >= 1."""
    return tuple(positive_int(part) for part in text.split(","))


def _argument(argument: str, message: str):
    from initlab._checks import ArgumentError

    return ArgumentError(argument, message)
