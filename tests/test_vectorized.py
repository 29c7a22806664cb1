"""Runs trained together, stacked over runs, against the sequential trainer, run by run.

Stacked and one-by-one runs compute the same products in other shapes (batched against single
matrix products), so they agree to float32 rounding, not bit for bit: losses, gradient norms
and accuracies are compared within :func:`tests.rounding.band` of the steps taken (the first
step to 784 eps = 9.3e-5, growing by as much per step), step counts, statuses and divergence
points exactly, the latter only where divergence is decisive. Where the computation is the very
same (a run's slice beside other contents in a stack of the same shape, a resumed stack against
an uninterrupted one) the numbers must be equal to the last bit.
"""

import dataclasses
import logging
import re

import pytest
import torch
from torch import nn

from initlab.cli import build_parser, main
from initlab.datasets.families import load_dataset
from initlab.experiments.stacked import train_group, vectorizable
from initlab.experiments.sweep import CompareConfig, read_results, run_sweep
from initlab.experiments.trainer import (
    TensorData,
    TrainConfig,
    build_initialized,
    evaluate,
    run_seeds,
    train,
)
from initlab.zoo.models import MLP, InitNet, SmallCNN
from tests.rounding import accuracy_tolerance, band

TEST_IMAGES = 200


@pytest.fixture(scope="module")
def data():
    return TensorData.from_dataset(load_dataset("mnist").subset(1000, TEST_IMAGES, seed=0))


def _build(runs, model="initnet", **params):
    return [build_initialized(model, s, seed=k, model_params=params) for s, k in runs]


def _separate(runs, data, config, model="initnet", **params):
    models = _build(runs, model, **params)
    results = [
        train(m, data, dataclasses.replace(config, seed=k))
        for m, (_, k) in zip(models, runs, strict=True)
    ]
    return results, models


def _assert_same(alone, stacked):
    """A stacked run's result against its separate run's, within float32 rounding of its steps."""
    assert (stacked.status, stacked.diverged_epoch, stacked.diverged_step) == (
        alone.status,
        alone.diverged_epoch,
        alone.diverged_step,
    )
    assert len(stacked.epochs) == len(alone.epochs)
    done = 0  # steps taken by the end of the epoch
    for a, b in zip(alone.epochs, stacked.epochs, strict=True):
        assert (b.epoch, b.steps) == (a.epoch, a.steps)
        done += a.steps
        assert b.train_loss == pytest.approx(a.train_loss, rel=band(done))
        assert b.test_loss == pytest.approx(a.test_loss, rel=band(done + 1))  # one more forward
        assert b.test_accuracy == pytest.approx(
            a.test_accuracy, abs=accuracy_tolerance(done, TEST_IMAGES)
        )
        assert b.grad_norms.keys() == a.grad_norms.keys()
        for name, norm in a.grad_norms.items():
            assert b.grad_norms[name] == pytest.approx(norm, rel=band(done), abs=1e-12), name
        _assert_curves_close(b.loss_curve, a.loss_curve)


def _assert_curves_close(got, want):
    """Same window ends (exact step counts); each window's mean within the band of its end."""
    assert want, "a finished epoch has a loss curve"
    assert [s for s, _ in got] == [s for s, _ in want]
    for (step, value), (_, expected) in zip(got, want, strict=True):
        assert value == pytest.approx(expected, rel=band(step)), step


def _bits(result):
    """A result with wall times zeroed: what must be equal to the last bit."""
    return dataclasses.replace(
        result, epochs=tuple(dataclasses.replace(e, wall_time_s=0.0) for e in result.epochs)
    )


