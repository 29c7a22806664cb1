"""`compare` (and `train`) check the data against the model before writing anything.

Before: a dataset without checksums whose test images were 27x28 trained a whole epoch and then
crashed with a traceback, leaving config.json, results.jsonl and checkpoints/ behind; a label 10
for the default 10-class model silently widened the head to 11 outputs.
"""

import struct

import numpy as np
import pytest
import torch
from torch import nn

from initlab.cli import main
from initlab.datasets.families import Dataset, load_dataset
from initlab.experiments.pretrain import PretrainConfig
from initlab.experiments.sweep import CompareConfig, check_data, head_params, run_sweep
from initlab.experiments.trainer import TrainConfig
from initlab.zoo.models import build_model


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def glyphs(directory, *, test_size=(28, 28), train_size=(28, 28), top=9, n=64):
    """A dataset initlab does not know (no checksums): random images, labels 0..9 cycling,
    the last test label replaced by ``top``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(directory / "train-images-idx3-ubyte", rng.integers(0, 256, (n, *train_size), "u1"))
    write_idx(directory / "train-labels-idx1-ubyte", (np.arange(n) % 10).astype("u1"))
    write_idx(directory / "t10k-images-idx3-ubyte", rng.integers(0, 256, (16, *test_size), "u1"))
    labels = (np.arange(16) % 10).astype("u1")
    labels[-1] = top
    write_idx(directory / "t10k-labels-idx1-ubyte", labels)
    return directory


def compare(data, out, *extra):
    argv = ["compare", "--dataset", "glyphs", "--data-dir", str(data), "--schemes", "seed"]
    argv += ["--seeds", "1", "--epochs", "1", "--no-progress", "--out", str(out)]
    return main([*argv, *extra])


def test_test_images_of_another_size_fail_before_any_file_is_written(tmp_path, capsys):
    data = glyphs(tmp_path / "g", test_size=(27, 28))
    out = tmp_path / "out"
    assert compare(data, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"initlab compare: error: dataset 'glyphs': the test images ({data}/t10k-images-idx3-"
        f"ubyte) are 27x28 but the training images ({data}/train-images-idx3-ubyte) are 28x28; "
        "train and test images must have one size"
    )
    assert not out.exists()  # not even the directory: nothing to clean up, nothing to refuse
    config = CompareConfig(schemes=("seed",), seeds=1, dataset="glyphs", data_dir=str(data))
    with pytest.raises(ValueError, match="the test images .* are 27x28 but the training images"):
        run_sweep(config, out, progress=False)
    assert not out.exists()
    # `initlab train` checks before its first epoch too (before: a traceback after it)
    assert main(["train", "--dataset", "glyphs", "--data-dir", str(data), "--epochs", "1"]) == 2
    captured = capsys.readouterr()
    assert "are 27x28 but the training images" in captured.err and "Epoch 1" not in captured.out


def test_a_label_beyond_a_10_class_model_fails_before_any_file_is_written(tmp_path, capsys):
    data = glyphs(tmp_path / "g", top=10)  # one test label 10, the default head has 10 outputs
    out = tmp_path / "out"
    assert compare(data, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "initlab compare: error: argument --model-arg: dataset 'glyphs': the labels need 11 "
        "classes but the model returns 10 logits (labels 0..10, logits for 0..9); 'glyphs' is "
        "not a known dataset, so its number of classes is not known and the head keeps the "
        "model's 10; build it with num_classes=11 in model_params"
    )
    assert not out.exists()
    # the same with a head of 10 set by hand, and in the library
    assert compare(data, out, "--model-param", "num_classes=10") == 2
    assert "the labels need 11 classes but the model returns 10 logits" in capsys.readouterr().err
    config = CompareConfig(schemes=("seed",), seeds=1, dataset="glyphs", data_dir=str(data))
    with pytest.raises(ValueError, match="the labels need 11 classes but the model returns 10"):
        run_sweep(config, out, progress=False)
    assert not out.exists()
    assert main(["train", "--dataset", "glyphs", "--data-dir", str(data), "--epochs", "1"]) == 2
    assert "the labels need 11 classes" in capsys.readouterr().err
    # as the message says, an 11-class head fits
    model = build_model("initnet", num_classes=11)
    assert check_data(model, load_dataset("glyphs", data_dir=data), model_name="initnet") == 11


def test_images_no_zoo_size_fits_are_refused_with_the_parameter_that_would(tmp_path, capsys):
    data = glyphs(tmp_path / "g", test_size=(27, 28), train_size=(27, 28))
    out = tmp_path / "out"
    assert compare(data, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "initlab compare: error: argument --model: model 'mlp-784-128-10' does not take the "
        "training images of "
        "dataset 'glyphs', 27x28 pixels (a batch of shape (2, 1, 27, 28)): shape '[2, 784]' is "
        "invalid for input of size 1512; model 'mlp-784-128-10' takes 28x28 images only"
    )
    assert compare(data, out, "--model", "mlp") == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab compare: error: argument --model-arg: model 'mlp' does not")
    assert err.rstrip().endswith("; for 27x28 images build it with in_features=756")
    assert compare(data, out, "--model", "cnn") == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith("; model 'cnn' takes square images only (image_size)")
    assert not out.exists()


def test_the_pretrained_source_is_checked_against_the_model_too(tmp_path):
    # the source trains the same architecture: 27x27 images do not fit InitNet's 784 inputs
    source = glyphs(tmp_path / "g", test_size=(27, 27), train_size=(27, 27))
    config = CompareConfig(
        schemes=("seed", "pretrained"),
        seeds=1,
        train_subset=100,
        test_subset=50,
        train=TrainConfig(epochs=1),
        pretrain=PretrainConfig(dataset="glyphs", data_dir=str(source), epochs=1),
    )
    out = tmp_path / "out"
    with pytest.raises(ValueError) as refused:
        run_sweep(config, out, progress=False)
    assert str(refused.value).startswith(
        "scheme 'pretrained' pretrains on 'glyphs': model 'mlp-784-128-10' does not take the "
        "training images of dataset 'glyphs', 27x27 pixels"
    )
    assert not out.exists()


def test_an_empty_split_is_refused():
    with pytest.raises(ValueError, match=r"^train_subset must be >= 1; got train_subset=0$"):
        CompareConfig(train_subset=0)
    with pytest.raises(ValueError, match=r"^test_subset must be >= 1; got test_subset=0$"):
        CompareConfig(test_subset=0)
    images, labels = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4)
    empty = Dataset("tiny", images, labels, images[:0], labels[:0], 10, "memory")
    with pytest.raises(ValueError, match=r"dataset 'tiny' has no test images; a comparison"):
        check_data(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), empty)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), r"the training labels must be \(N,\) integers; got "),
        (torch.tensor([True, False, True, True]), r"the training labels must be integers, not b"),
        (torch.tensor([0, -1, 2, 1]), r"labels must be >= 0; found -1"),
        (torch.tensor([0, 1, 2, 3]).reshape(2, 2), r"must be \(N,\) integers; got shape \(2, 2\)"),
    ],
)
def test_labels_must_be_integers_from_zero(labels, message):
    images = torch.zeros(len(labels), 28, 28, dtype=torch.uint8)
    dataset = Dataset("tiny", images, labels, images, torch.arange(len(images)), 10, "memory")
    with pytest.raises(ValueError, match=message):
        check_data(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), dataset)


def test_check_data_returns_the_logits_and_wants_them_two_dimensional():
    images, labels = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4)
    dataset = Dataset("tiny", images, labels, images, labels, 4, "memory")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 6))
    model.train()
    assert check_data(model, dataset) == 6
    assert model.training  # the check runs in eval mode and restores the mode
    grouped = nn.Sequential(model, nn.Unflatten(1, (2, 3)))  # (B, 2, 3): not logits
    with pytest.raises(
        ValueError, match=r"must return logits \(B, classes\) .* returned \(2, 2, 3"
    ):
        check_data(grouped, dataset)


def test_the_head_fits_a_known_datasets_classes_and_not_an_unknown_ones():
    assert head_params("mlp", {}, "emnist-letters") == {"num_classes": 26}
    assert head_params("mlp", {}, "mnist") == {}
    assert head_params("mlp", {"num_classes": 5}, "emnist-balanced") == {"num_classes": 5}
    assert head_params("mlp", {}, "glyphs") == {}  # no class count to fit: the model's own
