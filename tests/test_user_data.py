"""Your data: .npz arrays, an image folder, a dataset factory; standardization; bad input.

Each source is written in tmp_path (a few hundred tiny examples), loaded into the same
``Dataset`` the IDX families give and trained by ``initlab compare``/``train`` for one epoch.
Each bad input is a clear error naming the flag and the file, before ``--out`` exists.
"""

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab.cli import main
from initlab.datasets import families
from initlab.datasets.arrays import from_arrays, load_npz, standardize
from initlab.datasets.factory import load_factory
from initlab.datasets.families import WrongDatasetError, load_dataset
from initlab.datasets.folders import load_image_folder
from initlab.datasets.sources import load_source, resolve_source
from initlab.experiments.config import CompareConfig
from initlab.experiments.data import tensor_data

SHARED = Path("/work/shared/data")
FACTORY = "tests.data_factories"


def write_npz(path, *, n=240, m=60, shape=(6, 6), classes=3, **override):
    """Learnable uint8 data: the class sets the brightness (class * 100 + noise 0..39)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, size in (("train", n), ("test", m)):
        labels = np.arange(size) % classes
        noise = rng.integers(0, 40, (size, *shape))
        offset = labels.reshape(-1, *([1] * len(shape))) * 100
        arrays[f"x_{split}"] = (offset + noise).astype(np.uint8)
        arrays[f"y_{split}"] = labels.astype(np.int64)
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def compare(out, *source):
    argv = ["compare", *source, "--model", "mlp", "--schemes", "xavier_uniform,zeros"]
    argv += ["--seeds", "1", "--epochs", "1", "--no-progress", "--out", str(out)]
    return main(argv)


def mlp_args(features):
    return ["--model-arg", f"in_features={features}"]


# --- npz ---------------------------------------------------------------------------------


def test_npz_loads_as_a_dataset_and_compare_trains_it_and_resume_reloads_it(tmp_path, capsys):
    path = write_npz(tmp_path / "bright.npz")
    dataset = load_npz(path)
    assert dataset.name == "bright" and dataset.num_classes == 3
    assert dataset.train_images.shape == (240, 6, 6) and dataset.train_images.dtype == torch.uint8
    assert dataset.test_labels.tolist()[:4] == [0, 1, 2, 0]
    data = tensor_data(dataset)  # as the IDX families: (N, 1, H, W), pixels / 255
    assert data.train_x.shape == (240, 1, 6, 6)
    assert data.train_x[0, 0, 0, 0] == dataset.train_images[0, 0, 0].item() / 255.0

    out = tmp_path / "out"
    subset = ["--train-subset", "200", "--batch-size", "8", "--lr", "0.01"]
    assert compare(out, "--data", str(path), *mlp_args(36), *subset) == 0
    table = capsys.readouterr().out
    assert "xavier_uniform" in table and "zeros" in table
    saved = json.loads((out / "config.json").read_text())
    assert (saved["dataset"], saved["data"], saved["standardize"]) == ("npz", str(path), False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert records, "no epoch recorded"
    # the model's head was fitted to the data's 3 classes: accuracy well above chance
    runs = [r for r in records if r["type"] == "epoch" and r["scheme"] == "xavier_uniform"]
    best = max(r["test_accuracy"] for r in runs)
    assert best > 0.6

    # --resume rebuilds the source from config.json: with the file gone it says so
    path.rename(tmp_path / "moved.npz")
    (out / "results.jsonl").write_text("")
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"argument --data: data '{path}': no such file" in err


def test_npz_rgb_images_and_flat_vectors(tmp_path):
    rng = np.random.default_rng(1)
    rgb = from_arrays(
        "rgb",
        rng.integers(0, 256, (5, 3, 4, 4), dtype=np.uint8),
        np.array([0, 1, 0, 1, 1]),
        rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8),
        np.array([1, 0]),
        source="x",
    )
    assert tensor_data(rgb).train_x.shape == (5, 3, 4, 4)
    flat = from_arrays(
        "flat",
        rng.normal(size=(5, 7)),
        np.array([0, 1, 2, 0, 1], dtype=np.int32),
        rng.normal(size=(2, 7)),
        np.array([2, 0], dtype=np.uint8),
        source="x",
    )
    assert flat.train_images.dtype == torch.float32 and flat.num_classes == 3
    x = tensor_data(flat).train_x  # floats are taken as given, not divided by 255
    assert x.shape == (5, 7)
    assert torch.equal(x, flat.train_images)


# --- image folder ------------------------------------------------------------------------


def write_folder(root, *, mode="L", size=(6, 5), per_class=20, classes=("cat", "ant", "bee")):
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for label, name in enumerate(sorted(classes)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (label * 100 + rng.integers(0, 40, (size[1], size[0]))).astype(np.uint8)
                image = Image.fromarray(pixels, "L")
                image.convert(mode).save(folder / f"{i:03d}.png")
    return root


def test_image_folder_gray_loads_with_sorted_classes_and_compare_trains_it(tmp_path, capsys):
    pytest.importorskip("PIL")
    root = write_folder(tmp_path / "shapes")
    (root / "train" / "ant" / "notes.txt").write_text("not an image")  # skipped
    dataset = load_image_folder(root)
    assert dataset.num_classes == 3 and dataset.name == "shapes"
    assert dataset.train_images.shape == (60, 5, 6)  # (N, H, W): 5 high, 6 wide
    # ant, bee, cat sorted -> 0, 1, 2; ant images are darkest (label 0 * 100 + noise)
    assert dataset.train_labels.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert int(dataset.train_images[:20].max()) < 40 <= int(dataset.train_images[20:].min())
    out = tmp_path / "out"
    argv = ["--dataset", "folder", "--data", str(root), *mlp_args(30), "--standardize"]
    assert compare(out, *argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["dataset"], saved["standardize"]) == ("folder", True)


def test_image_folder_with_a_colour_image_is_rgb(tmp_path):
    pytest.importorskip("PIL")
    root = write_folder(tmp_path / "c", per_class=4, mode="RGB")
    dataset = load_image_folder(root)
    assert dataset.train_images.shape == (12, 3, 5, 6)
    # a grey picture saved as RGB: the three channels are equal
    assert torch.equal(dataset.train_images[:, 0], dataset.train_images[:, 2])


def test_image_folder_without_pillow_names_the_package(tmp_path, monkeypatch):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL raises ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match="needs the package Pillow.*pip install pillow"):
        load_image_folder(tmp_path / "d")


# --- factory -----------------------------------------------------------------------------


def test_factory_pair_trains_with_initlab_train(capsys):
    dataset = load_factory(f"{FACTORY}:pair")
    assert dataset.train_images.shape == (120, 6, 6) and dataset.test_images.shape == (30, 6, 6)
    assert dataset.num_classes == 3 and dataset.source == f"{FACTORY}:pair"
    argv = ["train", "--dataset", f"{FACTORY}:pair", "--model", "mlp", *mlp_args(36)]
    argv += ["--epochs", "1"]
    assert main(argv) == 0
    assert "Test Accuracy:" in capsys.readouterr().out


def test_factory_single_dataset_is_split_a_fifth_for_test_seeded():
    first, again = load_factory(f"{FACTORY}:single"), load_factory(f"{FACTORY}:single")
    assert len(first.train_labels) == 40 and len(first.test_labels) == 10
    assert torch.equal(first.test_images, again.test_images)


def test_factory_initlab_dataset_keeps_its_class_count():
    dataset = load_factory(f"{FACTORY}:initlab_dataset")
    assert dataset.num_classes == 5 and dataset.train_images.shape == (30, 6, 6)


def test_factory_compare_records_the_source_in_config_json(tmp_path, capsys):
    out = tmp_path / "out"
    assert compare(out, "--dataset", f"{FACTORY}:pair", *mlp_args(36)) == 0
    saved = CompareConfig.from_json((out / "config.json").read_text())
    assert (saved.dataset, saved.data) == (f"{FACTORY}:pair", None)


# --- standardization ---------------------------------------------------------------------


def test_standardize_uses_the_training_split_only():
    train = torch.tensor([[[0, 255], [0, 255]]] * 2, dtype=torch.uint8)  # mean 0.5, std 0.5
    test = torch.full((1, 2, 2), 255, dtype=torch.uint8)  # would move the mean if it counted
    dataset = from_arrays("s", train, [0, 1], test, [1], source="x")
    scaled = standardize(dataset)
    assert scaled.mean == pytest.approx((0.5,), abs=1e-12)
    assert scaled.std == pytest.approx((0.5,), abs=1e-12)
    assert scaled.train_images[0].tolist() == [[-1.0, 1.0], [-1.0, 1.0]]
    assert scaled.test_images.flatten().tolist() == [1.0] * 4  # (1 - 0.5) / 0.5

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (20, 3, 4, 4), dtype=np.uint8)
    rgb = standardize(from_arrays("c", x, np.zeros(20, int), x[:3] // 2, [0] * 3, source="x"))
    expected = (x / 255.0).mean(axis=(0, 2, 3))
    assert rgb.mean == pytest.approx(tuple(expected), abs=1e-12)
    assert rgb.std == pytest.approx(tuple((x / 255.0).std(axis=(0, 2, 3))), abs=1e-12)
    per_channel = rgb.train_images.double().mean(dim=(0, 2, 3))
    assert per_channel.abs().max() < 1e-6
    # the test split is scaled by the training statistics, not its own
    first = (x[0, 1, 0, 0] // 2 / 255.0 - expected[1]) / rgb.std[1]
    assert rgb.test_images[0, 1, 0, 0].item() == pytest.approx(first, abs=1e-6)


def test_standardize_refuses_a_constant_channel():
    flat = torch.zeros(3, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="is constant") as caught:
        standardize(from_arrays("z", flat, [0, 1, 0], flat[:1], [0], source="x"))
    assert caught.value.argument == "standardize"


# --- the IDX families: files of another known dataset ------------------------------------


def test_fashion_mnist_files_asked_as_mnist_are_named(capsys):
    directory = SHARED / "fashion-mnist"
    if not directory.is_dir():
        pytest.skip(f"{directory} is missing")
    with pytest.raises(WrongDatasetError, match="these are the fashion-mnist files, not mnist's"):
        load_dataset("mnist", data_dir=directory)
    assert main(["train", "--data-dir", str(directory), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: argument --dataset: " in err
    assert "use dataset='fashion-mnist'" in err


def test_files_of_another_registered_dataset_are_named(tmp_path, monkeypatch):
    """Synthetic stand-in: the files of a registered toy dataset loaded under another name."""
    embedded = Path(families.__file__).parent / "data" / "mnist"
    for name in families.FILE_NAMES:
        shutil.copy(embedded / f"{name}.gz", tmp_path / f"{name}.gz")
    mnist = families.DATASETS["mnist"]
    toy = families.DatasetInfo("toy", mnist.files, 10, (), "test", "TOY")
    other = families.DatasetInfo("other", families._files(*["0" * 64] * 4), 10, (), "test", "OTHER")
    monkeypatch.setitem(families.DATASETS, "toy", toy)
    monkeypatch.setitem(families.DATASETS, "other", other)
    monkeypatch.delitem(families.DATASETS, "mnist")
    families._known_digests.cache_clear()
    try:
        with pytest.raises(WrongDatasetError, match="these are the toy files, not other's") as e:
            load_dataset("other", data_dir=tmp_path)
        assert e.value.argument == "dataset"
        assert "use dataset='toy'" in str(e.value)
    finally:
        monkeypatch.undo()
        families._known_digests.cache_clear()
    # a file of no known dataset is still a plain checksum mismatch
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(
            gzip.decompress((embedded / "train-images-idx3-ubyte.gz").read_bytes())[:-1] + b"\1"
        )
    )
    with pytest.raises(families.ChecksumError, match="checksum mismatch for mnist"):
        load_dataset("mnist", data_dir=tmp_path)


# --- bad input: a clear error naming the flag and the file, nothing written --------------


def bad_npz(tmp_path, **override):
    return str(write_npz(tmp_path / "bad.npz", n=12, m=6, **override))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_train": np.arange(11) % 3}, "x_train has 12 examples but y_train has 11 labels"),
        ({"y_test": np.array([0, 1, 2, 0, 1, -1])}, "labels must lie in 0..2; found -1..2"),
        ({"y_train": np.arange(12) % 3 * 1.0}, "y_train must be (N,) integer class labels"),
        ({"x_test": np.zeros((0, 6, 6), np.uint8)}, "the test split is empty"),
        ({"x_test": np.zeros((6, 5, 6), np.uint8)}, "x_test's examples are (5, 6) but x_train's"),
        ({"x_train": np.zeros((12, 6, 6), np.int16)}, "x_train must be uint8"),
        ({"x_train": np.full((12, 6, 6), np.nan)}, "x_train holds NaN"),
        ({"y_train": np.array(["a"] * 12)}, "y_train must be a numeric array"),
    ],
)
def test_bad_npz_fails_naming_the_flag_and_the_file_before_out_exists(
    tmp_path, capsys, override, message
):
    path = bad_npz(tmp_path, **override)
    out = tmp_path / "out"
    assert compare(out, "--data", path, *mlp_args(36)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"initlab compare: error: argument --data: data {path}: "), err
    assert message in err
    assert not out.exists()


def test_npz_missing_keys_and_pickles_are_refused(tmp_path):
    np.savez(tmp_path / "keys.npz", x_train=np.zeros((2, 3)), y_train=np.zeros(2, int))
    with pytest.raises(ValueError, match="lacks the arrays x_test, y_test"):
        load_npz(tmp_path / "keys.npz")
    objects = np.empty(2, dtype=object)
    objects[:] = [np.zeros(3), np.zeros(4)]
    np.savez(
        tmp_path / "pickle.npz", x_train=objects, y_train=[0, 1], x_test=objects, y_test=[0, 1]
    )
    with pytest.raises(ValueError, match="without pickles"):
        load_npz(tmp_path / "pickle.npz")


def test_labels_beyond_a_fixed_head_fail_naming_the_model_argument(tmp_path, capsys):
    out = tmp_path / "out"
    path = str(write_npz(tmp_path / "d.npz", n=12, m=6))
    assert compare(out, "--data", path, *mlp_args(36), "--model-arg", "num_classes=2") == 2
    assert "the labels need 3 classes but the model returns 2 logits" in capsys.readouterr().err
    assert not out.exists()


def test_images_of_mixed_sizes_in_a_folder_name_the_file(tmp_path, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    root = write_folder(tmp_path / "mixed", per_class=4)
    odd = root / "train" / "bee" / "002.png"
    Image.new("L", (7, 5)).save(odd)
    out = tmp_path / "out"
    assert compare(out, "--data", str(root), *mlp_args(30)) == 2
    err = capsys.readouterr().err
    assert f"argument --data: data {odd}: the image is 5x7 (height x width) but " in err
    assert "all images of a folder must have one size" in err
    assert not out.exists()


def test_folder_layout_errors(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    (tmp_path / "f" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no test/ folder"):
        load_image_folder(tmp_path / "f")
    (tmp_path / "f" / "test" / "zebra").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"the classes \['zebra'\] have no training folder"):
        load_image_folder(tmp_path / "f")
    shutil.rmtree(tmp_path / "f" / "test" / "zebra")
    with pytest.raises(ValueError, match="train: holds no image"):
        load_image_folder(tmp_path / "f")
    Image.fromarray(np.array([[0, 300]], dtype=np.uint16)).save(tmp_path / "f/train/a/w.png")
    with pytest.raises(ValueError, match=r"w\.png: a I;16 image with values 0\.\.300"):
        load_image_folder(tmp_path / "f")
    (tmp_path / "f" / "train" / "a" / "w.png").unlink()
    (tmp_path / "f" / "train" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"x\.png: cannot read it as an image"):
        load_image_folder(tmp_path / "f")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:load", "cannot import module 'no_such_module_xyz'"),
        (f"{FACTORY}:missing", "has no attribute 'missing'"),
        (f"{FACTORY}:NOT_CALLABLE", "it is a int, not a callable"),
        (f"{FACTORY}:fails", "calling it failed with RuntimeError: the data server is down"),
        (f"{FACTORY}:not_a_dataset", "it returned a int"),
        (f"{FACTORY}:mixed_sizes", "train item 3 has shape (5, 5) but item 0 has (6, 6)"),
        (f"{FACTORY}:float_labels", "train item 0 has label 0.0 (float)"),
    ],
)
def test_bad_factory_fails_naming_the_flag_before_out_exists(tmp_path, capsys, spec, message):
    out = tmp_path / "out"
    assert compare(out, "--dataset", spec, *mlp_args(36)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"initlab compare: error: argument --dataset: dataset factory {spec!r}")
    assert message in err
    assert not out.exists()


def test_source_combinations_that_do_not_fit_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs data, the path"):
        resolve_source("npz")
    with pytest.raises(ValueError, match="needs dataset='npz', 'folder' or 'auto'"):
        resolve_source("mnist", "x.npz")
    with pytest.raises(ValueError, match="takes no data"):
        resolve_source(f"{FACTORY}:pair", "x.npz")
    with pytest.raises(ValueError, match="no such file or directory"):
        load_source("auto", tmp_path / "nothing")
    out = tmp_path / "out"
    assert compare(out, "--dataset", "mnist", "--data", str(tmp_path)) == 2
    assert "argument --data: " in capsys.readouterr().err
    assert not out.exists()


def test_idx_data_reach_the_trainers_bit_for_bit_as_before():
    """The default table must not change: tensor_data equals TensorData.from_dataset."""
    from initlab.experiments.core import TensorData

    mnist = load_dataset().subset(300, 100, seed=0)
    new, old = tensor_data(mnist), TensorData.from_dataset(mnist)
    assert new.train_x.shape == (300, 1, 28, 28)
    for a, b in zip(
        (new.train_x, new.train_y, new.test_x, new.test_y),
        (old.train_x, old.train_y, old.test_x, old.test_y),
        strict=True,
    ):
        assert a.dtype == b.dtype and torch.equal(a, b)
