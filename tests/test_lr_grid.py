"""Optimizers per run and the learning-rate grid of ``initlab compare``.

Each optimizer of :class:`~initlab.experiments.config.TrainConfig` (SGD with momentum, Adam,
AdamW) is checked against a plain PyTorch loop with that optimizer, one run and stacked, within
:func:`tests.rounding.band` of the steps taken.
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from initlab.datasets.families import load_dataset
from initlab.experiments.stacked import train_group
from initlab.experiments.trainer import (
    TensorData,
    TrainConfig,
    build_initialized,
    run_seeds,
    train,
)
from tests.rounding import band

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
