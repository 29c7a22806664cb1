"""Does a dataset fit a model: the checks a run's data pass before training, and the head size.

A language-model task's data come from here too: :func:`lm_data` (a corpus's windows),
:func:`lm_params` (the vocabulary filled in) and :func:`check_fit` (the model's ``(B, T, V)``
output probed).

:func:`check_data` finds, before anything is trained or written, what the training loop would
find only when it reaches the offending batch (the test images after a whole epoch, a label
beyond the head as a raw index error); :func:`head_params` gives a zoo model the number of
outputs a known dataset's labels need.
"""

from __future__ import annotations

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.datasets.arrays import standardize as standardize_dataset
from initlab.datasets.families import DATASETS, Dataset, to_inputs
from initlab.datasets.sources import is_user_data, load_source
from initlab.datasets.split import hold_out
from initlab.datasets.text import char_corpus, load_text, windows
from initlab.experiments.core import TensorData
from initlab.zoo.models import MODEL_ALIASES, MODELS, accepted_params, fit_classes

__all__ = [
    "check_data",
    "check_fit",
    "head_params",
    "lm_data",
    "lm_params",
    "load_data",
    "load_split",
    "tensor_data",
]


def load_data(
    dataset: str,
    data: str | None = None,
    *,
    data_dir: str | None = None,
    download: bool = False,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    standardize: bool | str = False,
) -> Dataset:
    """Load a run's data source, take its subsets, standardize it if asked; write nothing.

    The source is ``(dataset, data)`` of :func:`~initlab.datasets.sources.load_source`
    (an IDX family, an ``.npz`` file, an image folder or a dataset factory). Subsets are drawn
    first (:meth:`~initlab.datasets.families.Dataset.subset`, seeded with ``seed``), then
    :func:`~initlab.datasets.arrays.standardize` computes its statistics (per channel for
    ``True``, per input position for ``"pixel"``) on the training images that will train,
    never on the test split.

    Raises:
        As :func:`~initlab.datasets.sources.load_source`, ``Dataset.subset`` and
        ``standardize``.
    """
    loaded = load_source(dataset, data, data_dir=data_dir, download=download)
    if train_subset is not None or test_subset is not None:
        loaded = loaded.subset(train_subset, test_subset, seed=seed)
    return standardize_dataset(loaded, per=_per(standardize)) if standardize else loaded


def _per(standardize: bool | str) -> str:
    """``standardize``'s ``per`` argument: ``"pixel"`` for ``"pixel"``, else ``"channel"``."""
    return "pixel" if standardize == "pixel" else "channel"


def load_split(
    dataset: str, data: str | None = None, *, val_fraction: float, **options
) -> tuple[Dataset, Dataset]:
    """:func:`load_data` with a validation split held out of the training data.

    The split (:func:`~initlab.datasets.split.hold_out`, seeded with ``options["seed"]``) is
    drawn after the subsets and before standardization, whose statistics then come from the
    kept training examples only: neither the validation nor the test examples enter them.

    Returns:
        ``(fit, val)`` of :func:`~initlab.datasets.split.hold_out`.
    """
    scale = options.pop("standardize", False)
    fit, val = hold_out(load_data(dataset, data, **options), val_fraction, options.get("seed", 0))
    if scale:
        per = _per(scale)
        fit, val = standardize_dataset(fit, per=per), standardize_dataset(val, per=per)
    return fit, val


def tensor_data(
    dataset: Dataset, device: str | torch.device = "cpu", val: Dataset | None = None
) -> TensorData:
    """Put a dataset on ``device`` as the trainers take it (:meth:`Dataset.inputs`).

    For the IDX families' ``(N, H, W)`` uint8 images this is
    :meth:`TensorData.from_dataset` to the bit: ``(N, 1, H, W)`` float32, pixels / 255.
    ``val``: the held-out split of :func:`load_split`, whose test split becomes the
    validation split (``val_x``, ``val_y``).
    """
    return TensorData(
        dataset.inputs("train", device),
        dataset.train_labels.to(device, torch.int64),
        dataset.inputs("test", device),
        dataset.test_labels.to(device, torch.int64),
        None if val is None else val.inputs("test", device),
        None if val is None else val.test_labels.to(device, torch.int64),
    )


