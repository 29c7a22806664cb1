"""Recurrent and transformer schemes: every drawn tensor against its formula.

Moment tests: the sample std s of n i.i.d. draws has relative standard deviation about
c / sqrt(n) with c = sqrt((kurtosis - 1) / 4): 0.707 for a normal, 0.447 for a uniform, below
0.707 for a truncated normal (lighter tails); we assert |s / sigma - 1| <= 5 c / sqrt(n), a
5-sigma band (about 1 failure in 1.7 million). sigma is computed here from the shapes and the
paper's formula, never by the code under test. Structure (identity, orthogonality, zeros,
constants, products) is checked exactly or to float32 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.cli import main
from initlab.schemes import SCHEMES, initialize
from initlab.schemes.heads import ClassPriorBias, class_prior_bias_, scaled_embedding_
from initlab.schemes.registry import check_fits, parse_scheme
from initlab.schemes.transformer import mimetic_attention_

NORMAL, UNIFORM = 0.707, 0.447


@pytest.fixture(autouse=True)
def _values_only():
    """The tests read parameter values only: no autograd (no warnings on float(parameter))."""
    with torch.no_grad():
        yield


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_std(tensors, sigma: float, c: float = NORMAL) -> None:
    x = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    tolerance = 5 * c / math.sqrt(x.numel())
    ratio = float(x.std()) / sigma
    assert abs(ratio - 1) <= tolerance, (ratio, tolerance, x.numel())
    assert abs(float(x.mean())) <= 5 * sigma / math.sqrt(x.numel())


def _truncated_std(cut: float) -> float:
    """Std of a standard normal truncated to [-cut, cut]: 1 - 2 cut phi(cut) / (2 Phi(cut) - 1)."""
    phi = math.exp(-(cut**2) / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(cut / math.sqrt(2))
    return math.sqrt(1 - 2 * cut * phi / mass)


# --- a stand-in with exactly the contract's names ------------------------------------------


class _Attn(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))


class _MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


class _Block(nn.Module):
    def __init__(self, d: int, n_head: int, gate: str | None) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), _Attn(d, n_head)
        self.ln2, self.mlp = nn.LayerNorm(d), _MLP(d)
        if gate is not None:
            shape = () if gate == "rezero" else (d,)
            self.gate_attn = nn.Parameter(torch.full(shape, 0.5))
            self.gate_mlp = nn.Parameter(torch.full(shape, 0.5))


class TinyGPT(nn.Module):
    def __init__(
        self, d=64, n_layer=3, n_head=4, vocab=50, T=16, norm="pre", gate=None, tied=False
    ):
        super().__init__()
        self.n_layer, self.d_model, self.norm_position = n_layer, d, norm
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Parameter(torch.zeros(T, d))
        self.blocks = nn.ModuleList(_Block(d, n_head, gate) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        if tied:
            self.head.weight = self.tok_emb.weight
        self.register_buffer("residual_scale", torch.ones(()))


def _roles(model: TinyGPT, *names: str) -> list[torch.Tensor]:
    out = []
    for block in model.blocks:
        for name in names:
            part, _, leaf = name.partition(".")
            out.append(getattr(getattr(block, part), leaf).weight)
    return out


def _check_common(model: nn.Module) -> None:
    """LayerNorms 1 and 0, every bias 0 (what every transformer scheme promises)."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
        elif isinstance(module, nn.Linear) and module.bias is not None:
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


# --- recurrent ------------------------------------------------------------------------------


class _LSTMNet(nn.Module):
    def __init__(self, cell=nn.LSTM, **kwargs) -> None:
        super().__init__()
        self.emb = nn.Embedding(40, 48)
        self.rnn = cell(48, 64, num_layers=2, **kwargs)
        self.head = nn.Linear(64, 40)


