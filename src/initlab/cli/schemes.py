"""``initlab schemes``: list the initialization schemes, one line each, with their aliases.

Each line: the scheme's name, its exact distribution, its own options with their defaults in
brackets, and its aliases. After a blank line, the options that every scheme (or every
transformer scheme) takes on top of its own.
"""

from __future__ import annotations

import argparse

HELP = "list the initialization schemes that train and compare accept, one line each"
# What a scheme that loads a source checkpoint needs from the command line.
SOURCE_NOTE = (
    "compare only: the source is the model pretrained on --pretrain-dataset "
    "(--pretrain-data-dir, --pretrain-subset, --pretrain-epochs)"
)
# The options a scheme takes on top of its own: (option, who takes it, what it does).
SHARED_OPTIONS = (
    (
        "forget_bias=VALUE",
        "every scheme",
        "LSTM forget-gate (GRU update-gate) bias set to VALUE after the scheme",
    ),
    (
        "class_prior=1",
        "every scheme but pretrained",
        "output layer's bias b_c = log p_c, the class prior of the training batch's labels "
        "with add-one smoothing (-log C for C balanced classes), after the scheme; needs an "
        "output nn.Linear with a bias (model.head, else the last Linear)",
    ),
    (
        "scaled_embedding=1",
        "every transformer scheme",
        "token embedding N(0, 1/d) (Press & Wolf 2017)",
    ),
    ("zero_head=1", "every transformer scheme", "head weight 0"),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schemes",
        help=HELP,
        description=HELP + ". Options go after the name: name:key=value, e.g. normal:std=0.1. "
        "An alias (an old name) is accepted wherever the name is. After the list: the options "
        "every scheme, or every transformer scheme, takes on top of its own.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.schemes.registry import SCHEMES
    from initlab.schemes.transformer import TransformerPolicy

    width = max(len(name) for name in SCHEMES)
    shared = {"scaled_embedding", "zero_head"}  # listed once, after the schemes
    for name, scheme in SCHEMES.items():
        line = scheme.summary + (f"; {SOURCE_NOTE}" if scheme.needs_source else "")
        own = {k: v for k, v in scheme.options.items() if k not in shared}
        if own:
            line += " [options: " + ", ".join(f"{k}={v:g}" for k, v in own.items()) + "]"
        if isinstance(scheme.policy, TransformerPolicy):
            line += " [transformer]"
        if scheme.aliases:
            line += f" (alias: {', '.join(scheme.aliases)})"
        print(f"{name.ljust(width)}  {line}")
    print()
    print("Options on top of a scheme's own (name:key=value, e.g. xavier_uniform:class_prior=1):")
    width = max(len(option) for option, _, _ in SHARED_OPTIONS)
    for option, who, what in SHARED_OPTIONS:
        print(f"  {option.ljust(width)}  {who}: {what}")
    return 0
