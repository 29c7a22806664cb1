"""``initlab diagnose``: per-layer statistics and verdicts at initialization, per scheme."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import time

from initlab._files import atomic_write
from initlab.cli import print_error
from initlab.cli._tasks import TASK_FLAGS, add_task_options, record_given
from initlab.cli.train import (
    add_data_options,
    add_model_options,
    model_flags,
    model_params,
    positive_int,
)

HELP = "diagnose a model at initialization under several schemes: tables, verdicts, figure"
DEFAULT_SCHEMES = "normal,xavier_normal,kaiming_normal,orthogonal,lsuv"

#: The flag that sets each library argument an ArgumentError may name (the data and model
#: options of initlab.cli.FLAGS that diagnose has, and its own); :func:`initlab.cli.print_error`
#: prints the flag before the library's message, unchanged.
FLAGS = {
    "dataset": "--dataset",
    "data": "--data",
    "data_dir": "--data-dir",
    "download": "--download",
    "standardize": "--standardize",
    "model": "--model",
    "model_params": "--model-arg",
    "depth": "--depth",
    "width": "--width",
    "activation": "--activation",
    "scheme": "--schemes",
    **TASK_FLAGS,
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help=HELP,
        description=(
            "Build a zoo model or your own (--model MODULE:FUNCTION), initialize it by each "
            "scheme and run one forward and backward pass of cross-entropy on a batch of real "
            "data: the first --batch-size training examples of MNIST, of your data (--dataset, "
            "--data, --standardize, as initlab compare reads them) or of a --task (a "
            "language model's: windows of its corpus, next-character cross-entropy). Prints, "
            "per scheme, every layer's output mean and std, dead and saturated fractions, "
            "observed/predicted variance and output-gradient RMS; every parameter's gradient "
            "norm, extreme singular values and symmetry; the verdicts with hints; and, for mlp, "
            "the mean-field depth up to which the init should train (6 xi_c). Writes "
            "depth_profiles.png and diagnoses.json into --out."
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
    add(
        "--batch-size",
        type=positive_int,
        default=256,
        help="training examples in the batch, the first ones of the training split (default: "
        "256; a --task's batch size when --task is given)",
    )
    add_data_options(parser)
    add("--seed", type=int, default=0, help="construction and init seed (default: 0)")
    add("--out", default=None, help="output directory (default: runs/diagnose-<UTC timestamp>)")
    add_task_options(parser, metric=False)
    parser.set_defaults(func=run)
    record_given(parser)  # --task fills only what was not typed


def run(args: argparse.Namespace) -> int:
    try:
        return _diagnose(args)
    except (ValueError, TypeError, OSError) as error:  # OSError: DownloadError, missing files
        from initlab.cli._validate import in_flags

        flags = model_flags(FLAGS, args)
        return print_error("diagnose", in_flags(error, flags, args.task), flags)


def _diagnose(args: argparse.Namespace) -> int:
    from initlab.cli._tasks import apply_task_defaults
    from initlab.cli._validate import output_dir, split_schemes
    from initlab.diagnostics.plots import plot_depth_profiles
    from initlab.experiments.diagnosis import diagnose_schemes, format_mean_field
    from initlab.schemes.registry import SCHEMES

    task_params = apply_task_defaults(args)  # --task image (the default) fills nothing
    given = (("depth", args.depth), ("width", args.width), ("activation", args.activation))
    params = {
        **task_params,
        **model_params(args.model_param),
        **{k: v for k, v in given if v is not None},
    }
    unsupported = _unsupported(args.model, params)
    if unsupported:
        raise ValueError(unsupported)
    schemes = split_schemes(args.schemes, SCHEMES)
    # checked before the work, which otherwise ended in a FileExistsError traceback
    out = output_dir(args.out or time.strftime("runs/diagnose-%Y%m%d-%H%M%S", time.gmtime()))
    batch, params, what, loss_fn = _batch(args, params)
    results = diagnose_schemes(
        args.model, schemes, batch, model_params=params, seed=args.seed, loss_fn=loss_fn
    )
    for r in results:
        print(f"== {r.scheme} ==")
        print(r.diagnosis.table())
        if r.mean_field is not None:
            print(format_mean_field(r.mean_field))
            print(_mean_field_gradient(r.mean_field, r.diagnosis))
        print()
    print("verdicts: " + "; ".join(f"{r.scheme}: {_codes(r)}" for r in results))
    title = _title(args.model, params, *what)
    figure = plot_depth_profiles(
        {r.scheme: r.diagnosis for r in results}, out / "depth_profiles.png", title=title
    )
    atomic_write(
        out / "diagnoses.json",
        json.dumps({r.scheme: r.diagnosis.to_dict() for r in results}, indent=1),
    )
    print(f"Wrote {figure} and {out / 'diagnoses.json'}")
    return 0


def _batch(args: argparse.Namespace, params: dict):
    """The batch to diagnose on, read as ``initlab train`` reads its data, and the model
    checked against it before any output.

    A classification task: the first ``--batch-size`` training examples of ``--dataset`` /
    ``--data`` (:func:`~initlab.experiments.data.load_data`; ``--standardize`` with the whole
    training split's statistics, as training uses them), as the model takes them
    (:meth:`~initlab.datasets.families.Dataset.inputs`: uint8 pixels / 255), the head fitted
    to the data's classes (:func:`~initlab.experiments.data.head_params`), the loss
    cross-entropy. A language-model task: the first training windows of its corpus
    (:func:`~initlab.experiments.data.lm_data`), the loss
    :func:`~initlab.experiments.core.sequence_cross_entropy`.

    Returns:
        ``(batch, params, what, loss_fn)``: ``(inputs, labels)``, the model's parameters
        (head or vocabulary filled), ``(source, size, kind)`` for the figure's title
        (:func:`_title`), and the loss (``None``: cross-entropy).

    Raises:
        ArgumentError: a data option the task does not take, or the library's refusals of the
            data (missing files, bad arrays) and of the model (its output does not fit).
    """
    import os

    import torch

    from initlab._checks import ArgumentError
    from initlab.cli.train import data_source
    from initlab.datasets.arrays import standardize
    from initlab.datasets.families import to_inputs
    from initlab.datasets.sources import is_user_data
    from initlab.experiments.core import sequence_cross_entropy
    from initlab.experiments.data import check_fit, head_params, lm_data, lm_params, load_data
    from initlab.experiments.diagnosis import load_batch
    from initlab.experiments.tasks import resolve_task
    from initlab.zoo.models import build_model

    task = resolve_task(args.task)
    size = args.batch_size
    if task.kind == "lm":
        if args.dataset is not None or args.data is not None or args.standardize:
            raise ArgumentError(
                "dataset",
                f"task {task.name!r} reads a text corpus (--text-file), not a dataset; drop "
                "--dataset, --data and --standardize",
            )
        seq_len = args.seq_len or task.seq_len
        text = None if args.text_file is None else os.path.abspath(args.text_file)
        data, vocab = lm_data(text, seq_len, train_subset=size)
        params = lm_params(args.model, params, vocab, seq_len)
        with torch.random.fork_rng(devices=[]):
            check_fit(task, build_model(args.model, **params), data, args.model)
        corpus = "Shakespeare" if text is None else os.path.basename(text)
        what = (corpus, len(data.train_y), f"windows of {seq_len} characters")
        return (data.train_x, data.train_y), params, what, sequence_cross_entropy
    if args.text_file is not None or args.seq_len is not None:
        flag = "--text-file" if args.text_file is not None else "--seq-len"
        raise ArgumentError(
            "text_file" if args.text_file is not None else "seq_len",
            f"{flag} is for --task char-lm; task {task.name!r} reads --dataset / --data",
        )
    name, source = data_source(args)
    if source is None and not args.standardize and not is_user_data(name):
        # an IDX family: its first images only, as before --data existed
        x, y = load_batch(name, size=size, data_dir=args.data_dir, download=args.download)
        num_classes = None  # head_params knows a known family's classes
    else:
        dataset = load_data(
            name, source, data_dir=args.data_dir, download=args.download, standardize=False
        )
        if args.standardize:  # the whole training split's statistics, as training uses them
            dataset = standardize(
                dataset, per="pixel" if args.standardize == "pixel" else "channel"
            )
        x, y = to_inputs(dataset.train_images[:size]), dataset.train_labels[:size]
        num_classes = dataset.num_classes
    params = head_params(args.model, params, name, num_classes)
    _check_model(args.model, params, (x, y))
    shown = name if source is None else os.path.basename(source.rstrip(os.sep))
    kind = "examples" + (", standardized" if args.standardize else "")
    return (x, y), params, (shown, len(y), kind), None


def _title(model: str, params: dict, dataset: str, size: int, kind: str = "examples") -> str:
    """The figure's title: ``mlp (depth=50, activation=tanh), 256 mnist examples`` (``kind``:
    what the batch holds, e.g. ``windows of 64 characters``); strings unquoted, other values as
    Python writes them."""
    args = ", ".join(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in params.items())
    return f"{model}{f' ({args})' if args else ''}, {size} {dataset} {kind}"


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

    from initlab._checks import ArgumentError
    from initlab.zoo.factory import check_output
    from initlab.zoo.models import build_model

    with torch.random.fork_rng(devices=[]):
        net = build_model(model, **params)
    try:
        check_output(net, batch[0], batch[1], model)
    except ArgumentError as error:
        hint = _input_hint(model, params, batch[0])
        if not hint:
            raise
        raise ArgumentError(error.argument, f"{error}{hint}") from None


def _input_hint(model: str, params: dict, inputs) -> str:
    """The ``--model-arg`` that sizes zoo ``model``'s input to ``inputs`` (``(B, D)`` vectors or
    ``(B, C, H, W)`` images), as ``initlab compare`` hints for the same data; '' when the model
    is no zoo model, has no such parameter, or is already built for that size.

    ``in_features`` (the MLPs) takes the values of one example, ``D`` or ``C*H*W``;
    ``image_size`` (the convolutional and attention models) the side of square images.
    """
    from initlab.zoo.models import MODEL_ALIASES, MODELS, model_defaults

    if model not in MODELS and model not in MODEL_ALIASES:
        return ""
    takes = {**model_defaults(model), **params}
    shape = tuple(inputs.shape[1:])
    values = 1
    for n in shape:
        values *= n
    if "in_features" in takes and takes["in_features"] != values:
        what = f"inputs of {values} values" if len(shape) == 1 else f"{_size(shape)} images"
        return f"; for {what} give --model-arg in_features={values}"
    square = len(shape) == 3 and shape[1] == shape[2]
    if "image_size" in takes and square and takes["image_size"] != shape[1]:
        return f"; for {_size(shape)} images give --model-arg image_size={shape[1]}"
    return ""


def _size(shape: tuple) -> str:
    """``12x12`` for one channel, else ``3x32x32``."""
    return "x".join(map(str, shape[1:] if shape[0] == 1 else shape))


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
