"""``initlab diagnose``: per-layer statistics and verdicts at initialization, per scheme."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import time

from initlab._files import atomic_write
from initlab.cli import print_error
from initlab.cli.train import add_model_options, model_flags, model_params, positive_int

HELP = "diagnose a zoo model at initialization under several schemes: tables, verdicts, figure"
DEFAULT_SCHEMES = "normal,xavier_normal,kaiming_normal,orthogonal,lsuv"

#: The flag that sets each library argument an ArgumentError may name (the data and model
#: options of initlab.cli.FLAGS that diagnose has, and its own); :func:`initlab.cli.print_error`
#: prints the flag before the library's message, unchanged.
FLAGS = {
    "dataset": "--dataset",
    "data_dir": "--data-dir",
    "download": "--download",
    "model": "--model",
    "model_params": "--model-arg",
    "depth": "--depth",
    "width": "--width",
    "activation": "--activation",
    "scheme": "--schemes",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help=HELP,
        description=(
            "Build a zoo model, initialize it by each scheme and run one forward and backward "
            "pass of cross-entropy on a batch of real data. Prints, per scheme, every layer's "
            "output mean and std, dead and saturated fractions, observed/predicted variance "
            "and output-gradient RMS; every parameter's gradient norm, extreme singular values "
            "and symmetry; the verdicts with hints; and, for mlp, the mean-field depth up to "
            "which the init should train (6 xi_c). Writes depth_profiles.png and "
            "diagnoses.json into --out."
        ),
    )
    add_model_options(
        parser,
        default="mlp",
        arg_note="; --depth, --width and --activation win over the same names here",
    )
    add = parser.add_argument
    add(
        "--depth",
        type=positive_int,
        default=None,
        help="hidden layers or blocks; mlp, resmlp, transformer only (default: the model's)",
    )
    add(
        "--width",
        type=positive_int,
        default=None,
        help="units per layer; mlp, resmlp only (default: the model's)",
    )
    add(
        "--activation",
        default=None,
        help="e.g. relu, tanh; mlp, resmlp only (default: the model's)",
    )
    add("--schemes", default=DEFAULT_SCHEMES, help="comma-separated (default: %(default)s)")
    add("--batch-size", type=positive_int, default=256, help="examples in the batch (default: 256)")
    add("--dataset", default="mnist", help="dataset name (default: %(default)s, embedded)")
    add("--data-dir", default=None, help="directory of the dataset's IDX files (default: none)")
    add(
        "--download",
        action="store_true",
        help="download missing files from the public mirrors, checksum-verified (default: off)",
    )
    add("--seed", type=int, default=0, help="construction and init seed (default: 0)")
    add("--out", default=None, help="output directory (default: runs/diagnose-<UTC timestamp>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _diagnose(args)
    except (ValueError, TypeError, OSError) as error:  # OSError: DownloadError, missing files
        return print_error("diagnose", error, model_flags(FLAGS, args))


def _diagnose(args: argparse.Namespace) -> int:
    from initlab.cli._validate import output_dir, split_schemes
    from initlab.diagnostics.plots import plot_depth_profiles
    from initlab.experiments.diagnosis import diagnose_schemes, format_mean_field, load_batch
    from initlab.schemes.registry import SCHEMES

    given = (("depth", args.depth), ("width", args.width), ("activation", args.activation))
    params = {**model_params(args.model_param), **{k: v for k, v in given if v is not None}}
    unsupported = _unsupported(args.model, params)
    if unsupported:
        raise ValueError(unsupported)
    schemes = split_schemes(args.schemes, SCHEMES)
    # checked before the work, which otherwise ended in a FileExistsError traceback
    out = output_dir(args.out or time.strftime("runs/diagnose-%Y%m%d-%H%M%S", time.gmtime()))
    batch = load_batch(
        args.dataset, size=args.batch_size, data_dir=args.data_dir, download=args.download
    )
    _check_model(args.model, params, batch)
    results = diagnose_schemes(args.model, schemes, batch, model_params=params, seed=args.seed)
    for r in results:
        print(f"== {r.scheme} ==")
        print(r.diagnosis.table())
        if r.mean_field is not None:
            print(format_mean_field(r.mean_field))
            print(_mean_field_gradient(r.mean_field, r.diagnosis))
        print()
    print("verdicts: " + "; ".join(f"{r.scheme}: {_codes(r)}" for r in results))
    title = _title(args.model, params, args.dataset, len(batch[0]))
    figure = plot_depth_profiles(
        {r.scheme: r.diagnosis for r in results}, out / "depth_profiles.png", title=title
    )
    atomic_write(
        out / "diagnoses.json",
        json.dumps({r.scheme: r.diagnosis.to_dict() for r in results}, indent=1),
    )
    print(f"Wrote {figure} and {out / 'diagnoses.json'}")
    return 0


def _title(model: str, params: dict, dataset: str, size: int) -> str:
    """The figure's title: ``mlp (depth=50, activation=tanh), 256 mnist examples``; strings
    unquoted, other values as Python writes them."""
    args = ", ".join(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in params.items())
    return f"{model}{f' ({args})' if args else ''}, {size} {dataset} examples"


def _mean_field_gradient(mf, diagnosis) -> str:
    """What the mean field predicts for the gradient verdict's ratio: the squared
    back-propagated gradient is multiplied by ``chi_1`` per layer toward the input
    (Schoenholz et al. 2017, Sec. 4), so its norm by ``chi_1^((n - 1) / 2)`` from the last of
    ``n`` hidden layers to the first. ``6 xi_c`` is the depth to which inputs stay apart, a
    different scale: a chaotic tanh network with ``6 xi_c`` of 130 layers can have gradients
    growing by 12 over 50 (``exploding_gradients``)."""
    n = sum(r.kind == "weight" for r in diagnosis.layers) - 1  # hidden layers, the head off
    if n < 2 or not math.isfinite(mf.chi_1) or mf.chi_1 <= 0:
        return "  mean-field gradient: not predicted (fewer than 2 hidden layers)"
    growth = mf.chi_1 ** ((n - 1) / 2)
    return (
        f"  mean-field gradient: chi_1^(({n} - 1) / 2) = {growth:.3g} from the last hidden layer "
        "back to the first (the gradient verdict fires outside 0.1 to 10; 6 xi_c is the depth "
        "inputs stay distinguishable, not the gradient's growth)"
    )


def _check_model(model: str, params: dict, batch) -> None:
    """Build ``model`` once and check its logits fit the batch's labels, before any output.

    Raises:
        ArgumentError: the model cannot be built, or its output does not fit (argument
            ``model``, :func:`initlab.zoo.factory.check_output`).
    """
    import torch

    from initlab.zoo.factory import check_output
    from initlab.zoo.models import build_model

    with torch.random.fork_rng(devices=[]):
        net = build_model(model, **params)
    check_output(net, batch[0], batch[1], model)


def _unsupported(model: str, params: dict) -> str:
    """Say which of --depth/--width/--activation ``model`` does not take ('' if all apply)."""
    from initlab.zoo.models import MODELS

    if model not in MODELS:  # diagnose_schemes reports the unknown name with a suggestion
        return ""
    accepted = set(inspect.signature(MODELS[model]).parameters)
    rejected = [f"--{k}" for k in params if k not in accepted]
    if not rejected:
        return ""
    takes = [f"--{k}" for k in ("depth", "width", "activation") if k in accepted]
    return (
        f"model {model!r} does not take {', '.join(rejected)}; it takes "
        f"{', '.join(takes) or 'none of --depth, --width, --activation'}"
    )


def _codes(result) -> str:
    return ", ".join(v.code for v in result.diagnosis.verdicts)
