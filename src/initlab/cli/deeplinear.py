"""``initlab deeplinear``: learning time of deep linear networks against depth, per scheme."""

from __future__ import annotations

import argparse

from initlab.cli import print_error

HELP = "steps a deep linear network takes to learn a linear teacher, per depth and scheme"

_FLAGS = {
    "depths": "--depths",
    "schemes": "--schemes",
    "lrs": "--lrs",
    "seeds": "--seeds",
    "threshold": "--threshold",
    "max_steps": "--max-steps",
    "examples": "--examples",
    "scheme": "--schemes",
    "depth": "--depths",
    "width": "--width",
    "lr": "--lrs",
    "in_features": "--width",
    "num_classes": "--width",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "deeplinear",
        help=HELP,
        description=(
            "Saxe, McClelland and Ganguli 2014: train deep linear networks (mlp with "
            "activation=linear, biases 0) on y = A x by full-batch gradient descent on the "
            "squared error and count the steps until the loss, relative to the targets' mean "
            "square, reaches --threshold. Each seed takes its fastest rate of --lrs. Printed "
            "per scheme and depth: mean [min, max] over the seeds that learned, and how many did. "
            "Orthogonal weights learn in a time nearly independent of depth, Gaussian ones slow "
            "down with depth."
        ),
    )
    parser.add_argument(
        "--depths",
        default="1,2,4,8,16,32",
        metavar="D,D,...",
        help="hidden layers, comma-separated (default: 1,2,4,8,16,32)",
    )
    parser.add_argument(
        "--schemes",
        default="orthogonal,lecun_normal",
        help="comma-separated schemes without data-driven steps (initlab schemes; default: "
        "orthogonal,lecun_normal)",
    )
    parser.add_argument(
        "--lrs",
        "--lr-grid",
        dest="lrs",
        default="0.03,0.1,0.3,1",
        metavar="LR,LR,...",
        help="learning rates to try, each seed keeping its fastest (--lr-grid is the same flag, "
        "as in train, compare and transfer; default: 0.03,0.1,0.3,1)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="how many weight seeds, from --first-seed (default: 3)"
    )
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default: 0)")
    parser.add_argument("--width", type=int, default=16, help="every layer's width (default: 16)")
    parser.add_argument("--examples", type=int, default=256, help="teacher pairs (default: 256)")
    parser.add_argument(
        "--threshold", type=float, default=0.05, help="relative loss to reach (default: 0.05)"
    )
    parser.add_argument("--max-steps", type=int, default=2000, help="step cap (default: 2000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (TypeError, ValueError) as error:  # ArgumentError is led by its flag (_FLAGS)
        return print_error("deeplinear", error, _FLAGS)


def _numbers(flag: str, text: str, kind: type) -> list:
    from initlab._checks import ArgumentError

    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ArgumentError(
            flag, f"{flag} must be comma-separated {kind.__name__}s; got {text!r}"
        ) from None


def _run(args: argparse.Namespace) -> int:
    from initlab._checks import ArgumentError
    from initlab.experiments.deep_linear import format_learning_times, learning_time_table

    if args.seeds < 1:
        raise ArgumentError("seeds", f"must be at least 1; got {args.seeds}")
    schemes = _schemes(args.schemes, args.width)
    rows = learning_time_table(
        _numbers("depths", args.depths, int),
        schemes,
        _numbers("lrs", args.lrs, float),
        seeds=range(args.first_seed, args.first_seed + args.seeds),
        width=args.width,
        examples=args.examples,
        threshold=args.threshold,
        max_steps=args.max_steps,
    )
    print(
        f"steps of full-batch gradient descent until the loss is {args.threshold:g} of the "
        f"targets' mean square (width {args.width}, {args.examples} examples)"
    )
    print(format_learning_times(rows))
    return 0


def _schemes(text: str, width: int) -> list[str]:
    """The --schemes entries, refused before any training when unknown or unfit for the deep
    linear network (a residual scheme such as fixup; a data-driven step such as LSUV's, which
    the teacher task does not feed)."""
    from initlab._checks import ArgumentError
    from initlab.cli._validate import scheme_applies, split_schemes
    from initlab.schemes.registry import parse_scheme

    try:
        schemes = list(split_schemes(text))
    except ValueError as error:  # an empty entry or an unknown name: the message lists them
        raise ArgumentError("schemes", str(error)) from None
    shape = {"activation": "linear", "depth": 1, "width": width}
    if width >= 1:  # a bad --width is named by the run (argument in_features)
        shape.update(in_features=width, num_classes=width)
    for scheme in schemes:
        spec, _ = parse_scheme(scheme)
        if spec.needs_batch:
            raise ArgumentError(
                "schemes",
                f"scheme {scheme!r} needs a data batch for a data-driven step, which deeplinear "
                "does not give: use schemes without one (e.g. orthogonal, lecun_normal)",
            )
        if width >= 1:
            try:
                scheme_applies("mlp", scheme, shape)
            except ValueError as error:  # e.g. fixup on a network without residual blocks
                raise ArgumentError("schemes", str(error)) from None
    return schemes
