import dataclasses

import pytest
import torch
from torch import nn

from initlab import compute_fans, layer_fans


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((20, 10), {}, (10, 20)),
        ((64, 3, 7, 7), {}, (3 * 49, 64 * 49)),
        ((5, 5, 3, 8), {"in_axis": -2, "out_axis": -1}, (75, 200)),  # Flax (*kernel, in, out)
        ((4, 30, 20), {"in_axis": 2, "out_axis": 1, "batch_axis": 0}, (20, 30)),
    ],
)
def test_compute_fans_hand_computed(shape, kwargs, expected):
    assert compute_fans(shape, **kwargs) == expected
    assert compute_fans(torch.empty(shape, device="meta"), **kwargs) == expected


def test_compute_fans_rejects_bias():
    with pytest.raises(ValueError, match="bias rule"):
        compute_fans((10,))


def test_compute_fans_rejects_overlap_and_range():
    with pytest.raises(ValueError, match="must not overlap"):
        compute_fans((3, 4), in_axis=0, out_axis=0)
    with pytest.raises(ValueError, match="in_axis must be in"):
        compute_fans((3, 4), in_axis=5)


def test_compute_fans_rejects_repeated_axis():
    # (1, -1) name the same axis of a 2-D shape; counting it twice would square the fan
    with pytest.raises(ValueError, match="an axis is repeated"):
        compute_fans((3, 4), in_axis=(1, -1), out_axis=0)


# Hand-computed fans: (module, param_name, fan_in, fan_out, blocks).
LAYER_CASES = [
    (nn.Linear(10, 20), "weight", 10, 20, 1),
    (nn.Bilinear(3, 4, 5), "weight", 3 * 4, 5 * 4, 1),
    # Conv: fan_in = (in/groups)*K, fan_out = (out/groups)*K, one block per group
    (nn.Conv1d(6, 8, 5), "weight", 6 * 5, 8 * 5, 1),
    (nn.Conv2d(8, 12, (3, 5), groups=4), "weight", 2 * 15, 3 * 15, 4),
    (nn.Conv2d(32, 64, 3, groups=32), "weight", 1 * 9, 2 * 9, 32),  # depthwise, multiplier 2
    (nn.Conv3d(4, 6, (2, 3, 4), groups=2), "weight", 2 * 24, 3 * 24, 2),
    # ConvTranspose, stored (in, out/groups, *kernel): same per-unit counts as a conv
    (nn.ConvTranspose1d(6, 8, 5), "weight", 6 * 5, 8 * 5, 1),
    (nn.ConvTranspose2d(8, 12, (3, 5), groups=4, stride=2), "weight", 2 * 15, 3 * 15, 4),
    (nn.ConvTranspose3d(4, 6, (2, 3, 4), groups=2), "weight", 2 * 24, 3 * 24, 2),
    # Recurrent: blocks = gates (RNN 1, GRU 3, LSTM 4) of (hidden, input of the layer)
    (nn.RNN(7, 11), "weight_ih_l0", 7, 11, 1),
    (nn.RNN(7, 11, nonlinearity="relu"), "weight_hh_l0", 11, 11, 1),
    (nn.GRU(7, 11, num_layers=2), "weight_ih_l1", 11, 11, 3),
    (nn.GRU(7, 11, bidirectional=True), "weight_hh_l0_reverse", 11, 11, 3),
    (nn.LSTM(7, 11), "weight_ih_l0", 7, 11, 4),
    (nn.LSTM(7, 11, num_layers=2, bidirectional=True), "weight_ih_l1_reverse", 22, 11, 4),
    (nn.LSTM(7, 11, num_layers=2, bidirectional=True, proj_size=3), "weight_ih_l1", 6, 11, 4),
    (nn.LSTM(7, 11, proj_size=3), "weight_hh_l0", 3, 11, 4),
    (nn.LSTM(7, 11, proj_size=3), "weight_hr_l0", 11, 3, 1),
    (nn.RNNCell(7, 11), "weight_ih", 7, 11, 1),
    (nn.GRUCell(7, 11), "weight_hh", 11, 11, 3),
    (nn.LSTMCell(7, 11), "weight_ih", 7, 11, 4),
    # Attention: packed q, k, v blocks of (E, E); separate projections when kdim/vdim differ
    (nn.MultiheadAttention(16, 4), "in_proj_weight", 16, 16, 3),
    (nn.MultiheadAttention(16, 4), "out_proj.weight", 16, 16, 1),
    (nn.MultiheadAttention(16, 4, kdim=5, vdim=6), "q_proj_weight", 16, 16, 1),
    (nn.MultiheadAttention(16, 4, kdim=5, vdim=6), "k_proj_weight", 5, 16, 1),
    (nn.MultiheadAttention(16, 4, kdim=5, vdim=6), "v_proj_weight", 6, 16, 1),
    # Embedding (num, dim): one-hot inputs, fan_in = num
    (nn.Embedding(100, 7), "weight", 100, 7, 1),
    (nn.EmbeddingBag(50, 3), "weight", 50, 3, 1),
    # nested names are read by the owning submodule
    (nn.Sequential(nn.Linear(2, 3), nn.Conv2d(3, 9, 3, groups=3)), "1.weight", 9, 27, 3),
    (nn.TransformerEncoderLayer(8, 2, 32), "self_attn.in_proj_weight", 8, 8, 3),
    # no layer rule: compute_fans on (out, in, *rest)
    (nn.ParameterDict({"w": nn.Parameter(torch.empty(4, 3, 2))}), "w", 6, 8, 1),
]


