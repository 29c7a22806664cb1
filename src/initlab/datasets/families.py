"""Known image-classification datasets in the IDX layout: locate, verify and load them.

A dataset is four IDX files (MNIST's names: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each
gzip-compressed or raw. MNIST ships inside the package; the others are read from a directory,
from a system location (Debian's ``dataset-fashion-mnist``), from the download cache, or fetched
from their public mirrors on request.

Checksums are SHA-256 digests of the *uncompressed* contents, so gzip files with different
headers (Debian's) and raw files verify alike. For KMNIST only digests of the published ``.gz``
files are known; its raw files load unverified, with a warning.

EMNIST (Cohen, Afshar, Tapson, van Schaik, "EMNIST: an extension of MNIST to handwritten
letters", 2017) loads from a directory only, one registry entry per split (``emnist-balanced``,
``emnist-byclass``, ``emnist-bymerge``, ``emnist-digits``, ``emnist-letters``, ``emnist-mnist``),
from the files as unpacked from the official ``gzip.zip``:
``emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]``. No digests are published
for them, so they load unverified (logged). EMNIST stores each image transposed (column-major
28x28); they are transposed back, so EMNIST images are upright like MNIST's. The ``letters``
split labels its 26 classes 1..26; they are shifted to 0..25 (label 0 is ``a``/``A``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib.resources
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from initlab._checks import ArgumentError, one_of
from initlab.datasets import download as _download
from initlab.datasets.idx import decompress_if_gzip, parse_idx

__all__ = [
    "DATASETS",
    "CACHE_ENV",
    "ChecksumError",
    "DataNotFoundError",
    "Dataset",
    "DatasetInfo",
    "IDXFile",
    "WrongDatasetError",
    "FILE_NAMES",
    "load_dataset",
    "to_inputs",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "INITLAB_CACHE"
# The standard names of the four files, in the order train images, train labels, test images,
# test labels (MNIST's, which Fashion-MNIST, KMNIST and EMNIST reuse).
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class ChecksumError(ValueError):
    """A dataset file's digest differs from the published one (corrupted or a different file)."""


class WrongDatasetError(ArgumentError, ChecksumError):
    """The files are another known dataset's (their digest is that dataset's): the name is wrong.

    An :class:`~initlab._checks.ArgumentError` naming ``dataset`` and a :class:`ChecksumError`;
    the message says which dataset the files are, e.g. Fashion-MNIST's files loaded as
    ``"mnist"``.
    """


@functools.cache
def _known_digests() -> dict[str, tuple[str, str]]:
    """Map each published digest of :data:`DATASETS` to ``(dataset, file name)``.

    Both digests of the uncompressed contents and of the published ``.gz`` files (KMNIST's)
    are keys, so a mismatch of either kind can name the dataset the file belongs to.
    """
    digests = {}
    for info in DATASETS.values():
        for file in info.files:
            for digest in (file.sha256, file.gz_sha256):
                if digest is not None:
                    digests[digest] = (info.name, file.name)
    return digests


