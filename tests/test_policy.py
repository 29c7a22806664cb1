"""The auto policy on a zoo of architectures, plan/apply mechanics, overrides, determinism."""

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.policy import InitPlan, Rule, init_model, plan

# Moment tests (STYLE.md): |s / sigma - 1| <= 5 c / sqrt(n), c = 0.707 (normal), 0.447 (uniform).
NORMAL_C, UNIFORM_C = 0.707, 0.447


def close_std(t: torch.Tensor, sigma: float, c: float) -> bool:
    return abs(t.float().std().item() / sigma - 1) <= 5 * c / math.sqrt(t.numel())


# ---- the zoo --------------------------------------------------------------------------------


def mlp(act):
    return nn.Sequential(nn.Linear(16, 32), act, nn.Linear(32, 32), act, nn.Linear(32, 10))


def cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, groups=4), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 2, stride=2, groups=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )  # fmt: skip


class ResBlock(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = ResBlock()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.block(F.relu(self.stem(x))).mean((2, 3)))


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(6, 12, num_layers=2, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


class GPTBlock(nn.Module):
    """A GPT-style block written with functional calls only (no activation modules)."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):  # (B, T, C)
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab=50, d=16):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(8, d)
        self.h = nn.ModuleList([GPTBlock(d), GPTBlock(d)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


HE, XAVIER, OUT = "ReLU family: He", "tanh/sigmoid family: Xavier", "output layer: Xavier"
NONE, OTHER, SELU = (
    "no activation: Xavier",
    "other activation: He with its gain",
    "SELU: LeCun normal",
)
B0, BRELU, BOUT = "bias = 0", "bias before ReLU", "output bias"
N1, N0 = "norm weight = 1", "norm bias = 0"
IH, HH = "recurrent input: Xavier per gate", "recurrent hidden: orthogonal per gate"
RB, FB = "recurrent bias = 0", "LSTM forget bias"
QKV, AB, AO = "attention q/k/v: Xavier per block", "attention bias = 0", "attention output: Xavier"

ZOO = {
    "mlp_relu": (lambda: mlp(nn.ReLU()), (4, 16), [HE, BRELU, HE, BRELU, OUT, BOUT]),
    "mlp_tanh": (lambda: mlp(nn.Tanh()), (4, 16), [XAVIER, B0, XAVIER, B0, OUT, BOUT]),
    "mlp_selu": (lambda: mlp(nn.SELU()), (4, 16), [SELU, B0, SELU, B0, OUT, BOUT]),
    "cnn": (cnn, (2, 3, 8, 8), [HE, BRELU, HE, BRELU, HE, BRELU, OUT, BOUT]),
    # conv2 is followed by bn2, the residual add, then the ReLU: He
    "resnet": (ResNet, (2, 3, 6, 6), [HE, BRELU, HE, N1, N0, HE, N1, N0, OUT, BOUT]),
    "lstm": (lambda: Recurrent(nn.LSTM), (3, 5, 6), [IH, HH, FB, RB] * 2 + [OUT, BOUT]),
    "gru": (lambda: Recurrent(nn.GRU), (3, 5, 6), [IH, HH, RB, RB] * 2 + [OUT, BOUT]),
    "encoder": (
        Encoder,
        (2, 5, 16),
        [QKV, AB, AO, AB, HE, BRELU, NONE, B0, N1, N0, N1, N0] * 2 + [OUT, BOUT],
    ),
    "gpt": (
        GPT,
        None,
        # wte is tied to lm_head; wpe has its width and is summed with it
        ["tied embedding: N(0, 1/dim)", "embedding beside a tied one: N(0, 1/dim)"]
        + [N1, N0, N1, N0, NONE, B0, NONE, B0, OTHER, B0, NONE, B0] * 2
        + [N1, N0],
    ),
}


def example(name):
    shape = ZOO[name][1]
    g = torch.Generator().manual_seed(0)
    return (
        torch.randint(0, 50, (2, 8), generator=g)
        if shape is None
        else torch.randn(shape, generator=g)
    )


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_rule_per_parameter_is_the_guides(name):
    build, _, expected = ZOO[name]
    p = plan(build(), example_input=example(name))
    assert p.source == "trace"
    assert [r.rule for r in p.rows] == expected
    assert p.uncovered == []


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_forward_backward_at_init(name):
    torch.manual_seed(0)
    model = ZOO[name][0]()
    x = example(name)
    init_model(model, example_input=x, seed=1)
    out = model(x)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gets no gradient signal"


def test_gpt_gelu_functional_and_tied_embedding():
    p = plan(GPT(), example_input=example("gpt"))
    assert p["h.0.c_fc.weight"].activation == "gelu"
    assert p["wte.weight"].tied == ("lm_head.weight",)
    assert p["lm_head.weight"] is p["wte.weight"]  # one row, found by either name
    assert len(p.rows) == len(list(GPT().parameters()))


# Deep plain MLPs: unit-variance input, 20 hidden layers of width 512, RMS of the last hidden
# pre-activation. Where the second-moment map q -> g^2 E[phi(sqrt(q) z)^2] has slope chi <= 1
# at its fixed point q = 1 (ReLU family: 1, tanh 0.46, SELU, ELU 0.89), finite-width noise
# (relative variance about (E[phi^4]/E[phi^2]^2 - 1)/width <= 5/512 per layer for ReLU) adds up
# to a log-RMS std of about sqrt(20 * 5/512)/2 = 0.22, so the band [0.5, 2] is > 3 sigma wide.
# GELU, SiLU and Mish have chi = 1.14, 1.17, 1.08: their fixed point is unstable and noise is
# amplified, so their band is [1/64, 64]. A missing gain (He's sqrt(2) for SiLU, or gain 1)
# shrinks q by >= 2x per layer at small q and leaves both bands (2^-10 after 20 layers).
DEEP = {
    "relu": (nn.ReLU, 2.0),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), 2.0),
    "tanh": (nn.Tanh, 2.0),
    "sigmoid": (nn.Sigmoid, 2.0),
    "selu": (nn.SELU, 2.0),
    "elu": (nn.ELU, 2.0),
    "gelu": (nn.GELU, 64.0),
    "silu": (nn.SiLU, 64.0),
    "mish": (nn.Mish, 64.0),
}


@pytest.mark.parametrize("act", sorted(DEEP))
def test_deep_mlp_keeps_the_signal_within_band(act):
    make, band = DEEP[act]
    layers = [m for _ in range(20) for m in (nn.Linear(512, 512), make())]
    net = nn.Sequential(*layers, nn.Linear(512, 10))
    init_model(net, seed=0)
    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = net[:-2](x)  # pre-activation of the last hidden layer
    rms = z.pow(2).mean().sqrt().item()
    assert 1 / band <= rms <= band, rms


# ---- distributions written by apply --------------------------------------------------------


def test_he_and_xavier_std_are_exact_formulas():
    net = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 200), nn.Tanh(),
                        nn.Linear(200, 100))  # fmt: skip
    p = init_model(net, seed=3)
    assert p["0.weight"].std == pytest.approx(math.sqrt(2 / 400))  # He, fan_in = 400
    gain_tanh = initlab.compute_gain("tanh")
    assert p["2.weight"].bound == pytest.approx(gain_tanh * math.sqrt(6 / (300 + 200)))
    assert p["4.weight"].bound == pytest.approx(math.sqrt(6 / (200 + 100)))  # output: Xavier
    assert close_std(net[0].weight, math.sqrt(2 / 400), NORMAL_C)
    assert net[2].weight.abs().max() <= p["2.weight"].bound
    assert close_std(net[2].weight, gain_tanh * math.sqrt(2 / 500), UNIFORM_C)
    assert torch.equal(net[0].bias, torch.zeros(300))


def test_lstm_blocks_orthogonal_xavier_and_forget_bias():
    lstm = nn.LSTM(30, 64)
    init_model(lstm, seed=0)
    for block in lstm.weight_hh_l0.detach().chunk(4):  # (64, 64) per gate
        assert torch.allclose(block @ block.T, torch.eye(64), atol=1e-5)
    # Xavier per gate block: fans (30, 64), not (30, 256) of the fused matrix
    bound = math.sqrt(6 / (30 + 64))
    assert lstm.weight_ih_l0.abs().max() <= bound
    assert close_std(lstm.weight_ih_l0, bound / math.sqrt(3), UNIFORM_C)
    i, f, g, o = lstm.bias_ih_l0.detach().chunk(4)
    assert torch.equal(f, torch.ones(64)) and not (i.any() or g.any() or o.any())
    assert not lstm.bias_hh_l0.any()  # the forget bias is set once: b_ih + b_hh = 1


def test_gru_recurrent_blocks_orthogonal():
    gru = nn.GRU(8, 16)
    init_model(gru, seed=0)
    for block in gru.weight_hh_l0.detach().chunk(3):
        assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)


def test_embedding_padding_row_stays_zero():
    emb = nn.Embedding(200, 64, padding_idx=3)
    p = init_model(emb, seed=0)
    assert p["weight"].zero_rows == (3,)
    assert not emb.weight[3].any()
    rest = torch.cat([emb.weight[:3], emb.weight[4:]])
    assert close_std(rest, 1.0, NORMAL_C)


def test_options_relu_bias_classifier_bias_forget_bias_fan_out():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    p = init_model(net, seed=0, relu_bias=0.01, classifier_bias=-2.0, mode="fan_out")
    assert torch.equal(net[0].bias, torch.full((8,), 0.01))
    assert torch.equal(net[3].bias, torch.full((2,), -2.0))
    assert p["0.weight"].std == pytest.approx(math.sqrt(2 / (8 * 9)))  # fan_out = 8 * 3 * 3
    lstm = nn.LSTM(4, 4)
    init_model(lstm, seed=0, forget_bias=2.0)
    assert torch.equal(lstm.bias_ih_l0[4:8], torch.full((4,), 2.0))
    lecun = plan(net, output_init="lecun")["3.weight"]
    assert lecun.rule == "output layer: LeCun normal" and lecun.std == pytest.approx(8**-0.5)


def test_zero_init_residual_needs_trace_and_zeroes_last_norm():
    model = ResNet()
    p = init_model(model, example_input=example("resnet"), seed=0, zero_init_residual=True)
    assert p["block.bn2.weight"].rule == "residual norm = 0"
    assert not model.block.bn2.weight.any()
    assert torch.equal(model.block.bn1.weight, torch.ones(8))


def test_zero_init_residual_on_a_pre_norm_transformer_warns_that_it_changed_nothing():
    # Before: GPT-2's branches end in projections, so no row changed, and nothing said so.
    message = (
        r"zero_init_residual=True changed no parameter: no traced residual branch ends in a "
        r"norm layer \(a pre-norm transformer"
    )
    with pytest.warns(UserWarning, match=message):
        p = plan(GPT(), example_input=example("gpt"), zero_init_residual=True)
    assert p.rows == plan(GPT(), example_input=example("gpt")).rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the option fires on a ResNet: no warning
        plan(ResNet(), example_input=example("resnet"), zero_init_residual=True)


def test_scale_residual_preempted_by_the_preset_warns_naming_the_branch_ends():
    message = (
        r"scale_residual=True changed no parameter: policy 'bert' gives the branch-ending "
        r"parameters \(\['h.0.c_proj.weight', 'h.0.mlp_proj.weight', 'h.1.c_proj.weight'\]\)"
    )
    with pytest.warns(UserWarning, match=message):
        plan(GPT(), "bert", example_input=example("gpt"), scale_residual=True)


def test_scale_residual_counts_branches():
    p = plan(GPT(), example_input=example("gpt"), scale_residual=True)
    scaled = [r.name for r in p.rows if r.rule.startswith("residual projection")]
    assert scaled == [f"h.{i}.{n}.weight" for i in (0, 1) for n in ("c_proj", "mlp_proj")]
    row = p["h.0.c_proj.weight"]  # Xavier (16, 16) / sqrt(4 branches)
    assert row.bound == pytest.approx(math.sqrt(6 / 32) / 2)


# ---- plan mechanics ------------------------------------------------------------------------


def test_structure_fallback_says_so_in_reasons():
    p = plan(mlp(nn.ReLU()))
    assert p.source == "structure"
    assert "no example_input" in p["0.weight"].reason
    assert "activations from structure" in p.table()


def test_table_has_one_line_per_parameter():
    p = plan(Recurrent(nn.LSTM))
    lines = p.table().splitlines()
    assert len(lines) == 1 + len(p.rows) + 1
    assert lines[1].startswith("rnn.weight_ih_l0") and "x4" in lines[1]


def test_json_round_trip_gives_identical_weights():
    a, b = Encoder(), Encoder()
    p = plan(a, example_input=example("encoder"))
    data = json.loads(json.dumps(p.to_dict()))
    q = InitPlan.from_dict(data, b)
    assert q.rows == p.rows
    p.apply(seed=7)
    q.apply(seed=7)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_from_dict_rejects_other_model():
    data = plan(nn.Linear(3, 4)).to_dict()
    with pytest.raises(ValueError, match=r"plan row 'weight' with shape \(4, 3\)"):
        InitPlan.from_dict(data, nn.Linear(3, 5))
    with pytest.raises(ValueError, match="not an initlab plan"):
        InitPlan.from_dict({"rows": []}, nn.Linear(3, 4))


def test_same_seed_same_weights_and_name_keyed_streams():
    def build(order):
        torch.manual_seed(len(order))  # different global RNG state per build
        net = nn.Module()
        for name in order:
            net.add_module(name, nn.Linear(5, 5))
        return net

    a, b = build(["x", "y"]), build(["y", "x", "z"])
    init_model(a, seed=11)
    init_model(b, seed=11)
    # construction order and an extra layer change nothing for the others
    assert torch.equal(a.x.weight, b.x.weight) and torch.equal(a.y.weight, b.y.weight)
    before = a.x.weight.clone()
    init_model(a, seed=11)
    assert torch.equal(a.x.weight, before)
    init_model(a, seed=12)
    assert not torch.equal(a.x.weight, before)
    assert not torch.equal(b.x.weight, b.z.weight)  # each name its own stream


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_weights_on_every_device():
    cpu, gpu = Recurrent(nn.LSTM), Recurrent(nn.LSTM).cuda()
    init_model(cpu, seed=2)
    init_model(gpu, seed=2)
    for (name, x), y in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        assert torch.equal(x, y.cpu()), name


def test_generator_gives_reproducible_base_seed():
    a, b = nn.Linear(6, 6), nn.Linear(6, 6)
    plan(a).apply(generator=torch.Generator().manual_seed(5))
    plan(b).apply(generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.weight, b.weight)


def test_only_plans_and_touches_only_named_parameters():
    net = mlp(nn.ReLU())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    p = plan(net, only=["2.weight"]).apply(seed=0)
    assert [r.name for r in p.rows] == ["2.weight"]
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["2.weight"]
    with pytest.raises(ValueError, match=r"only names '2.wieght'.*did you mean '2.weight'"):
        plan(net, only=["2.wieght"])


def test_frozen_parameters_skipped_unless_asked():
    net = mlp(nn.ReLU())
    net[0].weight.requires_grad_(False)
    before = net[0].weight.clone()
    p = init_model(net, seed=0)
    assert p["0.weight"].distribution == "skip" and torch.equal(net[0].weight, before)
    p = init_model(net, seed=0, include_frozen=True)
    assert p["0.weight"].rule == HE and not torch.equal(net[0].weight, before)


def test_meta_model_plans_and_applies_after_to_empty():
    with torch.device("meta"):
        meta = Recurrent(nn.LSTM)
    p = plan(meta)
    with pytest.raises(ValueError, match=r"meta device: call model.to_empty"):
        p.apply(seed=0)
    meta.to_empty(device="cpu")
    p.apply(seed=4)
    real = Recurrent(nn.LSTM)
    init_model(real, seed=4)
    for (name, x), y in zip(meta.state_dict().items(), real.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


class Scaled(nn.Module):
    """A custom module with its own reset_parameters and a custom parameter."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(4))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.constant_(self.gamma, 0.5)

    def forward(self, x):
        return x * self.gamma


class Bare(nn.Module):
    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((4,), 3.0))

    def forward(self, x):
        return x * self.alpha


