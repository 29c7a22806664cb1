"""The spectral audit: Yang, Simon & Bernstein 2023, Condition 1.

The applied weight read through hooks and parametrizations; exact norms, updates and feature
changes on a model computed by hand; the four setups (SP, NTK, muP, muP without
its readout multiplier) labeled; bad input.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from initlab._checks import ArgumentError
from initlab.datasets import load_dataset
from initlab.parameterize.coord_check import mlp_builder
from initlab.parameterize.spectral import effective_weight, spectral_audit

# ----------------------------------------------------------------------------- applied weight


def test_effective_weight_of_a_plain_linear_is_its_weight():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    torch.testing.assert_close(effective_weight(layer), layer.weight.detach())


def test_effective_weight_includes_a_forward_multiplier():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    layer.register_forward_hook(lambda m, a, out: out * 0.25)
    torch.testing.assert_close(effective_weight(layer), 0.25 * layer.weight.detach())


class _Times(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, weight):
        return weight * self.factor


def test_effective_weight_includes_a_parametrization():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    raw = layer.weight.detach().clone()
    parametrize.register_parametrization(layer, "weight", _Times(3.0))
    torch.testing.assert_close(effective_weight(layer), 3.0 * raw)


def test_effective_weight_of_a_wide_input_is_read_in_blocks():
    torch.manual_seed(0)
    layer = nn.Linear(2500, 3)  # 1024 + 1024 + 452 identity rows
    torch.testing.assert_close(effective_weight(layer), layer.weight.detach())


def test_effective_weight_refuses_other_modules():
    with pytest.raises(TypeError, match="linear layers only; got Conv1d"):
        effective_weight(nn.Conv1d(2, 2, 1))


# ----------------------------------------------------------------------------- exact values

ETA, BATCH = 0.01, 4


def _doubling(width: int, seed: int):
    # W = 2 I (w x w), bias-free, inputs all ones, loss sum(W x). Then ||W||_2 = 2 and the
    # target sqrt(fan_out/fan_in) = 1; dL/dW = sum_b 1 x_b^T = BATCH * ones(w, w), so one SGD
    # step gives Delta W = -ETA * BATCH * ones, ||Delta W||_2 = ETA * BATCH * w (rank one,
    # singular value sqrt(w * w)); h = W x = 2 * ones and Delta h = -ETA * BATCH * w * ones,
    # so ||Delta h|| / ||h|| = ETA * BATCH * w / 2.
    layer = nn.Linear(width, width, bias=False)
    with torch.no_grad():
        layer.weight.copy_(2.0 * torch.eye(width))
    return layer, torch.optim.SGD(layer.parameters(), lr=ETA), lambda out, y: out.sum()


def test_hand_computed_norms_update_and_feature_change():
    widths = [4, 8, 16]
    batch = (torch.ones(BATCH, 16), torch.zeros(BATCH))
    # the builder takes the first `width` inputs, so every width shares the batch
    audit = spectral_audit(_first(_doubling), widths, batch, seeds=(0,), layers=["1"])
    (row,) = audit.rows
    assert row.role == "hidden"
    assert row.norm.values == pytest.approx([2.0] * 3, rel=1e-6)
    assert row.norm.exponent == pytest.approx(0.0, abs=1e-6)
    assert row.update.values == pytest.approx([ETA * BATCH * w for w in widths], rel=1e-5)
    assert row.update.exponent == pytest.approx(1.0, abs=1e-5)
    assert row.relative_update.values == pytest.approx([ETA * BATCH * w / 2 for w in widths])
    assert row.feature_change.values == pytest.approx([ETA * BATCH * w / 2 for w in widths])
    assert row.verdict == "update too large"
    assert audit.verdicts() == {"1": "update too large"}


class _First(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return x[:, : self.n]


def _first(build):
    def wrapped(width, seed):
        model, optimizer, loss = build(width, seed)
        return nn.Sequential(_First(width), model), optimizer, loss

    return wrapped


# ----------------------------------------------------------------------------- four setups

WIDTHS = [64, 128, 256, 512]
BASE = WIDTHS[0]
LR = 1e-3


@pytest.fixture(scope="module")
def batches():
    # 256 MNIST training images pooled 4x4 to 49 inputs (the input fan-in stays below every
    # width, as in tests/test_coord_check.py), 4 batches of 64.
    data = load_dataset("mnist").subset(256, 0, seed=0)
    x = F.avg_pool2d(data.inputs("train"), 4).reshape(256, -1)
    return [(x[i : i + 64], data.train_labels[i : i + 64]) for i in range(0, 256, 64)]


def _mlp(width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)  # PyTorch's default init: variance 1/(3 fan_in)
    return nn.Sequential(
        nn.Linear(49, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def standard(width, seed):
    model = _mlp(width, seed)
    return model, torch.optim.Adam(model.parameters(), lr=LR), F.cross_entropy


def ntk(width, seed):
    # NTK parameterization (Jacot et al. 2018, eq. 1): weights N(0, 1), each layer's output
    # times 1/sqrt(fan_in), biases 0, plain SGD at a width-independent rate.
    model = _mlp(width, seed)
    for layer in (model[0], model[2], model[4]):
        nn.init.normal_(layer.weight)
        nn.init.zeros_(layer.bias)
        layer.register_forward_hook(lambda m, a, out, c=layer.in_features**-0.5: out * c)
    return model, torch.optim.SGD(model.parameters(), lr=1.0), F.cross_entropy


def mup(width, seed, readout_multiplier=None):
    # muP for Adam, Tensor Programs V Table 3 with the readout multiplier of its Table 8 (the
    # form of mup's MuReadout + MuAdam; see tests/test_coord_check.py for the derivation).
    model = _mlp(width, seed)
    ratio = BASE / width
    multiplier = ratio if readout_multiplier is None else readout_multiplier
    model[4].register_forward_hook(lambda m, a, out: out * multiplier)
    hidden = [model[2].weight]
    rest = [p for p in model.parameters() if all(p is not h for h in hidden)]
    groups = [{"params": rest, "lr": LR}, {"params": hidden, "lr": LR * ratio}]
    return model, torch.optim.Adam(groups), F.cross_entropy


def mup_without_readout_multiplier(width, seed):
    # the readout multiplier wrong by the width ratio: 1 instead of BASE / width
    return mup(width, seed, readout_multiplier=1.0)


# Per layer (input 0, hidden 2, readout 4), what Condition 1 of Yang, Simon & Bernstein 2023
# predicts, with the exponents measured (seeds 0..2, one step; the standard errors of the
# quantities the verdicts read are at most 0.04):
# - standard + Adam: hidden ||dW|| grows like w (Adam's step has entries ~lr in a rank-one
#   pattern, ||dW|| ~ lr w, target 1; measured +1.02); readout ||W|| ~ 1 against target
#   sqrt(10/w) (+0.43) and ||dW|| ~ lr sqrt(10 w) (+0.95).
# - NTK + SGD: every gradient carries the next layers' 1/sqrt(w) multipliers, so updates shrink
#   (input -0.46, hidden -0.42) and features stop moving: lazy; its readout's norm is that of
#   the standard parameterization (+0.43), above the condition.
# - muP: every normalized update and the hidden features' change flat (|exponent| <= 0.17);
#   the readout's norm falls (-0.57), below the condition, which is allowed.
# - muP without the readout multiplier: hidden and input as muP, readout as standard.
# The tolerance 0.25 is at least 0.08 (4 standard errors) from every measured exponent.
EXPECTED = {
    "standard": {"0": "ok", "2": "update too large", "4": "readout too large"},
    "ntk": {"0": "lazy", "2": "lazy", "4": "readout too large"},
    "mup": {"0": "ok", "2": "ok", "4": "ok"},
    "mup_without_readout_multiplier": {"0": "ok", "2": "ok", "4": "readout too large"},
}
BUILDERS = {
    "standard": standard,
    "ntk": ntk,
    "mup": mup,
    "mup_without_readout_multiplier": mup_without_readout_multiplier,
}


@pytest.mark.parametrize("setup", list(EXPECTED))
def test_the_four_setups_are_labeled(setup, batches):
    audit = spectral_audit(BUILDERS[setup], WIDTHS, batches)
    assert audit.verdicts() == EXPECTED[setup], audit.table()
    assert [r.role for r in audit.rows] == ["input", "hidden", "output"]


@pytest.mark.parametrize(
    ("name", "optimizer", "lr"), [("sp", "adam", LR), ("ntk", "sgd", 1.0), ("mup", "adam", LR)]
)
def test_library_parameterizations_are_labeled(name, optimizer, lr, batches):
    # initlab's own parameterizations of the same MLP (initlab.parameterize.parametrize, base
    # width 64) get the labels of the hand-written setups. Measured exponents: sp as standard
    # above; ntk input -0.48 / hidden -0.44 (updates), readout norm +0.44; mup within 0.06 of 0
    # everywhere except the input layer's norm (-0.17: its fan-in 49 is below the widths, so
    # ||W|| ~ 1 + sqrt(w / 49) is still leaving its constant term), which no verdict reads.
    build = mlp_builder(name, 49, 10, base_width=BASE, optimizer=optimizer, lr=lr)
    audit = spectral_audit(build, WIDTHS, batches)
    expected = {"sp": EXPECTED["standard"], "ntk": EXPECTED["ntk"], "mup": EXPECTED["mup"]}
    assert audit.verdicts() == expected[name], audit.table()


def test_table_and_dict(batches):
    audit = spectral_audit(standard, WIDTHS[:2], batches[:1], seeds=(0,))
    table = audit.table()
    assert table.splitlines()[0].split()[:3] == ["layer", "role", "||W||/target"]
    assert "update too large" in table and "after 1 step(s)" in table
    data = json.loads(json.dumps(audit.to_dict()))
    assert [r["layer"] for r in data["rows"]] == ["0", "2", "4"]
    assert set(data["rows"][0]) >= {"norm", "update", "relative_update", "feature_change"}


# ----------------------------------------------------------------------------- bad input


def _tiny(width, seed):
    model = nn.Sequential(nn.Linear(3, width), nn.LayerNorm(width))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda o, y: o.sum()


BATCH3 = (torch.ones(2, 3), torch.zeros(2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be an int >= 1; got steps=0"),
        ({"tolerance": 0.0}, "tolerance must be > 0; got tolerance=0.0"),
        ({"layers": ["1"]}, r"nn.Linear layers only; got layers \['1'\] of types \['LayerNorm'\]"),
        ({"widths": [8, 8]}, "at least 2 distinct widths"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"widths": [8, 16], **kwargs}
    with pytest.raises(ArgumentError, match=match) as info:
        spectral_audit(_tiny, args.pop("widths"), BATCH3, **args)
    assert info.value.argument in kwargs


def test_a_model_without_linear_layers_is_refused():
    def build(width, seed):
        model = nn.Sequential(nn.Conv1d(1, width, 1))
        return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda o, y: o.sum()

    with pytest.raises(ArgumentError, match="reads nn.Linear layers; the model has none"):
        spectral_audit(build, [8, 16], (torch.ones(2, 1, 3), torch.zeros(2)))
