"""The option class_prior=1 of every scheme: the output layer's bias set to log p_c."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from initlab._checks import ArgumentError
from initlab.cli import schemes as schemes_cli
from initlab.schemes.heads import ClassPriorBias, output_layer
from initlab.schemes.registry import SCHEMES, check_fits, initialize, parse_scheme
from initlab.zoo.models import build_model

X = torch.zeros(10, 1, 28, 28)
Y = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)  # 10 labels of 10 classes


def _init(scheme: str, batch=(X, Y)):
    torch.manual_seed(0)
    net = build_model("mlp-784-128-10")
    return initialize(net, scheme, generator=torch.Generator().manual_seed(0), batch=batch)


def test_the_option_appends_the_step_and_leaves_the_options():
    scheme, options = parse_scheme("xavier_uniform:class_prior=1")
    assert scheme.steps == (ClassPriorBias(),) and options == {"gain": 1.0}
    assert scheme.needs_batch and not SCHEMES["xavier_uniform"].needs_batch
    assert parse_scheme("xavier_uniform:class_prior=0")[0] is SCHEMES["xavier_uniform"]
    # schemes without options of their own take it too
    assert parse_scheme("kaiming_uniform:class_prior=1")[0].steps == (ClassPriorBias(),)


def test_the_bias_is_the_add_one_log_prior_and_the_weights_are_the_schemes():
    net, plain = _init("xavier_uniform:class_prior=1"), _init("xavier_uniform")
    # counts 5, 3, 2 and seven 0s; add-one over N + C = 20: 6/20, 4/20, 3/20, then 1/20
    expected = torch.tensor([6, 4, 3] + [1] * 7, dtype=torch.float64).div(20).log()
    assert torch.allclose(net.fc2.bias.double(), expected, atol=1e-7)
    assert output_layer(net) is net.fc2  # no model.head: the last nn.Linear
    for (name, p), q in zip(net.named_parameters(), plain.parameters(), strict=True):
        if name != "fc2.bias":
            assert torch.equal(p, q), name  # the step draws nothing


def test_balanced_labels_give_minus_log_c():
    net = _init("normal:class_prior=1", batch=(X, torch.arange(10).repeat(3)))
    assert torch.allclose(net.fc2.bias, torch.full((10,), -math.log(10)))


def test_bad_values_and_missing_labels_are_refused():
    with pytest.raises(ArgumentError, match=r"class_prior must be 0 or 1; got class_prior=2.0"):
        parse_scheme("zeros:class_prior=2")
    with pytest.raises(ArgumentError, match=r"'pretrained' takes no options"):
        parse_scheme("pretrained:class_prior=1")
    with pytest.raises(ArgumentError, match=r"needs labels: pass batch=\(inputs, labels"):
        _init("xavier_uniform:class_prior=1", batch=X)
    with pytest.raises(ArgumentError, match="needs a data batch"):
        _init("xavier_uniform:class_prior=1", batch=None)


def test_check_fits_refuses_a_head_without_bias_up_front():
    gpt = build_model("char-gpt", vocab_size=5, seq_len=4, d_model=4, n_layer=1, n_head=2)
    with pytest.raises(ArgumentError, match=r"'gpt2:class_prior=1' does not apply.*bias=False"):
        check_fits(gpt, "gpt2:class_prior=1", "char-gpt")
    rnn = build_model("char-rnn", vocab_size=5, embed=4, hidden=4)
    check_fits(rnn, "rnn_orthogonal:class_prior=1", "char-rnn")  # head with a bias: fits


def test_a_language_models_next_tokens_are_its_labels():
    rnn = build_model("char-rnn", vocab_size=4, embed=4, hidden=4)
    tokens = torch.tensor([[0, 1, 1, 3], [3, 3, 3, 3]])
    initialize(
        rnn, "rnn_orthogonal:class_prior=1", generator=torch.Generator(), batch=(tokens, tokens)
    )
    # counts 1, 2, 0, 5 of N = 8; add-one over 12
    expected = torch.tensor([2, 3, 1, 6], dtype=torch.float64).div(12).log()
    assert torch.allclose(rnn.head.bias.double(), expected, atol=1e-7)


def test_schemes_lists_the_shared_options_after_the_schemes(capsys):
    parser = argparse.ArgumentParser()
    schemes_cli.register(parser.add_subparsers())
    args = parser.parse_args(["schemes"])
    assert args.func(args) == 0
    listing, shared = capsys.readouterr().out.split("\n\n")
    assert [line.split()[0] for line in listing.splitlines()] == list(SCHEMES)
    assert "[options: std=0.02]" in listing  # gpt2's own option, with its default
    names = [line.split()[0] for line in shared.splitlines()[1:]]
    assert names == ["forget_bias=VALUE", "class_prior=1", "scaled_embedding=1", "zero_head=1"]


def test_runs_set_the_prior_from_every_training_label_not_the_first_batch():
    # The runner's scheme batch is (first 256 inputs, all training labels): with the first 256
    # labels all class 0 and the rest spread, a prior from the first batch alone would give class
    # 0 log((256 + 1) / (256 + 10)); the whole split's counts give the values below.
    from types import SimpleNamespace

    from initlab.experiments.trainer import INIT_BATCH, build_initialized, scheme_batch

    y = torch.cat([torch.zeros(INIT_BATCH, dtype=torch.long), torch.arange(10).repeat(50)])
    data = SimpleNamespace(train_x=torch.zeros(len(y), 1, 28, 28), train_y=y)
    x, labels = scheme_batch(data)
    assert x.shape == (INIT_BATCH, 1, 28, 28) and torch.equal(labels, y)
    net = build_initialized(
        "mlp-784-128-10", "xavier_uniform:class_prior=1", seed=0, batch=(x, labels)
    )
    counts = torch.bincount(y, minlength=10).double()  # class 0: 256 + 50, others: 50
    expected = torch.log((counts + 1) / (len(y) + 10))
    torch.testing.assert_close(output_layer(net).bias.double(), expected, rtol=0, atol=1e-6)
