"""``initlab models``: the zoo, each model with its parameters, their defaults and its aliases."""

from __future__ import annotations

import argparse
import inspect

HELP = "list the zoo models with their parameters (--model-arg NAME=VALUE), defaults and aliases"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help=HELP,
        description=(
            "List every zoo model that --model accepts, with its aliases, its one-line "
            "description and its keyword arguments with their defaults (read from the "
            "signature), which --model-arg NAME=VALUE sets. With MODULE:FUNCTION, list the "
            "keyword arguments of your own factory instead."
        ),
    )
    parser.add_argument(
        "factory",
        nargs="?",
        default=None,
        metavar="MODULE:FUNCTION",
        help="show the parameters of this factory instead of the zoo (default: the zoo)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.cli import print_error

    try:
        print(format_models(args.factory))
    except (ValueError, TypeError) as error:
        return print_error("models", error, {"model": "MODULE:FUNCTION"})
    return 0


def format_models(factory: str | None = None) -> str:
    """The listing: per model a line ``NAME (alias: ...) - description`` and one line per
    parameter ``  NAME = DEFAULT`` (``(required)`` without a default).

    Raises:
        ArgumentError: ``factory`` does not resolve (:func:`initlab.zoo.factory.resolve_factory`).
    """
    from initlab.zoo.factory import resolve_factory
    from initlab.zoo.models import MODELS, model_aliases, model_defaults

    if factory is not None:
        doc = (inspect.getdoc(resolve_factory(factory)) or "").strip()
        head = f"{factory}" + (f" - {doc.splitlines()[0]}" if doc else "")
        return "\n".join([head, *_params(model_defaults(factory))])
    lines = []
    for name in sorted(MODELS):
        aliases = model_aliases(name)
        doc = (inspect.getdoc(MODELS[name]) or "").strip().splitlines()
        alias = f" (alias: {', '.join(aliases)})" if aliases else ""
        lines.append(f"{name}{alias} - {doc[0] if doc else ''}".rstrip(" -"))
        lines.extend(_params(model_defaults(name)))
    lines.append(
        "\nSet a parameter with --model NAME --model-arg PARAM=VALUE (a Python literal, e.g. "
        "--model cnn --model-arg channels=[8,16]); --model MODULE:FUNCTION trains your own."
    )
    return "\n".join(lines)


def _params(defaults: dict) -> list[str]:
    if not defaults:
        return ["  (no parameters)"]
    width = max(len(name) for name in defaults)
    return [
        f"  {name.ljust(width)} = "
        + ("(required)" if default is inspect.Parameter.empty else repr(default))
        for name, default in defaults.items()
    ]
