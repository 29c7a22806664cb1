"""User data as an image folder: ``root/train/<class>/*`` and ``root/test/<class>/*``.

Layout (the exact one read)::

    root/
      train/<class name>/<image files>
      test/<class name>/<image files>

Class names are the subfolder names of ``train/``, sorted (Python string order); label ``i`` is
the ``i``-th name. ``test/`` may lack a class (no test images of it) but may not add one. Image
files are those ending ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.tif``, ``.tiff``,
``.webp`` (any case), read in sorted name order; other files (and hidden ones) are skipped.
Images are read with Pillow (an optional dependency: ``pip install pillow``). If every image
is grayscale (Pillow mode ``L``, ``1``, ``I;16``... anything but colour) the dataset is
``(N, H, W)`` uint8 (one channel); if any is colour (``RGB``, ``RGBA``, ``P``, ``CMYK``...) all
are converted to RGB and the dataset is ``(N, 3, H, W)`` uint8; alpha is dropped. Pillow's
conversion to 8 bits would clip 16-bit and float grayscale values outside 0..255, so such an
image is refused (naming the file): give that data as an ``.npz`` of floats instead. All
images must have one size (no resizing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from initlab._checks import ArgumentError
from initlab.datasets.arrays import from_arrays
from initlab.datasets.families import Dataset

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

#: File endings read as images (compared lower-case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def load_image_folder(
    root: str | os.PathLike, *, name: str | None = None, argument: str = "data"
) -> Dataset:
    """Load ``root/train/<class>/*`` and ``root/test/<class>/*`` images (see the module doc).

    Args:
        root: the folder holding ``train/`` and ``test/``.
        name: the dataset's name; default: the folder's name.
        argument: the library argument that gave ``root``, named in errors.

    Returns:
        A :class:`~initlab.datasets.families.Dataset`: uint8 ``(N, H, W)`` (all grayscale) or
        ``(N, 3, H, W)`` (RGB), ``num_classes`` = the number of class folders in ``train/``.

    Raises:
        ArgumentError naming ``argument`` and the folder or file: ``root`` or its ``train/`` or
            ``test/`` is missing; no class folder or no image; a test class not among the
            training classes; an image Pillow cannot read; images of mixed sizes.
        ModuleNotFoundError: Pillow is not installed (the message says how to install it).
    """
    root = Path(root)
    if not root.is_dir():
        raise ArgumentError(argument, f"{argument} {os.fspath(root)!r}: no such directory")
    try:
        from PIL import Image
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"reading the image folder {root} needs the package Pillow, which is not "
            "installed: pip install pillow (or give the data as an .npz file)",
            name="PIL",
        ) from None
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise ArgumentError(
                argument,
                f"{argument} {root}: has no {split}/ folder; an image folder holds "
                "train/<class>/<images> and test/<class>/<images>",
            )
    classes = sorted(p.name for p in (root / "train").iterdir() if _visible_dir(p))
    if not classes:
        raise ArgumentError(
            argument, f"{argument} {root / 'train'}: holds no class folder (train/<class>/)"
        )
    extra = sorted(
        p.name for p in (root / "test").iterdir() if _visible_dir(p) and p.name not in classes
    )
    if extra:
        raise ArgumentError(
            argument,
            f"{argument} {root / 'test'}: the classes {extra} have no training folder in "
            f"{root / 'train'} (training classes: {classes})",
        )
    files = {split: _list(root / split, classes) for split in ("train", "test")}
    color = False
    images: dict[str, list] = {"train": [], "test": []}
    first: tuple[Path, tuple[int, int]] | None = None
    for split in ("train", "test"):
        if not files[split]:
            raise ArgumentError(
                argument,
                f"{argument} {root / split}: holds no image (files ending "
                f"{', '.join(IMAGE_SUFFIXES)} in {split}/<class>/)",
            )
        for path, _ in files[split]:
            try:
                with Image.open(path) as image:
                    image.load()
                    mode, size = image.mode, image.size
                    gray = mode in _GRAY_MODES
                    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                        low, high = image.getextrema()
                        if low < 0 or high > 255:
                            raise ArgumentError(
                                argument,
                                f"{argument} {path}: a {mode} image with values {low}..{high}; "
                                "8-bit images (0..255) only, since more would be clipped: give "
                                "16-bit or float data as an .npz file",
                            )
                    pixels = image.convert("L" if gray else "RGB")
            except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
                raise ArgumentError(
                    argument, f"{argument} {path}: cannot read it as an image ({error})"
                ) from None
            if first is None:
                first = (path, size)
            elif size != first[1]:
                (w, h), (w0, h0) = size, first[1]
                raise ArgumentError(
                    argument,
                    f"{argument} {path}: the image is {h}x{w} (height x width) but {first[0]} "
                    f"is {h0}x{w0}; all images of a folder must have one size (resize them)",
                )
            color = color or not gray
            images[split].append(pixels)
    arrays = []
    for split in ("train", "test"):
        stacked = np.stack([_array(image, color) for image in images[split]])
        arrays += [stacked, np.array([label for _, label in files[split]], dtype=np.int64)]
    return from_arrays(
        name or root.resolve().name,
        *arrays,
        source=os.fspath(root),
        argument=argument,
        num_classes=len(classes),
    )


def _visible_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")


def _list(directory: Path, classes: list[str]) -> list[tuple[Path, int]]:
    found = []
    for label, name in enumerate(classes):
        folder = directory / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                found.append((path, label))
    return found


def _array(image, color: bool) -> np.ndarray:
    if color:  # (H, W, 3) -> (3, H, W)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    return np.asarray(image, dtype=np.uint8)
