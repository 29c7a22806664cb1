"""``initlab spectrum``: input-output Jacobian singular values at initialization, per scheme."""

from __future__ import annotations

import argparse

from initlab.cli import print_error

HELP = "singular values of the input-output Jacobian at initialization, per scheme and seed"

# The library arguments this command sets, by their flag (for errors).
_FLAGS = {
    "model": "--model",
    "model_params": "--model-arg",
    "schemes": "--schemes",
    "seeds": "--seeds",
    "inputs": "--inputs",
    "spectra": "--schemes",
    "scheme": "--schemes",
    "examples": "--examples",
    "out": "--out",
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
            "2014; Pennington et al. 2017); the last column is the median singular value (mean "
            "over seeds). The model must take float inputs (not token ids: char-gpt, "
            "char-rnn). With --out, a figure of the first seed's spectra."
        ),
    )
    parser.add_argument(
        "--model",
        default="mlp",
        help="zoo model (initlab models) or your own MODULE:FUNCTION (default: mlp)",
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a model parameter, e.g. depth=32, activation=linear (repeatable; default: the "
        "model's own)",
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
        "--float64",
        action="store_true",
        help="compute on a float64 copy of each model (default: off, float32)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="directory to write spectrum.png and spectrum.json into, created if missing "
        "(default: none, print only)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (TypeError, ValueError) as error:  # ArgumentError is led by its flag (_FLAGS)
        return print_error("spectrum", error, _FLAGS)


def _run(args: argparse.Namespace) -> int:
    import json
    import math
    from pathlib import Path

    import torch

    from initlab._checks import ArgumentError
    from initlab._files import atomic_write
    from initlab.cli._validate import output_dir, scheme_applies, split_schemes
    from initlab.diagnostics.jacobian import plot_jacobian_spectra
    from initlab.experiments.spectra import format_spectra, gaussian_inputs, scheme_spectra
    from initlab.zoo.factory import parse_model_args

    if args.seeds < 1 or args.examples < 1:
        name, value = ("seeds", args.seeds) if args.seeds < 1 else ("examples", args.examples)
        raise ArgumentError(name, f"must be at least 1; got {value}")
    if args.out:  # before the work: a file in the way ends here, not after the spectra
        output_dir(args.out)
    params = parse_model_args(args.model_arg)
    try:
        schemes = list(split_schemes(args.schemes))
    except ValueError as error:  # an empty entry or an unknown name: the message lists them
        raise ArgumentError("schemes", str(error)) from None
    model = _model(args.model, params)
    if args.inputs == "mnist":
        from initlab.experiments.diagnosis import load_batch

        inputs, _ = load_batch(size=args.examples)
    else:
        features = getattr(model, "in_features", None)
        if not isinstance(features, int):
            raise ArgumentError(
                "inputs",
                f"--inputs gaussian needs a model with an int in_features (mlp, resmlp); model "
                f"{args.model!r} has none",
            )
        inputs = gaussian_inputs((args.examples, features), seed=args.first_seed)
    _takes(model, args.model, args.inputs, inputs)
    for scheme in schemes:
        try:
            scheme_applies(args.model, scheme, params)
        except ValueError as error:  # e.g. fixup on a model without residual blocks
            raise ArgumentError("schemes", str(error)) from None
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    dtype = torch.float64 if args.float64 else None
    spectra = scheme_spectra(
        args.model, schemes, inputs, model_params=params, seeds=seeds, dtype=dtype
    )
    given = f" ({', '.join(f'{k}={v!r}' for k, v in params.items())})" if params else ""
    source = "MNIST" if args.inputs == "mnist" else "Gaussian"
    seeds_text = "1 seed" if args.seeds == 1 else f"{args.seeds} seeds"
    print(f"{args.model}{given} on {args.examples} {source} inputs, {seeds_text}")
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


def _model(name: str, params: dict):
    """Build zoo model or factory ``name`` once, its errors named by --model or --model-arg."""
    from initlab._checks import ArgumentError
    from initlab.zoo.models import build_model

    try:
        return build_model(name, **params)
    except ArgumentError as error:
        if error.argument == "model":
            raise
        raise ArgumentError("model_params", str(error)) from None  # a value it refuses
    except TypeError as error:  # a parameter it does not take, or of the wrong type
        raise ArgumentError("model_params", str(error)) from None


def _takes(model, name: str, kind: str, inputs) -> None:
    """Refuse, naming --model, a model that cannot run on the batch (token-id models)."""
    import torch

    from initlab._checks import ArgumentError

    try:
        with torch.no_grad():
            model.eval()(inputs[:1])
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ArgumentError(
            "model",
            f"model {name!r} cannot take the --inputs {kind} batch (shape "
            f"{tuple(inputs.shape)}, {str(inputs.dtype).removeprefix('torch.')}): "
            f"{type(error).__name__}: {reason}; the Jacobian d out / d in needs a model of "
            "float inputs (not token ids: char-gpt, char-rnn)",
        ) from None
