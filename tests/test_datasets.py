"""Dataset loading: the embedded MNIST, Fashion-MNIST from a directory, file layouts, checksums.

Reference values (label counts, first labels, pixel sums) are the content checks published in
shared/data/*/SOURCES.md, computed independently of initlab.
"""

import dataclasses
import gzip
import hashlib
import logging
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab._checks import ArgumentError
from initlab.datasets import families as datasets
from initlab.datasets.families import (
    DATASETS,
    FILE_NAMES,
    ChecksumError,
    Dataset,
    load_dataset,
)

SHARED = Path("/work/shared/data")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def shared(name: str) -> Path:
    directory = SHARED / name
    if not directory.is_dir():
        pytest.skip(f"real data directory {directory} is missing (see shared/data/SOURCES.md)")
    return directory


def link_all(source: Path, target: Path, names=FILE_NAMES) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(source / f"{name}.gz", target / f"{name}.gz")
    return target


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def write_tiny(directory: Path, train_labels, test_labels, *, n_images=None) -> Path:
    """Write a tiny 4x4 dataset whose image i is filled with the value i."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, labels in (("train", train_labels), ("t10k", test_labels)):
        n = len(labels) if n_images is None else n_images
        images = np.repeat(np.arange(n, dtype=np.uint8), 16).reshape(n, 4, 4)
        write_idx(directory / f"{stem}-images-idx3-ubyte", images)
        # Lists become uint8 (type 0x08); int8 arrays (type 0x09) allow negative labels.
        labels = labels if isinstance(labels, np.ndarray) else np.array(labels, dtype=np.uint8)
        code = 0x09 if labels.dtype == np.int8 else 0x08
        write_idx(directory / f"{stem}-labels-idx1-ubyte", labels, code)
    return directory


@pytest.fixture(scope="module")
def mnist():
    return load_dataset()


@pytest.fixture(scope="module")
def raw_mnist_dir(tmp_path_factory):
    """MNIST decompressed, under the dotted names ("train-images.idx3-ubyte")."""
    source = shared("mnist")
    target = tmp_path_factory.mktemp("raw-mnist")
    for name in FILE_NAMES:
        dotted = name.replace("-idx", ".idx")
        (target / dotted).write_bytes(gzip.decompress((source / f"{name}.gz").read_bytes()))
    return target


# --- embedded MNIST -----------------------------------------------------------------------


def test_embedded_mnist_shapes_and_dtypes(mnist):
    assert mnist.name == "mnist"
    assert mnist.source == "embedded"
    assert mnist.num_classes == 10
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == mnist.test_images.dtype == torch.uint8
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_labels.shape == (10000,)
    assert mnist.train_labels.dtype == mnist.test_labels.dtype == torch.int64


def test_embedded_mnist_content(mnist):
    assert torch.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels).tolist() == MNIST_TEST_COUNTS
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert int(mnist.train_images.sum(dtype=torch.int64)) == 1_567_298_545
    assert int(mnist.test_images.sum(dtype=torch.int64)) == 264_923_200


def test_embedded_checksum_is_verified(monkeypatch):
    info = DATASETS["mnist"]
    wrong = "0" * 64
    files = (info.files[0], dataclasses.replace(info.files[1], sha256=wrong), *info.files[2:])
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(info, files=files))
    actual = info.files[1].sha256
    with pytest.raises(ChecksumError, match=rf"train-labels-idx1-ubyte.gz: .* is {actual}"):
        load_dataset()


def test_repr_shows_shapes_not_pixels(mnist):
    assert repr(mnist) == (
        "Dataset(name='mnist', train=(60000, 28, 28), test=(10000, 28, 28), "
        "num_classes=10, source='embedded')"
    )


# --- Fashion-MNIST and directory layouts --------------------------------------------------


def test_fashion_mnist_from_directory():
    directory = shared("fashion-mnist")
    fashion = load_dataset("fashion-mnist", data_dir=directory)
    assert fashion.name == "fashion-mnist"
    assert fashion.source == str(directory)
    assert fashion.train_images.shape == (60000, 28, 28)
    assert torch.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert int(fashion.train_images.sum(dtype=torch.int64)) == 3_431_114_169
    assert int(fashion.test_images.sum(dtype=torch.int64)) == 573_469_082


def test_fashion_mnist_from_debian_location(tmp_path, monkeypatch):
    debian = link_all(shared("fashion-mnist"), tmp_path / "usr-share-datasets")
    info = dataclasses.replace(DATASETS["fashion-mnist"], system_dirs=(str(debian),))
    monkeypatch.setitem(DATASETS, "fashion-mnist", info)
    fashion = load_dataset("fashion-mnist", cache_dir=tmp_path / "empty-cache")
    assert fashion.source == str(debian)
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10


def test_parent_directory_with_dataset_subfolder(mnist):
    shared("mnist")
    loaded = load_dataset("mnist", data_dir=SHARED)
    assert loaded.source == str(SHARED / "mnist")
    assert torch.equal(loaded.test_labels, mnist.test_labels)


def test_raw_uncompressed_dotted_files(raw_mnist_dir, mnist):
    loaded = load_dataset("mnist", data_dir=raw_mnist_dir)
    assert loaded.source == str(raw_mnist_dir)
    assert torch.equal(loaded.train_images, mnist.train_images)
    assert torch.equal(loaded.test_labels, mnist.test_labels)


def test_torchvision_layout(tmp_path, mnist):
    raw = link_all(shared("mnist"), tmp_path / "MNIST" / "raw")
    loaded = load_dataset("mnist", data_dir=tmp_path)
    assert loaded.source == str(raw)
    assert torch.equal(loaded.train_labels, mnist.train_labels)


def test_download_cache_is_searched_without_download(tmp_path, monkeypatch):
    link_all(shared("fashion-mnist"), tmp_path / "cache" / "fashion-mnist")
    info = dataclasses.replace(DATASETS["fashion-mnist"], system_dirs=())
    monkeypatch.setitem(DATASETS, "fashion-mnist", info)
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    fashion = load_dataset("fashion-mnist")
    assert fashion.source == str(tmp_path / "cache" / "fashion-mnist")


# --- checksums ----------------------------------------------------------------------------


def test_checksum_mismatch_names_file_digests_and_remedy(tmp_path):
    source = shared("mnist")
    link_all(source, tmp_path, names=[n for n in FILE_NAMES if n != "train-labels-idx1-ubyte"])
    labels = np.frombuffer(
        gzip.decompress((source / "train-labels-idx1-ubyte.gz").read_bytes()), np.uint8
    ).copy()
    labels[8] = 3  # after the 8-byte header, the first label 5 becomes 3: valid IDX, wrong data
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels.tobytes())
    actual = hashlib.sha256(labels.tobytes()).hexdigest()
    expected = DATASETS["mnist"].files[1].sha256
    message = (
        rf"{re.escape(str(tmp_path))}/train-labels-idx1-ubyte: checksum mismatch for mnist "
        rf"train-labels-idx1-ubyte: SHA-256 \(uncompressed\) is {actual}, expected {expected}\. "
        r".*delete it and download"
    )
    with pytest.raises(ChecksumError, match=message):
        load_dataset("mnist", data_dir=tmp_path)


def test_recompressed_gzip_verifies_by_its_contents(tmp_path, mnist):
    # Debian re-compressed Fashion-MNIST with other gzip headers: same contents must verify.
    source = shared("mnist")
    link_all(source, tmp_path, names=FILE_NAMES[:3])
    contents = gzip.decompress((source / "t10k-labels-idx1-ubyte.gz").read_bytes())
    packed = gzip.compress(contents, compresslevel=1, mtime=0)
    assert packed != (source / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(packed)
    assert torch.equal(load_dataset("mnist", data_dir=tmp_path).test_labels, mnist.test_labels)


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match=r"name must be a str; got name=10"):
        load_dataset(10)


def test_gz_digest_dataset_rejects_wrong_gz(tmp_path):
    # KMNIST publishes only .gz digests: MNIST's .gz files must fail them.
    link_all(shared("mnist"), tmp_path)
    expected = DATASETS["kmnist"].files[0].gz_sha256
    with pytest.raises(
        ChecksumError, match=rf"SHA-256 \(\.gz\) is 440fcabf.*, expected {expected}"
    ):
        load_dataset("kmnist", data_dir=tmp_path)


def test_gz_digest_dataset_loads_raw_files_unverified(raw_mnist_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="initlab.datasets.families"):
        loaded = load_dataset("kmnist", data_dir=raw_mnist_dir)
    assert loaded.name == "kmnist"
    assert caplog.text.count("no published digest for this form of the file; not verified") == 4


def test_registry_entries_are_complete():
    emnist = {f"emnist-{s}" for s in ("balanced", "byclass", "bymerge", "digits", "letters")}
    assert set(DATASETS) == {"mnist", "fashion-mnist", "kmnist", "emnist-mnist", *emnist}
    for key, info in DATASETS.items():
        if key.startswith("emnist-"):
            continue  # no digests nor mirrors published: tested below
        assert info.name == key
        assert [f.name for f in info.files] == list(FILE_NAMES)
        for file in info.files:
            digest = file.sha256 or file.gz_sha256
            assert len(digest) == 64 and int(digest, 16) >= 0
        assert info.mirrors and all(m.startswith(("http://", "https://")) for m in info.mirrors)
        assert info.num_classes == 10 and info.license


# --- EMNIST ---------------------------------------------------------------------------------


def write_emnist(directory: Path, split: str, train_labels, test_labels, gz=False) -> list:
    """Write EMNIST-named files of 3x4 images stored transposed, as EMNIST stores them.

    Upright image i is ``i * 12 + arange(12)`` row by row (3 rows, 4 columns); the files hold
    its transpose, (4, 3). Returns the upright images of each split.
    """
    directory.mkdir(parents=True, exist_ok=True)
    upright = []
    for stem, labels in (("train", train_labels), ("test", test_labels)):
        n = len(labels)
        images = np.arange(n * 12, dtype=np.uint8).reshape(n, 3, 4)
        upright.append(images)
        base = directory / f"emnist-{split}-{stem}"
        write_idx(Path(f"{base}-images-idx3-ubyte"), images.transpose(0, 2, 1).copy())
        write_idx(Path(f"{base}-labels-idx1-ubyte"), np.array(labels, dtype=np.uint8))
    if gz:
        for path in directory.glob(f"emnist-{split}-*-ubyte"):
            Path(f"{path}.gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return upright


@pytest.mark.parametrize("gz", [False, True])
def test_emnist_balanced_loads_upright_unverified_from_its_own_file_names(tmp_path, caplog, gz):
    train, test = write_emnist(tmp_path, "balanced", [0, 46, 5], [12, 3], gz=gz)
    with caplog.at_level(logging.WARNING, logger="initlab.datasets.families"):
        data = load_dataset("emnist-balanced", data_dir=tmp_path)
    assert caplog.text.count("not verified") == 4
    assert data.num_classes == 47
    assert data.train_images.shape == (3, 3, 4)  # transposed back from the stored (3, 4, 3)
    assert torch.equal(data.train_images, torch.from_numpy(train))
    assert torch.equal(data.test_images, torch.from_numpy(test))
    assert data.train_labels.tolist() == [0, 46, 5] and data.test_labels.tolist() == [12, 3]


def test_emnist_letters_labels_1_to_26_become_0_to_25(tmp_path):
    write_emnist(tmp_path / "EMNIST" / "raw", "letters", [1, 26, 2], [26, 1])  # torchvision
    data = load_dataset("emnist-letters", data_dir=tmp_path)
    assert data.num_classes == 26
    assert data.train_labels.tolist() == [0, 25, 1] and data.test_labels.tolist() == [25, 0]


def test_emnist_letters_label_0_is_out_of_range(tmp_path):
    write_emnist(tmp_path, "letters", [0, 1], [1])
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.25; found -1\.\.0"):
        load_dataset("emnist-letters", data_dir=tmp_path)


def test_emnist_cannot_download_and_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match=r"cannot download 'emnist-digits': mirrors are known"):
        load_dataset("emnist-digits", data_dir=tmp_path, download=True, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"unpack EMNIST's gzip.zip there") as info:
        load_dataset("emnist-digits", data_dir=tmp_path)
    assert f"  {tmp_path}: none of the four\n" in str(info.value)
    assert "spelled emnist-digits-train-images-idx3-ubyte or emnist-digits-train-images.idx3" in (
        str(info.value)
    )
    assert "download=True" not in str(info.value)  # EMNIST has no mirror to fetch from
    assert info.value.argument == "data_dir"


# --- unknown datasets and bad input -------------------------------------------------------


def test_unknown_name_loads_from_directory_unverified(tmp_path, caplog):
    write_tiny(tmp_path / "glyphs", [0, 2, 1, 2, 0, 1], [1, 0, 2])
    with caplog.at_level(logging.INFO, logger="initlab.datasets.families"):
        glyphs = load_dataset("glyphs", data_dir=tmp_path / "glyphs")
    assert "'glyphs' is not a known dataset: loading" in caplog.text
    assert "without checksums" in caplog.text
    assert glyphs.num_classes == 3
    assert glyphs.train_images.shape == (6, 4, 4)
    assert glyphs.train_labels.tolist() == [0, 2, 1, 2, 0, 1]
    assert glyphs.train_labels.dtype == torch.int64


def test_unknown_name_without_directory_suggests_close_match():
    with pytest.raises(
        ValueError, match=r"got name='fashion_mnist' \(did you mean 'fashion-mnist'"
    ):
        load_dataset("fashion_mnist")


def test_unknown_name_with_a_directory_suggests_close_match(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"did you mean 'fashion-mnist'\?"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


def test_a_data_dir_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "nonexistent"
    with pytest.raises(FileNotFoundError, match=r"does not exist") as info:
        load_dataset("mnist", data_dir=missing)
    assert str(info.value).startswith(f"data_dir {str(missing)!r} does not exist")
    assert info.value.argument == "data_dir" and "--data-dir" not in str(info.value)
    assert "tried" not in str(info.value)


def test_unknown_name_cannot_download(tmp_path):
    with pytest.raises(ValueError, match=r"cannot download 'glyphs': mirrors are known only for"):
        load_dataset("glyphs", data_dir=tmp_path, download=True, cache_dir=tmp_path)


def test_missing_file_names_each_directory_searched_once(tmp_path):
    link_all(shared("mnist"), tmp_path, names=FILE_NAMES[:3])
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    # one line per directory (not 4 spellings x 4 files = 16 paths each), saying what is missing
    listing = [line for line in message.splitlines() if line.startswith("  ")]
    assert listing == [
        f"  {tmp_path}: no t10k-labels-idx1-ubyte",
        f"  {tmp_path / 'mnist'}: none of the four",
        f"  {tmp_path / 'MNIST' / 'raw'}: none of the four",
    ]
    assert "spelled train-images-idx3-ubyte or train-images.idx3-ubyte" in message
    # the library names its own arguments; the command line maps them to its flags
    assert message.endswith("\nGive their directory as data_dir or fetch them with download=True.")
    assert "--" not in message
    assert isinstance(info.value, ArgumentError) and info.value.argument == "data_dir"


def test_image_and_label_counts_must_agree(tmp_path):
    write_tiny(tmp_path, [0, 1, 0, 1, 0], [1, 0], n_images=6)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: 5 labels for 6 images"):
        load_dataset("tiny", data_dir=tmp_path)


def test_negative_labels_are_rejected(tmp_path):
    write_tiny(tmp_path, np.array([0, -1, 1], dtype=np.int8), np.array([1], dtype=np.int8))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1; found -1\.\.1"):
        load_dataset("tiny", data_dir=tmp_path)


def test_test_images_must_have_the_training_images_size(tmp_path):
    # Before: loaded, and a model trained a whole epoch before failing on the test images.
    write_tiny(tmp_path, [0, 1], [0])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 3, 4), dtype=np.uint8))
    with pytest.raises(ValueError) as info:
        load_dataset("tiny", data_dir=tmp_path)
    assert str(info.value) == (
        f"dataset 'tiny': the test images ({tmp_path / 't10k-images-idx3-ubyte'}) are 3x4 but "
        f"the training images ({tmp_path / 'train-images-idx3-ubyte'}) are 4x4; train and test "
        "images must have one size"
    )


def test_images_must_be_3d_uint8(tmp_path):
    write_tiny(tmp_path, [0, 1], [0])
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"images must be \(N, H, W\) uint8; got shape \(2, 16\)"):
        load_dataset("tiny", data_dir=tmp_path)


# --- subset -------------------------------------------------------------------------------


@pytest.fixture
def tiny():
    # Image i is filled with i and has label i % 10, so the pairing can be checked after a subset.
    images = torch.arange(50, dtype=torch.uint8).repeat_interleave(4).reshape(50, 2, 2)
    labels = torch.arange(50) % 10
    return Dataset("tiny", images, labels, images[:20], labels[:20], 10, "memory")


def test_subset_sizes_pairing_and_order(tiny):
    small = tiny.subset(12, 5, seed=3)
    assert small.train_images.shape == (12, 2, 2)
    assert small.test_labels.shape == (5,)
    index = small.train_images[:, 0, 0].long()
    assert torch.equal(small.train_labels, index % 10)
    assert torch.all(index[1:] > index[:-1])  # sorted and without repeats
    assert (small.name, small.num_classes, small.source) == ("tiny", 10, "memory")


def test_subset_is_reproducible_by_seed(tiny):
    a, b, c = tiny.subset(10, seed=1), tiny.subset(10, seed=1), tiny.subset(10, seed=2)
    assert torch.equal(a.train_images, b.train_images)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.test_images is tiny.test_images  # n_test=None keeps the split as is


def test_subset_of_real_mnist(mnist):
    small = mnist.subset(1000, 100, seed=0)
    assert small.train_images.shape == (1000, 28, 28)
    # Every digit appears in a random 1000-sample subset: P(a digit is missing) < 10 * 0.91^1000.
    assert torch.bincount(small.train_labels, minlength=10).min() > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_train": 51}, ValueError, r"n_train must be between 0 and 50 .*; got n_train=51"),
        ({"n_test": -1}, ValueError, r"n_test must be between 0 and 20 .*; got n_test=-1"),
        ({"n_train": 2.5}, TypeError, r"n_train must be an int or None; got n_train=2.5"),
        ({"n_train": True}, TypeError, r"got n_train=True"),
        ({"seed": "1"}, TypeError, r"seed must be an int; got seed='1'"),
    ],
)
def test_subset_rejects_bad_arguments(tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        tiny.subset(**kwargs)
