"""``initlab schemes``: list the initialization schemes, one line each, with their aliases."""

from __future__ import annotations

import argparse

HELP = "list the initialization schemes that train and compare accept, one line each"
# What a scheme that loads a source checkpoint needs from the command line.
SOURCE_NOTE = (
    "compare only: the source is the model pretrained on --pretrain-dataset "
    "(--pretrain-data-dir, --pretrain-subset, --pretrain-epochs)"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schemes",
        help=HELP,
        description=HELP + ". Options go after the name: name:key=value, e.g. normal:std=0.1. "
        "An alias (an old name) is accepted wherever the name is.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.schemes.registry import SCHEMES

    width = max(len(name) for name in SCHEMES)
    for name, scheme in SCHEMES.items():
        line = scheme.summary + (f"; {SOURCE_NOTE}" if scheme.needs_source else "")
        if scheme.aliases:
            line += f" (alias: {', '.join(scheme.aliases)})"
        print(f"{name.ljust(width)}  {line}")
    return 0
