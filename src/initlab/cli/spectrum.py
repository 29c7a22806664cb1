"""``initlab spectrum``: input-output Jacobian singular values at initialization, per scheme."""

from __future__ import annotations

import argparse
import sys

HELP = "singular values of the input-output Jacobian at initialization, per scheme and seed"

# The library arguments this command sets, by their flag (for errors).
_FLAGS = {
    "model": "--model",
    "model_params": "--model-arg",
    "schemes": "--schemes",
    "seeds": "--seeds",
    "inputs": "--inputs",
    "spectra": "--schemes",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "spectrum",
        help=HELP,
        description=(
            "Build a zoo model under each scheme and seed, take the input-output Jacobian "
            "d out / d in of each example of one batch (eval mode) and print, per scheme, the "
            "spread of its singular values in decades, log10(s_max / s_min), and the fraction "
            "within 3x of their median, as mean [min, max] over seeds. An isometry (every "
            "singular value 1, e.g. an orthogonal deep linear net) has spread 0 (Saxe et al. "
            "2014; Pennington et al. 2017). With --out, a figure of the first seed's spectra."
        ),
    )
    parser.add_argument("--model", default="mlp", help="zoo model (default: mlp)")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a model parameter, e.g. depth=32, activation=linear (repeatable)",
    )
    parser.add_argument(
        "--schemes",
        default="orthogonal,lecun_normal",
        help="comma-separated schemes (default: orthogonal,lecun_normal)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scheme (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default: 0)")
    parser.add_argument(
        "--examples", type=int, default=16, help="examples in the batch (default: 16)"
    )
    parser.add_argument(
        "--inputs",
        choices=("mnist", "gaussian"),
        default="mnist",
        help="the batch: the first MNIST training images (B, 1, 28, 28) in [0, 1], or standard "
        "normal vectors of the model's in_features (default: mnist)",
    )
    parser.add_argument(
        "--float64", action="store_true", help="compute on a float64 copy of each model"
    )
    parser.add_argument("--out", default=None, help="write spectrum.png and spectrum.json here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab._checks import ArgumentError

    try:
        return _run(args)
    except ArgumentError as error:
        flag = _FLAGS.get(error.argument, error.argument)
        print(f"initlab spectrum: error: argument {flag}: {error}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as error:
        print(f"initlab spectrum: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import json
    import math
    from pathlib import Path

    import torch

    from initlab._checks import ArgumentError
    from initlab._files import atomic_write
    from initlab.diagnostics.jacobian import plot_jacobian_spectra
    from initlab.experiments.spectra import format_spectra, gaussian_inputs, scheme_spectra
    from initlab.zoo.factory import parse_model_args

    if args.seeds < 1 or args.examples < 1:
        name, value = ("seeds", args.seeds) if args.seeds < 1 else ("examples", args.examples)
        raise ArgumentError(name, f"--{name} must be at least 1; got {value}")
    params = parse_model_args(args.model_arg)
    schemes = [s for s in args.schemes.split(",") if s]
    if args.inputs == "mnist":
        from initlab.experiments.diagnosis import load_batch

        inputs, _ = load_batch(size=args.examples)
    else:
        from initlab.zoo.models import build_model

        features = getattr(build_model(args.model, **params), "in_features", None)
        if not isinstance(features, int):
            raise ArgumentError(
                "inputs",
                f"--inputs gaussian needs a model with an int in_features (mlp, resmlp); model "
                f"{args.model!r} has none",
            )
        inputs = gaussian_inputs((args.examples, features), seed=args.first_seed)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    dtype = torch.float64 if args.float64 else None
    spectra = scheme_spectra(
        args.model, schemes, inputs, model_params=params, seeds=seeds, dtype=dtype
    )
    print(
        f"{args.model} {params or ''} on {args.examples} {args.inputs} inputs, {args.seeds} seeds"
    )
    print(format_spectra(spectra))
    if args.out:
        out = Path(args.out)
        figure = plot_jacobian_spectra(
            {scheme: runs[0] for scheme, runs in spectra.items()},
            out / "spectrum.png",
            title=f"{args.model}: Jacobian singular values at initialization (seed {seeds[0]})",
        )
        summary = {  # an infinite spread (a singular value 0) as null: JSON has no inf
            scheme: [{k: v if math.isfinite(v) else None for k, v in s.summary().items()}
                     for s in runs]
            for scheme, runs in spectra.items()
        }  # fmt: skip
        atomic_write(out / "spectrum.json", json.dumps(summary, indent=2) + "\n", fsync=False)
        print(f"Wrote {figure} and {out / 'spectrum.json'}")
    return 0
