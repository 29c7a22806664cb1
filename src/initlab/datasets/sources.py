"""Where a run's data comes from: one entry point for the IDX families and user data.

A *data source* is the pair ``(dataset, data)``:

- ``dataset`` a known or IDX name (``"mnist"``, ``"fashion-mnist"``, any name with
  ``data_dir``) and ``data=None``: :func:`~initlab.datasets.families.load_dataset`;
- ``dataset="npz"``, ``data`` an ``.npz`` file: :func:`~initlab.datasets.arrays.load_npz`;
- ``dataset="folder"``, ``data`` an image folder:
  :func:`~initlab.datasets.folders.load_image_folder`;
- ``dataset="auto"``, ``data`` a path: ``npz`` for a file, ``folder`` for a directory;
- ``dataset="package.module:function"`` and ``data=None``: a dataset factory,
  :func:`~initlab.datasets.factory.load_factory`.

:func:`resolve_source` checks the pair (and resolves ``auto``) without reading any file's
contents, so a config can be checked before anything is written; :func:`load_source` loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from initlab._checks import ArgumentError
from initlab.datasets.arrays import load_npz
from initlab.datasets.factory import is_factory_spec, load_factory
from initlab.datasets.families import Dataset, load_dataset
from initlab.datasets.folders import load_image_folder

__all__ = ["DATA_KINDS", "is_user_data", "load_source", "resolve_source"]

#: The ``dataset`` values that read user files named by ``data``.
DATA_KINDS = ("npz", "folder", "auto")


def is_user_data(dataset: str) -> bool:
    """Whether ``dataset`` names user data (an ``.npz``, a folder, a factory), not an IDX set."""
    return dataset in DATA_KINDS or (isinstance(dataset, str) and ":" in dataset)


def resolve_source(
    dataset: str, data: str | os.PathLike | None = None, *, data_dir=None
) -> tuple[str, str | None]:
    """Check a data source and resolve ``"auto"``; return ``(dataset, data)``.

    Args:
        dataset: see the module doc.
        data: the ``.npz`` file or image folder, for ``npz``, ``folder`` and ``auto``.
        data_dir: the IDX directory argument, which user data does not take.

    Returns:
        ``(kind or name, data as a str or None)``: ``"auto"`` becomes ``"npz"`` (a file) or
        ``"folder"`` (a directory).

    Raises:
        TypeError: ``dataset`` is not a str.
        ArgumentError: ``npz``/``folder``/``auto`` without ``data``; ``data`` with an IDX
            name or a factory; ``data_dir`` with user data; an ``auto`` path that does not
            exist; a malformed factory spec (argument ``dataset``).
    """
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a str; got dataset={dataset!r}")
    data = None if data is None else os.fspath(data)
    if ":" in dataset:
        if not is_factory_spec(dataset):
            raise ArgumentError(
                "dataset",
                "a dataset factory must be MODULE:FUNCTION, e.g. mypackage.data:load; got "
                f"dataset={dataset!r}",
            )
        if data is not None or data_dir is not None:
            given = "data" if data is not None else "data_dir"
            raise ArgumentError(
                given, f"dataset factory {dataset!r} takes no {given}; got {given}={data!r}"
            )
        return dataset, None
    if dataset not in DATA_KINDS:
        if data is not None:
            raise ArgumentError(
                "data",
                f"data={data!r} names user data (an .npz file or an image folder), which "
                f"needs dataset='npz', 'folder' or 'auto'; dataset {dataset!r} reads IDX files "
                "from data_dir",
            )
        return dataset, None
    if data is None:
        raise ArgumentError(
            "data", f"dataset={dataset!r} needs data, the path of the .npz file or image folder"
        )
    if data_dir is not None:
        raise ArgumentError(
            "data_dir",
            f"data_dir is the directory of IDX files; dataset={dataset!r} reads data={data!r}",
        )
    if dataset == "auto":
        path = Path(data)
        if path.is_dir():
            return "folder", data
        if path.is_file():
            return "npz", data
        raise ArgumentError(
            "data", f"data {data!r}: no such file or directory (an .npz file or image folder)"
        )
    return dataset, data


def load_source(
    dataset: str = "mnist",
    data: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Dataset:
    """Load a data source (see the module doc) as a :class:`~initlab.datasets.families.Dataset`.

    Raises:
        As :func:`resolve_source`, then as the loader it picks (``load_dataset``,
        ``load_npz``, ``load_image_folder``, ``load_factory``).
    """
    kind, data = resolve_source(dataset, data, data_dir=data_dir)
    if kind == "npz":
        return load_npz(data)
    if kind == "folder":
        return load_image_folder(data)
    if ":" in kind:
        return load_factory(kind)
    return load_dataset(kind, data_dir=data_dir, download=download)
