"""diagnose's singular values are per block for fused weights (gates, q/k/v, groups)."""

import pytest
import torch
from torch import nn

from initlab.diagnostics.diagnose import diagnose

H = 16


def _params(d):
    return {p.name: p for p in d.params}


def _extremes(weight, blocks):
    """(largest, smallest) singular value over the ``blocks`` row blocks of ``weight``."""
    s = [torch.linalg.svdvals(b.double().flatten(1)) for b in weight.detach().chunk(blocks)]
    return max(v[0].item() for v in s), min(v[-1].item() for v in s)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, H, batch_first=True)
        self.head = nn.Linear(H, 3)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


def test_a_per_gate_orthogonal_lstm_weight_hh_has_singular_values_1():
    torch.manual_seed(0)
    model = Recurrent()
    with torch.no_grad():
        for gate in model.lstm.weight_hh_l0.chunk(4):  # (4H, H): i, f, g, o
            nn.init.orthogonal_(gate)
    fused = torch.linalg.svdvals(model.lstm.weight_hh_l0.detach().double())
    assert fused[0].item() == pytest.approx(2.0, abs=1e-5)  # the fused matrix reads 2
    d = diagnose(model, torch.randn(4, 5, 8))
    p = _params(d)["lstm.weight_hh_l0"]
    assert p.blocks == 4
    for value in (p.sigma_max, p.sigma_min, p.condition):
        assert value == pytest.approx(1.0, abs=1e-5)
    ih = _params(d)["lstm.weight_ih_l0"]  # (4H, 8): a random matrix per gate
    assert ih.blocks == 4
    assert (ih.sigma_max, ih.sigma_min) == pytest.approx(_extremes(model.lstm.weight_ih_l0, 4))
    assert ih.condition == pytest.approx(ih.sigma_max / ih.sigma_min)
    lines = d.table().splitlines()
    [row] = [line.split() for line in lines if line.startswith("lstm.weight_hh_l0 ")]
    assert row[3:7] == ["4", "1", "1", "1"]  # blocks, s_max, s_min, cond (grads: no loss)
    assert any(line.startswith("blocks > 1 (gates, q/k/v, groups): s_max") for line in lines)


def test_attention_in_proj_is_read_per_q_k_v_block_and_grouped_conv_per_group():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(H, 2, 32, dropout=0.0, batch_first=True)
    p = _params(diagnose(layer, torch.randn(4, 5, H)))["self_attn.in_proj_weight"]
    assert p.blocks == 3
    assert (p.sigma_max, p.sigma_min) == pytest.approx(_extremes(layer.self_attn.in_proj_weight, 3))
    conv = nn.Conv2d(4, 8, 3, groups=2)  # (8, 2, 3, 3): two groups of (4, 18)
    p = _params(diagnose(conv, torch.randn(4, 4, 6, 6)))["weight"]
    assert p.blocks == 2
    assert (p.sigma_max, p.sigma_min) == pytest.approx(_extremes(conv.weight, 2), rel=1e-12)
    linear = nn.Linear(6, 5)
    p = _params(diagnose(linear, torch.randn(4, 6)))["weight"]
    assert p.blocks == 1 and (p.sigma_max, p.sigma_min) == pytest.approx(
        _extremes(linear.weight, 1)
    )
