"""`standardize(per="pixel")`: mean 0 and std 1 per input position on the training split."""

import logging

import numpy as np
import pytest
import torch

from initlab.datasets.arrays import from_arrays, standardize


def test_pixel_statistics_are_hand_values():
    # two 2x2 training images, pixel by pixel (values / 255):
    #   (0,0): 0, 255 -> mean 0.5, std 0.5        (0,1): 51, 153 -> mean 0.4, std 0.2
    #   (1,0): 255, 255 -> constant: mean 1, std 0 (1,1): 0, 0 -> constant: mean 0, std 0
    train = torch.tensor([[[0, 51], [255, 0]], [[255, 153], [255, 0]]], dtype=torch.uint8)
    test = torch.tensor([[[102, 102], [0, 255]]], dtype=torch.uint8)
    scaled = standardize(from_arrays("p", train, [0, 1], test, [1], source="x"), per="pixel")
    assert scaled.mean == pytest.approx((0.5, 0.4, 1.0, 0.0), abs=1e-12)
    # the constant pixels are divided by 1 (their std recorded as 1)
    assert scaled.std == pytest.approx((0.5, 0.2, 1.0, 1.0), abs=1e-12)
    assert scaled.train_images.dtype == torch.float32
    assert scaled.train_images.tolist() == [[[-1.0, -1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]]
    # test: (0.4 - 0.5) / 0.5 = -0.2; (0.4 - 0.4) / 0.2 = 0; constant pixels keep their offset
    # from the training value: 0 - 1 = -1 and 1 - 0 = 1
    assert scaled.test_images.flatten().tolist() == pytest.approx([-0.2, 0.0, -1.0, 1.0], abs=1e-6)


def test_every_pixel_has_mean_zero_and_std_one_on_the_training_split():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (30, 3, 4, 4), dtype=np.uint8)
    x[:, 0, 0, 0] = 7  # one constant position
    scaled = standardize(
        from_arrays("c", x, np.zeros(30, int), x[:4] // 3, [0] * 4, source="x"), per="pixel"
    )
    train = scaled.train_images.double()
    assert train.shape == (30, 3, 4, 4)
    mean, std = train.mean(dim=0), train.std(dim=0, correction=0)
    assert mean.abs().max() < 1e-6  # float32 rounding of values of magnitude < 4
    assert std[0, 0, 0] == 0  # the constant position: centred, not scaled
    std[0, 0, 0] = 1.0
    assert (std - 1).abs().max() < 1e-6
    # the test split is scaled with the training statistics (numpy, float64)
    values = x / 255.0
    constant = values.max(axis=0) == values.min(axis=0)
    expected = (x[:4] // 3 / 255.0 - values.mean(axis=0)) / np.where(
        constant, 1.0, values.std(axis=0)
    )
    assert np.abs(scaled.test_images.numpy() - expected).max() < 1e-5


def test_flat_vectors_are_standardized_per_feature_and_constants_are_logged(caplog):
    flat = torch.tensor([[0.0, 1.0, 3.0], [2.0, 1.0, 5.0]])  # float32: taken as they are
    dataset = from_arrays("f", flat, [0, 1], flat[:1], [0], source="x")
    with caplog.at_level(logging.INFO, logger="initlab.datasets.arrays"):
        scaled = standardize(dataset, per="pixel")
    assert scaled.mean == pytest.approx((1.0, 1.0, 4.0))
    assert scaled.std == pytest.approx((1.0, 1.0, 1.0))  # feature 1 is constant
    assert scaled.train_images.tolist() == [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]]
    assert "1 of 3 input positions are constant" in caplog.text
    # per channel, the same data is one channel: mean 2, std sqrt(8/3)
    channel = standardize(dataset)
    assert channel.mean == pytest.approx((2.0,)) and channel.std == pytest.approx(((8 / 3) ** 0.5,))