@pytest.mark.parametrize("forget_bias", [1.0, 2.5])
def test_rnn_orthogonal_on_lstm(forget_bias):
    net = _LSTMNet(bidirectional=True)
    initialize(net, f"rnn_orthogonal:forget_bias={forget_bias}", generator=_gen(0))
    H, rnn = 64, net.rnn
    for name, param in rnn.named_parameters():
        if name.startswith("weight_hh"):
            for gate in param.chunk(4):  # each gate block orthogonal: Q^T Q = I
                assert torch.allclose(gate.T @ gate, torch.eye(H), atol=1e-5)
        elif name.startswith("weight_ih"):
            fan_in = param.shape[1]  # 48, then 2 * 64 for layer 1 (bidirectional)
            bound = math.sqrt(6 / (fan_in + H))  # per gate block (fan_out H, not 4H)
            assert float(param.abs().max()) <= bound
            _assert_std([param], bound / math.sqrt(3), UNIFORM)
        elif name.startswith("bias_ih"):
            expected = torch.zeros(4 * H)
            expected[H : 2 * H] = forget_bias  # gates i, f, g, o
            assert torch.equal(param, expected)
        else:
            assert name.startswith("bias_hh") and torch.equal(param, torch.zeros(4 * H))


def test_rnn_orthogonal_on_gru_and_the_rest_stays_pytorchs():
    net, ref = _LSTMNet(nn.GRU), _LSTMNet(nn.GRU)
    initialize(net, "rnn_orthogonal", generator=_gen(3))
    initialize(ref, "torch_default", generator=_gen(3))
    for gate in net.rnn.weight_hh_l1.chunk(3):
        assert torch.allclose(gate @ gate.T, torch.eye(64), atol=1e-5)
    assert all(float(b.abs().max()) == 0 for n, b in net.rnn.named_parameters() if "bias" in n)
    # embedding and head: PyTorch's defaults, drawn exactly as torch_default draws them
    for a, b in ((net.emb, ref.emb), (net.head, ref.head)):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)
    assert float(net.head.bias.abs().max()) > 0  # the head keeps PyTorch's bias, not 0


def test_irnn_identity_and_small_input_weights():
    net = _LSTMNet(nn.RNN, nonlinearity="relu")
    initialize(net, "irnn:scale=0.5", generator=_gen(1))
    for layer in (0, 1):
        assert torch.equal(getattr(net.rnn, f"weight_hh_l{layer}"), 0.5 * torch.eye(64))
        assert torch.equal(getattr(net.rnn, f"bias_ih_l{layer}"), torch.zeros(64))
        assert torch.equal(getattr(net.rnn, f"bias_hh_l{layer}"), torch.zeros(64))
    # Le et al. 2015: input weights N(0, 0.001^2); 64*48 + 64*64 = 7168 draws
    _assert_std([net.rnn.weight_ih_l0, net.rnn.weight_ih_l1], 0.001)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_irnn_refuses_gated_layers(cell):
    with pytest.raises(ValueError, match=r"irnn' needs plain RNN layers .* layer 'rnn' is"):
        initialize(_LSTMNet(cell), "irnn", generator=_gen(0))


def test_recurrent_schemes_refuse_a_model_without_recurrence():
    for scheme in ("rnn_orthogonal", "irnn"):
        with pytest.raises(ValueError, match=rf"{scheme}' needs a recurrent layer .*zoo: char-rnn"):
            initialize(nn.Linear(3, 3), scheme, generator=_gen(0))


def test_xavier_uniform_fills_lstm_gates_with_per_gate_fans():
    lstm = nn.LSTM(48, 64)
    initialize(lstm, "xavier_uniform", generator=_gen(2))
    # per gate fans (48, 64): bound sqrt(6/112); the whole tensor's fans would give sqrt(6/304)
    bound = math.sqrt(6 / (48 + 64))
    assert float(lstm.weight_ih_l0.abs().max()) <= bound
    _assert_std([lstm.weight_ih_l0], bound / math.sqrt(3), UNIFORM)
    hh = math.sqrt(6 / 128)
    _assert_std([lstm.weight_hh_l0], hh / math.sqrt(3), UNIFORM)


# --- transformer: one test per scheme -------------------------------------------------------

PROJ, QKV = ("attn.proj", "mlp.proj"), ("attn.q", "attn.k", "attn.v", "mlp.fc")


def test_gpt2():
    net = initialize(TinyGPT(), "gpt2", generator=_gen(0))
    _check_common(net)
    _assert_std(_roles(net, *QKV) + [net.tok_emb.weight, net.pos_emb, net.head.weight], 0.02)
    _assert_std(_roles(net, *PROJ), 0.02 / math.sqrt(2 * 3))  # 1/sqrt(2L), L = 3
    net = initialize(TinyGPT(), "gpt2:std=0.1", generator=_gen(0))
    _assert_std(_roles(net, *PROJ), 0.1 / math.sqrt(6))