def test_own_init_kept_and_uncovered_reported():
    net = nn.Sequential(nn.Linear(4, 4), Scaled(), Bare(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].gamma.fill_(9.0)
    with pytest.warns(UserWarning, match=r"no rule covers 1 parameter.*'2.alpha'"):
        p = init_model(net, seed=0)
    assert p["1.gamma"].distribution == "keep" and "reset_parameters" in p["1.gamma"].reason
    assert torch.equal(net[1].gamma, torch.full((4,), 0.5))  # its own init ran again
    assert p.uncovered == ["2.alpha"] and torch.equal(net[2].alpha, torch.full((4,), 3.0))


class Container(nn.Module):
    """Its own init_weights re-draws its children too: the plan must not let that leak."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.inner = nn.Linear(3, 3)

    def init_weights(self):
        nn.init.constant_(self.scale, 2.0)
        nn.init.zeros_(self.inner.weight)


def test_own_init_never_changes_tensors_outside_the_plan():
    net = Container()
    before = net.inner.weight.clone()
    p = plan(net, only=["scale"]).apply(seed=0)
    assert p["scale"].distribution == "keep"
    assert torch.equal(net.scale, torch.full((3,), 2.0))
    assert torch.equal(net.inner.weight, before)


class Writer(nn.Module):
    """An own init that writes around the plan every way Python can: through ``.data``, by
    rebinding ``.data``, in place on a buffer, by item assignment."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.inner = nn.Linear(3, 3)
        self.register_buffer("count", torch.zeros(3))

    def init_weights(self):
        nn.init.constant_(self.scale, 2.0)
        self.inner.weight.data.normal_()
        self.inner.bias.data = torch.full((3,), 5.0)
        self.count += 1
        self.inner.weight[0] = 3.0


def test_own_init_writes_outside_the_plan_are_undone_whichever_way_they_are_made():
    net = Writer()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plan(net, only=["scale"]).apply(seed=0)
    assert torch.equal(net.scale, torch.full((3,), 2.0))
    for key in ("inner.weight", "inner.bias", "count"):
        assert torch.equal(net.state_dict()[key], before[key]), key


class HalfReset(nn.Module):
    """Its reset_parameters forgets one of its parameters."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.full((2,), 4.0))

    def reset_parameters(self):
        nn.init.ones_(self.a)


def test_a_keep_parameter_its_own_init_does_not_write_is_an_error_and_nothing_changes():
    # Before: 'b' silently kept whatever it held, so apply(seed=s) was not reproducible for it.
    net = HalfReset()
    p = plan(net)
    assert {r.distribution for r in p.rows} == {"keep"}
    with pytest.raises(ValueError, match=r"'b' \(planned 'keep'\): its own init does not write"):
        p.apply(seed=0)
    assert torch.equal(net.a, torch.zeros(2)) and torch.equal(net.b, torch.full((2,), 4.0))


def test_keep_runs_the_own_init_of_the_modules_above_as_construction_does():
    # nn.MultiheadAttention's _reset_parameters zeroes out_proj.bias after out_proj's own
    # reset_parameters drew it: a fresh MHA holds zeros there, and so does its keep row.
    mha = nn.MultiheadAttention(8, 2)
    with torch.no_grad():
        mha.out_proj.bias.fill_(3.0)
    p = plan(mha, rules=[Rule("mine", "keep", param="out_proj.bias")]).apply(seed=0)
    assert p["out_proj.bias"].distribution == "keep"
    assert torch.equal(mha.out_proj.bias, torch.zeros(8))


# ---- torch.compile: the plan is the compiled module's -------------------------------------


def test_a_compiled_model_is_planned_and_initialized_as_the_module_it_compiled():
    # Before: names gained '_orig_mod.' (other streams, other weights than the uncompiled
    # model's) and example_input failed under the tracer with "example_input did not run".
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    net = mlp(nn.Tanh())
    compiled = torch.compile(net)
    p = plan(compiled, example_input=x)
    assert p.model is net and p.source == "trace"
    assert [r.name for r in p.rows] == [n for n, _ in net.named_parameters()]
    assert p["0.weight"].activation == "tanh"
    p.apply(seed=5)
    torch.manual_seed(2)
    reference = mlp(nn.Tanh())
    plan(reference, example_input=x).apply(seed=5)
    for (name, got), want in zip(net.state_dict().items(), reference.state_dict().values(),
                                 strict=True):  # fmt: skip
        assert torch.equal(got, want), name
    again = torch.compile(mlp(nn.Tanh()))
    InitPlan.from_dict(p.to_dict(), again).apply(seed=5)  # a saved plan fits it too
    assert torch.equal(again._orig_mod[0].weight, reference[0].weight)
    assert torch.equal(init_model(torch.compile(net), seed=5).model[4].weight, reference[4].weight)


def test_user_rules_override_by_type_glob_regex_and_activation():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    rules = [
        Rule("head tiny", "normal", param="re:^4\\.weight$", std=1e-3),
        Rule("tanh ortho", "orthogonal", activations=("tanh",), roles=("weight",), gain=1.5),
        Rule("relu biases", "constant", param="0.b*", value=0.1),
        Rule("linear keep", "keep", module=nn.Linear, roles=("bias",)),
    ]
    p = init_model(net, rules=rules, seed=0)
    assert [r.rule for r in p.rows] == [
        HE,
        "relu biases",
        "tanh ortho",
        "linear keep",
        "head tiny",
        "linear keep",
    ]
    w = net[2].weight.detach()
    assert torch.allclose(w @ w.T, 2.25 * torch.eye(8), atol=1e-5)
    assert torch.equal(net[0].bias, torch.full((8,), 0.1))
    assert p["4.weight"].std == 1e-3
    print(p.table())


def test_user_rules_match_tied_and_fused_parameters():
    model = nn.ModuleDict({"lstm": nn.LSTM(4, 4), "lin": nn.Linear(4, 4)})
    fused = Rule("fused: 0", "constant", fused=True)
    p = plan(model, rules=[fused])
    assert [r.name for r in p.rows if r.rule == "fused: 0"] == [
        f"lstm.{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]  # 4 gate blocks each; the Linear is one block
    shared = Rule("shared: 0", "constant", tied=True)
    p = plan(GPT(), example_input=example("gpt"), rules=[shared])
    assert [r.name for r in p.rows if r.rule == "shared: 0"] == ["wte.weight"]  # not wpe
    both = initlab.policy.rules.RuleSet([Rule("both", "keep", tied=True, fused=True)])
    assert "tied fused blocks" in str(both)  # the printed conditions name both


def test_keep_rule_needs_an_own_init():
    net = nn.Sequential(nn.Linear(4, 4), Bare())
    with pytest.raises(ValueError, match=r"rule 'mine' keeps the own init of '1.alpha'.*Bare"):
        plan(net, rules=[Rule("mine", "keep", param="1.*")])


def test_rule_matching_nothing_warns():
    with pytest.warns(UserWarning, match="rule 'conv only' matched no parameter"):
        plan(mlp(nn.ReLU()), rules=[Rule("conv only", "normal", kinds=("conv",))])


def test_errors_name_the_argument():
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"policy must be one of .*got policy='atuo'.*'auto'"):
        plan(net, "atuo")
    with pytest.raises(TypeError, match=r"unknown policy option 'forget'.*'forget_bias'"):
        plan(net, forget=1.0)
    with pytest.raises(ValueError, match=r"mode must be one of.*got mode='fan_inn'"):
        plan(net, mode="fan_inn")
    with pytest.raises(ValueError, match=r"init must be one of.*got init='gauss'"):
        Rule("x", "gauss")
    with pytest.raises(ValueError, match=r"kinds entry must be one of.*'Linear'.*'linear'"):
        Rule("x", "normal", kinds=("Linear",))
    with pytest.raises(ValueError, match=r"activations entry .*'rlu'.*did you mean 'relu'"):
        Rule("x", "normal", activations="rlu")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got str"):
        plan("net")
    with pytest.raises(TypeError, match="rules must be initlab.policy.Rule objects"):
        plan(net, rules=[{"init": "normal"}])
    with pytest.raises(TypeError, match="seed must be an int; got seed=1.5"):
        plan(net).apply(seed=1.5)
    lazy = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"'0.weight' is an uninitialized lazy parameter"):
        plan(lazy)
    assert plan(lazy, example_input=torch.randn(2, 5))["0.weight"].fan_in == 5  # materialized


def test_init_model_returns_applied_plan_and_public_names():
    # initlab.init_model is the policy's plus optional LSUV (initlab.schemes.compose)
    assert initlab.plan is plan and initlab.init_model.__module__ == "initlab.schemes.compose"
    net = mlp(nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = initlab.init_model(net, seed=0)
    assert isinstance(p, initlab.InitPlan) and p.model is net


@pytest.mark.parametrize(
    "option, name", [("zero_init_residual", "resnet"), ("scale_residual", "gpt")]
)
def test_residual_options_without_example_input_are_an_error(option, name):
    # Before: 0 residual rows without example_input (3 with it), silently.
    build = ZOO[name][0]
    message = rf"{option}=True needs example_input: residual branches are found by tracing"
    with pytest.raises(ValueError, match=message):
        plan(build(), **{option: True})
    model = build()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        init_model(model, seed=0, **{option: True})
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    traced = plan(build(), example_input=example(name), **{option: True})
    assert any(r.rule.startswith("residual") for r in traced.rows)


# ---- one formula, one definition of a layer kind ---------------------------------------------


@pytest.mark.parametrize("distribution", ["normal", "uniform", "truncated_normal"])
@pytest.mark.parametrize(("mode", "fan"), [("fan_in", 40), ("fan_out", 30), ("fan_avg", 35)])
def test_variance_scaling_rules_compute_the_initializers_formula(distribution, mode, fan):
    # A rule's row holds what initlab.initializers' pure formula gives: the std of the
    # sampler (the parent normal's for truncated_normal) and its bound, to the last bit.
    from initlab.initializers import scaled_draw, select_fan, variance_scaling_std

    rule = Rule("vs", "variance_scaling", roles=("weight",), scale=1.7, mode=mode,
                distribution=distribution)  # fmt: skip
    row = plan(nn.Linear(40, 30), [rule, Rule("b", "constant", roles=("bias",))])["weight"]
    assert select_fan(40, 30, mode) == fan
    draw = scaled_draw(variance_scaling_std(1.7, fan), distribution)
    assert (row.distribution, row.std, row.bound) == (distribution, draw.sampler_std, draw.bound)
    if distribution == "truncated_normal":  # the std after truncation is the target
        assert draw.sampler_std * initlab.initializers.TRUNCATED_STD == pytest.approx(draw.std)


def _public_nn_modules() -> list[type]:
    found = (getattr(nn, name) for name in dir(nn) if not name.startswith("_"))
    return [c for c in found if isinstance(c, type) and issubclass(c, nn.Module)]


def test_one_definition_of_norm_and_weight_layers_by_public_classes():
    from initlab.introspect.kinds import (
        NORM_TYPES,
        RUNNING_STATS_NORM_TYPES,
        WEIGHT_TYPES,
        is_norm,
        layer_kind,
    )

    public = _public_nn_modules()
    norms = [c for c in public if "Norm" in c.__name__]
    assert nn.LazyInstanceNorm3d in norms and nn.RMSNorm in norms and nn.SyncBatchNorm in norms
    assert [c for c in norms if not issubclass(c, NORM_TYPES)] == []
    # every subclass of torch's private _NormBase among the public classes is listed by name
    base = nn.modules.batchnorm._NormBase
    assert [c for c in public if issubclass(c, base) and not issubclass(c, NORM_TYPES)] == []
    assert all(issubclass(c, base) for c in RUNNING_STATS_NORM_TYPES)
    # Linear and every convolution (transposed, lazy) are weight layers, as torch's _ConvNd
    convs = [c for c in public if issubclass(c, nn.modules.conv._ConvNd)]
    assert len(convs) == 12 and [c for c in convs if not issubclass(c, WEIGHT_TYPES)] == []
    assert issubclass(nn.LazyLinear, WEIGHT_TYPES) and not issubclass(nn.Bilinear, WEIGHT_TYPES)
    assert [c for c in norms if issubclass(c, WEIGHT_TYPES)] == []

    class T5LayerNorm(nn.Module):  # third-party norms are recognized by class name
        pass

    assert is_norm(T5LayerNorm()) and is_norm(nn.LocalResponseNorm(2))
    assert layer_kind(nn.GroupNorm(2, 4)) == "norm" and not is_norm(nn.Linear(2, 2))