def head_params(
    model: str, model_params: dict, dataset: str, num_classes: int | None = None
) -> dict:
    """Return zoo ``model``'s parameters with the head fitted to a known dataset's classes.

    A dataset of :data:`~initlab.datasets.families.DATASETS` has a published number of
    classes (26 for ``emnist-letters``, 47 for ``emnist-balanced``): the head gets that many
    outputs unless ``model_params`` sets ``num_classes``
    (:func:`~initlab.zoo.models.fit_classes`). Any other dataset name has no known
    class count, so the head keeps the model's ``num_classes`` (set or default); labels beyond
    it are an error in :func:`check_data`, never a silently wider head. User data (an
    ``.npz`` file, an image folder, a factory: :func:`~initlab.datasets.sources.is_user_data`)
    knows its classes: given ``num_classes`` (its :attr:`Dataset.num_classes`), a zoo head
    gets that many outputs unless ``model_params`` sets ``num_classes``.

    Example:
        >>> head_params("mlp", {}, "emnist-letters"), head_params("mlp", {}, "glyphs")
        ({'num_classes': 26}, {})
    """
    info = DATASETS.get(dataset)
    if info is not None:
        return fit_classes(model, model_params, info.num_classes)
    if num_classes is not None and is_user_data(dataset) and model in (*MODELS, *MODEL_ALIASES):
        return fit_classes(model, model_params, num_classes)
    return dict(model_params)


def check_data(
    model: nn.Module,
    dataset: Dataset,
    *,
    model_name: str | None = None,
    device: str | torch.device = "cpu",
) -> int:
    """Check that ``model`` can be trained and tested on ``dataset``; return its class count.

    Checks, in this order, each raising with the dataset's name, the values and what fits:

    - neither split is empty;
    - labels are ``(N,)`` integer tensors (not bool, float or complex);
    - the test images have the training images' size;
    - the model takes a batch of two images of each split, scaled as
      :func:`tensor_data` does (``(2, 1, H, W)`` float32 for IDX images) on ``device``, and returns
      logits ``(2, classes)`` (one forward pass per split, in eval mode and without gradients,
      so no BatchNorm statistic or dropout draw changes; the model's mode is restored);
    - every label lies in ``0 .. classes - 1``.

    The training loop itself would find these only when it reaches the offending batch: the
    test images after a whole epoch of training, a label beyond the head as a raw index error.

    Args:
        model: a classifier returning logits ``(B, classes)``, on ``device``.
        dataset: a :class:`~initlab.datasets.families.Dataset` (images ``(N, H, W)``).
        model_name: the zoo name of ``model``, for the hints (which parameters set its input
            size); ``None`` for another model.
        device: where ``model`` is.

    Returns:
        The number of logits, ``classes``.

    Raises:
        ArgumentError: the labels need more classes than the model has logits (argument
            ``model_params``, where ``num_classes`` is set; a ``ValueError``).
        ValueError: another check fails.
    """
    name = dataset.name
    splits = (
        ("training", dataset.train_images, dataset.train_labels),
        ("test", dataset.test_images, dataset.test_labels),
    )
    for split, images, labels in splits:
        if len(images) == 0 or len(labels) == 0:
            raise ValueError(
                f"dataset {name!r} has no {split} images; a comparison trains on the training "
                "split and tests on the test split, so each needs at least one image"
            )
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex:
            raise ValueError(
                f"dataset {name!r}: the {split} labels must be (N,) integers; got shape "
                f"{tuple(labels.shape)} {labels.dtype}"
            )
        if labels.dtype == torch.bool:
            raise ValueError(f"dataset {name!r}: the {split} labels must be integers, not bool")
    size = tuple(dataset.train_images.shape[1:])
    if tuple(dataset.test_images.shape[1:]) != size:
        raise ValueError(
            f"dataset {name!r}: the test images are {_size(dataset.test_images)} but the "
            f"training images are {_size(dataset.train_images)}; train and test images must "
            "have one size"
        )
    classes = None
    for split, images, _ in splits:
        classes = _logits(model, images, split, name, model_name, device)
    low = min(int(labels.min()) for _, _, labels in splits)
    top = max(int(labels.max()) for _, _, labels in splits)
    if low < 0:
        raise ValueError(f"dataset {name!r}: labels must be >= 0; found {low}")
    if top >= classes:
        need = top + 1
        hint = (
            f"; {name!r} is not a known dataset, so its number of classes is not known and the "
            f"head keeps the model's {classes}"
            if name not in DATASETS
            else ""
        )
        raise ArgumentError(
            "model_params",
            f"dataset {name!r}: the labels need {need} classes but the model returns {classes} "
            f"logits (labels {low}..{top}, logits for 0..{classes - 1}){hint}; build it with "
            f"num_classes={need} in model_params",
        )
    return classes