def test_small_init_and_wang_init():
    d, L = 64, 3
    small = math.sqrt(2 / (5 * d))
    net = initialize(TinyGPT(), "small_init", generator=_gen(1))
    _check_common(net)
    everything = _roles(net, *QKV, *PROJ) + [net.tok_emb.weight, net.pos_emb, net.head.weight]
    _assert_std(everything, small)
    net = initialize(TinyGPT(), "wang_init", generator=_gen(1))
    _assert_std(_roles(net, *PROJ), 2 / (L * math.sqrt(d)))
    _assert_std(_roles(net, *QKV) + [net.tok_emb.weight, net.head.weight], small)


def test_llama_depth_follows_olmo_core():
    net = initialize(TinyGPT(), "llama_depth", generator=_gen(2))
    _check_common(net)
    c3 = _truncated_std(3.0)  # OLMo-core: trunc_normal_(std, a=-3 std, b=3 std)
    for i, block in enumerate(net.blocks):
        residual = [block.attn.proj.weight, block.mlp.proj.weight]
        std = 0.02 / math.sqrt(2 * (i + 1))
        _assert_std(residual, std * c3)
        assert max(float(w.abs().max()) for w in residual) <= 3 * std
    _assert_std(_roles(net, *QKV), 0.02 * c3)
    _assert_std([net.tok_emb.weight], 1.0)  # init_embeddings: normal_, std 1
    _assert_std([net.head.weight], 64**-0.5 * c3)  # init_final_w_out: d^-1/2


def test_zero_proj_follows_modded_nanogpt():
    net = initialize(TinyGPT(), "zero_proj", generator=_gen(3))
    _check_common(net)
    for w in _roles(net, *PROJ) + [net.head.weight]:
        assert not w.any()
    for name, fan_in in (("attn.q", 64), ("attn.k", 64), ("attn.v", 64), ("mlp.fc", 64)):
        ws = _roles(net, name)
        assert max(float(w.abs().max()) for w in ws) <= fan_in**-0.5
        _assert_std(ws, fan_in**-0.5 / math.sqrt(3), UNIFORM)
    _assert_std([net.tok_emb.weight], 1.0)
    _assert_std([net.pos_emb], 0.02)


def test_deepnorm_constants_and_gains():
    L, d = 3, 64
    net = TinyGPT(norm="post")
    initialize(net, "deepnorm", generator=_gen(4))
    _check_common(net)
    alpha, beta = (2 * L) ** 0.25, (8 * L) ** -0.25
    assert float(net.residual_scale) == pytest.approx(alpha, rel=1e-7)
    square = math.sqrt(2 / (d + d))  # xavier std for d x d
    _assert_std(_roles(net, "attn.q", "attn.k"), square)
    _assert_std(_roles(net, "attn.v", "attn.proj"), beta * square)
    _assert_std(_roles(net, "mlp.fc", "mlp.proj"), beta * math.sqrt(2 / (d + 4 * d)))
    with pytest.raises(ValueError, match=r"deepnorm' needs a post-LN .*char-gpt norm=post"):
        initialize(TinyGPT(norm="pre"), "deepnorm", generator=_gen(4))


@pytest.mark.parametrize("name", ["rezero", "skipinit"])
def test_rezero_gates_zero_weights_xavier(name):
    net = initialize(TinyGPT(gate="rezero"), name, generator=_gen(5))
    _check_common(net)
    for block in net.blocks:
        assert float(block.gate_attn) == 0 and float(block.gate_mlp) == 0
    b = math.sqrt(6 / 128)
    ws = _roles(net, "attn.q", "attn.k", "attn.v", "attn.proj")
    assert max(float(w.abs().max()) for w in ws) <= b
    _assert_std(ws, b / math.sqrt(3), UNIFORM)
    with pytest.raises(ValueError, match=r"needs residual gates .*gate=rezero"):
        initialize(TinyGPT(), name, generator=_gen(5))


