"""``initlab train``: one training run, printing the seed's two lines per epoch.

Also defines the data, model and optimization options that ``initlab compare`` shares.
"""

from __future__ import annotations

import argparse
import math
import sys

from initlab.cli import FLAGS as COMMON_FLAGS
from initlab.cli import print_error

HELP = "train one model under one initialization scheme and print the seed's lines per epoch"
#: The flag that sets each library argument an error of this command may name.
FLAGS = {**COMMON_FLAGS, "scheme": "--scheme"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=(
            "Train a zoo model or your own (--model MODULE:FUNCTION with --model-arg "
            "NAME=VALUE) on an MNIST-like dataset under one initialization scheme. "
            "After every epoch print 'Epoch N, Loss: L' (mean training loss) and "
            "'Test Accuracy: A%', exactly as the seed's example does."
        ),
    )
    parser.add_argument(
        "--scheme",
        default="xavier-then-he",
        help="initialization scheme, see `initlab schemes`; options "
        "as name:key=value, e.g. normal:std=0.1 (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: %(default)s)")
    add_common_options(parser)
    parser.set_defaults(func=run)


def add_model_options(parser: argparse.ArgumentParser, *, default: str, arg_note: str = "") -> None:
    """Add ``--model`` and ``--model-arg`` (old name ``--model-param``), shared by the commands."""
    add = parser.add_argument
    add(
        "--model",
        default=default,
        metavar="NAME|MODULE:FUNCTION",
        help="zoo model (see `initlab models`: mlp-784-128-10 (alias initnet), mlp, cnn, resmlp, "
        "resnet, lstm, transformer) or your own: an importable callable returning an nn.Module, "
        "e.g. initlab.zoo.models:MLP, or mymodels:build_net for a mymodels.py in the current "
        "directory (imported from there or sys.path, never evaluated) "
        "(default: %(default)s)",
    )
    add(
        "--model-arg",
        "--model-param",
        dest="model_param",
        action=AppendModelArg,
        default=[],
        metavar="NAME=VALUE",
        help="a keyword argument of the model, repeatable; VALUE is a Python literal (8, 1e-3, "
        "[8,16], 'text', True, None), never evaluated, or a bare word read as text; e.g. "
        "--model mlp --model-arg depth=3 --model-arg norm=batch, or --model cnn --model-arg "
        "channels=[8,16] (default: none, the model's own defaults; --model-param is the old "
        "name)" + arg_note,
    )


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add the model, data and optimization options shared by ``train`` and ``compare``."""
    add_model_options(parser, default="mlp-784-128-10")
    add = parser.add_argument
    add(
        "--bias-init",
        default=None,
        help="bias rule: zeros, constant:VALUE or torch (default: the scheme's own rule, zeros "
        "for every scheme except torch_default)",
    )
    add(
        "--dataset",
        default=None,
        metavar="NAME|npz|folder|MODULE:FUNCTION",
        help="an IDX dataset name (mnist, fashion-mnist, kmnist, emnist-<split>; with --data-dir "
        "any name); npz or folder, read from --data; or your own dataset factory "
        "MODULE:FUNCTION returning a torch Dataset or a (train, test) pair (default: mnist, "
        "embedded; with --data: npz for a file, folder for a directory)",
    )
    add(
        "--data",
        default=None,
        metavar="PATH",
        help="your data: an .npz file with x_train, y_train, x_test, y_test, or an image folder "
        "DIR/train/<class>/*.png and DIR/test/<class>/*.png (Pillow) (default: none)",
    )
    add(
        "--standardize",
        action="store_true",
        help="standardize the inputs per channel with the training split's mean and std, for "
        "both splits (default: off, pixels / 255)",
    )
    add(
        "--data-dir",
        default=None,
        help="directory holding the dataset's IDX files (default: none, the embedded MNIST)",
    )
    add(
        "--download",
        action="store_true",
        help="download missing files from the public mirrors, checksum-verified (default: off)",
    )
    add(
        "--train-subset",
        type=positive_int,
        default=None,
        help="train on a seeded random subset of this size (default: all)",
    )
    add(
        "--test-subset",
        type=positive_int,
        default=None,
        help="test on a seeded random subset of this size (default: all)",
    )
    add(
        "--optimizer",
        default="adamw",
        choices=("adamw", "adam", "sgd"),
        help="optimizer; sgd uses --momentum (default: %(default)s)",
    )
    add("--lr", type=non_negative_float, default=1e-3, help="learning rate (default: %(default)s)")
    add(
        "--weight-decay",
        type=non_negative_float,
        default=0.01,
        help="weight decay (default: %(default)s)",
    )
    add(
        "--momentum",
        type=non_negative_float,
        default=0.9,
        help="SGD momentum (default: %(default)s)",
    )
    add(
        "--batch-size",
        type=positive_int,
        default=64,
        help="training batch size (default: %(default)s)",
    )
    add("--epochs", type=positive_int, default=5, help="number of epochs (default: %(default)s)")
    add(
        "--max-steps",
        type=positive_int,
        default=None,
        help="stop each epoch after this many steps, for quick checks (default: no limit)",
    )
    add(
        "--log-every",
        type=non_negative_int,
        default=None,
        metavar="STEPS",
        help="record the mean training loss over windows of this many steps (results.jsonl "
        "loss_curve, the loss figure); 0: off (default: about a tenth of an epoch)",
    )
    add(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "auto"),
        help="where to train; auto picks cuda when available (default: %(default)s)",
    )


class AppendModelArg(argparse.Action):
    """Append a ``--model-arg`` value and remember which spelling was typed (``model_arg_flag``),
    so that an error names the flag the user wrote (``--model-arg`` or the old
    ``--model-param``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values])
        namespace.model_arg_flag = option_string


