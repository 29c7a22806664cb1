"""``initlab compare``: train every scheme x seed, print the table, write results and a report."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from initlab.cli import FLAGS as COMMON_FLAGS
from initlab.cli import print_error
from initlab.cli._tasks import TASK_FLAGS, add_task_options, record_given
from initlab.cli.train import (
    add_common_options,
    add_tensorboard_option,
    check_tensorboard,
    compare_config,
    data_source,
    fraction,
    learning_rates,
    model_flags,
    model_params,
    open_fraction,
    positive_int,
    train_config,
)

HELP = "compare initialization schemes: train each over several seeds, table, report, figures"
DEFAULT_SCHEMES = "xavier-then-he,zeros,normal,xavier_uniform,kaiming_uniform,orthogonal"
#: The flag that sets each library argument an ArgumentError may name (printed before it).
FLAGS = {
    **COMMON_FLAGS,
    "scheme": "--schemes",
    "schemes": "--schemes",
    "seeds": "--seeds",
    "train_subset": "--train-subset",
    "test_subset": "--test-subset",
    "pretrain.dataset": "--pretrain-dataset",
    "pretrain.data_dir": "--pretrain-data-dir",
    "pretrain.subset": "--pretrain-subset",
    "pretrain.epochs": "--pretrain-epochs",
    "lr_grid": "--lr-grid",
    "val_fraction": "--val-fraction",
    **TASK_FLAGS,
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help=HELP,
        description=(
            "Train a model (a zoo name, or your own factory: --model MODULE:FUNCTION "
            "--model-arg NAME=VALUE) under several initialization schemes and seeds, print a table "
            "(final test accuracy mean ± std over seeds, best accuracy, loss after epoch 1, "
            "epochs to the target accuracy, diverged runs) and write config.json, "
            "results.jsonl, summary.csv, report.md and PNG figures into --out. "
            "Ctrl-C keeps every finished epoch; --resume DIR continues unfinished runs from "
            "their last finished epoch (training is deterministic). Runs of one model train "
            "together, "
            "stacked, unless --no-vectorize. Under `torchrun --nproc-per-node N -m initlab "
            "compare ...` the runs are split across the N processes and rank 0 writes the report."
        ),
    )
    add = parser.add_argument
    add(
        "--schemes",
        default=DEFAULT_SCHEMES,
        help="comma-separated schemes, see `initlab schemes` (`pretrained` pretrains on "
        "--pretrain-dataset, then fine-tunes with a new classifier head; default: %(default)s)",
    )
    add("--seeds", type=positive_int, default=3, help="seeds per scheme (default: %(default)s)")
    add("--first-seed", type=int, default=0, help="first run seed (default: %(default)s)")
    add(
        "--target-accuracy",
        type=fraction,
        default=0.97,
        help="test accuracy (fraction) whose first epoch the table reports (default: %(default)s)",
    )
    add(
        "--out",
        default=None,
        help="output directory (default: runs/compare-<UTC timestamp>)",
    )
    add(
        "--resume",
        default=None,
        metavar="DIR",
        help="resume the sweep in DIR with its saved config; other options are ignored "
        "(default: none, start a new sweep)",
    )
    add(
        "--lr-grid",
        type=learning_rates,
        default=None,
        metavar="LR,LR,...",
        help="comma-separated learning rates, e.g. 1e-4,3e-4,1e-3,3e-3: every scheme trains at "
        "each (schemes x rates x seeds) and gets the rate of the highest mean validation "
        "accuracy after the final epoch; the table reports the test results at that rate "
        "(default: none, every run at --lr, no validation split)",
    )
    add(
        "--val-fraction",
        type=open_fraction,
        default=0.1,
        help="with --lr-grid: the fraction of the training data held out (seeded with "
        "--first-seed) to choose the rates on (default: %(default)s)",
    )
    add("--no-progress", action="store_true", help="hide the progress bar (default: shown)")
    add(
        "--no-vectorize",
        action="store_true",
        help="train the runs one after the other instead of together, stacked over runs "
        "(default: stacked where the model allows; same numbers within float rounding)",
    )
    add_pretrain_options(parser)
    add_common_options(parser)
    add_tensorboard_option(parser)
    add_task_options(parser, metric=True)
    parser.set_defaults(func=run)
    record_given(parser)


def run(args: argparse.Namespace) -> int:
    from initlab.cli._sweep import call_sweep
    from initlab.cli._tasks import apply_task_defaults
    from initlab.cli._validate import output_dir, split_schemes
    from initlab.experiments.distributed import is_main_process
    from initlab.experiments.pretrain import PretrainConfig
    from initlab.experiments.sweep import run_sweep
    from initlab.reports.compare import format_conclusions, format_table

    if args.resume is not None:
        _warn_ignored(getattr(args, "given", []))
    out = args.resume or args.out or time.strftime("runs/compare-%Y%m%d-%H%M%S", time.gmtime())
    try:
        check_tensorboard(args)  # before anything runs
        config = None
        if args.resume is not None:
            _check_saved_config(Path(out) / "config.json")
        else:
            output_dir(out)
            task_params = apply_task_defaults(args)
            _check_subsets(args)
            config = compare_config(
                args,
                schemes=split_schemes(args.schemes, source=True),
                seeds=args.seeds,
                first_seed=args.first_seed,
                model_params={**task_params, **model_params(args.model_param)},
                target_accuracy=args.target_accuracy,
                train=train_config(args, args.first_seed),
                pretrain=PretrainConfig(
                    dataset=args.pretrain_dataset,
                    data_dir=args.pretrain_data_dir,
                    subset=args.pretrain_subset,
                    epochs=args.pretrain_epochs,
                ),
                lr_grid=args.lr_grid,
                val_fraction=args.val_fraction,
                task=args.task,
                text_file=None if args.text_file is None else str(Path(args.text_file).resolve()),
                seq_len=args.seq_len,
                metric=args.metric,
            )
        result = call_sweep(
            "compare",
            out,
            args.resume is not None,
            lambda: run_sweep(
                config,
                out,
                resume=args.resume is not None,
                progress=not args.no_progress,
                vectorize=not args.no_vectorize,
                tensorboard=args.tensorboard,
            ),
        )
        if isinstance(result, int):  # stopped, and said why
            return result
    except (ValueError, TypeError, OSError) as error:  # OSError: DownloadError, missing files
        from initlab.cli._validate import in_flags

        flags = model_flags(FLAGS, args)
        return print_error("compare", in_flags(error, flags, args.task), flags)
    if not is_main_process():  # under torchrun, rank 0 prints for all
        return 0
    print(format_table(result.rows, result.config.target_accuracy))
    print("\n" + format_conclusions(result.rows))
    print(f"\nWrote {result.out_dir}: config.json, results.jsonl, summary.csv, report.md, figures")
    return 0


def _check_saved_config(path: Path) -> None:
    """Read the ``config.json`` a --resume continues; raise naming the file and what is wrong.

    A missing file is left to :func:`~initlab.experiments.sweep.run_sweep`, which says how to
    start a sweep there.

    Raises:
        ValueError: the file is not JSON, not an object, lacks a key or holds an invalid value.
    """
    from initlab.experiments.sweep import CompareConfig

    if not path.is_file():
        return
    try:
        text = path.read_text(encoding="utf-8")
        if not isinstance(json.loads(text), dict):
            raise ValueError("it holds no JSON object")
        CompareConfig.from_json(text)
    except json.JSONDecodeError as error:
        problem = f"it is not valid JSON ({error})"
    except KeyError as error:
        problem = f"it lacks the key {error.args[0]!r}"
    except (ValueError, TypeError) as error:
        if getattr(error, "argument", None) == "model" and "model factory" in str(error):
            raise ValueError(  # the file is fine: the sweep's own model no longer imports
                f"cannot resume from {path}: {error}; run --resume where that module imports, "
                "as it did when the sweep started"
            ) from None
        problem = str(error)
    else:
        return
    raise ValueError(
        f"cannot resume from {path}: {problem}; it must be the config.json that initlab compare "
        "wrote (restore it, or start a new sweep with --out)"
    )


def _check_subsets(args: argparse.Namespace) -> None:
    """Load the dataset once up front if a subset size is given, and check it fits."""
    from initlab.cli._validate import subset_sizes
    from initlab.datasets.sources import load_source

    if args.train_subset is None and args.test_subset is None or args.task == "char-lm":
        return  # a language model's subsets count windows of its corpus
    name, data = data_source(args)
    dataset = load_source(name, data, data_dir=args.data_dir, download=args.download)
    subset_sizes(dataset, args.train_subset, args.test_subset)


def _warn_ignored(given: list[str]) -> None:
    """Log the options given with --resume that it ignores (the saved config.json rules)."""
    kept = ("--resume", "--no-progress", "--no-vectorize", "--tensorboard")
    ignored = [g for g in given if g not in kept]
    if ignored:
        logging.warning(
            "--resume uses the sweep's saved config.json; ignoring %s", ", ".join(ignored)
        )


def add_pretrain_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of the source model that schemes loading a checkpoint (``pretrained``)
    start from: where it is pretrained, and for how long."""
    add = parser.add_argument
    add(
        "--pretrain-dataset",
        default="mnist",
        help="dataset the `pretrained` scheme pretrains on (default: %(default)s, embedded)",
    )
    add(
        "--pretrain-data-dir",
        default=None,
        help="directory holding the pretraining dataset (default: none, embedded MNIST)",
    )
    add(
        "--pretrain-subset",
        type=positive_int,
        default=None,
        help="pretrain on a seeded random subset of this size (default: all)",
    )
    add(
        "--pretrain-epochs",
        type=positive_int,
        default=2,
        help="pretraining epochs (default: %(default)s)",
    )