def test_stacked_adamw_runs_equal_separate_runs_and_a_nan_run_touches_no_other(data):
    # Two seeds (two shuffle orders), three schemes, and one run whose logits overflow float32
    # on its first batch (std 1e20: logits of order 1e40 against float32's largest 3.4e38, a
    # decisive overflow): it must stop at epoch 1, step 1, as it does alone. log_every=1: the
    # loss curve holds every step's loss, so the first steps are compared at band(1), band(2).
    runs = [("seed", 0), ("normal:std=1e20", 0), ("xavier_uniform", 1), ("kaiming_uniform", 1)]
    config = TrainConfig(epochs=2, log_every=1)
    alone, alone_models = _separate(runs, data, config)
    models = _build(runs)
    events = []
    stacked = train_group(
        models,
        data,
        config,
        [k for _, k in runs],
        on_epoch=lambda r, e: events.append(("epoch", r, e.epoch)),
        on_done=lambda r, result: events.append((result.status, r)),
    )
    diverged = (alone[1].status, alone[1].diverged_epoch, alone[1].diverged_step)
    assert diverged == ("diverged", 1, 1)
    for a, s in zip(alone, stacked, strict=True):
        _assert_same(a, s)
    assert events == [
        ("diverged", 1),
        ("epoch", 0, 1),
        ("epoch", 2, 1),
        ("epoch", 3, 1),
        ("epoch", 0, 2),
        ("epoch", 2, 2),
        ("epoch", 3, 2),
        ("finished", 0),
        ("finished", 2),
        ("finished", 3),
    ]
    # The models are trained in place, like train()'s: each one's own forward gives its run's
    # last test loss (one forward, rounded otherwise: band(1)); the diverged one holds NaNs,
    # as the separate run's model does.
    for model, result, other in zip(models, stacked, alone_models, strict=True):
        if result.status == "finished":
            loss, _ = evaluate(model, data)
            assert loss == pytest.approx(result.epochs[-1].test_loss, rel=band(1))
        else:
            for p, q in zip(model.parameters(), other.parameters(), strict=True):
                assert not torch.isfinite(p).all() and not torch.isfinite(q).all()
    # A NaN run touches no other, to the last bit: another overflowing run in its row (another
    # scale, another shuffle order) leaves the stack at the same check, and every other row
    # goes through the same operations on the same numbers in a stack of the same shape.
    runs[1] = ("normal:std=1e30", 3)
    other_models = _build(runs)
    other = train_group(other_models, data, config, [k for _, k in runs])
    assert (other[1].status, other[1].diverged_epoch, other[1].diverged_step) == diverged
    for r in (0, 2, 3):
        assert _bits(other[r]) == _bits(stacked[r]), r
        for p, q in zip(other_models[r].parameters(), models[r].parameters(), strict=True):
            assert torch.equal(p, q), r


# A NaN pixel in one training image makes a run's loss NaN at the first step whose batch holds
# that image, at once and whatever the weights: the step a run diverges at is decided by its
# batch order alone, not by how fast it approaches float32's largest value (which another
# rounding could move by a step). 8 steps of 64 per epoch cover 512 of the 1000 images, so a
# run meets the image in some epochs and not in others, by its seed.
POISON = 500
POISONED_STEPS = 8


def _poisoned(data):
    train_x = data.train_x.clone()
    train_x[POISON, 0, 14, 14] = float("nan")
    return dataclasses.replace(data, train_x=train_x)


def _meets_poison(seed, epochs):
    """(epoch, step) of the first batch of run ``seed`` that holds the poisoned image, or None."""
    shuffle = torch.Generator().manual_seed(run_seeds(seed)[1])  # the trainer's shuffle stream
    for epoch in range(1, epochs + 1):
        position = int((torch.randperm(1000, generator=shuffle) == POISON).nonzero())
        if position < POISONED_STEPS * 64:
            return epoch, position // 64 + 1
    return None


def test_sgd_runs_diverging_mid_epoch_stop_at_their_own_step_like_the_sequential_trainer(data):
    # SGD with momentum; seed 12 never meets the poisoned image in 3 epochs and finishes; seeds
    # 9, 4 and 1 meet it in epoch 2 at steps 3, 4 and 7, seed 16 in epoch 1 at step 3: each
    # stacked run must end at its own step (between two loss checks: an epoch's 8 steps are
    # checked at its end), the finished one must match its separate run although NaN rows sat
    # beside it, and train a third epoch from its own momentum after the others left.
    poisoned = _poisoned(data)
    runs = [
        ("seed", 12),
        ("normal:std=0.05", 9),  # no zero weights: 0 * NaN is NaN, but a BLAS may skip zeros
        ("xavier_normal", 4),
        ("kaiming_uniform", 1),
        ("orthogonal", 16),
    ]
    config = TrainConfig(optimizer="sgd", lr=0.05, epochs=3, max_steps=POISONED_STEPS, log_every=1)
    expected = [_meets_poison(k, config.epochs) for _, k in runs]
    assert expected == [None, (2, 3), (2, 4), (2, 7), (1, 3)]
    alone, _ = _separate(runs, poisoned, config)
    stacked = train_group(_build(runs), poisoned, config, [k for _, k in runs])
    for a, s, where in zip(alone, stacked, expected, strict=True):
        if where is None:
            assert (a.status, len(a.epochs)) == ("finished", 3)
        else:
            assert (a.status, a.diverged_epoch, a.diverged_step) == ("diverged", *where)
        _assert_same(a, s)
    # Whatever the diverging rows held, the finished run's numbers are the same to the last
    # bit: other schemes in those rows (same seeds, so the same steps of divergence).
    swapped = [
        runs[0],
        ("seed", 9),
        ("kaiming_normal", 4),
        ("orthogonal", 1),
        ("xavier_normal", 16),
    ]
    again = train_group(_build(swapped), poisoned, config, [k for _, k in swapped])
    assert _bits(again[0]) == _bits(stacked[0])
    assert [(r.diverged_epoch, r.diverged_step) for r in again[1:]] == expected[1:]


