"""Runs trained together, stacked over runs, against the sequential trainer, run by run."""

import dataclasses
import logging
import re

import pytest
import torch
from torch import nn

from initlab.cli import build_parser, main
from initlab.experiments.datasets import load_dataset
from initlab.experiments.models import MLP, InitNet, SmallCNN
from initlab.experiments.sweep import CompareConfig, read_results, run_sweep
from initlab.experiments.trainer import TensorData, TrainConfig, build_initialized, train
from initlab.experiments.vectorized import train_group, vectorizable

# Tolerances. Stacked and single matrix products may round differently (float32 eps 1.2e-7
# per operation); over the <= 32 steps of these runs the per-run numbers measured agree to
# 3e-7 relative (losses of order 1) and 6e-5 absolute (losses of order 100). rel=1e-5 leaves a
# 30x margin there, while any real mix-up (a shared shuffle, a mixed gradient, a wrong step
# count in AdamW's bias correction) moves the losses by 1e-3 or more.
REL = 1e-5
# Test accuracy is a count over 200 images; rounding can flip at most a near-tie, one image.
ACC = 1 / 200


@pytest.fixture(scope="module")
def data():
    return TensorData.from_dataset(load_dataset("mnist").subset(1000, 200, seed=0))


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
    assert (stacked.status, stacked.diverged_epoch, stacked.diverged_step) == (
        alone.status,
        alone.diverged_epoch,
        alone.diverged_step,
    )
    assert len(stacked.epochs) == len(alone.epochs)
    for a, b in zip(alone.epochs, stacked.epochs, strict=True):
        assert (b.epoch, b.steps) == (a.epoch, a.steps)
        assert b.train_loss == pytest.approx(a.train_loss, rel=REL)
        assert b.test_loss == pytest.approx(a.test_loss, rel=REL)
        assert b.test_accuracy == pytest.approx(a.test_accuracy, abs=ACC)
        assert b.grad_norms.keys() == a.grad_norms.keys()
        for name, norm in a.grad_norms.items():
            assert b.grad_norms[name] == pytest.approx(norm, rel=REL, abs=1e-9), name
        _assert_curves_close(b.loss_curve, a.loss_curve)


def _assert_curves_close(got, want):
    # same window ends (exact step counts), means within the per-step losses' tolerance
    assert want, "a finished epoch has a loss curve"
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=REL)


def test_stacked_adamw_runs_equal_separate_runs_and_a_nan_run_touches_no_other(data):
    # Two seeds (two shuffle orders), three schemes, and one run whose logits overflow float32
    # on its first batch (std 1e20): it must stop at epoch 1, step 1, as it does alone.
    runs = [("seed", 0), ("normal:std=1e20", 0), ("xavier_uniform", 1), ("kaiming_uniform", 1)]
    config = TrainConfig(epochs=2)
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
    assert alone[1].status == "diverged" and (alone[1].diverged_epoch, alone[1].diverged_step) == (
        1,
        1,
    )
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
    # the models are trained in place, like train()'s
    for a, s in zip(alone_models, models, strict=True):
        for (name, p), q in zip(a.named_parameters(), s.parameters(), strict=True):
            assert torch.allclose(q, p, rtol=1e-4, atol=1e-6, equal_nan=True), name


def test_sgd_runs_diverging_mid_epoch_stop_at_the_sequential_trainers_step(data):
    # SGD (momentum 0.9) at lr 100 explodes: alone, these runs reach a non-finite loss at
    # epoch 2, steps 10, 8 and 4 (measured); the zero-initialized run only moves its biases
    # and finishes. Each stacked run must end at its own step, and the finished one must
    # match its separate run although the others' slices went NaN around it, and train on
    # for a third epoch from its own momentum after the others left the stack.
    runs = [("zeros", 0), ("normal:std=0.1", 0), ("normal:std=1", 1), ("normal:std=100", 0)]
    config = TrainConfig(optimizer="sgd", lr=100.0, epochs=3)
    alone, _ = _separate(runs, data, config)
    assert [(r.status, r.diverged_epoch) for r in alone] == [("finished", None)] + [
        ("diverged", 2)
    ] * 3
    assert len({r.diverged_step for r in alone[1:]}) == 3  # three different steps
    stacked = train_group(_build(runs), data, config, [k for _, k in runs])
    for a, s in zip(alone, stacked, strict=True):
        _assert_same(a, s)


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
    # per-run gradient norms must still be one number per run (this used to raise IndexError)
    runs = [("fixup", 0), ("fixup", 1)]
    config = TrainConfig(epochs=1, max_steps=8)
    alone, models = _separate(runs, data, config, "resmlp")
    assert any(p.ndim == 0 for p in models[0].parameters())
    stacked = train_group(_build(runs, "resmlp"), data, config, [0, 1])
    for a, s in zip(alone, stacked, strict=True):
        _assert_same(a, s)


