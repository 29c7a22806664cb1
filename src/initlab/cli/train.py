"""``initlab train``: one training run, printing the seed's two lines per epoch.

With ``--out DIR`` the run goes through the comparison runner
(:func:`~initlab.experiments.sweep.run_sweep`, one scheme and one seed), so ``DIR`` holds what
``initlab compare`` writes and ``--resume DIR`` continues it. Also defines the data, model and
optimization options that ``initlab compare`` shares, and ``--tensorboard``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from pathlib import Path

from initlab.cli import FLAGS as COMMON_FLAGS
from initlab.cli import print_error
from initlab.cli._tasks import TASK_FLAGS, add_task_options, apply_task_defaults, record_given

HELP = "train one model under one initialization scheme and print the seed's lines per epoch"
#: The flag that sets each library argument an error of this command may name.
FLAGS = {
    **COMMON_FLAGS,
    "scheme": "--scheme",
    "tensorboard": "--tensorboard",
    "lr_grid": "--lr-grid",
    "val_fraction": "--val-fraction",
    **TASK_FLAGS,
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=(
            "Train a zoo model or your own (--model MODULE:FUNCTION with --model-arg "
            "NAME=VALUE) on an MNIST-like dataset, or on a --task (a character-level "
            "language model, sequential MNIST, a ViT), under one initialization scheme. "
            "After every epoch print 'Epoch N, Loss: L' (mean training loss, nats) and "
            "'Test Accuracy: A%', exactly as the seed's example does (a language model: "
            "'Validation BPC: v, Test BPC: t', bits per character). With --out DIR, DIR "
            "also gets what initlab compare writes (config.json, results.jsonl, summary.csv, "
            "report.md, figures; checkpoints while it trains), and --resume DIR continues an "
            "interrupted run from its last finished epoch. With --lr-grid the run trains at "
            "each rate on the training data less a validation split, "
            "prints each rate's validation numbers per epoch, chooses the rate as initlab "
            "compare does and prints the chosen run's lines."
        ),
    )
    parser.add_argument(
        "--scheme",
        default="xavier-then-he",
        help="initialization scheme, see `initlab schemes`; options "
        "as name:key=value, e.g. normal:std=0.1 (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: %(default)s)")
    output = parser.add_mutually_exclusive_group()  # a new run's directory, or an old one's
    output.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="also write the run as initlab compare writes a comparison: config.json, "
        "results.jsonl (as it trains), summary.csv, report.md, figures (default: none, print "
        "only)",
    )
    output.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run that initlab train --out DIR started, from its last finished "
        "epoch, with its saved config.json; other options but --tensorboard are ignored "
        "(default: none, start a new run)",
    )
    add_tensorboard_option(parser)
    add_lr_grid_options(parser)
    add_common_options(parser)
    add_task_options(parser, metric=False)
    parser.set_defaults(func=run)
    record_given(parser)  # --task fills only what was not typed


def add_lr_grid_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--lr-grid`` and ``--val-fraction`` (one run per rate, the rate chosen on the
    validation split as :func:`~initlab.reports.compare.choose_rates` does)."""
    parser.add_argument(
        "--lr-grid",
        type=learning_rates,
        default=None,
        metavar="LR,LR,...",
        help="comma-separated learning rates, e.g. 1e-4,3e-4,1e-3,3e-3: train at each and keep "
        "the rate of the highest validation accuracy after the final epoch (the "
        "lowest validation bits per character for --task char-lm), as initlab compare "
        "--lr-grid chooses; prints the chosen rate and its run's test lines (default: none, "
        "one run at --lr)",
    )
    parser.add_argument(
        "--val-fraction",
        type=open_fraction,
        default=0.1,
        help="with --lr-grid: the fraction of the training data held out (seeded with --seed) to "
        "choose the rate on; refused with --task char-lm, whose corpus has a fixed validation "
        "part (default: %(default)s)",
    )


def learning_rates(text: str) -> tuple[float, ...]:
    """Parse ``--lr-grid``'s ``1e-4,3e-4,...``: at least one finite rate > 0, no repeats."""
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated learning rates such as 1e-4,3e-4,1e-3; got {text!r}"
        ) from None
    if not all(0.0 < r < math.inf for r in rates):
        raise argparse.ArgumentTypeError(f"every rate must be a finite number > 0; got {text}")
    if len(set(rates)) != len(rates):
        raise argparse.ArgumentTypeError(f"a rate is repeated; got {text}")
    return rates


