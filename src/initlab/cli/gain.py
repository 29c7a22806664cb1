"""``initlab gain``: PyTorch's table gain and initlab's computed gain, side by side."""

from __future__ import annotations

import argparse
import math
import sys

HELP = "print PyTorch's calculate_gain and initlab's compute_gain for an activation"

# Why the two gains differ, where they do (see initlab.gains.compute_gain).
_DIFFERENCES = {
    "tanh": "PyTorch's 5/3 is a rule of thumb; compute_gain keeps E[x^2] fixed exactly",
    "sigmoid": "PyTorch uses 1; compute_gain counts sigmoid's mean of 1/2 in E[phi(z)^2]",
    "selu": "PyTorch's 3/4 favours gradient flow; 1 is self-normalizing (Klambauer et al. 2017)",
}

# The library arguments this command sets (calculate_gain's and compute_gain's), by their flag.
_FLAGS = {"param": "--param", "nonlinearity": "NAME", "activation": "NAME"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gain",
        help=HELP,
        description=(
            "Print the gain (a multiplier of the weights' standard deviation) of an activation: "
            "PyTorch's table value (torch.nn.init.calculate_gain) when the name is in it, and "
            "initlab's compute_gain, 1/sqrt(E[phi(z)^2]) with z ~ N(0, 1), which keeps the "
            "second moment of the pre-activations fixed from layer to layer."
        ),
    )
    parser.add_argument("name", nargs="?", help="activation name, e.g. relu, tanh, gelu")
    parser.add_argument(
        "--param",
        type=float,
        default=None,
        help="the activation's parameter, e.g. leaky_relu's negative slope "
        "(default: the activation's own default)",
    )
    parser.add_argument("--list", action="store_true", help="list the known names and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        _print_names()
        return 0
    if args.name is None:
        print("initlab gain: error: give an activation NAME or --list", file=sys.stderr)
        return 2
    from initlab._checks import ArgumentError

    try:
        table, computed = _gains(args.name, args.param)
    except ArgumentError as error:  # the library names its argument; print the flag that set it
        flag = _FLAGS.get(error.argument, error.argument)
        print(f"initlab gain: error: {flag}: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"initlab gain: error: {error}", file=sys.stderr)
        return 2
    label = args.name if args.param is None else f"{args.name} (param={args.param:g})"
    print(label)
    print(f"  PyTorch calculate_gain: {_format(table)}")
    print(f"  initlab compute_gain:   {_format(computed)}   1/sqrt(E[phi(z)^2]), z ~ N(0, 1)")
    print(f"  {_explain(args.name, table, computed)}")
    return 0


def _gains(name: str, param: float | None) -> tuple[float | None, float | None]:
    from initlab._checks import one_of
    from initlab.gains import ACTIVATIONS, PYTORCH_GAINS, calculate_gain, compute_gain

    one_of("NAME", name, set(PYTORCH_GAINS) | set(ACTIVATIONS))
    table = calculate_gain(name, param) if name in PYTORCH_GAINS else None
    if name not in ACTIVATIONS:
        return table, None
    return table, compute_gain(name if param is None else (name, param))


def _explain(name: str, table: float | None, computed: float | None) -> str:
    if computed is None:
        return "a linear map, not an activation: gain 1 (compute_gain calls it 'linear')"
    if table is None:
        return "not in PyTorch's table; compute_gain keeps E[x^2] of the pre-activations fixed"
    if math.isclose(table, computed, rel_tol=1e-9):
        return "equal: PyTorch's value is the gain that keeps E[x^2] fixed (He et al. 2015)"
    return "differ: " + _DIFFERENCES.get(name, "PyTorch's value is a table entry")


def _format(gain: float | None) -> str:
    return "n/a" if gain is None else f"{gain:.10f}"


def _print_names() -> None:
    from initlab.gains import ACTIVATION_PARAMS, ACTIVATIONS, PYTORCH_GAINS

    print("PyTorch calculate_gain: " + ", ".join(PYTORCH_GAINS))
    names = [
        f"{n} ({ACTIVATION_PARAMS[n][0]}={ACTIVATION_PARAMS[n][1]:g})"
        if n in ACTIVATION_PARAMS
        else n
        for n in ACTIVATIONS
    ]
    print("initlab compute_gain:   " + ", ".join(names))
