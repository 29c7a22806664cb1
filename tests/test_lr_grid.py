"""Optimizers per run and the learning-rate grid of ``initlab compare``.

Each optimizer of :class:`~initlab.experiments.config.TrainConfig` (SGD with momentum, Adam,
AdamW) is checked against a plain PyTorch loop with that optimizer, one run and stacked, within
:func:`tests.rounding.band` of the steps taken.
"""

import copy
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from initlab._checks import ArgumentError
from initlab.datasets.families import load_dataset
from initlab.datasets.split import validation_indices
from initlab.experiments.config import CompareConfig
from initlab.experiments.data import load_data, load_split
from initlab.experiments.stacked import train_group
from initlab.experiments.sweep import read_results, run_sweep
from initlab.experiments.trainer import (
    TensorData,
    TrainConfig,
    build_initialized,
    run_seeds,
    train,
)
from initlab.reports.compare import format_table
from tests.rounding import accuracy_tolerance, band

STEPS = 4


@pytest.fixture(scope="module")
def data():
    return TensorData.from_dataset(load_dataset("mnist").subset(300, 100, seed=0))


def _plain_losses(model, data, config) -> list[float]:
    """The seed's loop: ``config.optimizer`` from torch.optim, the trainer's batch order."""
    kinds = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    extra = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    optimizer = kinds[config.optimizer](
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **extra
    )
    shuffle = torch.Generator().manual_seed(run_seeds(config.seed)[1])
    order = torch.randperm(len(data.train_y), generator=shuffle)
    losses = []
    for step in range(STEPS):
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _assert_close(got, want):
    assert len(got) == len(want) == STEPS
    for step, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        assert a == pytest.approx(b, rel=band(step)), (step, a, b)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_each_optimizer_equals_a_plain_torch_loop_alone_and_stacked(data, optimizer):
    config = TrainConfig(
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 3e-3,
        weight_decay=0.01,
        momentum=0.9,
        batch_size=32,
        epochs=1,
        max_steps=STEPS,
        log_every=1,
    )
    models = [build_initialized("mlp", "kaiming_uniform", seed=k) for k in (0, 1)]
    plain = [
        _plain_losses(copy.deepcopy(m), data, dataclasses.replace(config, seed=k))
        for m, k in zip(models, (0, 1), strict=True)
    ]
    # the runs must differ from each other, or a mix-up of runs would pass unseen
    assert plain[0] != plain[1]
    alone = train(copy.deepcopy(models[0]), data, config)
    _assert_close([loss for _, loss in alone.epochs[0].loss_curve], plain[0])
    stacked = train_group([copy.deepcopy(m) for m in models], data, config, [0, 1])
    for result, want in zip(stacked, plain, strict=True):
        _assert_close([loss for _, loss in result.epochs[0].loss_curve], want)


def test_the_optimizers_differ(data):
    """Adam and AdamW must not be the same optimizer under two names (weight decay differs)."""
    model = build_initialized("mlp", "kaiming_uniform", seed=0)
    curves = {}
    for optimizer in ("adam", "adamw"):
        config = TrainConfig(
            optimizer=optimizer, lr=1e-2, weight_decay=0.5, epochs=1, max_steps=STEPS, log_every=1
        )
        result = train(copy.deepcopy(model), data, config)
        curves[optimizer] = [loss for _, loss in result.epochs[0].loss_curve]
    assert curves["adam"][-1] != pytest.approx(curves["adamw"][-1], rel=band(STEPS))


# --- the learning-rate grid ---------------------------------------------------------------

SCHEMES = ("xavier_uniform", "kaiming_uniform")
GRID = (1e-4, 3e-3)


def _grid_config(**changes):
    settings = dict(
        schemes=SCHEMES,
        seeds=2,
        train_subset=300,
        test_subset=100,
        train=TrainConfig(epochs=1),
        lr_grid=GRID,
    )
    return CompareConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    out = tmp_path_factory.mktemp("stacked")
    return run_sweep(_grid_config(), out, progress=False, vectorize=True), out


def test_the_validation_split_is_disjoint_seeded_and_leaves_the_test_set_alone():
    train, val = validation_indices(300, 0.1, seed=0)
    assert len(val) == 30 and len(train) == 270
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(300))
    again = validation_indices(300, 0.1, seed=0)
    assert torch.equal(again[1], val) and torch.equal(again[0], train)
    assert not torch.equal(validation_indices(300, 0.1, seed=1)[1], val)
    # the sweep's data: the held-out images are training images, none of them trains, and
    # the test split is the test subset unchanged
    whole = load_data("mnist", train_subset=300, test_subset=100, seed=0)
    fit, held = load_split("mnist", train_subset=300, test_subset=100, seed=0, val_fraction=0.1)
    assert torch.equal(fit.train_images, whole.train_images[train])
    assert torch.equal(held.test_images, whole.train_images[val])
    assert torch.equal(held.test_labels, whole.train_labels[val])
    assert torch.equal(fit.test_images, whole.test_images)
    rows = {tuple(x.flatten().tolist()) for x in fit.train_images}
    assert not any(tuple(x.flatten().tolist()) in rows for x in held.test_images)
    with pytest.raises(ArgumentError, match="val_fraction"):
        validation_indices(300, 1.0, seed=0)


