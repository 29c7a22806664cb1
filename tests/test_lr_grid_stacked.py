"""One stack for a whole learning-rate grid: the runs of several rates train together.

Before, ``compare --lr-grid`` trained each rate as a stack of its own (``torch.optim`` shares a
stack's hyperparameters); now every rate's runs share one stack, each run stepping at its own
rate (:class:`~initlab.experiments.optim.StackedOptimizer`). These tests compare the one stack
against the per-rate stacks it replaces.

Tolerance: the existing stacking tests' (:mod:`tests.rounding`): losses within
``band(t) = t * 784 * eps`` relative after ``t`` steps, accuracies within
:func:`~tests.rounding.accuracy_tolerance`. The two computations differ only in rounding:

- the forward and backward pass are batched matrix products over 8 runs instead of 4; each
  run's products are its own, but a batched kernel may block them otherwise;
- the optimizer runs the same fused kernel (Adam/AdamW ``torch._fused_adam(w)_``, SGD
  ``torch._fused_sgd_``) on each run's slice instead of ``torch.optim`` on the rate's whole
  stack: the same element-wise formula, but an element may fall in the vectorized body in one
  and the scalar tail in the other (a 10-entry bias is all tail alone, partly body in a stack),
  and the stack's SGD is ``torch.optim.SGD``'s unfused kernel: 1 ulp apart where they differ
  (measured 6e-8 on a (18, 10) bias after 4 steps).

Each such difference is a rounding of one step, carried on, not amplified, by later steps at a
rate that trains: within the band. A real mix-up (a run stepping at another run's rate, state
of one run given to another) moves a loss by far more: the tests check that the rates of a stack
give losses apart by more than the band, so exchanging them could not pass.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging

import pytest
import torch

from initlab.datasets.families import load_dataset
from initlab.experiments.config import CompareConfig
from initlab.experiments.optim import StackedOptimizer
from initlab.experiments.stacked import train_group
from initlab.experiments.sweep import read_results, run_sweep
from initlab.experiments.trainer import TensorData, TrainConfig, build_initialized
from tests.rounding import accuracy_tolerance, band

STEPS = 3  # optimizer steps per epoch
RATES = {"sgd": (0.02, 0.1), "adam": (1e-3, 1e-2), "adamw": (1e-3, 1e-2)}


@pytest.fixture(scope="module")
def data():
    return TensorData.from_dataset(load_dataset("mnist").subset(300, 100, seed=0))


def _assert_records_close(got, want, steps_before):
    """Two runs' epoch records agree within the rounding band (see the module docstring)."""
    assert got.epoch == want.epoch and got.steps == want.steps
    steps = steps_before + got.steps
    for (s1, a), (s2, b) in zip(got.loss_curve, want.loss_curve, strict=True):
        assert s1 == s2 and a == pytest.approx(b, rel=band(s1)), (s1, a, b)
    assert got.train_loss == pytest.approx(want.train_loss, rel=band(steps))
    assert got.test_loss == pytest.approx(want.test_loss, rel=band(steps))
    assert got.test_accuracy == pytest.approx(
        want.test_accuracy, abs=accuracy_tolerance(steps, 100)
    )