def open_fraction(text: str) -> float:
    """Parse a fraction in the open interval (0, 1), such as ``--val-fraction``."""
    value = fraction(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), e.g. 0.1; got {text}")
    return value


def add_tensorboard_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--tensorboard DIR`` (see :mod:`initlab.experiments.tensorboard`)."""
    parser.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also log each run's losses, accuracies and per-parameter gradient norms as "
        "TensorBoard scalars, one run per folder DIR/<run id> (tensorboard --logdir DIR); "
        "needs the tensorboard package: pip install 'initlab[tensorboard]' (default: none)",
    )


def check_tensorboard(args: argparse.Namespace) -> None:
    """Refuse ``--tensorboard`` without the ``tensorboard`` package, before anything runs.

    Raises:
        ValueError: ``--tensorboard`` is given and ``torch.utils.tensorboard`` does not import.
    """
    from initlab.experiments.tensorboard import INSTALL, tensorboard_available

    if getattr(args, "tensorboard", None) is not None and not tensorboard_available():
        raise ValueError(f"--tensorboard needs the tensorboard package: {INSTALL}")


def add_model_options(parser: argparse.ArgumentParser, *, default: str, arg_note: str = "") -> None:
    """Add ``--model`` and ``--model-arg`` (old name ``--model-param``), shared by the commands."""
    add = parser.add_argument
    add(
        "--model",
        default=default,
        metavar="NAME|MODULE:FUNCTION",
        help="zoo model (see `initlab models`: mlp-784-128-10 (alias initnet), mlp, cnn, resmlp, "
        "resnet, lstm, transformer, vit, seq-rnn, char-gpt, char-rnn) or your own: an "
        "importable callable returning an nn.Module, "
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


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Add the data options (``--dataset``, ``--data``, ``--standardize``, ``--data-dir``,
    ``--download``) that ``train``, ``compare``, ``sweep`` and ``diagnose`` read alike."""
    add = parser.add_argument
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
        nargs="?",
        const=True,
        default=False,
        type=standardize_mode,
        metavar="pixel",
        help="standardize the inputs with the training split's mean and std, for both splits: "
        "per channel (the bare flag, or 'channel'); 'pixel': per pixel (mean 0, std 1 at every "
        "input position; a pixel constant over the training images is only centred) "
        "(default: off, pixels / 255)",
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
    add_data_options(parser)
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


def standardize_mode(text: str) -> bool | str:
    """Parse ``--standardize``'s value: ``channel`` -> ``True`` (the bare flag's per-channel
    standardization), ``pixel`` -> ``"pixel"`` (:func:`~initlab.datasets.arrays.standardize`
    with ``per="pixel"``)."""
    if text in ("channel", "pixel"):
        return True if text == "channel" else "pixel"
    raise argparse.ArgumentTypeError(f"expected channel or pixel (or no value); got {text!r}")


def config_standardize(args: argparse.Namespace) -> bool | str:
    """``--standardize`` as a comparison's config records it: ``False`` (off), ``True`` (per
    channel) or ``"pixel"`` (:class:`~initlab.experiments.config.CompareConfig`)."""
    return "pixel" if args.standardize == "pixel" else bool(args.standardize)


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