def _size(images: torch.Tensor) -> str:
    return "x".join(str(n) for n in images.shape[1:])


def _logits(model, images, split, name, model_name, device) -> int:
    """Run two images of a split through ``model``; return the number of logits."""
    x = to_inputs(images[:2], device)  # as the trainers see them (tensor_data)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    except (RuntimeError, ValueError, IndexError) as error:
        hint = _input_hint(model_name, images)
        raise ArgumentError(
            _hint_argument(hint),
            f"model {model_name or type(model).__name__!r} does not take the {split} images of "
            f"dataset {name!r}, {_size(images)} pixels (a batch of shape {tuple(x.shape)}): "
            f"{error}{hint}",
        ) from None
    finally:
        model.train(training)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != len(x):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"model {model_name or type(model).__name__!r} must return logits (B, classes) for "
            f"the {split} images of dataset {name!r}; for a batch of shape {tuple(x.shape)} it "
            f"returned {got}{_input_hint(model_name, images)}"
        )
    return logits.shape[1]


def _hint_argument(hint: str) -> str:
    """The argument a model's input-size error names: ``model_params`` where a parameter of the
    model would fit the data (``build it with ...``), else ``model`` (another model would)."""
    return "model_params" if "build it with" in hint else "model"


def _input_hint(model_name: str | None, images: torch.Tensor) -> str:
    """Which of the zoo model's parameters set its input size, for ``images``' size."""
    if model_name not in (*MODELS, *MODEL_ALIASES):
        return ""
    accepted = accepted_params(model_name)
    if images.ndim != 3:  # (N, D) vectors, (N, C, H, W) images
        features = images[0].numel()
        if "in_features" in accepted:
            return f"; for inputs of {features} values build it with in_features={features}"
        return (
            f"; model {model_name!r} takes one-channel (N, H, W) images only; the zoo's 'mlp' "
            f"takes vectors (in_features={features})"
        )
    h, w = images.shape[1:]
    if "in_features" in accepted:
        return f"; for {h}x{w} images build it with in_features={h * w}"
    if "image_size" in accepted and h == w:
        return f"; for {h}x{w} images build it with image_size={h}"
    if "image_size" in accepted:
        return f"; model {model_name!r} takes square images only (image_size)"
    return f"; model {model_name!r} takes 28x28 images only"


def lm_params(model: str, model_params: dict, vocab_size: int, seq_len: int) -> dict:
    """A language model's parameters with ``vocab_size`` (and char-gpt's ``seq_len``) filled.

    Values the user gave are kept (a ``vocab_size`` too small for the corpus is refused by
    :func:`check_fit`); a factory model gets nothing added.
    """
    if model not in MODELS and model not in MODEL_ALIASES:
        return dict(model_params)
    accepted = accepted_params(model)
    filled = dict(model_params)
    if "vocab_size" in accepted:
        filled.setdefault("vocab_size", vocab_size)
    if "seq_len" in accepted:
        filled.setdefault("seq_len", seq_len)
    return filled


