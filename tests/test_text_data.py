"""Character-level text data: the embedded corpus, the contiguous split, windows, bpc, errors.

Reference values (length, SHA-256, vocabulary size of the embedded text) are those written in
src/initlab/datasets/data/shakespeare/README.md, computed by its build script, not by initlab.
"""

import gzip
import hashlib
import importlib.resources
import math

import pytest
import torch

import initlab.datasets as datasets
from initlab._checks import ArgumentError
from initlab.datasets import text as text_module
from initlab.datasets.text import (
    DEFAULT_CORPUS,
    MIN_CHARS,
    CharCorpus,
    bits_per_character,
    char_corpus,
    load_text,
    windows,
)

TEXT_SHA256 = "b1fe921a1de75fe58b9300b20f88661e9e99f8d8c31a14ec514ba5ae2f0f2aca"
GZ_SHA256 = "581e1cbfdfaba66c4e9851a5ee598a7b4d7d06a503e7568cb8513cbf465243bd"
TEXT_CHARS = 993_221
VOCAB_SIZE = 73


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_text()


@pytest.fixture(scope="module")
def corpus(shakespeare) -> CharCorpus:
    return char_corpus(shakespeare)


def long_text(n: int = MIN_CHARS) -> str:
    line = "To be, or not to be: that is the question.\n"
    return (line * (n // len(line) + 1))[:n]


# --- the embedded corpus ---------------------------------------------------------------------


def test_embedded_corpus_has_documented_size_and_digest(shakespeare):
    assert DEFAULT_CORPUS == "shakespeare"
    assert len(shakespeare) == TEXT_CHARS
    assert hashlib.sha256(shakespeare.encode("utf-8")).hexdigest() == TEXT_SHA256
    assert len(set(shakespeare)) == VOCAB_SIZE
    assert shakespeare.startswith("ROMEO AND JULIET\n\nby William Shakespeare\n")
    assert shakespeare.isascii() and "\r" not in shakespeare


def test_embedded_gz_is_the_documented_file():
    resource = importlib.resources.files("initlab.datasets") / "data" / "shakespeare"
    raw = (resource / "shakespeare.txt.gz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == GZ_SHA256
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME field is zero: a reproducible file
    assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == TEXT_SHA256
    readme = (resource / "README.md").read_text()
    for value in (TEXT_SHA256, GZ_SHA256, "993,221", "73 distinct"):
        assert value in readme


def test_embedded_checksum_mismatch_is_an_error(monkeypatch):
    monkeypatch.setattr(text_module, "CORPUS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch.*" + TEXT_SHA256):
        load_text()


def test_exported_from_the_package():
    for name in ("load_text", "char_corpus", "windows", "bits_per_character", "CharCorpus"):
        assert getattr(datasets, name) is getattr(text_module, name)
        assert name in datasets.__all__


# --- split ------------------------------------------------------------------------------------


def test_default_split_sizes_and_contiguity(shakespeare, corpus):
    # round(993221 * 0.05) = round(49661.05) = 49661 for validation and test each
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (893_899, 49_661, 49_661)
    for part in (corpus.train, corpus.val, corpus.test):
        assert part.dtype == torch.int64 and part.ndim == 1
    whole = torch.cat([corpus.train, corpus.val, corpus.test])
    assert corpus.decode(whole) == shakespeare
    assert corpus.decode(corpus.val) == shakespeare[893_899 : 893_899 + 49_661]
    assert corpus.decode(corpus.test) == shakespeare[-49_661:]


def test_vocab_is_sorted_unique_characters_of_whole_text(shakespeare, corpus):
    assert corpus.vocab == "".join(sorted(set(shakespeare)))
    assert corpus.vocab_size == VOCAB_SIZE == len(corpus.vocab)
    assert corpus.vocab[0] == "\n" and corpus.vocab[1] == " "
    assert int(corpus.train.max()) == VOCAB_SIZE - 1  # "}" is the last, occurs in training
    # ids follow code points: "A" is id of "A" in the sorted vocabulary
    assert corpus.encode("A").tolist() == [corpus.vocab.index("A")]


def test_vocab_covers_characters_seen_only_in_test():
    text = "a" * 90 + "b" * 5 + "cz" * 2 + "Q"  # 100 characters; "z" and "Q" only in test
    split = char_corpus(text)
    assert split.vocab == "Qabcz"
    assert (len(split.train), len(split.val), len(split.test)) == (90, 5, 5)
    assert split.decode(split.test) == "czczQ"
    assert split.decode(split.train) == "a" * 90


def test_encode_decode_round_trip(corpus):
    sample = "O Romeo, Romeo! wherefore art thou Romeo?\n"
    assert corpus.decode(corpus.encode(sample)) == sample
    assert corpus.decode([]) == "" and corpus.encode("").shape == (0,)
    assert corpus.decode(corpus.encode(sample).tolist()) == sample


def test_non_ascii_round_trip():
    text = "naïve café — 日本語 🎭\n" * 10
    split = char_corpus(text, val_fraction=0.1, test_fraction=0.1)
    whole = torch.cat([split.train, split.val, split.test])
    assert split.decode(whole) == text
    assert split.vocab == "".join(sorted(set(text)))


def test_custom_fractions_and_zero_parts():
    text = long_text(1000)
    split = char_corpus(text, val_fraction=0.2, test_fraction=0.0)
    assert (len(split.train), len(split.val), len(split.test)) == (800, 200, 0)


@pytest.mark.parametrize(
    ("kwargs", "argument", "match"),
    [
        ({"val_fraction": -0.1}, "val_fraction", r"\[0, 1\); got val_fraction=-0.1"),
        ({"test_fraction": 1.0}, "test_fraction", r"\[0, 1\); got test_fraction=1.0"),
        ({"val_fraction": float("nan")}, "val_fraction", "got val_fraction=nan"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction", "below 1"),
        ({"val_fraction": 1e-6}, "val_fraction", "gives no characters"),
    ],
)
def test_bad_fractions(kwargs, argument, match):
    with pytest.raises(ArgumentError, match=match) as info:
        char_corpus(long_text(1000), **kwargs)
    assert info.value.argument == argument


def test_bad_text_and_type_errors(corpus):
    with pytest.raises(ArgumentError, match="text is empty"):
        char_corpus("")
    with pytest.raises(TypeError, match="text must be a str"):
        char_corpus(b"bytes")
    with pytest.raises(TypeError, match="val_fraction must be a real number"):
        char_corpus("abc", val_fraction="0.1")
    with pytest.raises(ArgumentError, match=r"'€' at index 2, a character not in") as info:
        corpus.encode("ab€")
    assert info.value.argument == "text"
    with pytest.raises(ArgumentError, match=r"ids must lie in 0..72 .*got 73"):
        corpus.decode([0, 73])
    with pytest.raises(ArgumentError, match=r"got -1"):
        corpus.decode(torch.tensor([-1]))
    with pytest.raises(ArgumentError, match="1-D sequence of integer ids"):
        corpus.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ArgumentError, match="1-D sequence of integer ids"):
        corpus.decode([1.0, 2.0])


def test_char_corpus_fields_are_checked():
    ids = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ArgumentError, match="sorted order"):
        CharCorpus("ba", ids, ids, ids)
    with pytest.raises(ArgumentError, match="val must be a 1-D int64"):
        CharCorpus("ab", ids, ids.int(), ids)


# --- windows ----------------------------------------------------------------------------------


def test_windows_shapes_and_shift():
    tokens = torch.arange(23)  # (23 - 1) // 5 = 4 windows; tokens 21, 22 are left out
    x, y = windows(tokens, 5)
    assert x.shape == y.shape == (4, 5) and x.dtype == y.dtype == torch.int64
    assert x.tolist()[1] == [5, 6, 7, 8, 9] and y.tolist()[1] == [6, 7, 8, 9, 10]
    assert torch.equal(y[:, :-1], x[:, 1:])  # y[i, t] == x[i, t + 1]
    assert torch.equal(y[:-1, -1], x[1:, 0])  # last target == next window's first input
    assert int(y[-1, -1]) == 20


def test_windows_exact_fit_and_int32_tokens():
    x, y = windows(torch.arange(11, dtype=torch.int32), 5)  # 11 = 2 * 5 + 1: two windows
    assert x.shape == (2, 5) and x.dtype == torch.int64 and int(y[-1, -1]) == 10


def test_windows_on_the_corpus(corpus):
    x, y = windows(corpus.train, 256, part="train")
    assert x.shape == ((893_899 - 1) // 256, 256) == (3491, 256)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:-1, -1], x[1:, 0])
    assert torch.equal(x.reshape(-1), corpus.train[: 3491 * 256])
    # MIN_CHARS promises at least 4 windows of 256 in each part of the shortest text
    small = char_corpus(long_text(MIN_CHARS))
    for name in ("train", "val", "test"):
        assert len(windows(getattr(small, name), 256, part=name)[0]) >= 4


def test_windows_errors():
    with pytest.raises(ArgumentError, match=r"the val part has 5 tokens.*seq_len \+ 1 = 6") as info:
        windows(torch.arange(5), 5, part="val")
    assert info.value.argument == "seq_len"
    with pytest.raises(ValueError, match="seq_len must be >= 1; got seq_len=0"):
        windows(torch.arange(5), 0)
    with pytest.raises(TypeError, match="integer ids"):
        windows(torch.zeros(5), 2)
    with pytest.raises(ValueError, match=r"1-D \(L,\); got shape \(2, 3\)"):
        windows(torch.zeros(2, 3, dtype=torch.long), 2)


# --- bits per character -----------------------------------------------------------------------


def test_bits_per_character():
    assert bits_per_character(math.log(2)) == 1.0
    assert bits_per_character(0) == 0.0
    assert bits_per_character(math.log(73)) == pytest.approx(math.log2(73), rel=1e-15)
    assert bits_per_character(math.inf) == math.inf
    with pytest.raises(ValueError, match="nats must be >= 0"):
        bits_per_character(-0.1)
    with pytest.raises(TypeError, match="nats must be a real number"):
        bits_per_character("1.0")


# --- load_text errors -------------------------------------------------------------------------


def test_load_text_reads_a_file(tmp_path):
    path = tmp_path / "a.txt"
    text = long_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())  # BOM, CRLF
    assert load_text(path) == text
    assert load_text(str(path)) == text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "does not exist"),
        ("dir", "is a directory"),
        (b"", "is empty"),
        (b"abc\0def" + b"x" * MIN_CHARS, "NUL byte at byte offset 3"),
        (b"abc\xff" + b"x" * MIN_CHARS, r"not valid UTF-8 at byte offset 3"),
        (b"x" * (MIN_CHARS - 1), f"has {MIN_CHARS - 1} characters; at least {MIN_CHARS}"),
    ],
    ids=["missing", "directory", "empty", "nul", "invalid-utf8", "too-short"],
)
def test_load_text_errors(tmp_path, content, match):
    path = tmp_path / "corpus.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ArgumentError, match=match) as info:
        load_text(path)
    assert info.value.argument == "text_file"
    assert str(path) in str(info.value)


def test_load_text_counts_characters_not_bytes(tmp_path):
    path = tmp_path / "accents.txt"
    path.write_text("é" * (MIN_CHARS - 1), encoding="utf-8")  # 2 bytes each: bytes > MIN_CHARS
    with pytest.raises(ArgumentError, match=f"has {MIN_CHARS - 1} characters"):
        load_text(path)


def test_load_text_path_type():
    with pytest.raises(TypeError, match="path must be a str"):
        load_text(3)
