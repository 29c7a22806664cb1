"""``initlab models``: the zoo, each model with its parameters, their defaults and its aliases;
with ``--task NAME`` the task's models with the values that task trains them with."""

from __future__ import annotations

import argparse
import inspect

HELP = "list the zoo models with their parameters (--model-arg NAME=VALUE), defaults and aliases"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help=HELP,
        description=(
            "List every zoo model that --model accepts, with its aliases, its one-line "
            "description and its keyword arguments with their defaults (read from the "
            "signature), which --model-arg NAME=VALUE sets. With MODULE:FUNCTION, list the "
            "keyword arguments of your own factory instead. With --task NAME, list the models "
            "that fit the task with the values it uses (its default model's parameters, a "
            "language model's vocabulary and window) where they differ from the zoo's."
        ),
    )
    from initlab.cli._tasks import TASK_NAMES  # no library import: --help stays fast

    parser.add_argument(
        "--task",
        default=None,
        choices=TASK_NAMES,
        help="show the models of this task of initlab train/compare/diagnose --task, with the "
        "task's values (default: none, the zoo's defaults)",
    )
    parser.add_argument(
        "factory",
        nargs="?",
        default=None,
        metavar="MODULE:FUNCTION",
        help="show the parameters of this factory instead of the zoo (default: the zoo)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.cli import print_error

    try:
        print(format_models(args.factory, task=args.task))
    except (ValueError, TypeError) as error:
        return print_error("models", error, {"model": "MODULE:FUNCTION", "task": "--task"})
    return 0


def format_models(factory: str | None = None, *, task: str | None = None) -> str:
    """The listing: per model a line ``NAME (alias: ...) - description`` and one line per
    parameter ``  NAME = DEFAULT`` (``(required)`` without a default).

    With ``task`` (a name of :data:`~initlab.experiments.tasks.TASKS`), only the task's models
    (:meth:`~initlab.experiments.tasks.Task.model_names`, its default model first), each
    parameter with the value the task trains with: the task's ``model_params`` for its default
    model (typed ``--model-arg`` values override them); for a language model the corpus's
    vocabulary (``vocab_size``) and the window (``seq_len``: ``--seq-len``, default the
    task's), as :func:`initlab.cli._tasks.apply_task_defaults` and
    :func:`~initlab.experiments.data.lm_params` fill them; for a classifier the head's
    ``num_classes``, fitted to the task's dataset
    (:func:`~initlab.experiments.data.head_params`). A value that differs from the zoo's
    says so: ``d_model = 64  (task; zoo: 128)``.

    Raises:
        ArgumentError: ``factory`` does not resolve (:func:`initlab.zoo.factory.resolve_factory`);
            ``factory`` and ``task`` both given (argument ``task``); an unknown ``task``.
    """
    from initlab.zoo.factory import resolve_factory
    from initlab.zoo.models import MODELS, model_aliases, model_defaults

    if task is not None:
        if factory is not None:
            from initlab._checks import ArgumentError

            raise ArgumentError(
                "task",
                f"--task lists the zoo models of a task; a factory {factory!r} is yours, and "
                "its parameters are its own: give MODULE:FUNCTION or --task, not both",
            )
        return _task_models(task)

    if factory is not None:
        doc = (inspect.getdoc(resolve_factory(factory)) or "").strip()
        head = f"{factory}" + (f" - {doc.splitlines()[0]}" if doc else "")
        return "\n".join([head, *_params(model_defaults(factory))])
    lines = []
    for name in sorted(MODELS):
        aliases = model_aliases(name)
        doc = (inspect.getdoc(MODELS[name]) or "").strip().splitlines()
        alias = f" (alias: {', '.join(aliases)})" if aliases else ""
        lines.append(f"{name}{alias} - {doc[0] if doc else ''}".rstrip(" -"))
        lines.extend(_params(model_defaults(name)))
    lines.append(
        "\nSet a parameter with --model NAME --model-arg PARAM=VALUE (a Python literal, e.g. "
        "--model cnn --model-arg channels=[8,16]); --model MODULE:FUNCTION trains your own."
    )
    return "\n".join(lines)


def _task_models(name: str) -> str:
    """:func:`format_models` for ``--task NAME``."""
    from initlab.datasets.families import DATASETS
    from initlab.experiments.tasks import resolve_task
    from initlab.zoo.models import MODELS, model_aliases, model_defaults

    task = resolve_task(name)
    models = [task.model, *(m for m in task.model_names() if m != task.model)]
    lines = [f"--task {task.name}: {task.description}"]
    for model in models:
        aliases = model_aliases(model)
        doc = (inspect.getdoc(MODELS[model]) or "").strip().splitlines()
        alias = f" (alias: {', '.join(aliases)})" if aliases else ""
        role = " [the task's default model]" if model == task.model else ""
        lines.append(f"{model}{alias}{role} - {doc[0] if doc else ''}".rstrip(" -"))
        defaults = model_defaults(model)
        used = dict(task.model_params) if model == task.model else {}
        described = {}  # filled from the data at run time (experiments.data.lm_params)
        if task.kind == "lm":
            described["vocab_size"] = "the corpus's characters (--text-file)"
            described["seq_len"] = f"--seq-len ({task.seq_len})"
        elif "num_classes" not in used:  # the head is fitted to the data (data.head_params)
            info = DATASETS.get(task.dataset)
            if info is not None:
                used["num_classes"] = info.num_classes
            else:
                described["num_classes"] = f"the classes of {task.dataset}"
        lines.extend(_params(defaults, used, described))
    lines.append(
        f"\nWith --task {task.name}, --model picks one of these (default: {task.model}); "
        "--model-arg PARAM=VALUE overrides the values above; --model MODULE:FUNCTION trains "
        f"your own, which must return {task.output()}."
    )
    return "\n".join(lines)


def _params(defaults: dict, used: dict | None = None, described: dict | None = None) -> list[str]:
    """One line per parameter: its zoo default, or the task's value with the zoo default beside
    it (``used``: values, shown as Python writes them; ``described``: values in words)."""
    used, described = used or {}, described or {}
    if not defaults:
        return ["  (no parameters)"]
    width = max(len(name) for name in defaults)
    lines = []
    for name, default in defaults.items():
        zoo = "(required)" if default is inspect.Parameter.empty else repr(default)
        if name in described or (name in used and used[name] != default):
            shown = described.get(name) or repr(used[name])
            lines.append(f"  {name.ljust(width)} = {shown}  (task; zoo: {zoo})")
        else:
            lines.append(f"  {name.ljust(width)} = {zoo}")
    return lines