@pytest.mark.parametrize("model_name", ["mlp", "mlp-784-128-10"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_one_stack_of_two_rates_equals_a_stack_per_rate(data, optimizer, model_name):
    # mlp: the vmapped step; mlp-784-128-10: the hand-written step of the default comparison
    low, high = RATES[optimizer]
    config = TrainConfig(
        optimizer=optimizer, lr=123.0, weight_decay=0.01, batch_size=32, epochs=2,
        max_steps=STEPS, log_every=1,
    )  # fmt: skip
    models = [
        build_initialized(model_name, scheme, seed=seed)
        for scheme in ("kaiming_uniform", "xavier_uniform")
        for seed in (0, 1)
    ]
    seeds = [0, 1, 0, 1]
    # runs of both rates interleaved: rows of one rate are not contiguous in the stack
    lrs = [low, high, high, low]
    together = train_group([copy.deepcopy(m) for m in models], data, config, seeds, lrs=lrs)
    apart = {}
    for rate in (low, high):
        rows = [r for r, lr in enumerate(lrs) if lr == rate]
        alone = train_group(
            [copy.deepcopy(models[r]) for r in rows],
            data,
            dataclasses.replace(config, lr=rate),  # the stack of one rate, as before
            [seeds[r] for r in rows],
        )
        apart.update(zip(rows, alone, strict=True))
    for r, result in enumerate(together):
        assert result.status == apart[r].status == "finished"
        for epoch, (got, want) in enumerate(zip(result.epochs, apart[r].epochs, strict=True)):
            _assert_records_close(got, want, epoch * STEPS)
    # the rates matter: run 0 stepping at the other rate would be far out of the band
    mine = together[0].epochs[-1].loss_curve[-1][1]
    swapped = train_group(
        [copy.deepcopy(models[0])], data, dataclasses.replace(config, lr=high), [0]
    )[0]
    other = swapped.epochs[-1].loss_curve[-1][1]
    assert abs(other - mine) > 10 * band(2 * STEPS) * abs(mine)


def test_a_diverged_rate_leaves_the_stack_and_the_others_train_on_as_alone(data):
    # SGD at 1e8 overflows in the first epoch; the runs at 0.05 go on in the shrunken stack
    config = TrainConfig(
        optimizer="sgd", lr=0.05, batch_size=32, epochs=2, max_steps=STEPS, log_every=1
    )
    models = [build_initialized("mlp", "kaiming_uniform", seed=s) for s in (0, 1, 2)]
    lrs = [0.05, 1e8, 0.05]
    together = train_group([copy.deepcopy(m) for m in models], data, config, [0, 1, 2], lrs=lrs)
    assert together[1].status == "diverged" and together[1].diverged_epoch == 1
    blown = train_group([copy.deepcopy(models[1])], data, dataclasses.replace(config, lr=1e8), [1])[
        0
    ]
    assert (blown.status, blown.diverged_epoch, blown.diverged_step) == (
        "diverged",
        together[1].diverged_epoch,
        together[1].diverged_step,
    )
    rest = train_group([copy.deepcopy(models[r]) for r in (0, 2)], data, config, [0, 2])
    for got, want in zip((together[0], together[2]), rest, strict=True):
        assert got.status == want.status == "finished" and len(got.epochs) == 2
        for epoch, (a, b) in enumerate(zip(got.epochs, want.epochs, strict=True)):
            _assert_records_close(a, b, epoch * STEPS)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_checkpoints_pass_between_a_stack_of_rates_and_a_stack_of_one_rate(data, optimizer):
    # A sweep resumed after a stop may stack its runs otherwise than before: a checkpoint of
    # the stack of two rates continues in a stack of one rate (torch.optim), and one of the
    # one-rate stacks continues in the stack of two rates; both end as the uninterrupted stack
    # of two rates, within the band of the steps taken (see the module docstring).
    low, high = RATES[optimizer]
    config = TrainConfig(
        optimizer=optimizer, weight_decay=0.01, batch_size=32, epochs=2, max_steps=STEPS,
        log_every=1,
    )  # fmt: skip
    models = [build_initialized("mlp", "kaiming_uniform", seed=s) for s in (0, 1)]
    lrs = [low, high]
    saved = {}
    whole = train_group(
        [copy.deepcopy(m) for m in models], data, config, [0, 1], lrs=lrs,
        on_state=lambda states: saved.setdefault("mixed", states),
    )  # fmt: skip
    # on: each run alone at its rate, from the mixed stack's epoch-1 states
    for r, rate in enumerate(lrs):
        state = saved["mixed"][r]
        on = train_group(
            [copy.deepcopy(models[r])], data, dataclasses.replace(config, lr=rate), [r],
            start=[state],
        )[0]  # fmt: skip
        _assert_records_close(on.epochs[0], whole[r].epochs[1], STEPS)
    # back: epoch 1 in one-rate stacks, epoch 2 in the stack of both rates
    states = []
    for r, rate in enumerate(lrs):
        kept = {}
        train_group(
            [copy.deepcopy(models[r])], data, dataclasses.replace(config, lr=rate), [r],
            on_state=lambda s, kept=kept: kept.setdefault(0, s[0]),  # after epoch 1
        )  # fmt: skip
        states.append(kept[0])
    back = train_group(
        [copy.deepcopy(m) for m in models], data, config, [0, 1], lrs=lrs, start=states
    )
    for r in range(2):
        _assert_records_close(back[r].epochs[0], whole[r].epochs[1], STEPS)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_a_runs_state_passes_to_and_from_torch_optim_unchanged(kind):
    # A run's state in StackedOptimizer has torch.optim's entries: a run stepped twice alone
    # by torch.optim continues in a stack (row 1 of 2) and back, bit for bit as it would alone.
    # Both sides run the same fused kernel on the same (64, 10) tensor: equal, not just close.
    g = torch.Generator().manual_seed(0)
    start = torch.randn(64, 10, generator=g)
    grads = [torch.randn(64, 10, generator=g) for _ in range(6)]
    extra = {"momentum": 0.9} if kind == "sgd" else {}
    cls = torch.optim.SGD if kind == "sgd" else torch.optim.AdamW
    ref = start.clone().requires_grad_()
    ref_opt = cls([ref], lr=0.01, weight_decay=0.1, fused=True, **extra)
    for grad in grads:
        ref.grad = grad.clone()
        ref_opt.step()
    run = start.clone().requires_grad_()
    opt = cls([run], lr=0.01, weight_decay=0.1, fused=True, **extra)
    for grad in grads[:2]:
        run.grad = grad.clone()
        opt.step()
    stack = torch.stack([torch.zeros(64, 10), run.detach()]).requires_grad_()
    stacked = StackedOptimizer(
        {"w": stack}, {"w": [0.5, 0.01]}, kind, weight_decay={"w": [0.0, 0.1]}, momentum=0.9
    )
    stacked.load_run_state(1, {"w": opt.state[run]})
    for grad in grads[2:4]:
        stack.grad = torch.stack([torch.ones(64, 10), grad])
        stacked.step()
    exported = stacked.run_state(1)["w"]
    assert set(exported) == set(opt.state[run])
    back = stack.detach()[1].clone().requires_grad_()
    opt2 = cls([back], lr=0.01, weight_decay=0.1, fused=True, **extra)
    opt2.load_state_dict(
        {"state": {0: exported}, "param_groups": opt2.state_dict()["param_groups"]}
    )
    for grad in grads[4:]:
        back.grad = grad.clone()
        opt2.step()
    assert torch.equal(back.detach(), ref.detach())
    assert not torch.equal(back.detach(), start)


def test_load_run_state_names_what_is_wrong():
    stacked = StackedOptimizer({"w": torch.zeros(2, 3)}, {"w": [1.0, 2.0]}, "adam")
    with pytest.raises(ValueError, match="'v'"):
        stacked.load_run_state(0, {"v": {"step": torch.tensor(1.0)}})
    with pytest.raises(ValueError, match="exp_avg"):
        stacked.load_run_state(0, {"w": {"step": torch.tensor(1.0)}})


# --- the sweep: one stack for the grid, the lines of the per-rate stacks --------------------

GRID = (3e-4, 3e-3)


def _config(grid):
    return CompareConfig(
        schemes=("xavier_uniform", "kaiming_uniform"),
        seeds=2,
        train_subset=300,
        test_subset=100,
        train=TrainConfig(epochs=2, max_steps=STEPS),
        lr_grid=grid,
    )


def _epochs(out):
    return {
        (line["run"], line["epoch"]): line
        for line in read_results(out / "results.jsonl")
        if line["type"] == "epoch"
    }


def test_a_grid_sweep_is_one_stack_with_the_lines_of_a_stack_per_rate(tmp_path, caplog):
    # A one-rate grid holds out the same validation split (drawn with first_seed) and trains
    # that rate's runs as one torch.optim stack: what each rate's group was before.
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        grid = run_sweep(_config(GRID), tmp_path / "grid", progress=False, vectorize=True)
    stacks = [m for m in caplog.messages if "stacked" in m]
    assert stacks == ["training 8 runs together, stacked"]
    want = {}
    for rate in GRID:
        run_sweep(_config((rate,)), tmp_path / f"{rate}", progress=False, vectorize=True)
        want.update(_epochs(tmp_path / f"{rate}"))
    got = _epochs(tmp_path / "grid")
    assert got.keys() == want.keys() and len(got) == 16  # 2 schemes x 2 seeds x 2 rates x 2
    for key, line in got.items():
        steps = line["epoch"] * STEPS
        other = want[key]
        assert line["lr"] == other["lr"]
        for name in ("train_loss", "test_loss", "val_loss"):
            assert line[name] == pytest.approx(other[name], rel=band(steps)), (key, name)
        for name, images in (("test_accuracy", 100), ("val_accuracy", 30)):
            tolerance = accuracy_tolerance(steps, images)
            assert line[name] == pytest.approx(other[name], abs=tolerance), (key, name)
    # each scheme's rate, chosen on the validation split, is the one the per-rate stacks'
    # lines choose, wherever their mean validation accuracies are apart by more than the
    # rounding could move them (two tolerances); at least one scheme must be decided so
    decided = 0
    for row in grid.rows:
        means = {rate: _mean_val(want, row.scheme, rate) for rate in GRID}
        if abs(means[GRID[0]] - means[GRID[1]]) > 2 * accuracy_tolerance(2 * STEPS, 30):
            assert row.lr == max(GRID, key=means.get), (row.scheme, means)
            decided += 1
    assert decided >= 1
    saved = json.loads((tmp_path / "grid" / "config.json").read_text())
    assert saved["lr_grid"] == list(GRID)


def _mean_val(lines, scheme, rate):
    finals = [
        line["val_accuracy"]
        for (run, epoch), line in lines.items()
        if line["scheme"] == scheme and line["lr"] == rate and epoch == 2
    ]
    return sum(finals) / len(finals)