@pytest.mark.parametrize(
    ("model", "params"),
    [("cnn", {"channels": (4, 8)}), ("mlp", {"depth": 2, "width": 32, "norm": "layer"})],
)
def test_convolutions_and_layernorm_stack_too(data, model, params):
    runs = [("kaiming_normal", 0), ("orthogonal", 1)]
    config = TrainConfig(epochs=1, max_steps=8)
    alone, _ = _separate(runs, data, config, model, **params)
    stacked = train_group(_build(runs, model, **params), data, config, [0, 1])
    for a, s in zip(alone, stacked, strict=True):
        _assert_same(a, s)


def test_resmlp_with_fixup_and_its_0_dim_branch_scalars_stacks_like_sequential_runs(data):
    # resmlp's branch scalars are 0-dim parameters: stacked they are (R,), and their
    # per-run gradient norms must still be one number per run (not an IndexError)
    runs = [("fixup", 0), ("fixup", 1)]
    config = TrainConfig(epochs=1, max_steps=8)
    alone, models = _separate(runs, data, config, "resmlp")
    assert any(p.ndim == 0 for p in models[0].parameters())
    stacked = train_group(_build(runs, "resmlp"), data, config, [0, 1])
    for a, s in zip(alone, stacked, strict=True):
        _assert_same(a, s)


def test_grad_norms_of_a_stacked_0_dim_parameter_are_the_absolute_gradients():
    from initlab.experiments.core import grad_norms

    scalar = torch.zeros(3, requires_grad=True)  # three runs' 0-dim parameter, stacked: (R,)
    (scalar * torch.tensor([2.0, -3.0, 0.5])).sum().backward()
    assert grad_norms([scalar], 3).tolist() == [[2.0], [3.0], [0.5]]  # (R, P)
    matrix = torch.zeros(2, 3, 4, requires_grad=True)  # (R, 3, 4): one norm per run
    (matrix * torch.arange(24.0).reshape(2, 3, 4)).sum().backward()
    want = [torch.arange(12.0).norm().item(), torch.arange(12.0, 24.0).norm().item()]
    assert grad_norms([matrix], 2)[:, 0].tolist() == pytest.approx(want, rel=1e-6)
    no_grad = torch.zeros(2, 5, requires_grad=True)  # a parameter the loss did not reach
    assert grad_norms([matrix, no_grad], 2)[:, 1].tolist() == [0.0, 0.0]