class DataNotFoundError(ArgumentError, FileNotFoundError):
    """A dataset's files are not where :func:`load_dataset` looked.

    Both an :class:`~initlab._checks.ArgumentError`, naming the argument that gives the
    files' directory (``data_dir``), and a ``FileNotFoundError``. The message says what was
    searched and how to supply the files; a caller that loads through an argument of its own
    rewords it with :meth:`reworded` (the ``pretrained`` scheme's ``pretrain.data_dir``).

    Attributes:
        argument: the argument that gives the directory.
        dataset: the dataset's name.
        searched: what was not found and where (one line per directory), or ``None`` when the
            directory itself does not exist (then ``directory`` names it).
        directory: the directory given, when it does not exist.
        fetchable: whether the caller can fetch the files (``download=True``).
        hint: where else the files may come from (a system package, EMNIST's archive, a
            close dataset name), appended to the message.
    """

    def __init__(
        self,
        dataset: str,
        *,
        searched: str | None = None,
        directory: str | None = None,
        fetchable: bool = False,
        hint: str = "",
        argument: str = "data_dir",
        context: str = "",
    ) -> None:
        self.dataset, self.searched, self.directory = dataset, searched, directory
        self.fetchable, self.hint, self.context = fetchable, hint, context
        if searched is None:
            message = (
                f"{argument} {directory!r} does not exist or is not a directory; give the "
                f"directory that holds the {dataset!r} IDX files"
            )
        else:
            fetch = " or fetch them with download=True" if fetchable else ""
            message = (
                f"dataset {dataset!r}: {searched}\nGive their directory as {argument}{fetch}{hint}."
            )
        super().__init__(argument, context + message)

    def __reduce__(self):  # picklable (torchrun ranks send errors to each other)
        return (functools.partial(type(self), **self._fields()), ())

    def _fields(self) -> dict:
        return {
            "dataset": self.dataset,
            "searched": self.searched,
            "directory": self.directory,
            "fetchable": self.fetchable,
            "hint": self.hint,
            "argument": self.argument,
            "context": self.context,
        }

    def reworded(self, argument: str, *, fetchable: bool, context: str = "") -> DataNotFoundError:
        """The same error for a caller whose ``argument`` gives the directory.

        Args:
            argument: the caller's name for the directory, e.g. ``"pretrain.data_dir"``.
            fetchable: whether that caller can download the files.
            context: text that leads the message (what the caller was loading).
        """
        fields = {**self._fields(), "argument": argument, "fetchable": fetchable}
        return type(self)(**{**fields, "context": context})