def test_an_unknown_mode_is_refused_naming_the_argument():
    flat = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"per must be one of \['channel', 'pixel'\]; got per="):
        standardize(from_arrays("z", flat, [0, 1], flat[:1], [0], source="x"), per="pixels")


# --- the flag: --standardize [channel|pixel] ----------------------------------------------


def _parse(command, argv):
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog="initlab")
    importlib.import_module(f"initlab.cli.{command}").register(
        parser.add_subparsers(dest="command")
    )
    return parser.parse_args([command, *argv])


@pytest.mark.parametrize("command", ["train", "sweep", "diagnose"])
def test_the_flag_bare_channel_pixel_and_absent(command):
    grid = ["--grid", "sw2=1,2"] if command == "sweep" else []
    assert _parse(command, [*grid, "--standardize", "--seed", "1"]).standardize is True
    assert _parse(command, [*grid, "--standardize", "channel"]).standardize is True
    assert _parse(command, [*grid, "--standardize", "pixel"]).standardize == "pixel"
    assert _parse(command, grid).standardize is False


def test_a_bad_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        _parse("train", ["--standardize", "pixels"])
    err = capsys.readouterr().err
    assert "argument --standardize: expected channel or pixel (or no value); got 'pixels'" in err


def test_diagnose_standardizes_per_pixel(tmp_path):
    from initlab.cli import main
    from initlab.schemes.registry import initialize
    from initlab.zoo.models import build_model

    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    x[:, 0, 0] = 9  # a constant pixel: centred (0 on every training image), not scaled
    y = np.arange(30) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    argv = ["--data", str(path), "--standardize", "pixel", "--batch-size", "8", "--depth", "1"]
    argv += ["--width", "8", "--model-arg", "in_features=16", "--schemes", "kaiming_normal"]
    assert main(["diagnose", *argv, "--out", str(tmp_path / "o")]) == 0
    import json

    got = json.loads((tmp_path / "o" / "diagnoses.json").read_text())["kaiming_normal"]["loss"]
    # by hand: per-pixel statistics of the 30 training images (numpy, float64); diagnose's
    # model is built under torch.manual_seed(0) and initialized with a generator seeded 0
    values = x / 255.0
    std = values.std(axis=0)
    std[0, 0] = 1.0
    batch = ((values[:8] - values.mean(axis=0)) / std).astype(np.float32)
    torch.manual_seed(0)
    net = build_model("mlp", depth=1, width=8, in_features=16, num_classes=3)
    initialize(net, "kaiming_normal", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = net(torch.from_numpy(batch).unsqueeze(1))
        want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[:8])).item()
    assert got == pytest.approx(want, rel=1e-6)  # float32 sums, maybe in another order


def test_a_saved_comparison_records_pixel_and_loads_per_pixel(tmp_path, capsys):
    import json

    from initlab.cli import main
    from initlab.experiments.config import CompareConfig
    from initlab.experiments.data import load_data

    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (40, 4, 4), dtype=np.uint8)
    x[:, 1, 2] = 200  # constant over the training images: centred only
    y = np.arange(40) % 2
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    out = tmp_path / "c"
    argv = ["compare", "--data", str(path), "--model", "mlp", "--model-arg", "in_features=16"]
    argv += ["--standardize", "pixel", "--schemes", "xavier_uniform", "--seeds", "1"]
    argv += ["--epochs", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["standardize"] == "pixel"
    assert CompareConfig.from_json((out / "config.json").read_text()).standardize == "pixel"
    # what the runs trained on: every position mean 0, std 1 over the 40 training images (the
    # population std, as standardize computes it), the constant one exactly 0
    train = load_data("npz", str(path), standardize="pixel").inputs("train").reshape(40, 16)
    train = torch.as_tensor(train, dtype=torch.float64)
    torch.testing.assert_close(
        train.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-6, rtol=0
    )
    std = train.std(0, correction=0)
    assert std[6] == 0 and torch.allclose(
        std[torch.arange(16) != 6], torch.ones(15, dtype=torch.float64), atol=1e-5
    )