def test_grad_norms_of_one_model_are_each_parameters_gradient_norm():
    # The sequential trainer's view of the same function: no run axis, (P,), and the same
    # numbers as torch's own norm of each gradient, bit for bit.
    from initlab.experiments.core import grad_norms

    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.randn(64, 784, generator=torch.Generator().manual_seed(0))
    model(x).square().sum().backward()
    params = list(model.parameters())
    norms = grad_norms(params)
    assert norms.shape == (4,)
    assert torch.equal(norms, torch.stack([p.grad.norm() for p in params]))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_one_optimizer_on_stacked_tensors_steps_each_slice_like_its_own(optimizer):
    # The trainer's optimizer per run against the stacked one, on the same gradients, for 4
    # steps. SGD (with momentum and weight decay) runs the same element-wise kernels on the same
    # numbers (19200 entries per run, a multiple of any vector width: no entry takes another
    # path), so equal bit for bit. AdamW's fused kernel orders its float operations otherwise:
    # per step, theta * (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps) rounds twice on theta's
    # scale (eps |theta| in all) and about 10 times on the update's, |m_hat / sqrt(v_hat)| <=
    # (1 - beta1) / sqrt(1 - beta2) = 3.2 times lr (16 eps lr in all); two computations, 4 steps:
    # rtol 8 eps = 9.5e-7, atol 128 eps lr = 1.5e-7.
    from initlab.experiments.core import make_optimizer

    config = TrainConfig(optimizer=optimizer, lr=1e-2, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 64, 300, generator=g)
    grads = [torch.randn(3, 64, 300, generator=g) for _ in range(4)]
    stacked = start.clone().requires_grad_()
    step_all = make_optimizer([stacked], config, fused=True)  # the stacked trainer's
    runs = [nn.Linear(300, 64, bias=False) for _ in range(3)]
    steps = []
    for r, run in enumerate(runs):
        run.weight.data.copy_(start[r])
        steps.append(make_optimizer(run.parameters(), config))  # the sequential trainer's
    for grad in grads:
        stacked.grad = grad.clone()
        step_all.step()
        for r, run in enumerate(runs):
            run.weight.grad = grad[r].clone()
            steps[r].step()
    alone = torch.stack([run.weight.detach() for run in runs])
    assert not torch.equal(alone, start)  # the steps moved the weights
    if optimizer == "sgd":
        assert torch.equal(stacked.detach(), alone)
    else:
        eps = torch.finfo(torch.float32).eps
        assert torch.allclose(stacked.detach(), alone, rtol=8 * eps, atol=128 * eps * config.lr)


