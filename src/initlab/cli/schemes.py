"""``initlab schemes``: list the initialization schemes, one line each."""

from __future__ import annotations

import argparse

PRETRAINED_SUMMARY = (
    "compare only, no options: pretrain the model on --pretrain-dataset (--pretrain-data-dir, "
    "--pretrain-subset, --pretrain-epochs), then fine-tune with a new classifier head"
)
HELP = "list the initialization schemes that train and compare accept, one line each"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schemes",
        help=HELP,
        description=HELP + ". Options go after the name: name:key=value, e.g. normal:std=0.1.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.experiments.pretrain import PRETRAINED
    from initlab.schemes.registry import SCHEMES

    width = max(len(name) for name in [*SCHEMES, PRETRAINED])
    for name, scheme in SCHEMES.items():
        print(f"{name.ljust(width)}  {scheme.summary}")
    # not an init rule (it trains a checkpoint first), so not in SCHEMES: compare only
    print(f"{PRETRAINED.ljust(width)}  {PRETRAINED_SUMMARY}")
    return 0
