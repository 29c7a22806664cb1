"""Datasets: the IDX families (MNIST embedded, Fashion-MNIST, KMNIST, EMNIST) and your own data.

Modules: ``idx`` (the IDX file format), ``families`` (known datasets, locating and verifying
files, :func:`load_dataset`), ``download`` (optional fetching from public mirrors), ``data/``
(the embedded MNIST); user data: ``arrays`` (``.npz`` files, the checks every user dataset
passes, :func:`standardize`), ``folders`` (an image folder, via Pillow), ``factory`` (a
``package.module:function`` returning a torch ``Dataset``), ``sources`` (one entry point for
all of them, :func:`load_source`).
"""

from initlab.datasets.arrays import load_npz, standardize
from initlab.datasets.factory import load_factory
from initlab.datasets.families import DATASETS, Dataset, load_dataset
from initlab.datasets.folders import load_image_folder
from initlab.datasets.sources import load_source
from initlab.datasets.text import (
    DEFAULT_CORPUS,
    MIN_CHARS,
    CharCorpus,
    bits_per_character,
    char_corpus,
    load_text,
    windows,
)

__all__ = [
    "DATASETS",
    "DEFAULT_CORPUS",
    "MIN_CHARS",
    "CharCorpus",
    "Dataset",
    "bits_per_character",
    "char_corpus",
    "load_dataset",
    "load_factory",
    "load_image_folder",
    "load_npz",
    "load_source",
    "load_text",
    "standardize",
    "windows",
]
