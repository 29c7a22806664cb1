"""A validation split held out from the training data, for the choices a comparison makes.

:func:`validation_indices` draws which training examples are held out (seeded, reproducible);
:func:`hold_out` splits a :class:`~initlab.datasets.families.Dataset` with them. The test split
is never touched: choices (such as each scheme's learning rate) are made on the held-out
examples, and the test set gives only the final numbers.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from initlab._checks import ArgumentError
from initlab.datasets.families import Dataset

__all__ = ["check_fraction", "hold_out", "validation_indices"]


def check_fraction(fraction: float, argument: str = "val_fraction") -> float:
    """Return ``fraction`` as a float if it lies in the open interval (0, 1).

    Raises:
        ArgumentError: (argument ``argument``) not a number strictly between 0 and 1.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ArgumentError(argument, f"{argument} must be a number; got {fraction!r}")
    if not 0.0 < fraction < 1.0 or not math.isfinite(fraction):
        raise ArgumentError(
            argument, f"{argument} must lie strictly between 0 and 1; got {argument}={fraction!r}"
        )
    return float(fraction)


def validation_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into kept training indices and held-out validation indices.

    ``round(n * fraction)`` indices (at least 1) are the first of a ``torch.randperm(n)`` drawn
    from a generator seeded with ``seed``; the rest stay for training. Both are sorted (the
    examples keep their order), disjoint and together ``range(n)``; the same ``(n, fraction,
    seed)`` always gives the same split. Not stratified.

    Args:
        n: training examples, >= 2.
        fraction: the held-out fraction, in (0, 1).
        seed: seed of the draw.

    Returns:
        ``(train, val)``: int64 index tensors of shapes ``(n - k,)`` and ``(k,)``.

    Raises:
        ArgumentError: (argument ``val_fraction``) a fraction outside (0, 1), or one that leaves
            no example on one side.
    """
    check_fraction(fraction)
    k = max(1, round(n * fraction))
    if k >= n:
        raise ArgumentError(
            "val_fraction",
            f"val_fraction={fraction!r} of {n} training examples leaves none to train on",
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[k:].sort().values, order[:k].sort().values


def hold_out(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold a validation split out of ``dataset``'s training split.

    Returns:
        ``(fit, val)``: ``fit`` trains on the kept examples and tests on the original test
        split; ``val`` has the same training split and the held-out examples as its test
        split (so statistics computed on the training split, such as standardization's, are
        the same for both).

    Raises:
        As :func:`validation_indices`.
    """
    train, val = validation_indices(len(dataset.train_labels), fraction, seed)
    fit = dataclasses.replace(
        dataset, train_images=dataset.train_images[train], train_labels=dataset.train_labels[train]
    )
    held = dataclasses.replace(
        fit, test_images=dataset.train_images[val], test_labels=dataset.train_labels[val]
    )
    return fit, held
