"""The parts the classic experiments need: the linear activation, the residual
block without post-activation, zero-gamma, forget bias for any scheme, the Jacobian spectrum and
the synthetic tasks."""

from __future__ import annotations

import argparse
import copy
import json
import math

import pytest
import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.cli import deeplinear, spectrum
from initlab.datasets.synthetic import first_token, first_token_dataset
from initlab.diagnostics.jacobian import (
    input_output_jacobian,
    jacobian_spectrum,
    plot_jacobian_spectra,
    spread_decades,
    within_factor_of_median,
)
from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.core import TensorData, training_view
from initlab.experiments.data import head_params, load_data
from initlab.experiments.deep_linear import (
    format_learning_times,
    learning_time,
    learning_time_table,
    steps_to_threshold,
)
from initlab.experiments.stacked import train_group
from initlab.experiments.trainer import evaluate, train
from initlab.schemes.classic import ForgetBias, set_forget_bias_
from initlab.schemes.registry import check_fits, initialize, parse_scheme
from initlab.zoo.models import build_model


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the linear activation ------------------------------------------------------------------


def test_linear_mlp_is_the_product_of_its_matrices():
    net = build_model("mlp", depth=3, width=6, activation="linear", in_features=5, num_classes=4)
    initialize(net, "orthogonal", generator=_gen())  # biases 0
    x = torch.randn(7, 5, generator=_gen(1))
    product = net.head.weight @ net.hidden[2][0].weight @ net.hidden[1][0].weight
    product = product @ net.hidden[0][0].weight  # (4, 5)
    torch.testing.assert_close(net(x), x @ product.T)
    assert all(not isinstance(m, nn.ReLU | nn.Tanh) for m in net.modules())


# --- the residual block without post-activation ----------------------------------------------


def _second_moments(net, x):
    """Per-unit mean square of the stream entering each block and leaving the last one, and of
    each block's branch output (fc2's), with ``x`` fed to the blocks directly."""
    stream, branch = [], []
    hooks = [b.register_forward_pre_hook(lambda m, a: stream.append(a[0])) for b in net.blocks]
    hooks += [b.fc2.register_forward_hook(lambda m, a, o: branch.append(o)) for b in net.blocks]
    with torch.no_grad():
        stream.append(net.blocks(x))
    for hook in hooks:
        hook.remove()
    return [float(s.square().mean()) for s in stream], [float(b.square().mean()) for b in branch]


