"""The ``initlab`` command line: parses arguments and calls the library, nothing more.

Each subcommand lives in its own module ``initlab.cli.<name>`` with ``register(subparsers)``,
which adds its parser and sets ``func`` to a function taking the parsed arguments and returning
an exit status. Library imports happen inside those functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Mapping

COMMANDS: tuple[str, ...] = (
    "train",
    "compare",
    "sweep",
    "transfer",
    "schemes",
    "diagnose",
    "gain",
    "plan",
    "models",
    "verify",
    "spectrum",
    "deeplinear",
)


#: The flag that sets each library argument of the data and model options that ``train``,
#: ``compare`` and ``diagnose`` share; a command adds its own (:func:`print_error`).
FLAGS: dict[str, str] = {
    "bias_init": "--bias-init",
    "data": "--data",
    "data_dir": "--data-dir",
    "dataset": "--dataset",
    "device": "--device",
    "download": "--download",
    "model": "--model",
    "standardize": "--standardize",
    "model_params": "--model-arg",
}


def print_error(command: str, error: BaseException, flags: Mapping[str, str] = FLAGS) -> int:
    """Print ``error`` as one line ``initlab COMMAND: error: ...`` on stderr; return exit status 2.

    An error that names the library argument at fault (:class:`initlab._checks.ArgumentError`,
    e.g. ``data_dir``) is led by the flag that sets it, as argparse leads its own errors:
    ``initlab train: error: argument --data-dir: data_dir '/x' does not exist ...``. The
    message itself is printed as the library wrote it: the library names its arguments, the
    command line maps them (``flags``: argument -> flag), nothing rewrites the text.
    """
    from initlab._checks import ArgumentError  # here: importing the library is slow for --help

    flag = flags.get(error.argument) if isinstance(error, ArgumentError) else None
    where = f"argument {flag}: " if flag else ""
    print(f"initlab {command}: error: {where}{error}", file=sys.stderr)
    return 2


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
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        # The reader of our output closed early (`initlab models | head`): stop quietly, as a
        # Unix tool does, and keep Python from a second error while flushing at exit.
        # (Python's documentation, "Note on SIGPIPE", in the signal module.)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a process killed by it
