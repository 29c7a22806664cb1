"""Synthetic data of the classic experiments: remember the first token, and a linear teacher.

* :func:`first_token_dataset`: random token sequences labeled by their first token, the
  long-range memory test an LSTM's forget-gate bias is about (Hochreiter and Schmidhuber,
  "Long Short-Term Memory", 1997, Sec. 5, Experiment 2: targets set by an input seen many steps
  before; Jozefowicz, Zaremba and Sutskever 2015, Sec. 2.2, on the forget bias). The sequence
  is stored as a square image read one pixel per step (the zoo's ``seq-rnn`` with
  ``order="pixels", pool=1``), so every trainer and dataset check of initlab applies unchanged.
  :func:`first_token` is the zero-argument factory (``initlab.datasets.synthetic:first_token``)
  of the ``first-token`` task.
* :func:`linear_teacher`: regression data ``y = A x`` from a fixed random matrix, for deep
  linear networks trained on the squared error (Saxe, McClelland and Ganguli, "Exact solutions
  to the nonlinear dynamics of learning in deep linear neural networks", ICLR 2014).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from initlab._checks import ArgumentError
from initlab.datasets.families import Dataset

__all__ = ["LinearTeacher", "first_token", "first_token_dataset", "linear_teacher"]


def _positive(argument: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArgumentError(
            argument, f"{argument} must be an int >= {minimum}; got {argument}={value!r}"
        )
    return value


def first_token_dataset(
    *,
    side: int = 5,
    vocab: int = 4,
    n_train: int = 12800,
    n_test: int = 1000,
    seed: int = 0,
) -> Dataset:
    """Return sequences of ``side**2`` random tokens, each labeled by its first token.

    Every token is drawn uniformly from ``0 .. vocab-1``, independently (a
    ``torch.Generator`` seeded with ``seed``; the test split follows the training one in the
    same stream). A sequence is stored as a ``side x side`` uint8 image in row-major order,
    token ``k`` as the pixel ``round(255 * k / (vocab - 1))``, so a model reads the value
    ``k / (vocab - 1)`` in [0, 1] per step; its label is the token at step 0, the top-left
    pixel. Only a network that carries it across ``side**2 - 1`` steps beats chance,
    ``1 / vocab``.

    Args:
        side: the image side; the sequence has ``side**2`` steps, side >= 2.
        vocab: number of tokens and classes, >= 2 (at most 256).
        n_train, n_test: examples per split, >= 1.
        seed: the draw's seed.

    Returns:
        A :class:`~initlab.datasets.families.Dataset` named ``"first-token"``, images
        ``(N, side, side)`` uint8, labels ``(N,)`` int64, ``num_classes = vocab``.

    Raises:
        ArgumentError: a size out of range (naming it).

    Example:
        >>> d = first_token_dataset(side=3, vocab=2, n_train=4, n_test=2)
        >>> bool((d.train_labels == (d.train_images[:, 0, 0] == 255).long()).all())
        True
    """
    _positive("side", side, 2)
    _positive("vocab", vocab, 2)
    _positive("n_train", n_train)
    _positive("n_test", n_test)
    if vocab > 256:
        raise ArgumentError("vocab", f"vocab must be at most 256 (uint8 pixels); got vocab={vocab}")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n_train + n_test, side, side), generator=generator)
    pixels = torch.round(tokens.double() * (255 / (vocab - 1))).to(torch.uint8)
    labels = tokens[:, 0, 0].clone()  # the first step of the row-major sequence
    return Dataset(
        "first-token",
        pixels[:n_train],
        labels[:n_train],
        pixels[n_train:],
        labels[n_train:],
        vocab,
        f"synthetic:first_token(side={side}, vocab={vocab}, seed={seed})",
    )


def first_token() -> Dataset:
    """The ``first-token`` task's data: :func:`first_token_dataset` with its defaults (25
    steps, 4 tokens, 12,800 training sequences, 200 batches of 64, and 1000 test sequences,
    seed 0)."""
    return first_token_dataset()


@dataclass(frozen=True)
class LinearTeacher:
    """Regression data from a linear teacher: ``y = x @ teacher.T``.

    Attributes:
        x: inputs ``(N, in_features)`` float32, standard normal.
        y: targets ``(N, out_features)`` float32.
        teacher: the matrix ``A`` ``(out_features, in_features)`` float32.
    """

    x: torch.Tensor
    y: torch.Tensor
    teacher: torch.Tensor


def linear_teacher(
    in_features: int = 16, out_features: int = 16, examples: int = 256, *, seed: int = 0
) -> LinearTeacher:
    """Draw a linear teacher ``A`` with N(0, 1/in_features) entries and ``examples`` pairs.

    ``x`` is standard normal, so ``E[y_i^2] = 1`` per output on average over teachers; the
    input-output correlation ``E[y x^T] = A`` is what a deep linear network learns, mode by
    mode, in Saxe et al. 2014 (Sec. 2, eq. 3-6). One ``torch.Generator`` seeded with ``seed``
    draws ``A`` first, then ``x``.

    Raises:
        ArgumentError: a size below 1 (naming it).

    Example:
        >>> data = linear_teacher(3, 2, 5)
        >>> torch.equal(data.y, data.x @ data.teacher.T), tuple(data.y.shape)
        (True, (5, 2))
    """
    _positive("in_features", in_features)
    _positive("out_features", out_features)
    _positive("examples", examples)
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(out_features, in_features, generator=generator) / math.sqrt(in_features)
    x = torch.randn(examples, in_features, generator=generator)
    return LinearTeacher(x, x @ teacher.T, teacher)
