"""User data from code: a dataset factory ``package.module:function``, materialized once.

The factory is any importable callable taking no arguments and returning either

- a pair ``(train, test)`` of ``torch.utils.data.Dataset`` (map-style: ``len`` and
  ``ds[i]``) whose items are ``(x, y)``: ``x`` an image ``(H, W)``, ``(C, H, W)`` or a vector
  ``(D,)`` (tensor or NumPy array; uint8 pixels 0..255 or floats taken as given), ``y`` an
  integer label (int, or a 0-d integer tensor/array);
- a single such ``Dataset``: its items are split once, seeded, into a training part and a
  test part of ``ceil(len / 5)`` items (a fifth; ``torch.randperm`` from a generator seeded
  with 0), so the same factory always gives the same split;
- an initlab :class:`~initlab.datasets.families.Dataset` (used as it is, after the checks).

Every item is read once and stacked into tensors (:func:`~initlab.datasets.arrays.from_arrays`
checks them), so training indexes tensors, never the factory's ``__getitem__``. The module is
imported with :func:`importlib.import_module` (the current directory is tried too, as
``python -m`` would); nothing is evaluated.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import torch

from initlab._checks import ArgumentError
from initlab._imports import import_user_module
from initlab.datasets.arrays import from_arrays
from initlab.datasets.families import Dataset

__all__ = ["TEST_FRACTION", "is_factory_spec", "load_factory"]

#: The share of a single returned dataset held out as the test split.
TEST_FRACTION = 0.2
_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_factory_spec(text: object) -> bool:
    """Whether ``text`` reads as ``package.module:function`` (and is not an existing path)."""
    return isinstance(text, str) and bool(_SPEC.match(text)) and not os.path.exists(text)


def load_factory(spec: str, *, argument: str = "dataset") -> Dataset:
    """Call the dataset factory ``spec`` and materialize what it returns (see the module doc).

    Args:
        spec: ``MODULE:FUNCTION`` (``FUNCTION`` may be dotted, ``pkg.data:Class.build``).
        argument: the library argument that gave ``spec``, named in errors.

    Returns:
        A :class:`~initlab.datasets.families.Dataset` named ``spec``, ``source`` ``spec``.

    Raises:
        ArgumentError naming ``argument`` and ``spec``: not ``MODULE:FUNCTION``; the module
            cannot be imported or has no such attribute; the call fails; it returns something
            else than the accepted kinds; an item is not ``(x, y)``, items of different shapes
            (the first differing item's index is named); and :func:`from_arrays`'s checks
            (empty split, labels not integers or negative).
    """

    def fail(message: str) -> ArgumentError:
        return ArgumentError(argument, f"dataset factory {spec!r}: {message}")

    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ArgumentError(
            argument,
            "a dataset factory must be MODULE:FUNCTION, a dotted module path and a dotted name "
            f"inside it, e.g. mypackage.data:load; got {argument}={spec!r}",
        )
    module_name, _, attribute = spec.partition(":")
    target = _import(module_name, fail)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise fail(f"{getattr(target, '__name__', module_name)} has no attribute {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise fail(f"it is a {type(target).__name__}, not a callable")
    try:
        made = target()
    except Exception as error:  # noqa: BLE001 - the user's code: reported with the spec
        raise fail(f"calling it failed with {type(error).__name__}: {error}") from None
    if isinstance(made, Dataset):
        parts = (made.train_images, made.train_labels, made.test_images, made.test_labels)
        return from_arrays(
            spec, *parts, source=spec, argument=argument, num_classes=made.num_classes
        )
    if isinstance(made, tuple | list) and len(made) == 2:
        (train_x, train_y), (test_x, test_y) = (
            _materialize(d, w, fail) for w, d in zip(("train", "test"), made, strict=True)
        )
    elif _is_map_dataset(made):
        x, y = _materialize(made, "dataset", fail)
        n_test = math.ceil(len(y) * TEST_FRACTION)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        test, train = order[:n_test].sort().values, order[n_test:].sort().values
        train_x, train_y, test_x, test_y = x[train], y[train], x[test], y[test]
    else:
        raise fail(
            f"it returned a {type(made).__name__}; a dataset factory returns a "
            "torch.utils.data.Dataset, a (train, test) pair of them, or an initlab Dataset"
        )
    return from_arrays(spec, train_x, train_y, test_x, test_y, source=spec, argument=argument)


def _import(module_name: str, fail):
    try:
        return import_user_module(module_name)
    except ModuleNotFoundError as error:
        raise fail(
            f"cannot import module {module_name!r} ({type(error).__name__}: {error}); it must "
            f"be importable from {os.getcwd()} or sys.path"
        ) from None
    except Exception as error:  # noqa: BLE001 - a module that fails while importing
        raise fail(
            f"importing module {module_name!r} failed with {type(error).__name__}: {error}"
        ) from None


def _is_map_dataset(value) -> bool:
    return hasattr(value, "__len__") and hasattr(value, "__getitem__")


def _materialize(dataset, which: str, fail) -> tuple[torch.Tensor, torch.Tensor]:
    """Read every item ``(x, y)`` of a map-style dataset once; stack into tensors."""
    if not _is_map_dataset(dataset):
        raise fail(
            f"its {which} part is a {type(dataset).__name__}, not a map-style dataset "
            "(len(ds) and ds[i])"
        )
    xs, ys = [], []
    for index in range(len(dataset)):
        try:
            item = dataset[index]
        except Exception as error:  # noqa: BLE001 - the user's code
            raise fail(
                f"{which} item {index} failed with {type(error).__name__}: {error}"
            ) from None
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise fail(f"{which} item {index} is a {type(item).__name__}; items must be (x, y)")
        x, y = item
        x = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        if xs and x.shape != xs[0].shape:
            raise fail(
                f"{which} item {index} has shape {tuple(x.shape)} but item 0 has "
                f"{tuple(xs[0].shape)}; all items must have one shape"
            )
        if xs and x.dtype != xs[0].dtype:
            raise fail(f"{which} item {index} is {x.dtype} but item 0 is {xs[0].dtype}")
        label = y.item() if isinstance(y, torch.Tensor | np.ndarray) and y.ndim == 0 else y
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise fail(
                f"{which} item {index} has label {y!r} ({type(y).__name__}); labels must be "
                "integers (an int or a 0-d integer tensor)"
            )
        xs.append(x)
        ys.append(int(label))
    if not xs:
        raise fail(f"its {which} part is empty; training and testing each need an example")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)
