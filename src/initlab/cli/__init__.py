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


class _Parser(argparse.ArgumentParser):
    """The top-level parser; arguments no parser took are reported in the subcommand's usage.

    argparse leaves them to the top level, whose usage lists no subcommand option, so
    ``initlab train --no-progress`` printed ``usage: initlab [-h] ...`` instead of train's.
    """

    commands: dict[str, argparse.ArgumentParser]  # set by build_parser

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.commands[parsed.command].error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="initlab",
        description="Initialize neural-network parameters, and measure whether it worked.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"initlab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"initlab.cli.{name}").register(sub)
    parser.commands = sub.choices
    return parser


def _version() -> str:
    from initlab._version import __version__  # the package's own, also uninstalled

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    return int(args.func(args) or 0)
