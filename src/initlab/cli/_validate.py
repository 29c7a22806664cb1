"""Checks of command-line values made before any work, worded in the flags the user typed.

The library names its own arguments (``n_test``, ``out_dir``); these checks run first, so that a
mistake ends in an error naming the flag (``--test-subset``, ``--out``), not in a traceback at
the end of a run. Commands import this module inside their ``run``, so ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from initlab._checks import one_of
from initlab.schemes.registry import (
    SCHEMES,
    canonical_scheme,
    check_fits,
    parse_scheme,
    scheme_names,
)
from initlab.zoo.models import build_model


def split_schemes(
    text: str, accepted: Iterable[str] | None = None, *, source: bool = False
) -> tuple[str, ...]:
    """Split ``--schemes`` on commas; refuse empty entries and names not accepted.

    Only the name before the first ``:`` is checked here; the library parses the options.

    Args:
        text: the flag's value.
        accepted: the scheme names offered, their aliases included; ``None``: every scheme.
        source: offer the schemes that load a source checkpoint (``pretrained``), which only
            ``initlab compare`` prepares.

    Raises:
        ValueError: an entry is empty (``zeros,,normal``, a trailing comma) or names no scheme
            offered (the message lists them all, aliases included).
    """
    entries = tuple(entry.strip() for entry in text.split(","))
    if not all(entries):
        raise ValueError(
            "--schemes must be scheme names separated by single commas, e.g. zeros,normal; "
            f"got an empty entry in --schemes {text!r}"
        )
    offered = set(SCHEMES if accepted is None else accepted)
    names = [
        name
        for name in scheme_names()
        if canonical_scheme(name) in offered or name in offered
        if source or not SCHEMES[canonical_scheme(name)].needs_source
    ]
    for entry in entries:
        one_of("scheme", entry.split(":")[0], names)
    return entries


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Return ``path`` if it is a directory or can be created as one.

    Raises:
        ValueError: ``path``, or the closest of its parents that exists, is not a directory.
    """
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." ends relative paths
    if not existing.is_dir():
        what = "is a file" if existing == path else f"is inside {str(existing)!r}, a file"
        raise ValueError(
            f"{flag} must be a directory (created if missing); got {flag} {str(path)!r}, which "
            f"{what}"
        )
    return path


def output_file(path: str | Path, flag: str) -> Path:
    """Return ``path`` if a file can be written there: its directory exists, it is no directory.

    Raises:
        ValueError: the directory is missing (or is a file), or ``path`` is a directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} must be a file name; got {flag} {str(path)!r}, a directory")
    if not path.parent.is_dir():
        raise ValueError(
            f"{flag} {str(path)!r}: the directory {str(path.parent)!r} does not exist; "
            "create it first or give another path"
        )
    return path


def subset_sizes(dataset, train_subset: int | None, test_subset: int | None) -> None:
    """Refuse a ``--train-subset`` or ``--test-subset`` larger than its split of ``dataset``.

    Args:
        dataset: a loaded :class:`~initlab.datasets.families.Dataset`.

    Raises:
        ValueError: a size exceeds its split; the message gives the split's size.
    """
    splits = (
        ("--train-subset", train_subset, "training", len(dataset.train_labels)),
        ("--test-subset", test_subset, "test", len(dataset.test_labels)),
    )
    for flag, size, split, total in splits:
        if size is not None and size > total:
            raise ValueError(
                f"{flag} must be at most {total}, the size of the {dataset.name} {split} split; "
                f"got {flag} {size}"
            )


def scheme_applies(model: str, scheme: str, params: dict) -> None:
    """Initialize a throwaway zoo ``model`` by ``scheme``; say so if the scheme does not fit it.

    Steps that need data (LSUV's batch) are left to the run (:func:`check_fits`); ``initlab
    compare`` runs the same check inside its sweep.

    Raises:
        ValueError: ``scheme`` loads a source checkpoint (only ``initlab compare`` prepares
            one), or fails on ``model``, e.g. ``fixup`` on a model without residual blocks (the
            message names the model and which models to use); or the model or its parameters
            are invalid (the library's own message).
    """
    spec, _ = parse_scheme(scheme)  # an unknown name or option is not a misfit: its own message
    if spec.needs_source:
        raise ValueError(
            f"scheme {scheme!r} loads a source checkpoint, which only initlab compare prepares "
            f"(it pretrains the model on --pretrain-dataset): use initlab compare --schemes "
            f"{scheme}"
        )
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG
        net = build_model(model, **params)
    check_fits(net, scheme, model)


def in_flags(error: BaseException, flags: Mapping[str, str], task: str = "image") -> BaseException:
    """``error`` as the command line says it: missing IDX files told in the flags.

    :class:`~initlab.datasets.families.DataNotFoundError` words its advice in library
    arguments ("give their directory as data_dir or fetch them with download=True"); from its
    fields (the dataset, what was searched, whether the files can be fetched, the hint) this
    builds the same message in the flags (``--data-dir DIR``, ``--download``), led by what the
    ``task`` needs when it trains on the missing dataset (``--task vit``: Fashion-MNIST, not
    embedded), else by the library's own context (``scheme 'pretrained' pretrains on ...``).
    Any other error, one whose argument has no flag in ``flags``, or a directory that does not
    exist (its message names the path) is returned unchanged.

    Args:
        error: the error a command caught.
        flags: library argument -> flag, the command's (``data_dir`` -> ``--data-dir``).
        task: the ``--task`` given.

    Returns:
        An :class:`~initlab._checks.ArgumentError` naming the same argument, or ``error``.
    """
    from initlab._checks import ArgumentError
    from initlab.datasets.families import DataNotFoundError
    from initlab.experiments.tasks import TASKS

    if not isinstance(error, DataNotFoundError) or error.argument not in flags:
        return error
    if error.searched is None:  # a --data-dir that is no directory: the message says so
        return error
    fetch = ""
    if error.fetchable and error.argument == "data_dir" and "download" in flags:
        fetch = f" or fetch them with {flags['download']}"
    spec = TASKS.get(task)
    context = error.context  # what the library was loading (the pretrained scheme's source)
    if spec is not None and spec.needs_files and error.dataset == spec.dataset:
        # the task's own words, in flags (the sweep's context names data_dir, download=True)
        context = f"--task {spec.name} trains on {spec.dataset!r}, which initlab does not embed: "
    return ArgumentError(
        error.argument,
        f"{context}dataset {error.dataset!r}: {error.searched}\nGive their directory with "
        f"{flags[error.argument]} DIR{fetch}{error.hint}.",
    )
