"""``initlab plan``: print (and optionally save) the initialization plan of any model factory."""

from __future__ import annotations

import argparse
import json
import re
import sys

from initlab._files import atomic_write

# The library arguments this command sets, by the flag that sets them (an ArgumentError names
# the argument; the message is printed after the flag, never rewritten).
_FLAGS = {"example_input": "--input-shape", "policy": "--policy", "model_params": "--model-arg"}
HELP = (
    "print the automatic initialization plan of a model: rule, fans, std and reason per parameter"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan",
        help=HELP,
        description=(
            "Build a model by calling MODULE:FACTORY (any importable callable returning an "
            "nn.Module, called with the --model-arg keyword arguments), plan its "
            "initialization and print one row per parameter. With --input-shape the model "
            "runs once on a random input so that functional activations and residual "
            "branches are found; without it activations are read from the module structure. "
            "Nothing is written to the model."
        ),
    )
    parser.add_argument(
        "factory", metavar="MODULE:FACTORY", help="e.g. torchvision.models:resnet18"
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a keyword argument of the factory, repeatable; VALUE is a Python literal, never "
        "evaluated, or a bare word read as text, e.g. num_classes=10 (default: none)",
    )
    parser.add_argument(
        "--input-shape",
        default=None,
        help="example input shape, sizes separated by ',' or 'x', e.g. 1,1,28,28 or 1x784 "
        "(default: none, structure only); a forward that fails with it is an error",
    )
    parser.add_argument(
        "--input-dtype",
        default="float",
        choices=("float", "long"),
        help="example input dtype: float (standard normal) or long (token ids 0) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--policy",
        default="auto",
        help="preset: auto, torch, gpt2, bert, keras, flax (default: %(default)s)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a policy option, repeatable, VALUE read as JSON else as text, e.g. "
        "zero_init_residual=true, relu_bias=0.01, mode=fan_out (default: none)",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the plan as JSON to PATH"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from initlab._checks import ArgumentError
    from initlab.cli._validate import output_file
    from initlab.policy import plan
    from initlab.zoo.factory import build_factory_model, parse_model_args

    try:
        if args.json:  # before the work, which otherwise ended in a traceback on writing
            output_file(args.json, "--json")
        model = build_factory_model(args.factory, parse_model_args(args.model_arg))
        options = dict(_option(text) for text in args.option)
        example = None
        if args.input_shape:
            shape = _shape(args.input_shape)
            example = (
                torch.randn(shape) if args.input_dtype == "float" else torch.zeros(shape).long()
            )
        result = plan(model, args.policy, example_input=example, **options)
    except ArgumentError as error:
        print(f"initlab plan: error: {_flag(error.argument, args)}: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ImportError, AttributeError) as error:
        print(f"initlab plan: error: {error}", file=sys.stderr)
        return 2
    print(result.table())
    if args.json:
        try:
            atomic_write(args.json, json.dumps(result.to_dict(), indent=1))
        except OSError as error:  # e.g. no permission, which output_file does not check
            print(f"initlab plan: error: cannot write --json {args.json}: {error}", file=sys.stderr)
            return 2
        print(f"plan written to {args.json}")
    return 0


def _flag(argument: str, args: argparse.Namespace) -> str:
    """Name what set the library argument ``argument``: its flag and the value given, or
    ``--option NAME`` for a policy option; the argument itself for anything else."""
    import dataclasses

    from initlab.policy import PolicyOptions

    if argument == "model":  # the positional MODULE:FACTORY; the message quotes it
        return "MODULE:FACTORY"
    flag = _FLAGS.get(argument)
    if flag is not None:
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        return f"{flag} {value}" if value else flag
    if argument in {f.name for f in dataclasses.fields(PolicyOptions)}:
        return f"--option {argument}"
    return argument


def _shape(text: str) -> tuple[int, ...]:
    """Parse ``1,1,28,28`` or ``1x784`` (spaces allowed) into positive integer sizes."""
    parts = [p.strip() for p in re.split(r"[,xX]", text)]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            "--input-shape must be positive integers separated by ',' or 'x', e.g. 1,784 or "
            f"1x1x28x28; got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--option must be KEY=VALUE; got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