class _ItemInForward(nn.Module):
    """A forward pass that leaves the tensor world (``.item()``): vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        x = x.reshape(x.shape[0], 784)
        return self.fc(x) * (1.0 + 0.0 * self.fc.weight.sum().item())


class _WithBuffer(InitNet):
    def __init__(self, value):
        super().__init__()
        self.register_buffer("scale", torch.tensor(value))


def _frozen():
    net = InitNet()
    net.fc1.weight.requires_grad_(False)
    return net


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: [MLP(depth=1, width=8, dropout=0.1)] * 2, "dropout draws random masks"),
        (lambda: [MLP(depth=1, width=8, norm="batch")] * 2, "running statistics"),
        (lambda: [nn.LSTM(4, 4)] * 2, "vmap failed .*recurrent layer's fused forward"),
        (
            lambda: [InitNet(), SmallCNN()],
            rf"different model classes \({InitNet.__name__}, {SmallCNN.__name__}\)",
        ),
        (lambda: [MLP(depth=1, width=8), MLP(depth=1, width=9)], "parameter names, shapes"),
        (lambda: [_frozen(), _frozen()], "frozen parameters"),
        (lambda: [_WithBuffer(1.0), _WithBuffer(2.0)], "different buffers"),
        (lambda: [_ItemInForward(), _ItemInForward()], "vmap failed on the forward pass"),
    ],
)
def test_vectorizable_names_why_models_cannot_stack(make, reason):

    found = vectorizable(make())
    assert found is not None and re.search(reason, found), found


def test_every_public_dropout_class_is_refused():
    # vectorizable names torch.nn's dropout classes one by one (public API, no _DropoutNd): a
    # dropout class torch adds must be added there, so the list here must be torch's whole list.
    names = sorted(n for n in dir(nn) if "Dropout" in n)
    assert names == [
        "AlphaDropout",
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "FeatureAlphaDropout",
    ]
    for name in names:
        models = [nn.Sequential(nn.Flatten(), nn.Linear(784, 4), getattr(nn, name)(0.1))] * 2
        assert vectorizable(models) == "dropout draws random masks", name


def test_vectorizable_accepts_the_stackable_zoo():
    for models in ([InitNet(), InitNet()], [SmallCNN(), SmallCNN()], [MLP(norm="layer")]):
        assert vectorizable(models) is None


def test_train_group_refuses_what_it_cannot_stack(data):
    with pytest.raises(ValueError, match="one seed per model; got 1 seeds for 2 models"):
        train_group([InitNet(), InitNet()], data, TrainConfig(epochs=1), [0])
    with pytest.raises(ValueError, match="cannot be trained as one stack: dropout"):
        train_group([MLP(dropout=0.5)] * 2, data, TrainConfig(epochs=1), [0, 1])


# 1000 training images: 16 steps of 64 per epoch
SMALL = {"train_subset": 1000, "test_subset": TEST_IMAGES, "train": TrainConfig(epochs=2)}


def _keyed(lines):
    return {(ln["type"], ln["run"], ln.get("epoch")): ln for ln in lines}


def _assert_lines_close(got, want):
    """Sweep lines against the sequential sweep's: init and status lines equal (the same code
    before training; exact step counts), epoch lines within the band of the steps taken."""
    assert got.keys() == want.keys()
    rounded = ("train_loss", "test_loss", "test_accuracy", "grad_norms", "loss_curve")
    for key, line in want.items():
        other = {k: v for k, v in got[key].items() if k != "wall_time_s"}
        line = {k: v for k, v in line.items() if k != "wall_time_s"}
        if line["type"] != "epoch":
            assert other == line, key
            continue
        assert {k: v for k, v in other.items() if k not in rounded} == {
            k: v for k, v in line.items() if k not in rounded
        }, key
        done = line["epoch"] * line["steps"]  # every epoch of a sweep takes the same steps
        assert other["train_loss"] == pytest.approx(line["train_loss"], rel=band(done)), key
        assert other["test_loss"] == pytest.approx(line["test_loss"], rel=band(done + 1)), key
        assert other["test_accuracy"] == pytest.approx(
            line["test_accuracy"], abs=accuracy_tolerance(done, TEST_IMAGES)
        ), key
        assert other["grad_norms"] == pytest.approx(line["grad_norms"], rel=band(done), abs=1e-12)
        _assert_curves_close(other["loss_curve"], line["loss_curve"])


def test_vectorized_sweep_writes_the_sequential_sweeps_results(tmp_path, caplog):
    config = CompareConfig(schemes=("seed", "normal:std=1e20", "zeros"), seeds=2, **SMALL)
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        stacked = run_sweep(config, tmp_path / "v", progress=False, vectorize=True)
    assert "training 6 runs together, stacked" in caplog.text
    alone = run_sweep(config, tmp_path / "s", progress=False)
    lines = read_results(tmp_path / "v" / "results.jsonl")
    # init lines of all runs first, then epochs as they finish; the diverged runs end at once
    assert [ln["type"] for ln in lines[:6]] == ["init"] * 6
    assert [(ln["type"], ln["run"]) for ln in lines[6:8]] == [
        ("status", "normal:std=1e20/0"),
        ("status", "normal:std=1e20/1"),
    ]
    _assert_lines_close(_keyed(lines), _keyed(read_results(tmp_path / "s" / "results.jsonl")))
    for a, b in zip(alone.rows, stacked.rows, strict=True):
        assert (b.scheme, b.runs, b.diverged, b.reached_target) == (
            a.scheme,
            a.runs,
            a.diverged,
            a.reached_target,
        )
        assert b.final_accuracy_mean == pytest.approx(
            a.final_accuracy_mean, abs=accuracy_tolerance(2 * 16, TEST_IMAGES)
        )


def _cut_after_epoch(config, out, epoch):
    """Run ``config`` stacked into ``out`` and stop it (Ctrl-C) once epoch ``epoch`` is written."""

    def stop(run, record):
        if record.epoch == epoch:  # the group's epoch is written and checkpointed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, out, progress=False, vectorize=True, on_epoch=stop)


def _exact(lines):
    return {key: {k: v for k, v in ln.items() if k != "wall_time_s"} for key, ln in lines.items()}


def test_an_interrupted_vectorized_sweep_continues_from_its_checkpoint(tmp_path):
    config = CompareConfig(
        schemes=("seed", "normal:std=1e20", "xavier_normal"),
        seeds=1,
        **{**SMALL, "train": TrainConfig(epochs=3)},
    )
    run_sweep(config, tmp_path / "full", progress=False, vectorize=True)
    _cut_after_epoch(config, tmp_path / "cut", 2)
    cut = read_results(tmp_path / "cut" / "results.jsonl")
    statuses = {ln["run"]: ln["status"] for ln in cut if ln["type"] == "status"}
    # the diverged run was recorded before the interrupt; both others are cut short
    assert statuses == {
        "normal:std=1e20/0": "diverged",
        "seed/0": "interrupted",
        "xavier_normal/0": "interrupted",
    }
    # one file for the group, holding the two runs still in the stack after epoch 2
    (path,) = (tmp_path / "cut" / "checkpoints").iterdir()
    raw = torch.load(path, weights_only=True)
    assert {run: state["epoch"] for run, state in raw["runs"].items()} == {
        "seed/0": 2,
        "xavier_normal/0": 2,
    }
    trained = []
    run_sweep(
        None,
        tmp_path / "cut",
        resume=True,
        progress=False,
        vectorize=True,
        on_epoch=lambda r, e: trained.append((r, e.epoch)),
    )
    assert trained == [("seed/0", 3), ("xavier_normal/0", 3)]
    full = _keyed(read_results(tmp_path / "full" / "results.jsonl"))
    resumed = read_results(tmp_path / "cut" / "results.jsonl")
    assert len(resumed) == len(full)  # no line twice
    # the same stack continues from the saved state: equal to the last bit
    assert _exact(_keyed(resumed)) == _exact(full)
    assert not (tmp_path / "cut" / "checkpoints").exists()


def test_a_stacked_checkpoint_continues_with_no_vectorize(tmp_path):
    # Checkpoints are per run, so a stopped stacked sweep may go on one run at a time; stacked
    # and single products round differently, hence the tolerance.
    config = CompareConfig(
        schemes=("seed", "xavier_normal"), seeds=1, **{**SMALL, "train": TrainConfig(epochs=3)}
    )
    run_sweep(config, tmp_path / "full", progress=False)
    _cut_after_epoch(config, tmp_path / "cut", 2)
    trained = []
    run_sweep(
        None,
        tmp_path / "cut",
        resume=True,
        progress=False,
        on_epoch=lambda r, e: trained.append((r, e.epoch)),
    )
    assert trained == [("seed/0", 3), ("xavier_normal/0", 3)]
    _assert_lines_close(
        _keyed(read_results(tmp_path / "cut" / "results.jsonl")),
        _keyed(read_results(tmp_path / "full" / "results.jsonl")),
    )


def test_train_group_continues_from_states_exactly_and_refuses_mixed_epochs(data):
    runs = [("seed", 0), ("orthogonal", 1)]
    config = TrainConfig(epochs=3, optimizer="sgd", lr=0.05, weight_decay=1e-3)
    seeds = [k for _, k in runs]
    whole = train_group(_build(runs), data, config, seeds)
    states = []
    train_group(_build(runs), data, config, seeds, on_state=states.append)
    assert [sorted(s) for s in states] == [[0, 1]] * 3
    assert [s[0].epoch for s in states] == [1, 2, 3] and states[1][0].steps == 32
    after = [states[1][0], states[1][1]]
    rest = train_group(_build([("zeros", 5)] * 2), data, config, seeds, start=after)
    for a, b in zip(whole, rest, strict=True):
        assert [dataclasses.replace(e, wall_time_s=0) for e in a.epochs[2:]] == [
            dataclasses.replace(e, wall_time_s=0) for e in b.epochs
        ]
    with pytest.raises(ValueError, match=r"continue together from one epoch.*\(1, 16\), \(2, 32\)"):
        train_group(_build(runs), data, config, seeds, start=[states[0][0], states[1][1]])
    with pytest.raises(ValueError, match="one state per model; got 1 for 2"):
        train_group(_build(runs), data, config, seeds, start=[states[0][0]])


def test_a_dropout_model_falls_back_to_sequential_runs_with_a_log_line(tmp_path, caplog):
    config = CompareConfig(
        schemes=("seed", "zeros"),
        seeds=1,
        model="mlp",
        model_params={"depth": 1, "width": 16, "dropout": 0.2},
        train_subset=300,
        test_subset=100,
        train=TrainConfig(epochs=1),
    )
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        run_sweep(config, tmp_path / "v", progress=False, vectorize=True)
    assert "training 2 runs one after the other: dropout draws random masks" in caplog.text
    run_sweep(config, tmp_path / "s", progress=False)
    drop = {"wall_time_s"}

    def exact(path):
        return [{k: v for k, v in ln.items() if k not in drop} for ln in read_results(path)]

    # the fallback is the sequential path itself: identical lines, in the same order
    assert exact(tmp_path / "v" / "results.jsonl") == exact(tmp_path / "s" / "results.jsonl")


def test_compare_stacks_by_default_and_no_vectorize_turns_it_off(tmp_path, caplog):
    assert build_parser().parse_args(["compare"]).no_vectorize is False
    argv = ["compare", "--schemes", "seed,zeros", "--seeds", "1", "--epochs", "1", "--no-progress"]
    argv += ["--train-subset", "300", "--test-subset", "100"]
    with caplog.at_level(logging.INFO):
        assert main([*argv, "--out", str(tmp_path / "a")]) == 0
        assert "training 2 runs together, stacked" in caplog.text
        caplog.clear()
        assert main([*argv, "--out", str(tmp_path / "b"), "--no-vectorize"]) == 0
        assert "stacked" not in caplog.text


def test_a_stacked_sweep_leaves_the_global_rng_alone(tmp_path):
    # Every run draws from its own seeded streams; checking whether the model can be stacked
    # builds one more model, whose default init must not consume the caller's global RNG.
    config = CompareConfig(
        schemes=("seed", "zeros"), seeds=1, train_subset=200, test_subset=50,
        train=TrainConfig(epochs=1),
    )  # fmt: skip
    torch.manual_seed(0)
    state = torch.get_rng_state()
    run_sweep(config, tmp_path, progress=False, vectorize=True)
    assert torch.equal(torch.get_rng_state(), state)


def test_data_dependent_inits_stack_too(tmp_path, caplog):
    # LSUV calibrates each run's model on the init batch before training; what trains is an
    # ordinary InitNet, so the runs stack and end as they do one by one.
    config = CompareConfig(
        schemes=("lsuv", "seed"), seeds=1, train_subset=300, test_subset=100,
        train=TrainConfig(epochs=1),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        run_sweep(config, tmp_path / "v", progress=False, vectorize=True)
    assert "training 2 runs together, stacked" in caplog.text
    run_sweep(config, tmp_path / "s", progress=False)
    _assert_lines_close(
        _keyed(read_results(tmp_path / "v" / "results.jsonl")),
        _keyed(read_results(tmp_path / "s" / "results.jsonl")),
    )


def test_stacked_loss_curves_count_steps_across_epochs_like_the_trainer(data):
    # 16 steps per epoch (1000 / 64), windows of 5: ends 5, 10, 15, 16 then 21, 26, 31, 32;
    # one run diverges at epoch 1, step 1 (std 1e20), so the others' curves come from a stack
    # that shrank after the first check.
    runs = [("seed", 0), ("normal:std=1e20", 1), ("orthogonal", 1)]
    config = TrainConfig(epochs=2, log_every=5)
    alone, _ = _separate(runs, data, config)
    stacked = train_group(_build(runs), data, config, [k for _, k in runs])
    for a, s in zip(alone, stacked, strict=True):
        _assert_same(a, s)
    first, second = stacked[0].epochs
    assert [s for s, _ in first.loss_curve] == [5, 10, 15, 16]
    assert [s for s, _ in second.loss_curve] == [21, 26, 31, 32]
    assert stacked[1].epochs == ()


def test_initnet_hand_written_step_equals_the_vmapped_autograd_step(data):
    # The direct path runs the vmapped path's products in the same layout and autograd's own
    # log_softmax and ReLU backward kernels: the same operations on the same numbers, so the
    # weight gradients and losses agree bit for bit. Bias gradients are sums over the batch in
    # another order: within 64 eps of the sum of the terms' magnitudes (Higham 2002, Sec. 4.2),
    # and that sum is at most 2 for fc2 (|softmax - onehot| / 64 per image, summing to <= 2)
    # and 2 max_j sum_c |W2_cj| for fc1 (those terms pass through W2^T).
    from initlab.experiments.stacked import _Group, _initnet_logits

    eps = torch.finfo(torch.float32).eps
    models = _build([("seed", 0), ("normal:std=1", 1), ("zeros", 2)])
    group = _Group(models, TrainConfig(), [0, 1, 2])
    assert group.direct
    index = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:192].view(3, 64)
    x, y = data.train_x[index], data.train_y[index]
    grads, losses = {}, {}
    for direct in (False, True):
        for p in group.params.values():
            p.grad = None
        group.direct = direct
        losses[direct] = group.loss_and_grads(x, y)
        grads[direct] = {n: p.grad.clone() for n, p in group.params.items()}
    assert torch.equal(losses[True], losses[False])
    for name in ("fc1.weight", "fc2.weight"):
        assert torch.equal(grads[True][name], grads[False][name]), name
    for r, model in enumerate(models):
        bound = {"fc2.bias": 2.0, "fc1.bias": 2 * model.fc2.weight.abs().sum(0).max().item()}
        for name, magnitude in bound.items():
            torch.testing.assert_close(
                grads[True][name][r], grads[False][name][r], rtol=0, atol=64 * eps * magnitude
            )
    # The evaluation forward: every run's logits as its own model computes them, in products
    # of other shapes. |fl(W x) - W x| <= gamma_n |W| |x| (Higham 2002, Sec. 3.5) through both
    # layers (ReLU does not enlarge a difference): two computations differ by at most
    # (784 + 128 + 2) eps times the forward pass in absolute values.
    images = data.test_x[:100].reshape(100, 784)
    with torch.no_grad():
        logits = _initnet_logits(group.params, data.test_x[:100])
        for r, model in enumerate(models):
            w1, b1, w2, b2 = (p.abs() for p in model.parameters())
            magnitude = (images @ w1.T + b1) @ w2.T + b2  # images are >= 0
            difference = (logits[r] - model(data.test_x[:100])).abs()
            assert (difference <= 914 * eps * magnitude).all(), r


@pytest.mark.parametrize("threads", [1, 2])
def test_initnet_runs_of_one_seed_share_a_batch_and_a_product(data, threads):
    # The stack puts the runs of one seed side by side; rows that draw the same batches take
    # one gather and one first-layer product per block (cut so every thread gets as many).
    # Each output is still one run's 784-term dot product: the losses agree with the per-run
    # products within band(1) (tests/rounding.py) and the gradients within as much of their
    # largest magnitude. Measured here they are equal bit for bit.
    from initlab.experiments.stacked import _Group, _products_per_block, _shared_batches

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models = _build([("seed", 0), ("normal:std=0.1", 1), ("zeros", 0), ("seed", 1)] * 2)
        group = _Group(models, TrainConfig(), [0, 1, 0, 1, 0, 1, 0, 1])
        assert group.active == [0, 2, 4, 6, 1, 3, 5, 7]  # by seed, stable
        order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
        orders = torch.stack([order[:192].view(3, 64)[r // 4] for r in range(8)])  # 2 blocks
        assert _shared_batches(orders) == 4
        assert _shared_batches(orders[[0, 1, 2, 4, 5, 6, 7]]) == 1  # blocks of 3 and 4
        assert _shared_batches(orders[:1]) == 1
        assert _products_per_block(2, 4) == 1 and _products_per_block(3, 6) == threads
        x, y = data.train_x[orders], data.train_y[orders]
        out = {}
        for shared in (1, 4):
            for p in group.params.values():
                p.grad = None
            loss = group.loss_and_grads(x[::shared], y)
            out[shared] = loss, {n: p.grad.clone() for n, p in group.params.items()}
        torch.testing.assert_close(out[4][0], out[1][0], rtol=band(1), atol=0)
        for name, grad in out[1][1].items():
            scale = grad.abs().max().item()
            torch.testing.assert_close(out[4][1][name], grad, rtol=0, atol=band(1) * scale)
    finally:
        torch.set_num_threads(before)


def test_only_the_plain_initnet_takes_the_hand_written_step():
    from initlab.experiments.stacked import _Group

    mlp = _build([("seed", 0)], "mlp", depth=1, width=128)
    assert not _Group(mlp, TrainConfig(), [0]).direct


def test_a_stacked_resume_of_a_model_with_0_dim_parameters_is_exact(tmp_path):
    # resmlp's branch scalars are 0-dim: their AdamW moments are 0-dim per run like AdamW's
    # shared step, so which entries stack is decided by name, not by shape.
    config = CompareConfig(
        schemes=("seed", "xavier_normal"),
        seeds=1,
        model="resmlp",
        model_params={"depth": 1, "width": 16},
        **{**SMALL, "train": TrainConfig(epochs=3)},
    )
    run_sweep(config, tmp_path / "full", progress=False, vectorize=True)
    _cut_after_epoch(config, tmp_path / "cut", 1)
    run_sweep(None, tmp_path / "cut", resume=True, progress=False, vectorize=True)
    full = _keyed(read_results(tmp_path / "full" / "results.jsonl"))
    resumed = read_results(tmp_path / "cut" / "results.jsonl")
    assert len(resumed) == len(full)
    assert _exact(_keyed(resumed)) == _exact(full)
