"""Plans and presets read as text: formulas in reasons, preset rules as a table."""

import re

import pytest
import torch
from torch import nn

import initlab
from initlab.policy import PRESETS, Rule


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16, padding_idx=0)
        self.conv = nn.Conv2d(1, 8, 3)
        self.lstm = nn.LSTM(16, 32)
        self.fc = nn.Linear(28, 128)
        self.ln = nn.LayerNorm(128)
        self.att = nn.MultiheadAttention(16, 2)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(torch.tanh(self.ln(self.fc(x))))


def test_fan_avg_reason_reads_as_a_formula():
    # Before: "std sqrt(1/(28+128)/2=78)".
    reason = initlab.plan(Mixed())["fc.weight"].reason
    assert "std = sqrt(1 / fan_avg) = sqrt(1 / 78) = 0.113 with fan_avg = (28 + 128) / 2" in reason
    assert "bound = sqrt(3) * std = 0.196" in reason  # 0.1132 * 1.732


def test_fan_in_and_truncated_reasons():
    reason = initlab.plan(Mixed(), "flax")["fc.weight"].reason
    # sqrt(1 / 28) = 0.18898; sigma = 0.18898 / 0.87963 = 0.21484
    assert reason.startswith("std = sqrt(1 / fan_in) = sqrt(1 / 28) = 0.189; ")
    assert "sigma = std / 0.8796 = 0.215" in reason


@pytest.mark.parametrize("policy", sorted(PRESETS))
def test_every_reason_of_every_preset_is_readable(policy):
    for row in initlab.plan(Mixed(), policy).rows:
        # No formula glued to its value ("/2=78)"), no bare "std 0.02", balanced parentheses.
        assert not re.search(r"[0-9)]=\S", row.reason), row.reason
        assert not re.search(r"\bstd [0-9s]", row.reason), row.reason
        assert row.reason.count("(") == row.reason.count(")"), row.reason


def test_preset_rules_print_as_a_table_and_stay_a_tuple_of_rules():
    rules = initlab.preset_rules("auto")
    assert isinstance(rules, tuple) and all(isinstance(r, Rule) for r in rules)
    assert rules == tuple(rules) and rules[:2] == tuple(rules)[:2]
    lines = str(rules).splitlines()
    assert len(lines) == len(rules) + 1  # header + one line per rule; before: one Rule repr blob
    assert lines[0].split() == ["#", "rule", "when", "init", "why"]
    he = next(line for line in lines if "ReLU family: He" in line)
    assert "activations=relu_family" in he and "normal std=sqrt(gain^2 / fan_in)" in he
    assert "He et al. 2015" in he
    assert "Rule(" not in str(rules)


def _tanh_mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)
    )


def test_init_model_with_lsuv_starts_from_the_plan_and_calibrates():
    x = torch.randn(256, 32, generator=torch.Generator().manual_seed(1))
    planned = initlab.init_model(_tanh_mlp(), seed=0)
    net = _tanh_mlp()
    result = initlab.init_model(net, seed=0, lsuv=x)
    assert planned.lsuv is None and [r.status for r in result.lsuv.layers] == ["converged"] * 3
    assert result.lsuv.orthogonal_preinit is False
    # Started from the plan's draw: each weight is the planned one times one positive factor
    # (LSUV rescales, it does not redraw), so the direction matches to float precision.
    for name in ("0.weight", "2.weight", "4.weight"):
        a, b = planned.model.get_parameter(name), net.get_parameter(name)
        ratio = (b / a).flatten()
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4) and ratio[0] > 0
    # Every Linear output now has std 1 within LSUV's variance tolerance (|Var - 1| <= 0.1).
    h = x
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            assert abs(h.var(correction=0).item() - 1) <= 0.1
    assert "then LSUV on data (Mishkin and Matas 2016)" in result["2.weight"].reason
    assert "bias shifted to output mean" in result["2.bias"].reason


def test_init_model_lsuv_with_a_bad_batch_names_it():
    with pytest.raises(TypeError, match="floating-point"):
        initlab.init_model(_tanh_mlp(), seed=0, lsuv=torch.zeros(4, 32, dtype=torch.long))


def test_the_policy_plans_and_applies_only_lsuv_is_the_composing_init_model():
    # policy and datadriven sit side by side: initlab.init_model (schemes.compose) runs LSUV
    # after the plan; initlab.policy.init_model refuses lsuv= and names the one that takes it.
    from initlab.policy import init_model as policy_init_model
    from initlab.schemes.compose import init_model as composed

    assert initlab.init_model is composed
    with pytest.raises(TypeError, match=r"call initlab.init_model\(model, \.\.\., lsuv=batch\)"):
        policy_init_model(_tanh_mlp(), seed=0, lsuv=torch.randn(8, 32))
    a, b = _tanh_mlp(), _tanh_mlp()
    policy_init_model(a, seed=3)
    assert composed(b, seed=3).lsuv is None  # without lsuv: the policy's init_model, same draw
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
