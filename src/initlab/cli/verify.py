"""``initlab verify``: check a model's tensors at step zero against an init receipt (or alone)."""

from __future__ import annotations

import argparse
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
            "module computes. Prints one line per tensor. Exit status 0 if nothing failed, 1 "
            "if a tensor failed a check, 2 on bad input (unreadable receipt, receipt of "
            "another model, unknown model)."
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
        "--json", default=None, metavar="PATH", help="also write the report as JSON to PATH"
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
        print(f"initlab verify: error: MODEL_SPEC: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ImportError, AttributeError, OSError) as error:
        print(f"initlab verify: error: {error}", file=sys.stderr)
        return 2
    print(report.table(only_problems=not args.all))
    if args.json:
        try:
            atomic_write(args.json, json.dumps(report.to_dict(), indent=1))
        except OSError as error:
            print(f"initlab verify: error: cannot write --json {args.json}: {error}",
                  file=sys.stderr)  # fmt: skip
            return 2
        print(f"report written to {args.json}")
    return 0 if report.ok else 1


def _resolve(spec: str, model_args: list[str]):
    """A checkpoint's state dict (an existing path), else a zoo model or factory's module."""
    from initlab.pretrained.sources import read_state_dict
    from initlab.zoo.factory import parse_model_args
    from initlab.zoo.models import build_model

    if os.path.exists(spec):
        if model_args:
            raise ValueError("--model-arg applies to a zoo model or factory, not a checkpoint")
        state, _ = read_state_dict(spec)  # safetensors, or torch.load(weights_only=True)
        return state
    return build_model(spec, **parse_model_args(model_args))
