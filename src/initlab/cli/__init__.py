"""The ``initlab`` command line: parses arguments and calls the library, nothing more.

Each subcommand lives in its own module ``initlab.cli.<name>`` with ``register(subparsers)``,
which adds its parser and sets ``func`` to a function taking the parsed arguments and returning
an exit status. Library imports happen inside those functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging

COMMANDS: tuple[str, ...] = (
    "train",
    "compare",
    "schemes",
    "diagnose",
    "gain",
    "plan",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="initlab",
        description="Initialize neural-network parameters, and measure whether it worked.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"initlab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"initlab.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from initlab import __version__  # the package's own, also for an uninstalled checkout

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    return int(args.func(args) or 0)
