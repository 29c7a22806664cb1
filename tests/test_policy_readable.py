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