def model_flags(flags: dict, args: argparse.Namespace) -> dict:
    """``flags`` with ``model_params`` mapped to the model-argument flag typed, if one was."""
    typed = getattr(args, "model_arg_flag", None)
    return {**flags, "model_params": typed} if typed else flags


def positive_int(text: str) -> int:
    """Parse a count of at least 1 (argparse names the option in its error message)."""
    value = _parse(int, text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse a count of at least 0 (argparse names the option in its error message)."""
    value = _parse(int, text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0; got {value}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number >= 0, such as a learning rate."""
    value = _parse(float, text, "a number >= 0")
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return value


def fraction(text: str) -> float:
    """Parse a fraction in (0, 1], such as a target accuracy (0.97, not 97)."""
    value = _parse(float, text, "a fraction in (0, 1]")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], e.g. 0.97; got {text}")
    return value


def _parse(kind, text: str, expected: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None


def data_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """Return ``(dataset, data)`` from ``--dataset`` and ``--data``; ``data`` made absolute.

    ``--data`` alone means ``--dataset auto`` (npz for a file, folder for a directory); neither
    means the embedded MNIST. The path is made absolute so that a ``--resume`` from another
    directory reloads the same file.
    """
    import os

    data = None if args.data is None else os.path.abspath(args.data)
    dataset = args.dataset or ("auto" if data is not None else "mnist")
    return dataset, data


def train_config(args: argparse.Namespace, seed: int):
    """Build the :class:`TrainConfig` from parsed options."""
    from initlab.experiments.trainer import TrainConfig

    return TrainConfig(
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=seed,
        device=args.device,
        max_steps=args.max_steps,
        log_every=args.log_every,
    )


def model_params(pairs: list[str]) -> dict:
    """Parse ``--model-arg NAME=VALUE`` pairs (:func:`initlab.zoo.factory.parse_model_args`).

    Raises:
        ArgumentError: (argument ``model_params``) a pair without ``=`` or a value that is
            neither a Python literal nor a bare word.
    """
    from initlab.zoo.factory import parse_model_args

    return parse_model_args(pairs, "model_params")


def run(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except KeyboardInterrupt:
        # one line, not a traceback: nothing of a single run is saved, so nothing to resume
        print("\ninitlab train: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as error:  # OSError: DownloadError, missing files
        return print_error("train", error, model_flags(FLAGS, args))


def _train(args: argparse.Namespace) -> int:
    import torch

    from initlab.cli._validate import scheme_applies, subset_sizes
    from initlab.datasets.arrays import standardize
    from initlab.datasets.sources import load_source
    from initlab.experiments.data import tensor_data
    from initlab.experiments.sweep import check_data, head_params
    from initlab.experiments.trainer import resolve_device, train_scheme
    from initlab.reports.compare import format_loss
    from initlab.zoo.models import build_model

    config = train_config(args, args.seed)
    params = model_params(args.model_param)
    scheme_applies(args.model, args.scheme, params)  # before loading data: fail fast
    name, source = data_source(args)
    dataset = load_source(name, source, data_dir=args.data_dir, download=args.download)
    if args.train_subset is not None or args.test_subset is not None:
        subset_sizes(dataset, args.train_subset, args.test_subset)
        dataset = dataset.subset(args.train_subset, args.test_subset, seed=args.seed)
    if args.standardize:  # statistics of the training images that train, after the subset
        dataset = standardize(dataset)
    params = head_params(args.model, params, name, dataset.num_classes)
    device = resolve_device(args.device)
    with torch.random.fork_rng(devices=[]):  # before training: test images, labels, head
        model = build_model(args.model, **params).to(device)
        check_data(model, dataset, model_name=args.model, device=device)
    data = tensor_data(dataset, device)

    def show(record) -> None:
        print(f"Epoch {record.epoch}, Loss: {format_loss(record.train_loss)}")
        print(f"Test Accuracy: {100 * record.test_accuracy:.2f}%", flush=True)

    result = train_scheme(
        args.model,
        args.scheme,
        data,
        config,
        model_params=params,
        bias_init=args.bias_init,
        on_epoch=show,
    )
    if result.status == "diverged":
        print(
            f"Diverged: non-finite loss at epoch {result.diverged_epoch}, "
            f"step {result.diverged_step}",
            file=sys.stderr,
        )
        return 1
    return 0
