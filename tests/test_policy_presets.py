"""Presets against the real thing: PyTorch's fresh modules and Hugging Face's own init."""

import math

import pytest
import torch
from torch import nn

from initlab.policy import plan, preset_rules

# Moment test (STYLE.md): |s / sigma - 1| <= 5 c / sqrt(n); c = 0.707 normal, 0.447 uniform,
# 0.584 normal truncated at 2 sigma (0.707 bounds any other cut: truncation only lowers the
# kurtosis). Tensors under 64 elements are checked only exactly (constants) or by bounds,
# since 5 c / 8 would exceed 40 %.
C = {"normal": 0.707, "uniform": 0.447, "truncated_normal": 0.584}


def truncated_std(std: float, bound: float) -> float:
    """Std of N(0, std^2) cut to +-bound: std sqrt(1 - 2 b phi(b) / (2 Phi(b) - 1)), b =
    bound / std (0.8796 std at b = 2)."""
    b = bound / std
    mass = math.erf(b / math.sqrt(2))  # 2 Phi(b) - 1
    return std * math.sqrt(1 - 2 * b * math.exp(-b * b / 2) / math.sqrt(2 * math.pi) / mass)


def agrees(row, tensor: torch.Tensor, what: str) -> None:
    """Assert that ``tensor`` (from the reference or from apply) fits ``row``'s distribution."""
    t = tensor.detach().float()
    if row.zero_rows:
        assert not t[list(row.zero_rows)].any(), f"{what} {row.name}: padding row not zero"
        t = t[[i for i in range(t.shape[0]) if i not in row.zero_rows]]
    if row.distribution == "constant":
        expected = torch.cat([torch.full((t.numel() // len(row.value),), v) for v in row.value])
        assert torch.equal(t.flatten(), expected), f"{what} {row.name}: not {row.value}"
        return
    if row.distribution == "uniform":
        assert t.abs().max() <= row.bound * (1 + 1e-6), f"{what} {row.name}: outside bound"
    if row.distribution == "orthogonal":
        return
    if row.distribution == "truncated_normal":
        assert t.abs().max() <= row.bound * (1 + 1e-6), f"{what} {row.name}: outside bound"
        sigma = truncated_std(row.std, row.bound)
        c = C["truncated_normal"] if row.bound == pytest.approx(2 * row.std) else C["normal"]
    else:
        sigma, c = row.std, C[row.distribution]
    if t.numel() >= 64:
        tolerance = 5 * c / math.sqrt(t.numel())
        assert abs(t.std().item() / sigma - 1) <= tolerance, (
            f"{what} {row.name}: std {t.std().item():.5g} vs plan {sigma:.5g}"
        )


def check_preset(reference: nn.Module, fresh: nn.Module, policy: str, **options) -> list:
    p = plan(fresh, policy, **options)
    p.apply(seed=0)
    ref = dict(reference.named_parameters())
    for row in p.rows:
        assert row.distribution not in {"none"}, row
        if row.distribution == "keep":
            continue
        agrees(row, ref[row.name], "reference")
        agrees(row, fresh.get_parameter(row.name), "applied")
    return p.rows


TORCH_MODULES = {
    "linear": lambda: nn.Linear(300, 200),
    "conv": lambda: nn.Conv2d(16, 32, 5),
    "grouped_conv": lambda: nn.Conv2d(32, 64, 3, groups=8),
    "conv_transpose": lambda: nn.ConvTranspose2d(32, 16, 4, groups=2),
    "lstm": lambda: nn.LSTM(50, 64, num_layers=2),
    "gru": lambda: nn.GRU(50, 64),
    "lstm_cell": lambda: nn.LSTMCell(50, 64),
    "embedding": lambda: nn.Embedding(500, 32, padding_idx=7),
    "mha": lambda: nn.MultiheadAttention(64, 4, add_bias_kv=True),
    "mha_kdim": lambda: nn.MultiheadAttention(64, 4, kdim=32, vdim=48),
    "encoder_layer": lambda: nn.TransformerEncoderLayer(64, 4, 128),
    "norms": lambda: nn.Sequential(nn.LayerNorm(64), nn.BatchNorm2d(16), nn.GroupNorm(4, 16)),
    "own_init": lambda: nn.Sequential(nn.Bilinear(8, 9, 10), nn.PReLU()),
    # its own reset draws Xavier for every matrix inside it
    "transformer": lambda: nn.Transformer(64, 4, 1, 1, 128, batch_first=True),
}


@pytest.mark.parametrize("name", sorted(TORCH_MODULES))
def test_torch_preset_matches_freshly_constructed_modules(name):
    torch.manual_seed(0)
    reference = TORCH_MODULES[name]()
    rows = check_preset(reference, TORCH_MODULES[name](), "torch")
    if name == "linear":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
        assert [r.bound for r in rows] == pytest.approx([1 / math.sqrt(300)] * 2)
    if name == "conv_transpose":  # torch reads dim 1 of (in, out/groups, k, k): 8 * 16
        assert rows[0].bound == pytest.approx(1 / math.sqrt(8 * 16))
    if name == "lstm":
        assert [r.bound for r in rows] == pytest.approx([1 / 8] * 8)  # 1 / sqrt(hidden)
    if name == "own_init":
        assert {r.distribution for r in rows} == {"keep"}


def test_torch_preset_reinitializes_like_reset_parameters():
    """Same per-parameter law as calling reset_parameters, and seeded like every plan."""
    a, b = nn.Bilinear(8, 9, 10), nn.Bilinear(8, 9, 10)
    plan(a, "torch").apply(seed=3)
    plan(b, "torch").apply(seed=3)
    assert torch.equal(a.weight, b.weight)
    assert a.weight.abs().max() <= 1 / math.sqrt(8)


def small_gpt2():
    # skipped here, not at module level, so the transformers-free presets always run
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_embd=64, n_layer=2, n_head=2, vocab_size=300, n_positions=64, initializer_range=0.02
    )
    return transformers.GPT2Model(config)


def small_bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=300,
        max_position_embeddings=64,
    )
    return transformers.BertModel(config)


def test_gpt2_preset_matches_hugging_face_init():
    torch.manual_seed(0)
    rows = {r.name: r for r in check_preset(small_gpt2(), small_gpt2(), "gpt2")}
    # residual projections: 0.02 / sqrt(2 n_layer), both c_proj of each of the 2 blocks
    for name in ("h.0.attn.c_proj.weight", "h.1.mlp.c_proj.weight"):
        assert rows[name].std == pytest.approx(0.02 / math.sqrt(4))
    assert rows["h.0.attn.c_attn.weight"].std == 0.02 and rows["wte.weight"].std == 0.02
    assert {r.distribution for r in rows.values()} == {"normal", "constant"}


def test_bert_preset_matches_hugging_face_init():
    torch.manual_seed(0)
    rows = {r.name: r for r in check_preset(small_bert(), small_bert(), "bert")}
    assert rows["embeddings.word_embeddings.weight"].zero_rows == (0,)  # pad_token_id
    assert rows["pooler.dense.weight"].std == 0.02
    assert all(r.std in (0.02, 0.0) for r in rows.values())


def test_keras_preset_formulas():
    lstm = nn.LSTM(30, 16)
    rows = {r.name: r for r in plan(lstm, "keras").apply(seed=0).rows}
    # Glorot uniform on the whole fused kernel: fans (30, 4 * 16)
    assert rows["weight_ih_l0"].bound == pytest.approx(math.sqrt(6 / (30 + 64)))
    w = lstm.weight_hh_l0.detach()  # orthogonal (64, 16) as a whole: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(16), atol=1e-5)
    assert torch.equal(lstm.bias_ih_l0[16:32], torch.ones(16)) and not lstm.bias_hh_l0.any()
    emb = plan(nn.Embedding(10, 4), "keras").rows[0]
    assert (emb.distribution, emb.bound) == ("uniform", 0.05)


def test_flax_preset_formulas():
    net = nn.Sequential(nn.Linear(400, 300), nn.Embedding(100, 256))
    p = plan(net, "flax").apply(seed=0)
    dense, embed = p["0.weight"], p["1.weight"]
    # LeCun normal truncated at 2 sigma with actual std 1/sqrt(fan_in) (JAX variance_scaling)
    assert dense.distribution == "truncated_normal"
    assert dense.std * 0.87962566103423978 == pytest.approx(1 / math.sqrt(400))
    assert net[0].weight.abs().max() <= dense.bound
    agrees(dense, net[0].weight, "applied")
    assert embed.std == pytest.approx(1 / math.sqrt(256))  # flax Embed: 1/sqrt(features)
    assert not net[0].bias.any()


@pytest.mark.parametrize("policy", ["auto", "torch", "gpt2", "bert", "keras", "flax"])
def test_every_preset_covers_a_mixed_model(policy):
    model = nn.ModuleDict(
        {
            "emb": nn.Embedding(20, 8, padding_idx=0),
            "lstm": nn.LSTM(8, 8),
            "gru": nn.GRU(8, 8),
            "mha": nn.MultiheadAttention(8, 2, add_bias_kv=True),
            "conv": nn.Conv1d(8, 8, 3, groups=2),
            "deconv": nn.ConvTranspose1d(8, 4, 2),
            "norm": nn.LayerNorm(8),
            "head": nn.Linear(8, 3),
        }
    )
    p = plan(model, policy).apply(seed=0)
    assert p.uncovered == []
    assert all(torch.isfinite(t).all() for t in model.parameters())
    assert not model.emb.weight[0].any()


def test_preset_rules_are_printable_data():
    rules = preset_rules("auto", zero_init_residual=True)
    assert rules[0].name == "residual norm = 0"
    data = rules[0].to_dict()
    assert data["kinds"] == ["norm"] and data["init"] == "constant"
    assert "ReLU family: He" in "\n".join(map(str, rules))


def keras_compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """keras.src.initializers.random_initializers.compute_fans, restated: the dims before the
    last two of a kernel are a receptive field."""
    if len(shape) == 2:
        return shape
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@pytest.mark.parametrize("kdim", [None, 24])
def test_keras_preset_reads_attention_fans_as_keras_multi_head_attention(kdim):
    """keras.layers.MultiHeadAttention(num_heads=H, key_dim=E/H) projects with EinsumDense
    kernels (in, H, E/H) for q, k, v and (H, E/H, E) for the output, glorot_uniform on those
    3-D shapes: limit sqrt(6 / (fan_in + fan_out)) with Keras's fans, not those of (E, in)."""
    embed, heads = 64, 4
    mha = nn.MultiheadAttention(embed, heads, kdim=kdim, vdim=kdim)
    rows = {r.name: r for r in plan(mha, "keras").apply(seed=0).rows}
    source = kdim or embed
    names = ("in_proj_weight",) if kdim is None else ("q_proj_weight", "k_proj_weight")
    for name in names:
        width = embed if name.startswith(("in", "q")) else source
        fan_in, fan_out = keras_compute_fans((width, heads, embed // heads))
        assert rows[name].bound == pytest.approx(math.sqrt(6 / (fan_in + fan_out)))
        assert mha.get_parameter(name).abs().max() <= rows[name].bound
    fan_in, fan_out = keras_compute_fans((heads, embed // heads, embed))
    assert rows["out_proj.weight"].bound == pytest.approx(math.sqrt(6 / (fan_in + fan_out)))
    agrees(rows["out_proj.weight"], mha.out_proj.weight, "applied")


def test_keras_and_flax_presets_give_prelu_their_slope():
    # keras.layers.PReLU: alpha_initializer="zeros"; flax.linen.PReLU: negative_slope_init=0.01
    for policy, value in (("keras", 0.0), ("flax", 0.01)):
        prelu = nn.PReLU(3)
        plan(prelu, policy).apply(seed=0)
        assert torch.equal(prelu.weight, torch.full((3,), value)), policy


class _ScaledLinear(nn.Module):
    """A container with a bare ``nn.Parameter`` (no layer owns it) beside a Linear."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.full((3,), 0.5))

    def forward(self, x):
        return self.fc(x) * self.scale


@pytest.mark.parametrize("policy", ["torch", "auto", "keras", "flax", "gpt2", "bert"])
def test_bare_parameter_is_uncovered_under_every_preset(policy):
    # The torch preset's catch-all "own reset_parameters" rule does not apply to a parameter
    # whose module has no reset_parameters: it is uncovered there, as under every preset.
    model = _ScaledLinear()
    with pytest.warns(UserWarning, match=r"no rule covers 1 parameter\(s\).*'scale'"):
        p = plan(model, policy)
    assert p.uncovered == ["scale"]
    assert p["scale"].distribution == "none"
    assert p["fc.weight"].distribution != "none"
    p.apply(seed=0)
    assert torch.equal(model.scale.detach(), torch.full((3,), 0.5))  # left untouched


def test_user_keep_rule_on_bare_parameter_still_raises():
    from initlab.policy import Rule

    with pytest.raises(ValueError, match=r"keeps the own init of 'scale'.*_ScaledLinear"):
        plan(_ScaledLinear(), "torch", rules=[Rule("mine", "keep", param="scale")])