def compare_config(args: argparse.Namespace, **fields):
    """A :class:`~initlab.experiments.sweep.CompareConfig` from the flags that ``compare``,
    ``sweep`` and ``train --out`` share (``--model``, ``--dataset``/``--data``,
    ``--standardize``, ``--data-dir``, ``--download``, ``--bias-init``, the subsets), with the
    command's own ``fields`` (schemes, seeds, model parameters, training settings, ...)."""
    from initlab.experiments.sweep import CompareConfig

    dataset, data = data_source(args)
    return CompareConfig(
        model=args.model,
        dataset=dataset,
        data=data,
        standardize=config_standardize(args),
        data_dir=args.data_dir,
        download=args.download,
        bias_init=args.bias_init,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        **fields,
    )


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
    from initlab._checks import ArgumentError

    try:
        check_tensorboard(args)
        if args.resume is None:  # the task's model parameters first: typed ones override them
            task_params = apply_task_defaults(args)
            args.model_param = [f"{k}={v!r}" for k, v in task_params.items()] + args.model_param
        grid = args.resume is None and args.lr_grid is not None
        if grid and "lr" in getattr(args, "given_dests", ()):
            raise ArgumentError(
                "lr_grid",
                f"--lr-grid tries every rate it lists and --lr gives one rate; give one of "
                f"them, not both (got --lr {args.lr} and --lr-grid "
                f"{','.join(f'{r:g}' for r in args.lr_grid)})",
            )
        plain = args.out is None and args.resume is None and not grid
        if args.task == "char-lm" and plain:
            from initlab.cli._tasks import train_lm

            config, params = train_config(args, args.seed), model_params(args.model_param)
            return train_lm(args, config, params, model_flags(FLAGS, args))
        if not plain:
            return _train_into(args)
        return _train(args)
    except KeyboardInterrupt:
        # one line, not a traceback: nothing of a single run is saved, so nothing to resume
        print("\ninitlab train: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as error:  # OSError: DownloadError, missing files
        from initlab.cli._validate import in_flags

        flags = model_flags(FLAGS, args)
        return print_error("train", in_flags(error, flags, args.task), flags)


def _train(args: argparse.Namespace) -> int:
    import torch
    import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from initlab.cli._validate import scheme_applies, subset_sizes
    from initlab.datasets.arrays import standardize
    from initlab.datasets.sources import load_source
    from initlab.experiments.data import tensor_data
    from initlab.experiments.results import run_id
    from initlab.experiments.sweep import check_data, head_params
    from initlab.experiments.tensorboard import TensorBoardLog
    from initlab.experiments.trainer import build_initialized, resolve_device, scheme_batch, train
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
        dataset = standardize(dataset, per="pixel" if args.standardize == "pixel" else "channel")
    params = head_params(args.model, params, name, dataset.num_classes)
    device = resolve_device(args.device)
    with torch.random.fork_rng(devices=[]):  # before training: test images, labels, head
        model = build_model(args.model, **params).to(device)
        check_data(model, dataset, model_name=args.model, device=device)
    data = tensor_data(dataset, device)
    board = None
    if args.tensorboard is not None:
        board = TensorBoardLog(args.tensorboard, argument="tensorboard")
    run = run_id(args.scheme, args.seed)

    def show(record) -> None:
        print_epoch(record)
        if board is not None:
            board(run, record)

    steps = config.epochs * config.steps_per_epoch(data.train_x.shape[0])
    # the bar counts optimizer steps; log lines and the epoch lines print above it
    bar = tqdm.tqdm(total=steps, desc=run, unit="step", disable=not show_progress())
    with bar, logging_redirect_tqdm(tqdm_class=tqdm.tqdm), board or contextlib.nullcontext():
        net = build_initialized(
            args.model,
            args.scheme,
            seed=config.seed,
            model_params=params,
            bias_init=args.bias_init,
            batch=scheme_batch(data),
        )
        result = train(net, data, config, on_epoch=show, on_step=bar.update)
    if result.status == "diverged":
        print_diverged(result.diverged_epoch, result.diverged_step)
        return 1
    return 0


def show_progress() -> bool:
    """Whether to draw the progress bar: when stderr is a terminal (not a file or a pipe)."""
    return sys.stderr.isatty()


def print_epoch(record, *, lm: bool = False) -> None:
    """Print the reference example's two lines of an epoch, above a progress bar if one is
    drawn (``tqdm.write``: the bar is cleared, the lines printed, the bar redrawn); a language
    model (``lm``) prints bits per character instead of the accuracy, as ``--task char-lm``
    without ``--out`` does."""
    import tqdm

    from initlab.reports.compare import format_loss

    tqdm.tqdm.write(f"Epoch {record.epoch}, Loss: {format_loss(record.train_loss)}", sys.stdout)
    if lm:
        line = f"Validation BPC: {record.val_bpc:.4f}, Test BPC: {record.test_bpc:.4f}"
    else:
        line = f"Test Accuracy: {100 * record.test_accuracy:.2f}%"
    tqdm.tqdm.write(line, sys.stdout)
    sys.stdout.flush()


def print_diverged(epoch: int, step: int) -> None:
    """Say on stderr where the run diverged (``step``: 1-based, within ``epoch``)."""
    print(f"Diverged: non-finite loss at epoch {epoch}, step {step}", file=sys.stderr)


def _train_into(args: argparse.Namespace) -> int:
    """``--out DIR``, ``--resume DIR`` or ``--lr-grid``: the run as a comparison of one scheme
    and one seed (at every rate of a grid). A grid without ``--out`` trains into a temporary
    directory, removed when the command ends: nothing is kept, so nothing can be resumed."""
    import tempfile

    from initlab.cli._sweep import call_sweep
    from initlab.experiments.sweep import run_sweep

    resume = args.resume is not None
    if resume:
        _check_resumable(Path(args.resume))
    config = None if resume else _sweep_config(args)  # a resumed run reads its config.json
    saved = _saved_config(Path(args.resume)) if resume else config
    show = _epoch_printer(saved)

    def sweep(out: Path):
        return run_sweep(
            config,
            out,
            resume=resume,
            progress=show_progress(),
            on_epoch=show,
            tensorboard=args.tensorboard,
        )  # not stacked: the sweep stacks the runs of one rate, and a rate has one run here

    if args.out is None and not resume:  # --lr-grid alone
        with tempfile.TemporaryDirectory(prefix="initlab-train-") as tmp:
            hidden = _HideLines(tmp)  # the sweep logs where it writes: nowhere the user keeps
            logging.getLogger("initlab.experiments.sweep").addFilter(hidden)
            try:
                return _conclude(sweep(Path(tmp) / "run"), wrote=False)
            finally:
                logging.getLogger("initlab.experiments.sweep").removeFilter(hidden)
    out = Path(args.resume if resume else args.out)
    result = call_sweep("train", out, resume, lambda: sweep(out), what="run")
    if isinstance(result, int):  # stopped, and said why
        return result
    return _conclude(result, wrote=True)


class _HideLines(logging.Filter):
    """Drop the log records that name ``text`` (a temporary directory's path)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _epoch_printer(config):
    """The ``on_epoch`` of :func:`_train_into`: the seed's two lines per epoch; with a grid
    one line per rate and epoch, ``lr 0.001: Epoch 1, Loss: L, Validation Accuracy: A%``
    (a language model: ``Validation BPC: B``), since the test numbers count only at the chosen
    rate. ``config``: the run's :class:`CompareConfig` (``None``: unreadable, the sweep says
    why)."""
    import tqdm

    from initlab.experiments.results import run_id
    from initlab.reports.compare import format_loss

    lm = config is not None and config.task == "char-lm"
    if config is None or config.lr_grid is None:
        return lambda run, record: print_epoch(record, lm=lm)
    rates = {run_id(config.schemes[0], config.first_seed, lr): lr for lr in config.lr_grid}

    def show(run, record) -> None:
        if lm:
            val = f"Validation BPC: {record.val_bpc:.4f}"
        else:
            val = f"Validation Accuracy: {100 * record.val_accuracy:.2f}%"
        line = f"lr {rates[run]:g}: Epoch {record.epoch}, Loss: {format_loss(record.train_loss)}"
        tqdm.tqdm.write(f"{line}, {val}", sys.stdout)
        sys.stdout.flush()

    return show


def _conclude(result, *, wrote: bool) -> int:
    """Print what a finished :func:`_train_into` sweep leaves to say; return the exit status.

    With a grid: the chosen rate and every rate's validation value
    (:func:`~initlab.reports.compare.choose_rates`, the rule of ``initlab compare``), then the
    chosen run's epochs in the seed's two lines. ``wrote``: say where the files are.
    """
    from initlab.experiments.results import read_results

    lines = read_results(result.out_dir / "results.jsonl")
    if result.config.lr_grid is not None:
        lines = _print_choice(lines, result.config)
    status = [line for line in lines if line["type"] == "status"][-1]  # the run's outcome
    if wrote:
        print(
            f"Wrote {result.out_dir}: config.json, results.jsonl, summary.csv, report.md, figures",
            file=sys.stderr,
        )
    if status["status"] == "diverged":
        print_diverged(status["epoch"], status["step"])
        return 1
    return 0


def _print_choice(lines: list[dict], config) -> list[dict]:
    """Print the rate chosen on the validation data and the chosen run's epochs; return the
    chosen run's lines (``results.jsonl``'s, as parsed)."""
    import types

    from initlab.reports.compare import at_chosen_rates, choose_rates, config_metric

    metric = config_metric(config)
    chosen, means = choose_rates(lines, config.schemes, config.lr_grid, metric=metric)
    scheme = config.schemes[0]
    lm = config.task == "char-lm"
    if metric in ("final_accuracy", "best_accuracy"):
        rule = "the highest validation accuracy"
        cell = lambda m: f"{100 * m:.2f}%"  # noqa: E731
    else:
        unit = "bits per character" if metric == "final_bpc" else "loss (nats)"
        rule = f"the lowest validation {unit}"
        cell = lambda m: "diverged" if m == math.inf else f"{m:.4f}"  # noqa: E731
    where = (
        "the corpus's fixed validation part (5% of the text, after the training part)"
        if lm
        else f"{100 * config.val_fraction:g}% of the training data held out (seeded with "
        f"--seed {config.first_seed})"
    )
    values = ", ".join(
        f"lr {lr:g}: {'-' if means[scheme][lr] is None else cell(means[scheme][lr])}"
        for lr in config.lr_grid
    )
    print(
        f"Chosen learning rate: {chosen[scheme]:g}, {rule} after the final epoch on {where} "
        f"({values}); the chosen run's test results:"
    )
    mine = at_chosen_rates(lines, chosen)
    for line in mine:
        if line["type"] == "epoch":
            record = types.SimpleNamespace(**line)
            if lm:
                record.val_bpc = line["val_loss"] / math.log(2)
                record.test_bpc = line["test_loss"] / math.log(2)
            print_epoch(record, lm=lm)
    return mine


def _sweep_config(args: argparse.Namespace):
    """The :class:`CompareConfig` of ``initlab train --out``: one scheme, one seed; checked as
    ``initlab train`` checks its options, before anything is written."""
    from initlab.cli._validate import output_dir, scheme_applies, subset_sizes
    from initlab.datasets.sources import load_source

    if args.out is not None:  # --lr-grid alone trains into a temporary directory
        output_dir(args.out)
    params = model_params(args.model_param)
    scheme_applies(args.model, args.scheme, params)  # the same refusals as without --out
    dataset, data = data_source(args)
    lm = args.task == "char-lm"  # a corpus, not a dataset: its windows are checked by the sweep
    if not lm and (args.train_subset is not None or args.test_subset is not None):
        loaded = load_source(dataset, data, data_dir=args.data_dir, download=args.download)
        subset_sizes(loaded, args.train_subset, args.test_subset)
    text_file = None if args.text_file is None else str(Path(args.text_file).resolve())
    return compare_config(
        args,
        schemes=(args.scheme,),
        seeds=1,
        first_seed=args.seed,
        model_params=params,
        train=train_config(args, args.seed),
        lr_grid=args.lr_grid,
        val_fraction=args.val_fraction,
        task=args.task,
        text_file=text_file,
        seq_len=args.seq_len,
    )


def _saved_config(out):
    """The :class:`CompareConfig` of the run saved in ``out``; ``None`` when unreadable (then
    :func:`~initlab.experiments.sweep.run_sweep` says what is wrong with the directory)."""
    from initlab.experiments.sweep import CompareConfig

    try:
        return CompareConfig.from_json((out / "config.json").read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _check_resumable(out) -> None:
    """Check that ``out`` holds one scheme and one seed (``initlab train --out``: one run, or
    one per rate of ``--lr-grid``), not a comparison of several.

    A missing ``config.json`` is left to :func:`~initlab.experiments.sweep.run_sweep`, which
    says there is nothing to resume.

    Raises:
        ValueError: ``out/config.json`` is unreadable or holds more than one run.
    """
    from initlab.experiments.sweep import CompareConfig

    path = out / "config.json"
    if not path.is_file():
        return
    try:
        config = CompareConfig.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"cannot resume from {path}: {error}; it must be the config.json that initlab "
            "train --out wrote"
        ) from None
    runs = len(config.schemes) * config.seeds * len(config.rates())
    if len(config.schemes) * config.seeds != 1:  # one run, or one per rate of a grid
        raise ValueError(
            f"--resume {out} is a comparison of {runs} runs, not one; continue it with "
            f"initlab compare --resume {out}"
        )