@pytest.mark.parametrize(
    ("module", "name", "fan_in", "fan_out", "blocks"),
    LAYER_CASES,
    ids=[f"{type(m).__name__}-{n}" for m, n, *_ in LAYER_CASES],
)
def test_layer_fans_hand_computed(module, name, fan_in, fan_out, blocks):
    fans = layer_fans(module, name)
    assert (fans.fan_in, fans.fan_out, fans.blocks) == (fan_in, fan_out, blocks)
    assert fans.fans == (fan_in, fan_out)
    assert fans.note
    # the blocks tile dim 0 exactly
    assert dict(module.named_parameters())[name].shape[0] % blocks == 0


def test_layer_fans_differs_from_naive_reading_where_layout_differs():
    # ConvTranspose2d(8, 12, 3) stores (8, 12, 3, 3); the naive (out, in) reading swaps the fans
    weight = nn.ConvTranspose2d(8, 12, 3).weight
    assert compute_fans(weight) == (12 * 9, 8 * 9)
    assert layer_fans(nn.ConvTranspose2d(8, 12, 3), "weight").fans == (8 * 9, 12 * 9)
    # a depthwise conv (32, 1, 3, 3): the naive fan_out 32*9 is 32 times too large
    assert compute_fans(nn.Conv2d(32, 32, 3, groups=32).weight) == (9, 288)
    assert layer_fans(nn.Conv2d(32, 32, 3, groups=32), "weight").fans == (9, 9)


def test_layer_fans_notes_explain_layout():
    assert "(in, out/groups, *kernel)" in layer_fans(nn.ConvTranspose2d(4, 4, 3), "weight").note
    assert "(i, f, g, o)" in layer_fans(nn.LSTM(3, 4), "weight_ih_l0").note
    assert "(q, k, v)" in layer_fans(nn.MultiheadAttention(4, 1), "in_proj_weight").note
    assert "compute_fans" in layer_fans(nn.ParameterList([torch.ones(2, 3)]), "0").note


def test_layer_fans_is_frozen():
    fans = layer_fans(nn.Linear(2, 3), "weight")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fans.fan_in = 5


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (nn.Linear(3, 4), "bias"),
        (nn.LSTM(3, 4), "bias_ih_l0"),
        (nn.MultiheadAttention(8, 2), "in_proj_bias"),
        (nn.MultiheadAttention(8, 2, add_bias_kv=True), "bias_k"),  # 3-D, but a bias
        (nn.LayerNorm(5), "weight"),
    ],
)
def test_layer_fans_rejects_biases(module, name):
    with pytest.raises(ValueError, match=f"param_name='{name}'.*has no fans.*bias rule"):
        layer_fans(module, name)


def test_layer_fans_unknown_name_lists_parameters():
    with pytest.raises(ValueError, match=r"\['bias', 'weight'\]; got param_name='wieght' "):
        layer_fans(nn.Linear(3, 4), "wieght")
    with pytest.raises(ValueError, match="did you mean 'weight_ih_l0'"):
        layer_fans(nn.LSTM(3, 4), "weight_ih_l")


def test_layer_fans_rejects_non_module_and_lazy():
    with pytest.raises(TypeError, match="module must be a torch.nn.Module; got Tensor"):
        layer_fans(torch.ones(2, 2), "weight")
    with pytest.raises(ValueError, match="uninitialized lazy parameter"):
        layer_fans(nn.LazyLinear(4), "weight")


def test_layer_fans_rejects_inconsistent_recurrent_weight():
    lstm = nn.LSTM(3, 4)
    lstm.weight_ih_l0 = nn.Parameter(torch.empty(12, 3))  # 3 blocks of 4, not 4 gates
    with pytest.raises(ValueError, match=r"expected dim 0 = 4 gates \* hidden_size 4 = 16"):
        layer_fans(lstm, "weight_ih_l0")