def lm_data(
    text_file: str | None,
    seq_len: int,
    device: str | torch.device = "cpu",
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> tuple[TensorData, int]:
    """Load a character corpus as the trainers take it: windows of ``seq_len`` tokens.

    The corpus (:func:`initlab.datasets.text.load_text`: the embedded Shakespeare when
    ``text_file`` is ``None``) is split into its fixed train, validation and test parts
    (:func:`~initlab.datasets.text.char_corpus`, 5% each for validation and test, in text
    order), each cut into non-overlapping windows (:func:`~initlab.datasets.text.windows`):
    inputs ``(N, seq_len)`` int64 and targets the same characters shifted by one. The
    validation split is always present (``val_x``, ``val_y``).

    Args:
        text_file: a UTF-8 text file, or ``None`` for the embedded corpus.
        seq_len: characters per window, >= 1.
        device: where the tensors go.
        train_subset, test_subset: keep only the first this many training / test windows
            (for quick runs).

    Returns:
        ``(data, vocab_size)``: a :class:`~initlab.experiments.core.TensorData` and an int.

    Raises:
        ArgumentError: (argument ``text_file``) a missing, empty, binary or too short file
            (:func:`~initlab.datasets.text.load_text`); (argument ``seq_len``) a part too
            short for one window (:func:`~initlab.datasets.text.windows`).
    """
    corpus = char_corpus(load_text(text_file))
    parts = {}
    for split in ("train", "val", "test"):
        x, y = windows(getattr(corpus, split), seq_len, part=split)
        parts[split] = (x.to(device), y.to(device))
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        parts["train"],
        parts["val"],
        parts["test"],
    )
    if train_subset is not None:
        train_x, train_y = train_x[:train_subset], train_y[:train_subset]
    if test_subset is not None:
        test_x, test_y = test_x[:test_subset], test_y[:test_subset]
    data = TensorData(train_x, train_y, test_x, test_y, val_x, val_y)
    return data, corpus.vocab_size


@torch.no_grad()
def check_fit(task, model: nn.Module, data: TensorData, model_name: str) -> None:
    """Probe ``model`` with two training inputs of ``data``; raise unless its output fits ``task``
    (a :class:`~initlab.experiments.tasks.Task`).

    For a language model the output must be logits ``(2, T, V)`` for tokens ``(2, T)`` with
    ``V`` at least the corpus's vocabulary; a classifier's ``(B, classes)`` logits are checked
    by :func:`~initlab.experiments.data.check_data`. One forward pass in eval mode (no
    batch-statistics update, no dropout draw); the model's mode is restored.

    Raises:
        ValueError: the model fails on the batch or returns another shape (naming the model,
            the task and what it needs).
        ArgumentError: (argument ``model_params``) fewer logits than the vocabulary needs.
    """
    if task.kind != "lm":
        return
    x = data.train_x[:2]
    vocab = int(torch.cat([data.train_y.flatten(), data.test_y.flatten()]).max()) + 1
    declared = getattr(model, "vocab_size", None)  # the zoo's language models say theirs
    if isinstance(declared, int) and declared < vocab:
        raise ArgumentError(
            "model_params",
            f"model {model_name!r} has vocab_size={declared} but the corpus needs {vocab} (its "
            f"characters' ids); build it with vocab_size={vocab}, or leave vocab_size out to "
            "take the corpus's",
        )
    training = model.training
    model.eval()
    try:
        out = model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        raise ValueError(
            f"model {model_name!r} does not take the tokens of task {task.name!r} (a batch of "
            f"shape {tuple(x.shape)}, int64): {error}"
        ) from None
    finally:
        model.train(training)
    expected = (*x.shape, "vocab")
    if not isinstance(out, torch.Tensor) or out.ndim != 3 or tuple(out.shape[:2]) != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model {model_name!r} does not fit task {task.name!r}: for tokens of shape "
            f"{tuple(x.shape)} it returned {got}, not next-token logits {expected}"
        )
    if out.shape[-1] < vocab:
        raise ArgumentError(
            "model_params",
            f"model {model_name!r} returns {out.shape[-1]} logits per position but the corpus "
            f"needs {vocab} (its characters); build it with vocab_size={vocab}",
        )