def _by_hand(lines):
    """Mean final-epoch validation accuracy per (scheme, lr), from the raw lines."""
    last = {}
    for line in lines:
        if line["type"] == "epoch":
            last[line["run"]] = line
    sums = {}
    for line in last.values():
        sums.setdefault((line["scheme"], line["lr"]), []).append(line["val_accuracy"])
    return {key: sum(v) / len(v) for key, v in sums.items()}


def test_each_scheme_gets_the_rate_of_the_best_mean_validation_accuracy(stacked):
    result, out = stacked
    lines = read_results(out / "results.jsonl")
    runs = {line["run"] for line in lines}
    assert runs == {f"{s}@{lr!r}/{k}" for s in SCHEMES for lr in GRID for k in (0, 1)}
    means = _by_hand(lines)
    for row in result.rows:
        want = max(GRID, key=lambda lr: means[(row.scheme, lr)])
        assert row.lr == want
        # the reported numbers are the test accuracies of the runs at that rate
        finals = [
            line["test_accuracy"]
            for line in lines
            if line["type"] == "epoch" and line["scheme"] == row.scheme and line["lr"] == want
        ]
        assert row.final_accuracy_mean == pytest.approx(sum(finals) / len(finals))
    # the rates really differ on the validation split (else the choice would be untested)
    assert any(means[(s, GRID[0])] != means[(s, GRID[1])] for s in SCHEMES)
    csv = (out / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("scheme,lr,runs,")
    report = (out / "report.md").read_text()
    assert "## Learning rate per scheme" in report and "validation" in report
    assert json.loads((out / "config.json").read_text())["lr_grid"] == list(GRID)
    table = format_table(result.rows, 0.97).splitlines()
    assert table[0].split()[:2] == ["scheme", "lr"]


def test_stacked_and_one_at_a_time_grid_sweeps_choose_the_same_rates(stacked, tmp_path):
    result, _ = stacked
    alone = run_sweep(_grid_config(), tmp_path / "alone", progress=False, vectorize=False)
    steps = 5  # ceil(270 / 64) steps of the one epoch
    tolerance = accuracy_tolerance(steps, 100)
    for a, b in zip(result.rows, alone.rows, strict=True):
        assert a.lr == b.lr
        assert a.final_accuracy_mean == pytest.approx(b.final_accuracy_mean, abs=tolerance)


def test_a_grid_sweep_resumes_to_the_lines_of_an_uninterrupted_one(stacked, tmp_path):
    config = _grid_config(train=TrainConfig(epochs=2, max_steps=2))
    whole = tmp_path / "whole"
    run_sweep(config, whole, progress=False, vectorize=True)
    out = tmp_path / "cut"
    calls = []

    def stop(run, record):
        calls.append(run)
        if len(calls) == 3:  # in the first rate's group, after its first epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, out, progress=False, vectorize=True, on_epoch=stop)
    assert json.loads((out / "config.json").read_text())["val_fraction"] == 0.1
    run_sweep(None, out, resume=True, progress=False, vectorize=True)

    def finals(path):
        return {
            line["run"]: (line["test_accuracy"], line["val_accuracy"], line["lr"])
            for line in read_results(path / "results.jsonl")
            if line["type"] == "epoch" and line["epoch"] == 2
        }

    assert finals(out) == finals(whole) and len(finals(whole)) == 8


def test_without_a_grid_config_and_lines_are_as_before(tmp_path):
    config = _grid_config(lr_grid=None, seeds=1, train=TrainConfig(epochs=1, max_steps=2))
    assert "lr_grid" not in config.to_json() and "val_fraction" not in config.to_json()
    result = run_sweep(config, tmp_path, progress=False, vectorize=True)
    lines = read_results(tmp_path / "results.jsonl")
    assert {line["run"] for line in lines} == {f"{s}/0" for s in SCHEMES}
    assert not any("lr" in line or "val_accuracy" in line for line in lines)
    assert all(row.lr is None for row in result.rows)
    assert (tmp_path / "summary.csv").read_text().startswith("scheme,runs,")
    assert format_table(result.rows, 0.97).split()[1] == "final"
    assert sum(1 for line in lines if line["type"] == "epoch") == 2


def test_grid_arguments_are_checked():
    with pytest.raises(ArgumentError, match="lr_grid"):
        _grid_config(lr_grid=(1e-3, 1e-3))
    with pytest.raises(ArgumentError, match="lr_grid"):
        _grid_config(lr_grid=(0.0,))
    with pytest.raises(ArgumentError, match="val_fraction"):
        _grid_config(val_fraction=0.0)
    assert CompareConfig.from_json(_grid_config().to_json()).lr_grid == GRID