def test_grad_norms_of_a_stacked_0_dim_parameter_are_the_absolute_gradients():
    from initlab.experiments.vectorized import _grad_norms

    scalar = torch.zeros(3, requires_grad=True)  # three runs' 0-dim parameter, stacked: (R,)
    (scalar * torch.tensor([2.0, -3.0, 0.5])).sum().backward()
    assert _grad_norms(scalar).tolist() == [2.0, 3.0, 0.5]
    matrix = torch.zeros(2, 3, 4, requires_grad=True)  # (R, 3, 4): one norm per run
    (matrix * torch.arange(24.0).reshape(2, 3, 4)).sum().backward()
    want = [torch.arange(12.0).norm().item(), torch.arange(12.0, 24.0).norm().item()]
    assert _grad_norms(matrix).tolist() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_one_optimizer_on_stacked_tensors_steps_each_slice_like_its_own(optimizer):
    # The trainer's optimizer per run against the stacked one, on the same gradients, for a
    # few steps: SGD (with momentum and weight decay) is the same element-wise code, so equal
    # bit for bit; AdamW's fused kernel orders its float operations differently, so within
    # a few float32 ulps (1.2e-7 relative per operation, about 10 operations per step).
    from initlab.experiments.trainer import _optimizer as per_run
    from initlab.experiments.vectorized import _optimizer as stacked_optimizer

    config = TrainConfig(optimizer=optimizer, lr=1e-2, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 64, 300, generator=g)
    grads = [torch.randn(3, 64, 300, generator=g) for _ in range(4)]
    stacked = start.clone().requires_grad_()
    step_all = stacked_optimizer([stacked], config)
    runs = [nn.Linear(300, 64, bias=False) for _ in range(3)]
    steps = []
    for r, run in enumerate(runs):
        run.weight.data.copy_(start[r])
        steps.append(per_run(run, config))
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
        assert torch.allclose(stacked.detach(), alone, rtol=1e-6, atol=1e-7)


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
        (lambda: [nn.LSTM(4, 4)] * 2, "recurrent layers"),
        (lambda: [InitNet(), SmallCNN()], r"different model classes \(InitNet, SmallCNN\)"),
        (lambda: [MLP(depth=1, width=8), MLP(depth=1, width=9)], "parameter names, shapes"),
        (lambda: [_frozen(), _frozen()], "frozen parameters"),
        (lambda: [_WithBuffer(1.0), _WithBuffer(2.0)], "different buffers"),
        (lambda: [_ItemInForward(), _ItemInForward()], "vmap failed on the forward pass"),
    ],
)
def test_vectorizable_names_why_models_cannot_stack(make, reason):

    found = vectorizable(make())
    assert found is not None and re.search(reason, found), found


def test_vectorizable_accepts_the_stackable_zoo():
    for models in ([InitNet(), InitNet()], [SmallCNN(), SmallCNN()], [MLP(norm="layer")]):
        assert vectorizable(models) is None


def test_train_group_refuses_what_it_cannot_stack(data):
    with pytest.raises(ValueError, match="one seed per model; got 1 seeds for 2 models"):
        train_group([InitNet(), InitNet()], data, TrainConfig(epochs=1), [0])
    with pytest.raises(ValueError, match="cannot be trained as one stack: dropout"):
        train_group([MLP(dropout=0.5)] * 2, data, TrainConfig(epochs=1), [0, 1])


SMALL = {"train_subset": 1000, "test_subset": 200, "train": TrainConfig(epochs=2)}


def _keyed(lines):
    return {(ln["type"], ln["run"], ln.get("epoch")): ln for ln in lines}


def _assert_lines_close(got, want):
    assert got.keys() == want.keys()
    for key, line in want.items():
        other = got[key]
        assert other.keys() == line.keys(), key
        for field, value in line.items():
            if field == "wall_time_s":
                continue
            if isinstance(value, float):
                assert other[field] == pytest.approx(value, rel=REL, abs=ACC), (key, field)
            elif field == "loss_curve":
                _assert_curves_close(other[field], value)
            elif field != "grad_norms":
                assert other[field] == value, (key, field)


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
        assert b.final_accuracy_mean == pytest.approx(a.final_accuracy_mean, abs=ACC)


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
    # The direct path uses the vmapped path's products in the same layout and autograd's own
    # log_softmax and ReLU backward kernels, so the weight gradients and losses agree bit for
    # bit (measured); bias gradients are sums over the batch, equal to float32 rounding of
    # their order: rel 1e-5 (float32 eps 1.2e-7 x 64 terms = 8e-6 worst case).
    from initlab.experiments.vectorized import _Group, _initnet_logits

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
    for name in ("fc1.bias", "fc2.bias"):
        torch.testing.assert_close(grads[True][name], grads[False][name], rtol=1e-5, atol=1e-9)
    # the evaluation forward: every run's logits as its own model computes them
    with torch.no_grad():
        logits = _initnet_logits(group.params, data.test_x[:100])
        for r, model in enumerate(models):
            torch.testing.assert_close(logits[r], model(data.test_x[:100]), rtol=1e-5, atol=1e-5)


def test_only_the_plain_initnet_takes_the_hand_written_step():
    from initlab.experiments.vectorized import _Group

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