@pytest.mark.parametrize(("depth", "eps"), [(2, 0.1), (18, 0.1), (20, 1e-5), (25, 1e-6)])
def test_layerscale_eps_by_depth(depth, eps):
    net = TinyGPT(d=8, n_layer=depth, n_head=2, gate="layerscale")
    initialize(net, "layerscale", generator=_gen(6))
    for block in net.blocks:
        assert torch.equal(block.gate_attn, torch.full((8,), eps))
        assert torch.equal(block.gate_mlp, torch.full((8,), eps))


def test_layerscale_eps_option_and_weights():
    net = initialize(TinyGPT(gate="layerscale"), "layerscale:eps=0.25", generator=_gen(6))
    assert torch.equal(net.blocks[2].gate_mlp, torch.full((64,), 0.25))
    _assert_std(_roles(net, *QKV, *PROJ), 0.02 * _truncated_std(2.0))


def test_mimetic_products_are_the_targets_best_low_rank_approximation():
    d, heads = 64, 4
    attn = TinyGPT().blocks[0].attn
    targets = mimetic_attention_(attn, generator=_gen(7))
    k = d // heads
    noise = []
    for h, target in enumerate(targets.qk):
        rows = slice(h * k, (h + 1) * k)
        product = attn.q.weight[rows].T.double() @ attn.k.weight[rows].double()  # W_q W_k^T
        u, s, vh = torch.linalg.svd(target)
        best = (u[:, :k] * s[:k]) @ vh[:k]  # Eckart-Young: the best rank-k approximation
        assert torch.allclose(product, best, atol=1e-5)
        noise.append((target - 0.7 * torch.eye(d)) / 0.7)  # Z1, entries N(0, 1/d)
    _assert_std(noise, d**-0.5)  # 4 * 64^2 = 16384 draws
    vo = attn.v.weight.T.double() @ attn.proj.weight.T.double()  # W_v W_proj, full rank
    assert torch.allclose(vo, targets.vo, atol=1e-5)
    _assert_std([(targets.vo + 0.4 * torch.eye(d)) / 0.4], d**-0.5)


def test_mimetic_scheme_options_and_other_weights():
    net = initialize(TinyGPT(), "mimetic:beta1=0:alpha2=0", generator=_gen(8))
    _check_common(net)
    attn = net.blocks[1].attn
    vo = attn.v.weight.T @ attn.proj.weight.T  # alpha2 = 0: exactly -0.4 I
    assert torch.allclose(vo, -0.4 * torch.eye(64), atol=1e-5)
    _assert_std(_roles(net, "mlp.fc", "mlp.proj") + [net.head.weight], 0.02 * _truncated_std(2))


def test_scaled_embedding_and_zero_head_options():
    net = initialize(TinyGPT(), "gpt2:scaled_embedding=1:zero_head=1", generator=_gen(9))
    _assert_std([net.tok_emb.weight], 64**-0.5)
    assert not net.head.weight.any()
    with pytest.raises(ValueError, match="zero_head=1 would zero the token embedding"):
        initialize(TinyGPT(tied=True), "small_init:zero_head=1", generator=_gen(9))
    with pytest.raises(ValueError, match="zero_head must be 0 or 1; got zero_head=2.0"):
        initialize(TinyGPT(), "gpt2:zero_head=2", generator=_gen(9))
    w = scaled_embedding_(torch.empty(300, 100), generator=_gen(9))
    _assert_std([w], 0.1)


def test_tied_head_takes_the_embedding_draw():
    net = initialize(TinyGPT(tied=True), "llama_depth", generator=_gen(10))
    assert net.head.weight is net.tok_emb.weight
    _assert_std([net.tok_emb.weight], 1.0)  # the embedding's N(0, 1), not the head's d^-1/2
    with pytest.raises(ValueError, match="'zero_proj' zeroes the head, but model.head.weight"):
        initialize(TinyGPT(tied=True), "zero_proj", generator=_gen(10))


def test_padding_row_stays_zero():
    net = TinyGPT()
    net.tok_emb.padding_idx = 3
    initialize(net, "small_init", generator=_gen(10))
    assert not net.tok_emb.weight[3].any() and net.tok_emb.weight[4].all()


def test_transformer_schemes_refuse_other_models_with_the_contract():
    with pytest.raises(ValueError, match=r"scheme 'gpt2' needs a transformer .*zoo: char-gpt"):
        check_fits(nn.Sequential(nn.Linear(3, 3)), "gpt2", "mlp")