def test_no_post_activation_stream_adds_the_branch_variances():
    # He normal, biases 0: z = fc1(x) has E[z^2] = 2 q (q = E[x^2] per unit), relu halves it
    # (z is symmetric), fc2 doubles it: each branch's second moment is 2 q, so the stream grows
    # q -> q + 2 q = 3 q per block, 27x over 3 blocks (He et al. 2016, eq. 4: variances add,
    # the branch being uncorrelated with its input at initialization).
    depth, width, batch, seeds = 3, 1024, 512, 4
    growth = []
    for seed in range(seeds):
        net = build_model(
            "resmlp", depth=depth, width=width, in_features=width, post_activation=False
        )
        initialize(net, "kaiming_normal", generator=_gen(seed))
        stream, branch = _second_moments(net, torch.randn(batch, width, generator=_gen(99 + seed)))
        for layer in range(depth):
            # The cross term 2 E[x . branch] is what is left: its size is set by the overlap of
            # the mean directions of the stream and of relu's output after a random n x n
            # matrix, relative std about 1/sqrt(n) = 3%; measured 1% (18 blocks, 6 seeds), so
            # 5% is beyond 4 sigma.
            assert stream[layer + 1] == pytest.approx(stream[layer] + branch[layer], rel=0.05)
        growth.append(stream[-1] / stream[0])
    # One draw's growth scatters by 4% (measured over 6 seeds: relu's mean direction carries
    # 1/pi of the branch power and its norm after a random matrix varies by sqrt(2/n)); the mean
    # of 4 seeds by 2%: 8% is 4 sigma. The default block (ReLU after the add) would not add.
    assert sum(growth) / seeds == pytest.approx(3.0**depth, rel=0.08)
    post = build_model("resmlp", depth=depth, width=8, post_activation=True)
    x = torch.randn(16, 8, generator=_gen(1))
    with torch.no_grad():
        assert float(post.blocks(x).min()) >= 0  # the default stream is rectified
        assert float(net.blocks(x[:, :8].repeat(1, width // 8)).min()) < 0


def test_post_activation_must_be_a_bool():
    with pytest.raises(TypeError, match="post_activation must be a bool; got post_activation=1"):
        build_model("resmlp", depth=1, width=4, post_activation=1)


# --- zero-gamma --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params", "last"),
    [
        ("resmlp", {"depth": 3, "width": 8, "norm": "batch"}, "norm2"),
        ("resnet", {}, "bn2"),
    ],
)
def test_zero_gamma_zeroes_exactly_the_last_norm_weight_of_each_block(model, params, last):
    net = build_model(model, **params)
    initialize(net, "zero_gamma", generator=_gen(3))
    reference = build_model(model, **params)
    initialize(reference, "kaiming_normal", generator=_gen(3))  # the same draws, no step
    norms = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    expected = {f"{n}.weight" for n in norms if n.endswith(last)}
    assert len(expected) == params.get("depth", 3)  # one per residual block
    before = dict(reference.named_parameters())
    for name, param in net.named_parameters():
        if name in expected:
            assert not param.detach().any(), name
        else:  # every other tensor as He normal drew it; other norm weights (shortcut too) 1
            assert torch.equal(param, before[name]), name
    assert all(float(before[n].detach().min()) == 1.0 for n in expected)  # the step changed them


def test_zero_gamma_refuses_a_model_without_norm_in_its_blocks():
    with pytest.raises(ValueError, match="zero_norm needs an affine normalization layer"):
        initialize(build_model("resmlp", depth=2, width=4), "zero_gamma", generator=_gen())


# --- forget bias -------------------------------------------------------------------------------


class _Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(3, 5)
        self.cell = nn.LSTMCell(3, 2)
        self.rnn = nn.RNN(3, 4)
        self.head = nn.Linear(4, 2)


def test_forget_bias_option_sets_exactly_the_forget_gate_slice():
    scheme, options = parse_scheme("xavier_uniform:forget_bias=1.5")
    assert options == {"gain": 1.0} and scheme.steps == (ForgetBias(1.5),)
    net, plain = _Gated(), _Gated()
    initialize(net, "xavier_uniform:forget_bias=1.5", generator=_gen(), bias_init="constant:0.25")
    initialize(plain, "xavier_uniform", generator=_gen(), bias_init="constant:0.25")
    touched = 0
    for (name, param), (_, before) in zip(
        net.named_parameters(), plain.named_parameters(), strict=True
    ):
        layer = name.split(".")[0]
        if layer in ("lstm", "gru", "cell") and ".bias_" in name:
            hidden = getattr(net, layer).hidden_size
            f = slice(hidden, 2 * hidden)  # LSTM gates i, f, g, o; GRU r, z, n
            value = 1.5 if ".bias_ih" in name else 0.0
            assert torch.equal(param[f], torch.full((hidden,), value)), name
            rest = torch.cat([param[:hidden], param[2 * hidden :]])
            assert torch.equal(rest, torch.full_like(rest, 0.25)), name
            touched += 1
        else:  # weights, the plain RNN, the head: as the scheme drew them without the option
            assert torch.equal(param, before), name
    assert touched == 2 * 2 * 2 + 2 + 2  # lstm: 2 layers x 2 directions x (ih, hh); gru; cell


def test_set_forget_bias_reports_and_refuses():
    lstm = nn.LSTM(2, 3)
    assert set_forget_bias_(lstm, 2.0) == ["bias_ih_l0", "bias_hh_l0"]
    assert set_forget_bias_(nn.RNN(2, 3), 2.0) == []
    with pytest.raises(ArgumentError, match="forget_bias must be a finite number; got"):
        set_forget_bias_(lstm, float("inf"))
    with pytest.raises(ArgumentError, match="forget_bias must be a finite number"):
        parse_scheme("normal:forget_bias=nan")


def test_forget_bias_on_a_model_without_gates_is_refused_before_training():
    mlp = build_model("mlp", depth=1, width=4)
    with pytest.raises(ValueError, match="forget_bias=1 sets the forget-gate bias of LSTM"):
        initialize(mlp, "xavier_uniform:forget_bias=1", generator=_gen())
    with pytest.raises(ArgumentError, match="forget_bias needs an LSTM or GRU layer: use model"):
        check_fits(mlp, "xavier_uniform:forget_bias=1", "mlp")


def test_forget_bias_of_rnn_orthogonal_stays_its_own_option():
    scheme, options = parse_scheme("rnn_orthogonal:forget_bias=2")
    assert options == {"forget_bias": 2.0} and scheme.steps == ()


# --- Jacobian spectra ----------------------------------------------------------------------


def test_jacobian_of_a_linear_map_is_its_matrix():
    layer = nn.Linear(5, 7)
    x = torch.randn(3, 5, generator=_gen(2))
    jac = input_output_jacobian(layer, x)
    assert jac.shape == (3, 7, 5)
    for e in range(3):  # one-hot output gradients times W: exactly W's rows
        assert torch.equal(jac[e], layer.weight.detach())
    spectrum = jacobian_spectrum(layer, x)
    expected = torch.linalg.svdvals(layer.weight.detach().double())
    assert torch.equal(spectrum.singular_values, expected.expand(3, -1))


def test_orthogonal_deep_linear_net_is_an_isometry_and_gaussian_is_not():
    def net(scheme):
        model = build_model(
            "mlp", depth=8, width=32, activation="linear", in_features=32, num_classes=32
        )
        return initialize(model, scheme, generator=_gen(5))

    x = torch.randn(4, 32, generator=_gen(6))
    # Spread 0 up to rounding: each float32 orthogonal factor is orthogonal to about
    # n * eps32 = 32 * 6e-8 = 2e-6 relative, 9 factors to 2e-5 at worst, log10(1 + 2e-5) = 1e-5.
    for dtype in (None, torch.float64):  # the float64 copy computes with the same float32 draws
        spectrum = jacobian_spectrum(net("orthogonal"), x, dtype=dtype)
        assert spectrum.spread_decades < 1e-5 and spectrum.within_3x_median == 1.0
        torch.testing.assert_close(
            spectrum.singular_values, torch.ones(4, 32, dtype=torch.float64), rtol=2e-5, atol=0
        )
    # N(0, 1/n) weights (LeCun): the product of 9 square Gaussian matrices; its smallest
    # singular values fall like n^(-1/2) per factor while the largest stay O(1): many decades.
    gaussian = jacobian_spectrum(net("lecun_normal"), x, dtype=torch.float64)
    assert gaussian.spread_decades > 3 and gaussian.within_3x_median < 0.9


def test_spectrum_statistics_by_hand():
    values = torch.tensor([0.1, 1.0, 2.0, 3.0, 50.0])
    assert spread_decades(values) == pytest.approx(math.log10(500))
    assert within_factor_of_median(values) == 0.6  # median 2: 1, 2, 3 in [2/3, 6]
    assert within_factor_of_median(values, 20.0) == 0.8  # [0.1, 40]: all but 50
    assert spread_decades(torch.tensor([0.0, 1.0])) == math.inf
    with pytest.raises(ArgumentError, match="factor must be a number >= 1; got factor=0.5"):
        within_factor_of_median(values, 0.5)


def test_jacobian_leaves_the_model_as_it_was_and_refuses_tokens(tmp_path):
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    spectrum = jacobian_spectrum(model, torch.randn(8, 4, generator=_gen(7)), max_examples=5)
    assert model.training and spectrum.singular_values.shape == (5, 3)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with pytest.raises(ArgumentError, match="inputs must be a floating-point tensor"):
        jacobian_spectrum(model, torch.zeros(2, 4, dtype=torch.int64))
    path = plot_jacobian_spectra({"tanh+bn": spectrum}, tmp_path / "fig" / "spectra.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- remember the first token ------------------------------------------------------------------


def test_first_token_labels_are_the_first_tokens():
    data = first_token_dataset(side=5, vocab=4, n_train=300, n_test=100, seed=3)
    assert data.train_images.shape == (300, 5, 5) and data.num_classes == 4
    for images, labels in (
        (data.train_images, data.train_labels),
        (data.test_images, data.test_labels),
    ):
        tokens = torch.round(images.double() * 3 / 255).long()  # pixels 0, 85, 170, 255
        assert set(images.unique().tolist()) == {0, 85, 170, 255}
        assert torch.equal(labels, tokens[:, 0, 0])  # step 0 of the row-major sequence
    # The last token is independent of the label: it matches 1/4 of the time; over 300 pairs
    # the count is binomial, 75 +- sqrt(300 * 3/16) = 7.5, so within 30 is 4 sigma.
    later = torch.round(data.train_images[:, 4, 4].double() * 3 / 255).long()
    assert abs(int((later == data.train_labels).sum()) - 75) < 30
    assert torch.equal(first_token().train_images, first_token_dataset().train_images)
    with pytest.raises(ArgumentError, match="vocab must be an int >= 2; got vocab=1"):
        first_token_dataset(vocab=1)


def test_first_token_task_builds_its_data_model_and_schemes():
    # What run_sweep does for the task, without training (a 2-step sweep spends 15 s drawing
    # the report's figures): the factory's data, the head fitted to its 4 classes, each scheme.
    config = CompareConfig.for_task("first-token", seeds=1)
    assert config.dataset == "initlab.datasets.synthetic:first_token"
    data = load_data(config.dataset, train_subset=64, test_subset=32)
    params = head_params(config.model, config.model_params, config.dataset, data.num_classes)
    assert params["num_classes"] == 4 and params["image_size"] ** 2 == 25
    x = data.inputs("train")[:8]
    for scheme in config.schemes:
        model = initialize(build_model(config.model, **params), scheme, generator=_gen())
        logits = model(x)
        assert logits.shape == (8, 4)
        loss = nn.functional.cross_entropy(logits, data.train_labels[:8])
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        if scheme.startswith("rnn_orthogonal"):  # forget_bias: the option, else 1
            value = float(scheme.partition("=")[2] or 1.0)
            forget = model.rnn.bias_ih_l0.detach()[32:64]  # hidden 32: gates i, f, g, o
            assert torch.equal(forget, torch.full((32,), value))


# --- deep linear networks: learning time (Saxe et al. 2014) -----------------------------------


def test_steps_to_threshold_by_hand():
    assert steps_to_threshold([1.0, 0.5, 0.2, 0.05, 0.01], 0.1) == 3
    assert steps_to_threshold([0.05], 0.1) == 0  # already there at initialization
    assert steps_to_threshold([1.0, float("nan"), 0.5], 0.1) is None
    with pytest.raises(ArgumentError, match="threshold must be finite; got threshold=inf"):
        steps_to_threshold([1.0], float("inf"))


def test_zero_weights_never_learn_and_the_loss_is_relative():
    # All weights 0: the output is 0 (relative loss exactly 1) and every weight gradient is a
    # product with a zero matrix, so nothing moves.
    run = learning_time(3, "zeros", lr=0.1, max_steps=5)
    assert run.losses == (1.0,) * 6 and run.steps is None and not run.diverged


def test_orthogonal_learning_time_does_not_grow_with_depth_and_gaussian_does():
    # Fixed seeds and data, so the step counts are fixed numbers up to float rounding (measured
    # on 2 seeds: orthogonal 159-189 steps at depth 2, 73-106 at depth 8; LeCun normal 220-240
    # at depth 2, 489-579 or never at depth 8); the margins below are 30% or more.
    rows = learning_time_table(
        [2, 8], ["orthogonal", "lecun_normal"], [0.1], seeds=(0, 1), max_steps=600
    )
    by = {(r["scheme"], r["depth"]): r for r in rows}
    assert all(r["learned"] == 2 for k, r in by.items() if k != ("lecun_normal", 8))
    assert by["orthogonal", 8]["max"] < by["orthogonal", 2]["min"]
    deep = by["lecun_normal", 8]
    assert deep["learned"] == 0 or deep["min"] > 1.8 * by["lecun_normal", 2]["max"]
    assert "orthogonal" in format_learning_times(rows)


# --- training loss and accuracy at chosen steps ------------------------------------------------


def _tiny_data():
    g = _gen(11)
    x = torch.rand(96, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    return TensorData(x, y, x[:32], y[:32])


def test_eval_steps_record_the_full_training_loss_and_accuracy_at_those_steps():
    data = _tiny_data()
    config = TrainConfig(epochs=2, batch_size=16, max_steps=4, eval_steps=[6, 3, 3])
    assert config.eval_steps == (3, 6)  # sorted, once each
    net = initialize(build_model("mlp", depth=1, width=16), "kaiming_uniform", generator=_gen())
    reference = copy.deepcopy(net)
    records = train(net, data, config).epochs
    assert [[e[0] for e in r.train_evals] for r in records] == [[3], [6]]
    assert (
        "train_evals"
        not in train(
            copy.deepcopy(reference), data, TrainConfig(epochs=1, batch_size=16, max_steps=2)
        )
        .epochs[0]
        .line()
    )
    # The same run stopped after 3 steps, then evaluated on the training set: the same numbers
    # (the evaluation draws nothing, so the run goes on as without it).
    short = train(reference, data, TrainConfig(epochs=1, batch_size=16, max_steps=3))
    loss, accuracy = evaluate(reference, training_view(data))
    assert records[0].train_evals[0] == (3, loss, accuracy)
    plain = train(
        initialize(build_model("mlp", depth=1, width=16), "kaiming_uniform", generator=_gen()),
        data,
        TrainConfig(epochs=2, batch_size=16, max_steps=4),
    )
    assert [r.train_loss for r in plain.epochs] == [r.train_loss for r in records]
    assert short.status == "finished"


def test_eval_steps_under_stacking_match_the_runs_alone():
    data = _tiny_data()
    config = TrainConfig(epochs=2, batch_size=16, max_steps=4, eval_steps=(2, 7))
    models = [
        initialize(build_model("mlp", depth=1, width=16), "kaiming_uniform", generator=_gen(s))
        for s in (0, 1)
    ]
    alone = [train(copy.deepcopy(m), data, config).epochs for m in models]
    stacked = train_group(models, data, config, seeds=[config.seed, config.seed])
    for single, together in zip(alone, (r.epochs for r in stacked), strict=True):
        for a, b in zip(single, together, strict=True):
            assert [e[0] for e in a.train_evals] == [e[0] for e in b.train_evals]
            for (_, la, aa), (_, lb, ab) in zip(a.train_evals, b.train_evals, strict=True):
                # stacked and single runs agree up to float rounding (batched matmuls): the
                # loss to 1e-5, the accuracy but for a prediction flipped by a near tie (1/96)
                assert lb == pytest.approx(la, rel=1e-5) and abs(ab - aa) <= 1 / 96 + 1e-12
    with pytest.raises(ValueError, match="eval_steps must be"):
        TrainConfig(eval_steps=(0,))


# --- initlab spectrum (not yet in initlab.cli.COMMANDS: through its own register) --------------


def _spectrum(argv):
    parser = argparse.ArgumentParser(prog="initlab")
    spectrum.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["spectrum", *argv])
    return args.func(args)


def test_spectrum_command_prints_bands_and_writes_its_files(tmp_path, capsys):
    linear = ["depth=4", "width=16", "activation=linear", "in_features=16", "num_classes=16"]
    argv = [f"--model-arg={a}" for a in linear]
    argv += ["--inputs", "gaussian", "--seeds", "2", "--examples", "4", "--out", str(tmp_path)]
    assert _spectrum(argv) == 0
    out = capsys.readouterr().out
    assert "orthogonal    0.00 [0.00, 0.00]" in out and "100% [100%, 100%]" in out
    summary = json.loads((tmp_path / "spectrum.json").read_text(encoding="utf-8"))
    assert [len(runs) for runs in summary.values()] == [2, 2]
    assert all(run["spread_decades"] < 1e-5 for run in summary["orthogonal"])
    assert all(run["spread_decades"] > 0.5 for run in summary["lecun_normal"])
    assert (tmp_path / "spectrum.png").read_bytes()[:4] == b"\x89PNG"
    assert _spectrum(["--model", "cnn", "--inputs", "gaussian"]) == 2
    assert "--inputs gaussian needs a model with an int in_features" in capsys.readouterr().err


def _deeplinear(argv):
    parser = argparse.ArgumentParser(prog="initlab")
    deeplinear.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["deeplinear", *argv])
    return args.func(args)


def test_deeplinear_command_prints_the_table_and_refuses_bad_depths(capsys):
    argv = ["--depths", "1,2", "--schemes", "orthogonal,zeros", "--lrs", "0.3", "--seeds", "1"]
    assert _deeplinear([*argv, "--max-steps", "300"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["scheme", "depth", "steps", "to", "threshold", "(mean", "[min,",
                              "max])", "learned", "best", "lr"]  # fmt: skip
    assert [line.split()[:2] for line in out[2:]] == [
        ["orthogonal", "1"], ["orthogonal", "2"], ["zeros", "1"], ["zeros", "2"]
    ]  # fmt: skip
    assert all(line.split()[-2:] == ["0/1", "-"] for line in out[4:])  # zeros never learn
    assert _deeplinear(["--depths", "0", "--seeds", "1"]) == 2
    assert "argument --depths: depth must be" in capsys.readouterr().err
