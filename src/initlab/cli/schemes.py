"""``initlab schemes``: list the initialization schemes, one line each."""

from __future__ import annotations

import argparse

HELP = "list the initialization schemes that train and compare accept, one line each"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schemes",
        help=HELP,
        description=HELP + ". Options go after the name: name:key=value, e.g. normal:std=0.1.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.experiments.schemes import SCHEMES

    width = max(len(name) for name in SCHEMES)
    for name, scheme in SCHEMES.items():
        print(f"{name.ljust(width)}  {scheme.summary}")
    return 0
