"""User data as arrays: NumPy ``.npz`` files, the checks every user dataset passes, standardization.

:func:`from_arrays` is the one door through which user data (``.npz`` arrays, an image folder,
a dataset factory) becomes a :class:`~initlab.datasets.families.Dataset`: it checks the four
arrays (lengths, layouts, dtypes, label values) and raises naming the argument and the file,
before anything is trained or written. :func:`load_npz` reads the arrays of an ``.npz`` file
(``np.load(..., allow_pickle=False)``: an object array is refused, never unpickled).
:func:`standardize` scales the inputs to zero mean and unit variance per channel (or per
pixel) with the training split's statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from initlab._checks import ArgumentError, one_of
from initlab.datasets.families import Dataset

__all__ = ["NPZ_KEYS", "from_arrays", "load_npz", "standardize"]

#: The keys an ``.npz`` dataset holds: train images and labels, test images and labels.
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

_log = logging.getLogger(__name__)


def from_arrays(
    name: str,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    source: str,
    argument: str = "data",
    num_classes: int | None = None,
) -> Dataset:
    """Check four arrays and return them as a :class:`~initlab.datasets.families.Dataset`.

    Images are ``(N, H, W)`` (one channel), ``(N, C, H, W)`` or flat ``(N, D)`` vectors,
    uint8 (pixels 0..255, scaled to [0, 1] for the model) or floating (kept as given, stored
    as float32; they must be finite). Labels are ``(N,)`` integers (an integer-valued float
    array is refused: it is usually a one-hot or regression target by mistake) in
    ``0 .. num_classes - 1``.

    Args:
        name: the dataset's name in messages and reports.
        x_train, y_train, x_test, y_test: NumPy arrays or tensors.
        source: where the arrays came from (a file, a folder, a factory), named in errors.
        argument: the library argument that gave ``source``, named in errors.
        num_classes: the number of classes; ``None``: ``max(label) + 1``.

    Returns:
        The dataset, images as uint8 or float32 tensors, labels int64.

    Raises:
        ArgumentError (a ``ValueError``) naming ``argument`` and ``source``: an empty split;
        images and labels of different lengths; images of another rank than 2, 3 or 4, or of
        another dtype than uint8 or float; non-finite float images; train and test images of
        different shapes or dtypes; labels not ``(N,)`` integers; a negative label or one at
        or beyond ``num_classes``.
    """

    def fail(message: str) -> ArgumentError:
        return ArgumentError(argument, f"{argument} {source}: {message}")

    arrays = {}
    for key, value in zip(NPZ_KEYS, (x_train, y_train, x_test, y_test), strict=True):
        arrays[key] = _tensor(value, key, fail)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) == 0 or len(y) == 0:
            raise fail(
                f"the {split} split is empty (x_{split} {tuple(x.shape)}, y_{split} "
                f"{tuple(y.shape)}); training and testing each need at least one example"
            )
        if x.ndim not in (2, 3, 4):
            raise fail(
                f"x_{split} must be (N, H, W) images, (N, C, H, W) images or (N, D) vectors; "
                f"got shape {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
            raise fail(
                f"x_{split} must be uint8 (pixels 0..255, scaled to [0, 1]) or floating (taken "
                f"as given); got {x.dtype} (cast it to one of them)"
            )
        if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
            raise fail(f"x_{split} holds NaN or infinite values")
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise fail(
                f"y_{split} must be (N,) integer class labels; got shape {tuple(y.shape)} {y.dtype}"
            )
        if len(x) != len(y):
            raise fail(
                f"x_{split} has {len(x)} examples but y_{split} has {len(y)} labels; each "
                "example needs one label"
            )
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise fail(
            f"x_test's examples are {tuple(arrays['x_test'].shape[1:])} but x_train's are "
            f"{tuple(arrays['x_train'].shape[1:])}; train and test must have one shape"
        )
    if (arrays["x_train"].dtype == torch.uint8) != (arrays["x_test"].dtype == torch.uint8):
        raise fail(
            f"x_train is {arrays['x_train'].dtype} but x_test is {arrays['x_test'].dtype}; "
            "both must be uint8 or both floating (they would be scaled differently)"
        )
    labels = torch.cat([arrays["y_train"], arrays["y_test"]]).long()
    low, top = int(labels.min()), int(labels.max())
    classes = top + 1 if num_classes is None else num_classes
    if low < 0 or top >= classes:
        raise fail(f"labels must lie in 0..{classes - 1}; found {low}..{top}")
    images = {
        key: arrays[key] if arrays[key].dtype == torch.uint8 else arrays[key].float()
        for key in NPZ_KEYS[::2]
    }
    return Dataset(
        name,
        images["x_train"].contiguous(),
        arrays["y_train"].long(),
        images["x_test"].contiguous(),
        arrays["y_test"].long(),
        classes,
        source,
    )


def _tensor(value, key: str, fail) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise fail(f"{key} must be a numeric array; got dtype {value.dtype}")
    if value.dtype.kind == "u" and value.dtype.itemsize > 1:  # uint16.. : not all torch ops
        value = value.astype(np.int64)
    elif not value.dtype.isnative:  # big-endian arrays: torch takes native byte order only
        value = value.astype(value.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(value))


def load_npz(
    path: str | os.PathLike, *, name: str | None = None, argument: str = "data"
) -> Dataset:
    """Load a dataset from a NumPy ``.npz`` file holding ``x_train, y_train, x_test, y_test``.

    Read with ``np.load(path, allow_pickle=False)``, so an object array fails instead of being
    unpickled. The arrays are checked by :func:`from_arrays` (layouts, dtypes, lengths, labels).

    Args:
        path: the ``.npz`` file.
        name: the dataset's name; default: the file's stem.
        argument: the library argument that gave ``path``, named in errors.

    Returns:
        A :class:`~initlab.datasets.families.Dataset` with ``max(label) + 1`` classes.

    Raises:
        ArgumentError: the file does not exist, is not an ``.npz`` archive, lacks a key, holds
            an object array, or its arrays fail :func:`from_arrays`'s checks.
    """
    path = Path(path)
    if not path.is_file():
        raise ArgumentError(argument, f"{argument} {os.fspath(path)!r}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it is a single .npy array, not an .npz archive")
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise ArgumentError(
                    argument,
                    f"{argument} {path}: lacks the arrays {', '.join(missing)}; an .npz dataset "
                    f"holds {', '.join(NPZ_KEYS)} (has {', '.join(archive.files) or 'none'})",
                )
            arrays = [archive[key] for key in NPZ_KEYS]
    except ArgumentError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ArgumentError(
            argument,
            f"{argument} {path}: cannot read it as an .npz archive of arrays without pickles "
            f"({error})",
        ) from None
    return from_arrays(name or path.stem, *arrays, source=os.fspath(path), argument=argument)


def _inputs64(images: torch.Tensor) -> torch.Tensor:
    """:func:`~initlab.datasets.families.to_inputs` in float64 (pixels / 255 exactly)."""
    x = (images.unsqueeze(1) if images.ndim == 3 else images).double()
    return x / 255.0 if images.dtype == torch.uint8 else x


def standardize(dataset: Dataset, *, eps: float = 0.0, per: str = "channel") -> Dataset:
    """Standardize both splits with the training split's mean and std, per channel or per pixel.

    The statistics are computed on the training images only, as the model sees them
    (:meth:`~initlab.datasets.families.Dataset.inputs`: uint8 divided by 255) in float64, with
    the population standard deviation (divisor the number of values averaged); both splits
    become ``(x - mean) / std`` as float32, in their own layout. The test split never enters
    the statistics, so no test information leaks into training.

    - ``per="channel"`` (the default; ``--standardize``): one mean ``m_c`` and std ``s_c`` per
      channel ``c`` over all training images and pixels (divisor ``N * H * W``). ``(N, H, W)``
      images and flat ``(N, D)`` vectors have one channel (a single mean and std over all
      values); ``(N, C, H, W)`` images have ``C``. A constant channel (std 0) is refused.
    - ``per="pixel"`` (``--standardize pixel``): one mean and std per input position (each
      ``(c, h, w)``, or each of the ``D`` features of flat vectors) over the ``N`` training
      images (divisor ``N``): every pixel has mean 0 and std 1 on the training set, the
      standardization of LeCun et al. (1998), "Efficient BackProp", Sec. 4.3 (normalizing each
      input variable). A pixel constant over the training images (the same value on every
      training image, std 0, as the blank border
      of MNIST digits) is centred and divided by 1: it is 0 on every training image and its
      test values keep their offset from the training value. Such pixels are counted in an
      INFO log line.

    Args:
        dataset: the dataset (after any subset, so the statistics are those of what trains).
        eps: added to each std before dividing (default 0; not to a constant pixel's).
        per: ``"channel"`` or ``"pixel"``.

    Returns:
        A new dataset with float32 images of the same layout. ``mean``/``std`` record the
        statistics divided by: one value per channel, or (``per="pixel"``) one per position,
        flattened in ``(C, H, W)`` order (the std of a constant pixel recorded as 1).

    Raises:
        ValueError: ``per`` is neither ``"channel"`` nor ``"pixel"`` (the message names it).
        ArgumentError: (argument ``standardize``) with ``per="channel"``, a channel is constant
            over the training images (its std is 0), so it cannot be scaled.
    """
    one_of("per", per, ("channel", "pixel"))
    train = _inputs64(dataset.train_images)
    if per == "pixel":
        return _standardize_pixels(dataset, train, eps)
    axes = [d for d in range(train.ndim) if d != 1] if dataset.train_images.ndim == 4 else None
    if axes is None:
        mean, std = train.mean().reshape(1), train.std(correction=0).reshape(1)
    else:
        mean, std = train.mean(dim=axes), train.std(dim=axes, correction=0)
    std = std + eps
    if bool((std == 0).any()):
        raise ArgumentError(
            "standardize",
            f"dataset {dataset.name!r}: a channel of the training images is constant (std 0, "
            f"per-channel std {std.tolist()}); it cannot be standardized",
        )

    def scale(images: torch.Tensor) -> torch.Tensor:
        x = _inputs64(images)
        shape = (1, -1, 1, 1) if images.ndim == 4 else (1,)
        x = (x - mean.view(shape)) / std.view(shape)
        return x.float().reshape(images.shape)

    return dataclasses.replace(
        dataset,
        train_images=scale(dataset.train_images),
        test_images=scale(dataset.test_images),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def _standardize_pixels(dataset: Dataset, train: torch.Tensor, eps: float) -> Dataset:
    """:func:`standardize` with ``per="pixel"``: statistics over the training images (dim 0)."""
    mean, std = train.mean(dim=0), train.std(dim=0, correction=0) + eps
    # constant: equal on every training image (a float64 std of equal values need not be 0)
    constant = train.amax(dim=0) == train.amin(dim=0)
    std = torch.where(constant, torch.ones_like(std), std)  # centred, divided by 1
    if bool(constant.any()):
        _log.info(
            "standardize per pixel: %d of %d input positions are constant over the %d "
            "training images of %r (std 0); they are centred and divided by 1",
            int(constant.sum()),
            constant.numel(),
            train.shape[0],
            dataset.name,
        )

    def scale(images: torch.Tensor) -> torch.Tensor:
        return ((_inputs64(images) - mean) / std).float().reshape(images.shape)

    return dataclasses.replace(
        dataset,
        train_images=scale(dataset.train_images),
        test_images=scale(dataset.test_images),
        mean=tuple(mean.flatten().tolist()),
        std=tuple(std.flatten().tolist()),
    )