@dataclass(frozen=True)
class IDXFile:
    """One file of a known dataset and its published digest.

    Attributes:
        name: the standard name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
        sha256: hex SHA-256 of the uncompressed contents; ``None`` when unpublished.
        gz_sha256: hex SHA-256 of the published ``.gz`` file; used only when ``sha256`` is
            ``None`` and the file on disk is gzip-compressed.
    """

    name: str
    sha256: str | None
    gz_sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What initlab knows about a dataset: files, digests, mirrors, classes and license.

    Attributes:
        name: the registry key, e.g. ``"fashion-mnist"``.
        files: train images, train labels, test images, test labels (MNIST's
            :data:`FILE_NAMES`, EMNIST's own names).
        num_classes: number of label values, ``0 .. num_classes - 1``.
        mirrors: base URLs that serve ``<file name>.gz``, tried in order.
        license: who made the data and under which license.
        torchvision_dir: the folder torchvision uses (``root/<torchvision_dir>/raw/``).
        system_dirs: directories where an operating-system package installs the files.
        transposed: the files store each image transposed (EMNIST); loading transposes back.
        first_label: the smallest label in the files, subtracted so labels start at 0
            (1 for EMNIST ``letters``).
    """

    name: str
    files: tuple[IDXFile, IDXFile, IDXFile, IDXFile]
    num_classes: int
    mirrors: tuple[str, ...]
    license: str
    torchvision_dir: str
    system_dirs: tuple[str, ...] = ()
    transposed: bool = False
    first_label: int = 0


def _files(*digests: str | None, gz: Sequence[str | None] = (None,) * 4) -> tuple:
    return tuple(IDXFile(n, d, g) for n, d, g in zip(FILE_NAMES, digests, gz, strict=True))


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        # Digests of the uncompressed official files, see shared/data/mnist/SOURCES.md.
        files=_files(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        num_classes=10,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        license="LeCun, Cortes, Burges, The MNIST database of handwritten digits; CC BY-SA 3.0",
        torchvision_dir="MNIST",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        # Digests of the uncompressed official files, see shared/data/fashion-mnist/SOURCES.md.
        files=_files(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        num_classes=10,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        license="Xiao, Rasul, Vollgraf, Fashion-MNIST (2017), Copyright 2017 Zalando SE; MIT",
        torchvision_dir="FashionMNIST",
        # Debian/Ubuntu package dataset-fashion-mnist (gzip headers differ, contents do not).
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    "kmnist": DatasetInfo(
        name="kmnist",
        # Only digests of the published .gz files are known: SHA-256 as listed by
        # torchvision-ruby (lib/torchvision/datasets/kmnist.rb); torchvision lists their MD5s
        # (bdb82020..., e144d726..., 5c965bf0..., 7320c461...).
        files=_files(
            None,
            None,
            None,
            None,
            gz=(
                "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
            ),
        ),
        num_classes=10,
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        license=(
            "Clanuwat et al., Deep Learning for Classical Japanese Literature (2018), "
            "KMNIST by CODH from the Kuzushiji Dataset (NIJL); CC BY-SA 4.0"
        ),
        torchvision_dir="KMNIST",
    ),
    **{
        f"emnist-{split}": DatasetInfo(
            name=f"emnist-{split}",
            files=tuple(
                IDXFile(f"emnist-{split}-{stem}-{kind}-ubyte", None)
                for stem in ("train", "test")
                for kind in ("images-idx3", "labels-idx1")
            ),
            num_classes=classes,
            mirrors=(),  # only the whole gzip.zip is published (NIST): unpack it, give data_dir
            license=(
                "Cohen, Afshar, Tapson, van Schaik, EMNIST (2017), from NIST Special "
                "Database 19; see NIST's terms of use"
            ),
            torchvision_dir="EMNIST",
            transposed=True,
            first_label=1 if split == "letters" else 0,
        )
        # classes per split: Cohen et al. 2017, Table II
        for split, classes in (
            ("balanced", 47),
            ("byclass", 62),
            ("bymerge", 47),
            ("digits", 10),
            ("letters", 26),
            ("mnist", 10),
        )
    },
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset held in memory: images and int64 labels.

    The IDX families load as ``(N, H, W)`` uint8; user data (:mod:`initlab.datasets.arrays`,
    :mod:`~initlab.datasets.folders`, :mod:`~initlab.datasets.factory`) may also hold
    ``(N, C, H, W)`` images or flat ``(N, D)`` vectors, uint8 (pixels 0..255) or float32
    (values taken as they are). :meth:`inputs` turns either into what a model takes.

    Attributes:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"`` or the name given for a directory.
        train_images: ``(N, H, W)`` uint8, pixel values 0..255 (user data: also
            ``(N, C, H, W)``, ``(N, D)``, float32).
        train_labels: ``(N,)`` int64 in ``0 .. num_classes - 1``.
        test_images: ``(M, H, W)`` uint8 (the training images' layout and dtype).
        test_labels: ``(M,)`` int64.
        num_classes: number of classes.
        source: ``"embedded"`` or the directory the files came from.
        mean, std: the statistics the images were standardized with
            (:func:`~initlab.datasets.arrays.standardize`): per channel, or per input position
            (flattened) for ``per="pixel"``; ``None`` when not standardized.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    source: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def inputs(self, split: str, device: str | torch.device = "cpu") -> torch.Tensor:
        """Return a split's images as a model takes them (see :func:`to_inputs`).

        Args:
            split: ``"train"`` or ``"test"``.
            device: where the tensor goes.
        """
        one_of("split", split, ("train", "test"))
        images = self.train_images if split == "train" else self.test_images
        return to_inputs(images, device)

    def __repr__(self) -> str:
        train, test = tuple(self.train_images.shape), tuple(self.test_images.shape)
        return (
            f"Dataset(name={self.name!r}, train={train}, test={test}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, *, seed: int = 0
    ) -> Dataset:
        """Return a random subset: ``n_train`` training and ``n_test`` test samples.

        Each split draws its own ``torch.randperm`` from a generator seeded with ``seed``, keeps
        the first ``n`` indices and sorts them, so the samples keep their original order and
        the same seed always gives the same subset. Not stratified.

        Args:
            n_train: training samples to keep, ``0 <= n_train <= N``; ``None`` keeps all.
            n_test: test samples to keep, ``0 <= n_test <= M``; ``None`` keeps all.
            seed: seed of the selection.

        Returns:
            A new :class:`Dataset` with the same name, classes and source.

        Raises:
            TypeError: a count or ``seed`` is not an int.
            ValueError: a count is negative or larger than its split.

        Example:
            >>> small = load_dataset().subset(1000, 200, seed=1)  # doctest: +SKIP
        """
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int; got seed={seed!r}")
        train_images, train_labels = _pick(
            "n_train", n_train, self.train_images, self.train_labels, seed
        )
        test_images, test_labels = _pick("n_test", n_test, self.test_images, self.test_labels, seed)
        return dataclasses.replace(
            self,
            train_images=train_images,
            train_labels=train_labels,
            test_images=test_images,
            test_labels=test_labels,
        )


def to_inputs(images: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """Return images as a model's float32 input: ``(N, C, H, W)``, or ``(N, D)`` vectors.

    uint8 pixels are divided by 255 (so [0, 1], the trainer's scaling since the seed: the IDX
    families give ``(N, 1, H, W)`` exactly as before); float images are taken as they are.
    ``(N, H, W)`` gets a channel axis of 1; ``(N, C, H, W)`` and ``(N, D)`` keep their shape.
    """
    x = images.to(device)
    if images.ndim == 3:
        x = x.unsqueeze(1)
    if images.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def _pick(
    what: str, n: int | None, images: torch.Tensor, labels: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return images, labels
    total = len(labels)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int or None; got {what}={n!r}")
    if not 0 <= n <= total:
        raise ValueError(f"{what} must be between 0 and {total} (the split's size); got {what}={n}")
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(total, generator=generator)[:n].sort().values
    return images[keep], labels[keep]


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load a dataset's four IDX files into memory, verifying their published checksums.

    Where the files are looked for, in order (the first directory holding all four wins):

    - ``data_dir`` given: ``data_dir``, ``data_dir/<name>``, and torchvision's layout
      ``data_dir/<MNIST|FashionMNIST|KMNIST|EMNIST>/raw``;
    - no ``data_dir``: MNIST comes from the package itself (``source="embedded"``); other
      datasets from their system directories (Fashion-MNIST: ``/usr/share/datasets/
      fashion-mnist``, Debian's ``dataset-fashion-mnist``) and the cache directory;
    - ``download=True`` and still not found: the files are fetched from the dataset's mirrors
      (or ``$INITLAB_MIRRORS``) into the cache directory, see :mod:`initlab.datasets.download`.

    Each file may be gzip-compressed or raw, named ``train-images-idx3-ubyte`` or
    ``train-images.idx3-ubyte``, with or without ``.gz``. A known dataset's files must match the
    SHA-256 of their uncompressed contents; a name not in :data:`DATASETS` loads from
    ``data_dir`` without verification (logged) and takes ``max(label) + 1`` classes.

    Args:
        name: a key of :data:`DATASETS` (``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``,
            ``"emnist-<split>"``), or any name together with ``data_dir``.
        data_dir: directory holding the files.
        download: fetch missing files of a known dataset from its public mirrors.
        cache_dir: root of the download cache; files live in ``cache_dir/<name>/``. Default:
            ``$INITLAB_CACHE`` or ``~/.cache/initlab``.

    Returns:
        A :class:`Dataset`: images ``(N, H, W)`` uint8, labels ``(N,)`` int64.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: unknown ``name`` without ``data_dir``; labels out of range, image and label
            counts that disagree, or test images of another size than the training images.
        DataNotFoundError: ``data_dir`` does not exist; a file is missing everywhere (the
            message names every directory searched and the files it lacks). A
            ``FileNotFoundError`` and an ``ArgumentError`` naming ``data_dir``.
        ChecksumError: a file's digest differs from the published one.
        IDXError: a file is not well-formed IDX or its gzip stream is corrupted.
        OSError: downloading failed on every mirror.

    Example:
        >>> mnist = load_dataset()  # doctest: +SKIP
        >>> mnist.train_images.shape, mnist.test_labels.dtype
        (torch.Size([60000, 28, 28]), torch.int64)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got name={name!r}")
    info = DATASETS.get(name)
    if info is None and data_dir is None:
        one_of("name", name, DATASETS)
    if data_dir is None and name == "mnist":
        root = importlib.resources.files("initlab.datasets") / "data" / "mnist"
        files = [root / f"{file}.gz" for file in FILE_NAMES]
        return _load(name, info, files, source="embedded")
    directories = _search_dirs(name, info, data_dir, _cache_root(cache_dir) / name)
    names = [f.name for f in info.files] if info is not None else list(FILE_NAMES)
    files, tried = _find_files(directories, names)
    if files is None and download:
        if info is None or not info.mirrors:
            known = sorted(k for k, v in DATASETS.items() if v.mirrors)
            raise ValueError(f"cannot download {name!r}: mirrors are known only for {known}")
        files = _fetch(info, _cache_root(cache_dir) / name)
    if files is None and data_dir is not None and not Path(data_dir).is_dir():
        raise DataNotFoundError(name, directory=os.fspath(data_dir))
    if files is None:
        raise _missing(name, info, tried)
    return _load(name, info, files, source=os.fspath(files[0].parent))


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/initlab").expanduser()


def _search_dirs(
    name: str, info: DatasetInfo | None, data_dir: str | os.PathLike | None, cache: Path
) -> list[Path]:
    if data_dir is None:
        return [*(Path(d) for d in info.system_dirs), cache]
    base = Path(data_dir)
    directories = [base, base / name]
    if info is not None:
        directories.append(base / info.torchvision_dir / "raw")
    return directories


def _variants(file: str) -> list[str]:
    # "train-images-idx3-ubyte" is also published as "train-images.idx3-ubyte"; raw files come
    # first because they load without decompressing.
    dotted = file.replace("-idx", ".idx")
    return [file, dotted, f"{file}.gz", f"{dotted}.gz"]


def _find_files(
    directories: list[Path], names: Sequence[str]
) -> tuple[list[Path] | None, list[tuple[Path, list[str]]]]:
    """Return the files ``names`` from the first directory holding all, and each miss.

    The misses are ``(directory, names of the files not found there)``, in search order.
    """
    tried: list[tuple[Path, list[str]]] = []
    for directory in directories:
        found, missing = [], []
        for file in names:
            paths = [directory / variant for variant in _variants(file)]
            hit = next((path for path in paths if path.is_file()), None)
            if hit is None:
                missing.append(file)
            else:
                found.append(hit)
        if not missing:
            return found, tried
        tried.append((directory, missing))
    return None, tried


def _missing(
    name: str, info: DatasetInfo | None, tried: list[tuple[Path, list[str]]]
) -> DataNotFoundError:
    # One line per directory, not per path: 4 files x 4 spellings made 16 lines a directory.
    listing = "\n".join(
        f"  {directory}: "
        + ("none of the four" if len(missing) == 4 else "no " + ", ".join(missing))
        for directory, missing in tried
    )
    first = info.files[0].name if info is not None else FILE_NAMES[0]
    hint = " (or run: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
    if name.startswith("emnist-"):
        hint = " (unpack EMNIST's gzip.zip there)"
    close = difflib.get_close_matches(name, DATASETS, n=1) if info is None else []
    if close:
        hint += f"; {name!r} is not a known dataset (did you mean {close[0]!r}?)"
    searched = (
        f"the four IDX files were not found (each raw or .gz, spelled {first} or "
        f"{first.replace('-idx', '.idx')}); searched:\n{listing}"
    )
    fetchable = bool(info and info.mirrors)
    return DataNotFoundError(name, searched=searched, fetchable=fetchable, hint=hint)


def _fetch(info: DatasetInfo, directory: Path) -> list[Path]:
    mirrors = _download.resolve_mirrors(info.mirrors)
    paths = []
    for file in info.files:
        present = [directory / v for v in _variants(file.name) if (directory / v).is_file()]
        if present:
            paths.append(present[0])
        else:
            paths.append(
                _download.fetch(f"{file.name}.gz", directory, mirrors, _verifier(info, file))
            )
    return paths


def _verifier(info: DatasetInfo, file: IDXFile) -> Callable[[Path, str], None]:
    """Return the check a downloaded file must pass: readable gzip, published digest."""

    def verify(path: Path, source: str) -> None:
        raw = path.read_bytes()
        _verify(info.name, file, raw, decompress_if_gzip(raw, source=source), source)

    return verify


def _verify(dataset: str, file: IDXFile, raw: bytes, data: bytes, source: str) -> None:
    """Raise ChecksumError unless the file matches its published digest.

    ``raw`` is the file as stored, ``data`` its uncompressed contents (the same object when the
    file was not compressed, see :func:`decompress_if_gzip`).
    """
    if file.sha256 is not None:
        expected, actual, what = file.sha256, hashlib.sha256(data).hexdigest(), "uncompressed"
    elif file.gz_sha256 is not None and raw is not data:
        expected, actual, what = file.gz_sha256, hashlib.sha256(raw).hexdigest(), ".gz"
    else:
        logger.warning("%s: no published digest for this form of the file; not verified", source)
        return
    if actual != expected:
        known = _known_digests().get(actual)
        if known is not None and known[0] != dataset:
            raise WrongDatasetError(
                "dataset",
                f"{source}: these are the {known[0]} files, not {dataset}'s (the SHA-256 "
                f"of its {what} contents is that of {known[0]}'s {known[1]}): use "
                f"dataset={known[0]!r}",
            )
        raise ChecksumError(
            f"{source}: checksum mismatch for {dataset} {file.name}: SHA-256 ({what}) is "
            f"{actual}, expected {expected}. The file is corrupted or is not the official "
            "one; delete it and download it again (download=True), or load a good copy from its "
            "directory (data_dir)"
        )


def _load(name: str, info: DatasetInfo | None, files: Sequence, source: str) -> Dataset:
    if info is None:
        logger.info("dataset %r is not a known dataset: loading %s without checksums", name, source)
    tensors = []
    for index, path in enumerate(files):
        raw, label = path.read_bytes(), str(path)
        data = decompress_if_gzip(raw, source=label)
        if info is not None:
            _verify(name, info.files[index], raw, data, label)
        tensors.append(parse_idx(data, source=label))
    logger.debug("loaded %s from %s", name, source)
    return _assemble(name, info, tensors, [str(f) for f in files], source)


def _assemble(
    name: str, info: DatasetInfo | None, tensors: list[torch.Tensor], files: list[str], source: str
) -> Dataset:
    train_images, train_labels, test_images, test_labels = tensors
    for images, path in ((train_images, files[0]), (test_images, files[2])):
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise ValueError(
                f"{path}: images must be (N, H, W) uint8; got shape {tuple(images.shape)} "
                f"{images.dtype}"
            )
    for labels, images, path in (
        (train_labels, train_images, files[1]),
        (test_labels, test_images, files[3]),
    ):
        if labels.ndim != 1 or labels.dtype.is_floating_point:
            raise ValueError(
                f"{path}: labels must be (N,) integers; got shape {tuple(labels.shape)} "
                f"{labels.dtype}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{path}: {len(labels)} labels for {len(images)} images")
    if train_images.shape[1:] != test_images.shape[1:]:  # else a model fails after an epoch
        (h, w), (th, tw) = train_images.shape[1:], test_images.shape[1:]
        raise ValueError(
            f"dataset {name!r}: the test images ({files[2]}) are {th}x{tw} but the training "
            f"images ({files[0]}) are {h}x{w}; train and test images must have one size"
        )
    train_labels, test_labels = train_labels.long(), test_labels.long()
    if info is not None and info.first_label:
        train_labels, test_labels = train_labels - info.first_label, test_labels - info.first_label
    if info is not None and info.transposed:  # (N, W, H) as stored -> upright (N, H, W)
        train_images = train_images.transpose(1, 2).contiguous()
        test_images = test_images.transpose(1, 2).contiguous()
    both = torch.cat([train_labels, test_labels])
    low, top = (int(both.min()), int(both.max())) if len(both) else (0, -1)
    num_classes = info.num_classes if info is not None else top + 1
    if low < 0 or top >= num_classes:
        raise ValueError(
            f"dataset {name!r}: labels must lie in 0..{num_classes - 1}; found {low}..{top}"
        )
    return Dataset(name, train_images, train_labels, test_images, test_labels, num_classes, source)
