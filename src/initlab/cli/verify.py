"""``initlab verify``: check a model's tensors at step zero against an init receipt (or alone)."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys

from initlab._files import atomic_write

HELP = (
    "check that a model's weights are what was planned or loaded (init receipt), or free of "
    "uninitialized-memory signatures; non-zero exit on any failure"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help=HELP,
        description=(
            "Check every parameter and buffer of MODEL_SPEC against RECEIPT (written by "
            "InitPlan.apply(receipt=...) or load_pretrained(receipt=...)): content hashes, "
            "dtypes, ties, planned distributions; and, with or without a receipt: no NaN or "
            "inf, no subnormal or huge values (uninitialized memory), no two identical "
            "independent draws, no shards drawn with one seed, buffers equal to what their "
            "module computes. Prints one line per tensor that failed or warned (--all: every "
            "tensor). Exit status 0 if nothing failed, 1 if a tensor failed a check, 2 on bad "
            "input (unreadable receipt, receipt of another model, unknown model, missing file)."
        ),
    )
    parser.add_argument(
        "model",
        metavar="MODEL_SPEC",
        help="a checkpoint file (.safetensors; .pt/.pth/.bin read with weights_only=True) or "
        "Hugging Face model directory, a zoo model name (initlab models), or MODULE:FUNCTION "
        "returning an nn.Module",
    )
    parser.add_argument(
        "receipt", metavar="RECEIPT", nargs="?", default=None, help="the receipt JSON file"
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a keyword argument of the zoo model or factory, repeatable (default: none)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="print every tensor, not only those that failed or warned (default: problems)",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="also write the report as JSON to PATH (default: none)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab._checks import ArgumentError
    from initlab.cli._validate import output_file
    from initlab.policy.verify import verify

    try:
        if args.json:
            output_file(args.json, "--json")
        model = _resolve(args.model, args.model_arg)
        report = verify(model, args.receipt)
    except ArgumentError as error:
        print(f"initlab verify: error: {_flag(error.argument)}: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ImportError, AttributeError, OSError) as error:
        print(f"initlab verify: error: {error}", file=sys.stderr)
        return 2
    if args.all or report.failures or report.warnings:
        print(report.table(only_problems=not args.all))
    else:  # no header over no rows: the summary says it all
        print(f"({report.summary()}; --all lists every tensor)")
    if args.json:
        try:
            atomic_write(args.json, json.dumps(report.to_dict(), indent=1))
        except OSError as error:
            print(f"initlab verify: error: cannot write --json {args.json}: {error}",
                  file=sys.stderr)  # fmt: skip
            return 2
        print(f"report written to {args.json}")
    return 0 if report.ok else 1


# What the command line calls the library arguments an ArgumentError may name.
_FLAGS = {"model": "MODEL_SPEC", "model_params": "--model-arg", "receipt": "RECEIPT"}

# Names that say "a file" rather than a zoo model: a missing one is reported as missing.
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".json")


def _flag(argument: str) -> str:
    """The positional or flag that set the library argument ``argument``."""
    return _FLAGS.get(argument, argument)


def _resolve(spec: str, model_args: list[str]):
    """A checkpoint's state dict (an existing path), else a zoo model or factory's module.

    Raises:
        ArgumentError: ``spec`` names a file that does not exist (a checkpoint suffix or a
            path separator), is no zoo model or factory (argument ``model``), or a
            ``--model-arg`` is malformed or refused by the model (argument ``model_params``).
        ValueError: the checkpoint cannot be read; a pickle that needs full unpickling is
            refused (the command never unpickles).
    """
    from initlab._checks import ArgumentError
    from initlab.pretrained.sources import PickleRefusedError, read_state_dict
    from initlab.zoo.factory import is_factory_spec, parse_model_args
    from initlab.zoo.models import MODEL_ALIASES, MODELS, build_model

    if os.path.exists(spec):
        if model_args:
            raise ArgumentError(
                "model_params",
                f"applies to a zoo model or factory; MODEL_SPEC {spec!r} is a checkpoint",
            )
        try:
            state, _ = read_state_dict(spec)  # safetensors, or torch.load(weights_only=True)
        except PickleRefusedError as error:  # its advice, trust_pickle=True, has no flag here
            text = str(error).split(", or, only if you trust the file")[0]
            raise ValueError(f"{text}; initlab verify reads only tensors, never pickles") from None
        return state
    if not is_factory_spec(spec) and (spec.endswith(_CHECKPOINT_SUFFIXES) or os.sep in spec):
        raise ArgumentError(
            "model", f"no such file or directory {spec!r} (a checkpoint or Hugging Face directory)"
        )
    params = parse_model_args(model_args)
    if not is_factory_spec(spec) and spec not in MODELS and spec not in MODEL_ALIASES:
        names = [*MODELS, *MODEL_ALIASES]
        close = difflib.get_close_matches(spec, names, n=1)
        raise ArgumentError(
            "model",
            f"{spec!r} is neither an existing checkpoint file or directory, nor a zoo model "
            f"({', '.join(names)}; see initlab models), nor MODULE:FUNCTION"
            + (f" (did you mean {close[0]!r}?)" if close else ""),
        )
    try:
        return build_model(spec, **params)
    except ArgumentError as error:  # a value the model refuses (depth=0): its own argument
        if error.argument in _FLAGS:
            raise
        raise ArgumentError("model_params", str(error)) from None
    except TypeError as error:  # a parameter the model does not take, or of the wrong type
        raise ArgumentError("model_params", str(error)) from None
