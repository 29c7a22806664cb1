"""``--task`` for ``initlab compare`` and ``initlab train``: the flags, the defaults, the LM run.

A task (:data:`initlab.experiments.tasks.TASKS`) fills the model, its parameters, the dataset,
the schemes and the training settings that the user did not give on the command line; typed
flags always win, and ``--task image`` (the default) changes nothing, so a command without
``--task`` runs as before. Library imports happen inside the functions: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

#: The tasks' names, for ``--help`` without importing the library (a test keeps it equal to
#: ``initlab.experiments.tasks.TASKS``).
TASK_NAMES = ("image", "char-lm", "seq-mnist", "seq-mnist-permuted", "vit", "first-token")
#: The flag that sets each task argument an ArgumentError may name.
TASK_FLAGS = {
    "task": "--task",
    "text_file": "--text-file",
    "seq_len": "--seq-len",
    "metric": "--metric",
}


def add_task_options(parser: argparse.ArgumentParser, *, metric: bool) -> None:
    """Add ``--task``, ``--text-file``, ``--seq-len`` and, with ``metric``, ``--metric``."""
    add = parser.add_argument
    add(
        "--task",
        default="image",
        choices=TASK_NAMES,
        help="what to train: image (classify images: the reference MNIST example), char-lm "
        "(a character language model on Shakespeare or --text-file, judged in bits per "
        "character), seq-mnist (an LSTM reading MNIST row by row), seq-mnist-permuted (pixels "
        "in a fixed random order), vit (a Vision Transformer on Fashion-MNIST: needs "
        "--data-dir or --download). The task sets the model, dataset, schemes, epochs, batch "
        "size, learning rate and step cap you do not give (default: %(default)s)",
    )
    add(
        "--text-file",
        default=None,
        metavar="PATH",
        help="with --task char-lm: a UTF-8 text to model (default: the embedded Shakespeare)",
    )
    add(
        "--seq-len",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --task char-lm: characters per training window (default: the task's, 64)",
    )
    if metric:
        add(
            "--metric",
            default=None,
            choices=("accuracy", "loss", "bpc"),
            help="what the comparison is judged by; bpc (bits per character) for char-lm "
            "only (default: bpc for char-lm, accuracy otherwise)",
        )


def _positive_int(text: str) -> int:
    """Parse a count of at least 1 (argparse names the option in its error message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def record_given(parser: argparse.ArgumentParser) -> None:
    """Store what was typed on the command line: ``args.given`` (the long options as typed)
    and ``args.given_dests`` (the destinations they set, abbreviations resolved).

    argparse fills every default, so it cannot otherwise tell ``--epochs 5`` typed from the
    default 5; the subcommand's parser is called through ``parse_known_args``.
    """
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        parsed, rest = parse(args, namespace)
        typed = [a.split("=")[0] for a in args or () if a.startswith("--") and a != "--"]
        parsed.given = typed
        parsed.given_dests = {dest for t in typed for dest in _dests(parser, t)}
        return parsed, rest

    parser.parse_known_args = parse_known_args


def _dests(parser: argparse.ArgumentParser, typed: str) -> list[str]:
    """The destination an option as typed sets: exact, or the unique option it abbreviates."""
    exact = [a.dest for a in parser._actions if typed in a.option_strings]
    if exact:
        return exact
    prefixed = [a for a in parser._actions if any(o.startswith(typed) for o in a.option_strings)]
    return [prefixed[0].dest] if len(prefixed) == 1 else []


def apply_task_defaults(args: argparse.Namespace) -> dict:
    """Fill ``args`` from ``args.task`` where the user gave no value; return the task's model
    parameters to use (empty unless the model is the task's own default).

    Filled: ``model``, ``schemes`` (compare; the task's schemes for the model given, see
    :meth:`~initlab.experiments.tasks.Task.schemes_for`), ``scheme`` (train: the first of
    them), ``epochs``, ``batch_size``, ``lr``,
    ``max_steps`` and, for a task on images, ``dataset`` (unless ``--dataset`` or ``--data``
    was given). ``--task image`` fills nothing. Then the model is checked against the task.

    A language-model task also refuses what does not apply to it (:func:`_check_lm_options`):
    ``--val-fraction`` typed, and a ``--model-arg seq_len`` that is not a context length
    covering the training windows (``--seq-len``).

    Raises:
        ArgumentError: (argument ``task``) an unknown task; (argument ``model``) a zoo model
            that does not fit the task (:meth:`~initlab.experiments.tasks.Task.check_model`);
            (argument ``val_fraction``, ``model_params``) see :func:`_check_lm_options`.
    """
    from initlab.experiments.tasks import resolve_task

    task = resolve_task(args.task)
    given = getattr(args, "given_dests", set())
    if task.name == "image":
        task.check_model(args.model)
        return {}
    params = {}
    if "model" not in given:
        args.model = task.model
        params = dict(task.model_params)
    if task.kind == "lm":
        _check_lm_options(args, task, given)
    schemes = task.schemes_for(resolve_model(args.model)) if "model" in given else task.schemes
    fills = {
        "schemes": ",".join(schemes),
        "scheme": schemes[0],  # initlab train: one run, under the task's first scheme
        "epochs": task.epochs,
        "batch_size": task.batch_size,
        "lr": task.lr,
        "max_steps": task.max_steps,
    }
    for dest, value in fills.items():
        if hasattr(args, dest) and dest not in given:
            setattr(args, dest, value)
    if task.kind != "lm" and not {"dataset", "data"} & given:
        args.dataset = task.dataset
    task.check_model(args.model)
    return params


def _check_lm_options(args: argparse.Namespace, task, given: set) -> None:
    """Refuse the options a language-model task would ignore or trip over, in its flags.

    - ``--val-fraction`` typed: the corpus's validation part is fixed (the 5% of the text after
      the training part, :func:`~initlab.datasets.text.char_corpus`), so a fraction typed
      would be ignored while ``--lr-grid`` chooses on that part.
    - ``--model-arg seq_len=N``: the model's context length (char-gpt's positions), which
      follows the training window ``--seq-len`` when not given; it must be an integer at
      least that window, and a model without one (char-rnn) takes its window from
      ``--seq-len`` alone.

    Raises:
        ArgumentError: (argument ``val_fraction``) ``--val-fraction`` typed; (argument
            ``model_params``) a ``seq_len`` model argument that is not an int >= the window,
            or one given to a zoo model that takes none.
    """
    from initlab._checks import ArgumentError
    from initlab.zoo.factory import parse_model_args
    from initlab.zoo.models import MODEL_ALIASES, MODELS, accepted_params

    if "val_fraction" in given:
        raise ArgumentError(
            "val_fraction",
            f"task {task.name!r} holds out a fixed validation part of its corpus (the 5% of "
            "the text after the training part), so --val-fraction does not apply; drop it "
            "(--lr-grid chooses on that part)",
        )
    typed = parse_model_args(getattr(args, "model_param", None) or [], "model_params")
    if "seq_len" not in typed:
        return
    value = typed["seq_len"]
    window = args.seq_len or task.seq_len
    where = "--seq-len" if args.seq_len else f"--seq-len, the task's default {task.seq_len}"
    zoo = args.model in MODELS or args.model in MODEL_ALIASES
    if zoo and "seq_len" not in accepted_params(args.model):
        raise ArgumentError(
            "model_params",
            f"model {args.model!r} takes no seq_len; the windows it trains on are set with "
            f"--seq-len; got seq_len={value!r}",
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(
            "model_params",
            f"seq_len is the model's context length, an integer >= 1 that defaults to the "
            f"training window ({where}); got seq_len={value!r}",
        )
    if value < window:
        raise ArgumentError(
            "model_params",
            f"seq_len={value} (the model's context length) is shorter than the "
            f"training windows of {window} characters ({where}); give --seq-len {value}, or "
            "leave seq_len out of --model-arg: it follows --seq-len",
        )


def resolve_model(name: str) -> str:
    """The zoo name of ``name`` (an alias resolved), or ``name`` itself (a factory, unknown)."""
    from initlab.zoo.models import MODEL_ALIASES

    return MODEL_ALIASES.get(name, name)


def train_lm(args: argparse.Namespace, config, given: dict, flags: dict) -> int:
    """``initlab train --task char-lm``: one language-model run, printing per epoch the
    training loss and the validation and test bits per character.

    Args:
        args: the parsed options, the task's defaults applied (:func:`apply_task_defaults`).
        config: the run's :class:`~initlab.experiments.config.TrainConfig`.
        given: the model's parameters (the task's, then ``--model-arg``).
        flags: library argument -> flag, for the error message.
    """
    import os

    import torch

    from initlab.cli import print_error
    from initlab.cli._validate import scheme_applies
    from initlab.experiments.data import check_fit, lm_data, lm_params
    from initlab.experiments.tasks import resolve_task
    from initlab.experiments.trainer import resolve_device, train_scheme
    from initlab.reports.compare import format_loss
    from initlab.zoo.models import build_model

    task = resolve_task(args.task)
    if args.dataset is not None or args.data is not None:
        from initlab._checks import ArgumentError

        error = ArgumentError(
            "dataset",
            f"task {task.name!r} trains on a text corpus (--text-file), not on a dataset; got "
            f"dataset={args.dataset!r}, data={args.data!r}",
        )
        return print_error("train", error, flags)
    seq_len = args.seq_len or task.seq_len
    device = resolve_device(args.device)
    text = None if args.text_file is None else os.path.abspath(args.text_file)
    task.check_model(args.model)
    data, vocab = lm_data(
        text, seq_len, device, train_subset=args.train_subset, test_subset=args.test_subset
    )
    params = lm_params(args.model, given, vocab, seq_len)
    scheme_applies(args.model, args.scheme, params)
    with torch.random.fork_rng(devices=[]):
        check_fit(task, build_model(args.model, **params).to(device), data, args.model)

    def show(record) -> None:
        print(f"Epoch {record.epoch}, Loss: {format_loss(record.train_loss)}")
        print(f"Validation BPC: {record.val_bpc:.4f}, Test BPC: {record.test_bpc:.4f}", flush=True)

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
