"""The trainer on real MNIST subsets: accuracy, determinism, divergence, recorded metrics."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.datasets.families import load_dataset
from initlab.experiments.trainer import (
    TensorData,
    TrainConfig,
    TrainState,
    build_initialized,
    evaluate,
    loss_curve,
    resolve_device,
    run_seeds,
    train,
    train_scheme,
)
from initlab.zoo.models import InitNet

EPS = torch.finfo(torch.float32).eps  # 2**-23


@pytest.fixture(scope="module")
def data():
    return TensorData.from_dataset(load_dataset("mnist").subset(5000, 1000, seed=0))


def _strip_time(result):
    return [dataclasses.replace(e, wall_time_s=0.0) for e in result.epochs]


def test_tensor_data_scales_pixels_to_unit_interval(data):
    assert data.train_x.shape == (5000, 1, 28, 28) and data.train_x.dtype == torch.float32
    assert data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_y.dtype == torch.int64
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0  # 0 and 255


def test_one_epoch_of_the_seed_experiment_learns(data):
    # 5000 training images, 79 steps of AdamW: over seeds 0..9 this reached 86.8%..89.4% test
    # accuracy (mean 88.2%). 85% leaves > 4 seed-to-seed standard deviations (about 0.7 points)
    # of margin, while an untrained or broken network stays near 10%.
    result = train_scheme("initnet", "seed", data, TrainConfig(epochs=1, seed=0))
    assert result.status == "finished"
    (epoch,) = result.epochs
    assert epoch.test_accuracy >= 0.85
    assert epoch.train_loss < 1.2 and epoch.test_loss < 0.6
    assert epoch.steps == 79  # ceil(5000 / 64)
    assert epoch.wall_time_s > 0


def test_same_seed_gives_identical_numbers_and_other_seeds_differ(data):
    config = TrainConfig(epochs=2, seed=3, max_steps=20)
    a = train_scheme("mlp", "kaiming_normal", data, config, model_params={"dropout": 0.2})
    b = train_scheme("mlp", "kaiming_normal", data, config, model_params={"dropout": 0.2})
    assert _strip_time(a) == _strip_time(b)
    c = train_scheme(
        "mlp",
        "kaiming_normal",
        data,
        dataclasses.replace(config, seed=4),
        model_params={"dropout": 0.2},
    )
    assert _strip_time(a) != _strip_time(c)


def test_training_leaves_the_global_rng_alone(data):
    state = torch.get_rng_state()
    train_scheme(
        "mlp", "seed", data, TrainConfig(epochs=1, max_steps=3), model_params={"dropout": 0.5}
    )
    assert torch.equal(torch.get_rng_state(), state)


def test_flush_denormal_is_restored(data):
    train_scheme("initnet", "seed", data, TrainConfig(epochs=1, max_steps=2))
    # 1e-40 is a float32 denormal: it survives only when flushing is off again.
    assert float(torch.tensor([1e-40]) * 1.0) != 0.0


def test_first_step_loss_and_grad_norms_match_a_hand_written_step(data):
    config = TrainConfig(epochs=1, seed=7, max_steps=1)
    result = train_scheme("initnet", "seed", data, config)
    # Recompute step 1 by hand: same init, same first batch from the shuffle stream.
    net = build_initialized("initnet", "seed", seed=7)
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(run_seeds(7)[1]))
    batch = order[:64]
    loss = F.cross_entropy(net(data.train_x[batch]), data.train_y[batch])
    loss.backward()
    (epoch,) = result.epochs
    assert epoch.train_loss == pytest.approx(loss.item(), rel=1e-6)
    assert list(epoch.grad_norms) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for name, p in net.named_parameters():
        assert epoch.grad_norms[name] == pytest.approx(float(p.grad.norm()), rel=1e-5)


def test_an_epoch_equals_the_seeds_plain_loop_on_the_same_batches(data):
    result = train_scheme("initnet", "seed", data, TrainConfig(epochs=1, seed=2))
    # The seed's loop, written out: same init, same batch order, AdamW(lr 1e-3, wd 0.01).
    net = build_initialized("initnet", "seed", seed=2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(run_seeds(2)[1]))
    running_loss = 0.0
    for batch in order.split(64):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(data.train_x[batch]), data.train_y[batch])
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    with torch.no_grad():
        correct = int((net(data.test_x).argmax(1) == data.test_y).sum())
    (epoch,) = result.epochs
    # the same steps; the trainer's float32 mean of 79 positive losses: within 79 eps
    assert epoch.train_loss == pytest.approx(running_loss / 79, rel=79 * EPS)
    assert epoch.test_accuracy == correct / 1000


def test_evaluate_matches_a_direct_computation(data):
    net = build_initialized("initnet", "xavier_uniform", seed=0)
    loss, accuracy = evaluate(net, data, batch_size=300)  # 1000 = 3 * 300 + 100: a ragged end
    with torch.no_grad():
        # The same forward passes (batches of 300 and a last one of 100; one batch of 1000 would
        # be products of another shape, which may round otherwise), so the logits are equal;
        # the mean over the 1000 positive cross-entropies is summed in another order: 1000 eps.
        logits = torch.cat([net(batch) for batch in data.test_x.split(300)])
    assert loss == pytest.approx(float(F.cross_entropy(logits, data.test_y)), rel=1000 * EPS)
    assert accuracy == int((logits.argmax(1) == data.test_y).sum()) / 1000


class _NaNAt(nn.Module):
    """InitNet that returns NaN logits on its ``bad``-th training forward pass."""

    def __init__(self, bad: int):
        super().__init__()
        self.net = build_initialized("initnet", "seed", seed=0)
        self.bad, self.calls = bad, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.bad:
                return out * float("nan")
        return out


def test_divergence_is_located_to_the_epoch_and_step(data):
    # 60 steps per epoch: forward call 60 + 53 = 113 is epoch 2, step 53, between the loss
    # checks at steps 50 and 60, so the reported step must come from inside the window.
    result = train(_NaNAt(113), data, TrainConfig(epochs=3, max_steps=60))
    assert result.status == "diverged"
    assert (result.diverged_epoch, result.diverged_step) == (2, 53)
    assert [e.epoch for e in result.epochs] == [1]


def test_huge_normal_init_with_a_large_lr_diverges(data):
    # std 1e6 gives a loss of ~1e14; SGD with lr 1e4 multiplies it by 1e5 or more per step
    # (about 1e14, 2e22, 9e28, 5e35), so step 5 overflows float32 (3.4e38) by orders of
    # magnitude: a decisive step, which no rounding moves (at lr 10 the loss wanders between
    # 10 and 1e17 for 75 steps before it overflows, at a step rounding decides).
    config = TrainConfig(epochs=2, optimizer="sgd", lr=1e4)
    result = train_scheme("initnet", "normal:std=1e6", data, config)
    assert (result.status, result.diverged_epoch, result.diverged_step) == ("diverged", 1, 5)
    assert result.epochs == ()
    # the margins, checked: step 4 is far below the overflow, and far above step 3
    four = dataclasses.replace(config, epochs=1, max_steps=4, log_every=1)
    (epoch,) = train_scheme("initnet", "normal:std=1e6", data, four).epochs
    *_, (_, third), (_, fourth) = epoch.loss_curve
    assert fourth < torch.finfo(torch.float32).max / 100 and fourth > 1e5 * third


def test_data_dependent_schemes_get_the_init_batch(data):
    # lsuv needs a batch; train_scheme passes the first INIT_BATCH training images.
    result = train_scheme("mlp", "lsuv", data, TrainConfig(epochs=1, max_steps=2))
    assert result.status == "finished"
    with pytest.raises(ValueError, match="needs a data batch"):
        build_initialized("mlp", "lsuv", seed=0)


def test_sgd_with_momentum_trains(data):
    config = TrainConfig(epochs=1, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0)
    result = train_scheme("cnn", "kaiming_uniform", data, config, model_params={"channels": (4, 8)})
    # Same data and steps as the AdamW check; a 4/8-channel CNN with SGD gets well above 10%.
    assert result.status == "finished" and result.epochs[0].test_accuracy >= 0.7


def test_on_epoch_sees_every_record_and_can_stop_training(data):
    seen = []

    def stop_after_two(record):
        seen.append(record.epoch)
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_scheme(
            "initnet", "seed", data, TrainConfig(epochs=5, max_steps=2), on_epoch=stop_after_two
        )
    assert seen == [1, 2]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"optimizer": "adamww"},
            ValueError,
            r"optimizer must be one of \['adam', 'adamw', 'sgd'\].*did you mean 'adamw'",
        ),
        (
            {"device": "gpu"},
            ValueError,
            r"device must be one of \['auto', 'cpu', 'cuda'\]; got device='gpu'",
        ),
        ({"lr": -1.0}, ValueError, r"lr must be a finite number >= 0; got lr=-1.0"),
        ({"batch_size": 0}, ValueError, r"^batch_size must be >= 1; got batch_size=0$"),
        ({"epochs": 1.5}, TypeError, r"^epochs must be an int; got epochs=1.5$"),
        ({"epochs": True}, TypeError, r"^epochs must be an int; got epochs=True$"),
        ({"max_steps": 0}, ValueError, r"^max_steps must be >= 1; got max_steps=0$"),
        ({"eval_batch_size": -5}, ValueError, r"eval_batch_size must be >= 1; got .*=-5$"),
        ({"log_every": -1}, ValueError, r"log_every must be None .*0 .*>= 1; got log_every=-1"),
        ({"log_every": 2.5}, ValueError, r"log_every must be None .*; got log_every=2.5"),
    ],
)
def test_config_errors_name_the_argument(kwargs, error, message):
    # the counts go through initlab._checks.positive_int: one check, one wording
    with pytest.raises(error, match=message):
        TrainConfig(**kwargs)


def test_loss_curve_windows_are_the_means_of_a_plain_loops_step_losses(data):
    # Two epochs of 79 steps (5000 / 64), windows of 30: steps 1-30, 31-60, 61-79 (a shorter
    # last window), then 80-109, 110-139, 140-158, counted from the start of training.
    config = TrainConfig(epochs=2, seed=2, log_every=30)
    result = train_scheme("initnet", "seed", data, config)
    net = build_initialized("initnet", "seed", seed=2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    shuffle = torch.Generator().manual_seed(run_seeds(2)[1])
    curves = []
    for epoch in result.epochs:
        losses = []
        for batch in torch.randperm(5000, generator=shuffle).split(64):
            optimizer.zero_grad()
            loss = F.cross_entropy(net(data.train_x[batch]), data.train_y[batch])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        windows = [losses[0:30], losses[30:60], losses[60:79]]
        curves.append([sum(w) / len(w) for w in windows])
        # the windows' step-weighted mean is the epoch's mean loss
        # (float32 means of 79 and of <= 30 positive losses: within (79 + 30) eps of each other)
        weighted = sum(v * n for (_, v), n in zip(epoch.loss_curve, (30, 30, 19), strict=True))
        assert weighted / 79 == pytest.approx(epoch.train_loss, rel=(79 + 30) * EPS)
    first, second = result.epochs
    assert [s for s, _ in first.loss_curve] == [30, 60, 79]
    assert [s for s, _ in second.loss_curve] == [109, 139, 158]
    # the same steps; a float32 mean of <= 30 step losses against a float64 one: 30 eps
    for epoch, want in zip(result.epochs, curves, strict=True):
        assert [v for _, v in epoch.loss_curve] == pytest.approx(want, rel=30 * EPS)
    # the first window's mean (just after init) is far above the last one's
    assert first.loss_curve[0][1] > 2 * second.loss_curve[-1][1]


def test_loss_curve_default_is_about_a_tenth_of_an_epoch_and_zero_turns_it_off(data):
    # ceil(79 / 10) = 8 steps per window: 9 windows of 8 and one of 7, the last at step 79
    (epoch,) = train_scheme("initnet", "seed", data, TrainConfig(epochs=1)).epochs
    assert [s for s, _ in epoch.loss_curve] == [8, 16, 24, 32, 40, 48, 56, 64, 72, 79]
    (off,) = train_scheme("initnet", "seed", data, TrainConfig(epochs=1, log_every=0)).epochs
    assert off.loss_curve == ()
    assert off.train_loss == epoch.train_loss  # the curve changes nothing else


def test_loss_curve_of_stacked_losses_is_per_run():
    # (steps=5, R=2), windows of 2: steps 1-2, 3-4, 5, after 10 steps of earlier epochs
    losses = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0], [7.0, 70.0], [9.0, 90.0]])
    assert loss_curve(losses, 2, 10) == [
        ((12, 2.0), (14, 6.0), (15, 9.0)),
        ((12, 20.0), (14, 60.0), (15, 90.0)),
    ]
    assert loss_curve(losses[:, 0], 5, 0) == [((5, 5.0),)]
    assert loss_curve(losses, 0, 0) == [(), ()]


def test_cuda_under_torchrun_is_the_local_ranks_own_gpu(monkeypatch):
    # No GPU needed: CUDA's availability and count are stubbed; only the device name is checked.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cuda") == torch.device("cuda")  # not under torchrun: current GPU
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == torch.device("cuda", 1)  # rank 3 of 4 on 2 GPUs
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda' is not available on this machine"):
        resolve_device("cuda")


@pytest.mark.parametrize(
    "model, params, optimizer",
    [("initnet", {}, "adamw"), ("mlp", {"dropout": 0.3}, "sgd")],  # dropout: the RNG state too
)
def test_training_from_a_state_continues_exactly(data, model, params, optimizer):
    config = TrainConfig(epochs=3, seed=2, optimizer=optimizer, max_steps=10)
    whole = train(build_initialized(model, "seed", seed=2, model_params=params), data, config)
    states = []
    train(
        build_initialized(model, "seed", seed=2, model_params=params),
        data,
        config,
        on_state=states.append,
    )
    assert [(s.epoch, s.steps) for s in states] == [(1, 10), (2, 20), (3, 30)]
    saved = states[1]
    before = {name: t.clone() for name, t in saved.model.items()}
    # any weights to begin with: the state overwrites them
    other = build_initialized(model, "zeros", seed=7, model_params=params)
    rest = train(other, data, config, start=saved)
    assert _strip_time(rest) == _strip_time(whole)[2:]
    assert all(torch.equal(saved.model[n], t) for n, t in before.items())  # not trained in place
    again = train(build_initialized(model, "zeros", seed=7, model_params=params), data, config,
                  start=saved)  # fmt: skip
    assert _strip_time(again) == _strip_time(rest)  # nor its optimizer state


def test_a_state_at_the_last_epoch_trains_nothing_and_bad_states_are_refused(data):
    config = TrainConfig(epochs=1, max_steps=2)
    states = []
    train(build_initialized("initnet", "seed", seed=0), data, config, on_state=states.append)
    result = train(build_initialized("initnet", "seed", seed=0), data, config, start=states[0])
    assert (result.status, result.epochs) == ("finished", ())
    with pytest.raises(ValueError, match="after epoch 2, past the config's epochs=1"):
        train(InitNet(), data, config, start=dataclasses.replace(states[0], epoch=2))
    with pytest.raises(ValueError, match="does not fit the model"):
        train(InitNet(num_classes=12), data, config, start=states[0])
    with pytest.raises(ValueError, match=r"a train state has the keys \[.*\]; got \['epoch'\]"):
        TrainState.from_dict({"epoch": 1})