# --- every new scheme: reproducible, only its generator, on the zoo models -----------------

_ZOO = {
    "rnn_orthogonal": ("char-rnn", {}),
    "irnn": ("seq-rnn", {"cell": "rnn_relu"}),
    "deepnorm": ("char-gpt", {"norm": "post", "n_layer": 2, "d_model": 32}),
    "rezero": ("vit", {"gate": "rezero", "depth": 2, "d_model": 32}),
    "layerscale": ("char-gpt", {"gate": "layerscale", "n_layer": 2, "d_model": 32}),
}
_NEW = ["gpt2", "small_init", "wang_init", "llama_depth", "zero_proj", "mimetic", *_ZOO]


@pytest.mark.parametrize("scheme", _NEW)
def test_new_schemes_on_zoo_models_are_reproducible(scheme):
    from initlab.zoo.models import build_model

    name, params = _ZOO.get(scheme, ("vit", {"depth": 2, "d_model": 32}))
    a, b = build_model(name, **params), build_model(name, **params)
    check_fits(a, scheme, name)
    state = torch.get_rng_state()
    initialize(a, scheme, generator=_gen(11))
    initialize(b, scheme, generator=_gen(11))
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_schemes_command_lists_the_new_schemes(capsys):
    assert main(["schemes"]) == 0
    listing = capsys.readouterr().out.split("\n\n")[0]  # then the shared options
    names = [line.split()[0] for line in listing.splitlines()]
    assert set(_NEW) <= set(names)
    assert parse_scheme("skipinit")[0] is SCHEMES["rezero"]


# --- the class-prior head bias --------------------------------------------------------------


def test_class_prior_bias():
    bias = torch.empty(4)
    class_prior_bias_(bias, torch.arange(4).repeat(25))  # balanced: -log C exactly
    assert torch.allclose(bias, torch.full((4,), -math.log(4)))
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])  # counts 6, 3, 1, 0; add-one: /14
    class_prior_bias_(bias, labels)
    assert torch.allclose(bias, torch.tensor([7 / 14, 4 / 14, 2 / 14, 1 / 14]).log())
    with pytest.raises(ValueError, match=r"smoothing=0 every class needs a label: classes \[3\]"):
        class_prior_bias_(bias, labels, smoothing=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) .*got labels in \[0, 7\]"):
        class_prior_bias_(bias, torch.tensor([0, 7]))


def test_class_prior_step_reads_the_batch_labels():
    net = TinyGPT(vocab=3)
    step = ClassPriorBias()
    assert step.needs_batch
    report = step(net, generator=_gen(0), batch=(None, torch.tensor([[0, 0], [1, 2]])))
    assert report == {"classes": 3, "labels": 4}
    assert torch.allclose(net.head.bias, torch.tensor([3 / 7, 2 / 7, 2 / 7]).log())
    with pytest.raises(ValueError, match="needs labels: pass batch=\\(inputs, labels"):
        step(net, generator=_gen(0), batch=torch.zeros(2))


def test_formulas_hold_on_the_zoo_transformers():
    from initlab.zoo.models import build_model

    gpt = build_model("char-gpt", d_model=64, n_layer=3, n_head=4)
    initialize(gpt, "gpt2", generator=_gen(12))
    _check_common(gpt)
    _assert_std(_roles(gpt, *PROJ), 0.02 / math.sqrt(6))
    _assert_std(_roles(gpt, *QKV) + [gpt.pos_emb, gpt.tok_emb.weight], 0.02)
    post = build_model("char-gpt", d_model=64, n_layer=3, n_head=4, norm="post")
    initialize(post, "deepnorm", generator=_gen(12))
    assert float(post.residual_scale) == pytest.approx(6**0.25)
    _assert_std(_roles(post, "attn.v", "attn.proj"), 24**-0.25 * math.sqrt(2 / 128))
    vit = build_model("vit", d_model=64, depth=2, n_head=4, gate="layerscale")
    initialize(vit, "layerscale", generator=_gen(12))
    assert torch.equal(vit.blocks[1].gate_attn, torch.full((64,), 0.1))
    _assert_std([vit.patch_emb.weight] + _roles(vit, *QKV), 0.02 * _truncated_std(2.0))
