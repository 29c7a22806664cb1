"""Sequence models of the zoo: char-gpt, vit, char-rnn, seq-rnn (shapes, math, stacking, errors)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from initlab._checks import ArgumentError
from initlab.zoo.models import build_model
from initlab.zoo.recurrent import CharRNN, SeqRNN, recurrent_forward
from initlab.zoo.transformer import Block, CharTransformer, ViT

# float32 products of a few dozen terms, summed in another order (batched vs single matrix
# products, a loop vs the fused kernel): differences are a few ulp of values of order 1.
ATOL = 1e-5


def tiny_gpt(**options) -> CharTransformer:
    kwargs = dict(vocab_size=11, seq_len=8, d_model=16, n_layer=2, n_head=2)
    return CharTransformer(**{**kwargs, **options})


def tokens(*shape, vocab=11, seed=0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def images(batch=3, seed=1) -> torch.Tensor:
    return torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- registry and shapes


@pytest.mark.parametrize(
    "name, cls", [("char-gpt", CharTransformer), ("vit", ViT), ("char-rnn", CharRNN),
                  ("seq-rnn", SeqRNN)],
)  # fmt: skip
def test_registered_names_build_the_classes(name, cls):
    model = build_model(name)
    assert type(model) is cls
    assert model.input_kind == ("tokens" if name.startswith("char-") else "image")


def test_char_gpt_default_size_and_contract_attributes():
    model = build_model("char-gpt")
    d, L = 128, 4
    # Per block by hand: q, k, v, proj 4 (d^2 + d); fc d*4d + 4d; proj 4d*d + d; two LNs 4d.
    block = 4 * (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d
    # tok_emb 96 d, pos_emb 128 d, blocks, ln_f 2d, head 96 d (no bias).
    assert (
        sum(p.numel() for p in model.parameters()) == 96 * d + 128 * d + L * block + 2 * d + 96 * d
    )
    assert (model.n_layer, model.d_model, model.n_head, model.norm_position) == (4, 128, 4, "pre")
    assert model.head.bias is None and isinstance(model.ln_f, nn.LayerNorm)
    attn = model.blocks[0].attn
    assert attn.causal is True and attn.n_head == 4 and isinstance(attn.score, nn.Identity)
    for layer in (attn.q, attn.k, attn.v, attn.proj):
        assert (layer.in_features, layer.out_features) == (d, d) and layer.bias is not None
    mlp = model.blocks[0].mlp
    assert (mlp.fc.out_features, mlp.proj.in_features) == (4 * d, 4 * d)
    assert isinstance(mlp.act, nn.GELU) and mlp.act.approximate == "none"
    assert not hasattr(model.blocks[0], "gate_attn")
    # residual_scale: a persistent 0-dim float32 buffer of 1.0
    assert model.residual_scale.shape == () and model.residual_scale.dtype == torch.float32
    assert model.residual_scale.item() == 1.0 and "residual_scale" in model.state_dict()
    post = tiny_gpt(norm="post")
    assert post.norm_position == "post" and isinstance(post.ln_f, nn.Identity)


def test_pos_emb_is_normal_with_std_0_02():
    torch.manual_seed(0)
    pos = build_model("char-gpt").pos_emb  # (128, 128): n = 16384 draws
    n = pos.numel()
    # sample std of n normal draws: relative sd 0.707 / sqrt(n) (STYLE.md); 5 of them = 0.028
    assert abs(pos.std().item() / 0.02 - 1) <= 5 * 0.707 / math.sqrt(n)
    assert abs(pos.mean().item()) <= 5 * 0.02 / math.sqrt(n)


def test_vit_contract_and_gates():
    model = ViT(d_model=16, depth=3, n_head=2)
    assert (model.n_layer, model.d_model, model.n_head, model.norm_position) == (3, 16, 2, "pre")
    assert model.blocks[0].attn.causal is False and model.head.bias is not None
    assert model.pos_emb.shape == (16, 16) and model.patch_emb.in_features == 49
    rezero = ViT(d_model=16, depth=1, n_head=2, gate="rezero").blocks[0]
    assert rezero.gate_attn.shape == () and rezero.gate_mlp.item() == 0.0
    scale = tiny_gpt(gate="layerscale").blocks[1]
    assert scale.gate_attn.shape == (16,) and torch.equal(scale.gate_mlp, torch.full((16,), 0.1))


def test_output_shapes():
    assert tiny_gpt()(tokens(3, 5)).shape == (3, 5, 11)
    assert CharRNN(vocab_size=11, embed=4, hidden=8)(tokens(3, 5)).shape == (3, 5, 11)
    assert ViT(d_model=16, depth=1, n_head=2, num_classes=7)(images()).shape == (3, 7)
    for order in ("rows", "pixels", "permuted"):
        assert SeqRNN(hidden=8, order=order, pool=7)(images()).shape == (3, 10)


@pytest.mark.parametrize(
    "model",
    [ViT(d_model=16, depth=1, n_head=2), SeqRNN(hidden=8), SeqRNN(hidden=8, order="permuted",
                                                                   pool=4)],
)  # fmt: skip
def test_image_models_accept_every_layout(model):
    x = images(4)
    out = model(x)
    torch.testing.assert_close(model(x.reshape(4, 28, 28)), out, rtol=0, atol=0)
    torch.testing.assert_close(model(x.reshape(4, 784)), out, rtol=0, atol=0)


# ---------------------------------------------------------------- attention and residuals


def test_attention_equals_pytorch_scaled_dot_product_attention():
    model = tiny_gpt()
    attn = model.blocks[0].attn
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))

    def heads(t):  # (B, T, 16) -> (B, 2 heads, T, 8)
        return t.reshape(2, 6, 2, 8).transpose(1, 2)

    for causal in (True, False):
        attn.causal = causal
        y = F.scaled_dot_product_attention(
            heads(attn.q(x)), heads(attn.k(x)), heads(attn.v(x)), is_causal=causal
        )
        expected = attn.proj(y.transpose(1, 2).reshape(2, 6, 16))
        torch.testing.assert_close(attn(x), expected, rtol=0, atol=ATOL)


def test_score_hook_reads_the_scaled_logits_before_the_mask():
    model = tiny_gpt()
    attn = model.blocks[0].attn
    seen = []
    handle = attn.score.register_forward_hook(lambda m, i, out: seen.append(out))
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))
    attn(x)
    handle.remove()
    q = attn.q(x).reshape(2, 6, 2, 8).transpose(1, 2)
    k = attn.k(x).reshape(2, 6, 2, 8).transpose(1, 2)
    expected = q @ k.transpose(-2, -1) / math.sqrt(8)  # (B, H, T, T), unmasked
    assert seen[0].shape == (2, 2, 6, 6) and torch.isfinite(seen[0]).all()
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_causal_mask_later_tokens_do_not_change_earlier_logits(norm):
    model = tiny_gpt(norm=norm)
    x = tokens(2, 8)
    changed = x.clone()
    changed[:, 5] = (x[:, 5] + 1) % 11
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
    assert (a[:, 5:] - b[:, 5:]).abs().amax(-1).min() > 1e-4  # every later position sees it


def test_vit_attention_is_bidirectional():
    model = ViT(d_model=16, depth=1, n_head=2)
    x = images(1)
    changed = x.clone()
    changed[..., 21:, 21:] += 1.0  # the last patch only
    tokens_out = []
    model.ln_f.register_forward_hook(lambda m, i, out: tokens_out.append(out))
    model(x), model(changed)
    assert (tokens_out[0][0, 0] - tokens_out[1][0, 0]).abs().max() > 1e-4  # the first token sees it


def test_block_formulas_with_residual_scale():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    alpha = torch.tensor(2.0)
    pre = Block(16, 2, causal=True, norm="pre", gate="layerscale")
    with torch.no_grad():
        pre.gate_attn.uniform_(-1, 1)
        pre.gate_mlp.uniform_(-1, 1)
    # pre-LN, documented: x = alpha x + g f(LN(x)) for each sublayer
    h = alpha * x + pre.gate_attn * pre.attn(pre.ln1(x))
    expected = alpha * h + pre.gate_mlp * pre.mlp(pre.ln2(h))
    torch.testing.assert_close(pre(x, alpha), expected, rtol=0, atol=ATOL)
    post = Block(16, 2, causal=True, norm="post", gate=None)
    # post-LN (DeepNorm): x = LN(alpha x + f(x))
    h = post.ln1(alpha * x + post.attn(x))
    expected = post.ln2(alpha * h + post.mlp(h))
    torch.testing.assert_close(post(x, alpha), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_residual_scale_changes_the_output(norm):
    model = tiny_gpt(norm=norm)
    x = tokens(2, 8)
    one = model(x)
    model.residual_scale.fill_(2.0)
    assert (model(x) - one).abs().max() > 1e-3


def test_rezero_at_zero_makes_every_pre_ln_block_the_identity():
    model = tiny_gpt(gate="rezero")
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    for block in model.blocks:
        assert torch.equal(block(x, model.residual_scale), x)
    # so the model is ln_f(tok_emb + pos_emb) then the head
    t = tokens(2, 5)
    expected = model.head(model.ln_f(model.tok_emb(t) + model.pos_emb[:5]))
    torch.testing.assert_close(model(t), expected, rtol=0, atol=0)


def test_vit_patch_embedding_is_a_strided_convolution():
    model = ViT(patch=7, d_model=16, depth=1, n_head=2)
    conv = nn.Conv2d(1, 16, 7, stride=7)
    with torch.no_grad():
        conv.weight.copy_(model.patch_emb.weight.reshape(16, 1, 7, 7))
        conv.bias.copy_(model.patch_emb.bias)
    x = images(2)
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, 16 patches, d), row-major patches
    torch.testing.assert_close(model.patch_emb(model.patches(x)), expected, rtol=0, atol=ATOL)


# ---------------------------------------------------------------- recurrent forwards


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_written_out_recurrence_equals_the_module(cell, num_layers):
    torch.manual_seed(0)
    model = SeqRNN(cell=cell, hidden=12, num_layers=num_layers)
    x = torch.randn(3, 7, 28)
    expected, _ = model.rnn(x)
    torch.testing.assert_close(recurrent_forward(model.rnn, x), expected, rtol=0, atol=ATOL)


def test_char_rnn_is_embedding_rnn_head():
    torch.manual_seed(0)
    for cell in ("lstm", "gru"):
        model = CharRNN(vocab_size=11, cell=cell, embed=4, hidden=8, num_layers=2)
        t = tokens(2, 6)
        expected = model.head(model.rnn(model.emb(t))[0])
        torch.testing.assert_close(model(t), expected, rtol=0, atol=ATOL)


def test_seq_rnn_orders():
    x = images(2)
    pooled = F.avg_pool2d(x, 2).flatten(1)  # (2, 196)
    assert torch.equal(SeqRNN(hidden=4).sequence(x), x.reshape(2, 28, 28))
    assert torch.equal(SeqRNN(hidden=4, order="pixels").sequence(x), pooled.unsqueeze(-1))
    a, b = SeqRNN(hidden=4, order="permuted"), SeqRNN(hidden=5, order="permuted")
    assert torch.equal(a.permutation, b.permutation)  # the same in every build
    assert torch.equal(a.permutation.sort().values, torch.arange(196))  # a permutation
    assert not torch.equal(a.permutation, torch.arange(196))
    assert "permutation" in a.state_dict()
    assert torch.equal(a.sequence(x), pooled[:, a.permutation].unsqueeze(-1))
    assert SeqRNN(hidden=4, cell="rnn_relu").rnn.nonlinearity == "relu"
    assert a.rnn.input_size == 1 and SeqRNN(hidden=4).rnn.input_size == 28


# ---------------------------------------------------------------- stacked (vmap) training

STACKABLE = {
    "char-gpt pre layerscale": (lambda: tiny_gpt(gate="layerscale"), lambda: tokens(3, 8)),
    "char-gpt post": (lambda: tiny_gpt(norm="post"), lambda: tokens(3, 8)),
    "char-gpt no norm": (lambda: tiny_gpt(norm="none"), lambda: tokens(3, 8)),
    "vit rezero": (lambda: ViT(d_model=16, depth=2, n_head=2, gate="rezero"), images),
    "char-rnn lstm x2": (
        lambda: CharRNN(vocab_size=11, embed=4, hidden=8, num_layers=2),
        lambda: tokens(3, 6),
    ),
    "char-rnn gru": (
        lambda: CharRNN(vocab_size=11, cell="gru", embed=4, hidden=8),
        lambda: tokens(3, 6),
    ),
    "seq-rnn rows": (lambda: SeqRNN(cell="rnn_tanh", hidden=8), images),
    "seq-rnn permuted": (lambda: SeqRNN(hidden=8, order="permuted", pool=7), images),
}


def stack(make):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(make())
    params, buffers = stack_module_state(models)

    def forward(p, b, x):
        return functional_call(models[0], (p, b), (x,))

    return models, params, buffers, forward


@pytest.mark.parametrize("case", sorted(STACKABLE))
def test_vmapped_forward_equals_each_models_own(case):
    make, data = STACKABLE[case]
    models, params, buffers, forward = stack(make)
    x = data()
    out = vmap(forward, in_dims=(0, 0, None))(params, buffers, x)
    assert not torch.equal(out[0], out[1])  # the seeds differ, so a shared weight would show
    for r, model in enumerate(models):
        torch.testing.assert_close(out[r], model(x), rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", sorted(STACKABLE))
def test_vmapped_backward_equals_each_models_own(case):
    make, data = STACKABLE[case]
    models, params, buffers, forward = stack(make)
    x = data()

    def loss(p, b, x):
        return forward(p, b, x).square().mean()

    grads = vmap(grad(loss), in_dims=(0, 0, None))(params, buffers, x)
    assert grads.keys() == params.keys()
    for r in (0, 2):
        models[r].zero_grad()
        models[r](x).square().mean().backward()
        for name, p in models[r].named_parameters():
            torch.testing.assert_close(grads[name][r], p.grad, rtol=1e-4, atol=ATOL, msg=name)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: tiny_gpt(n_head=3),
            ArgumentError,
            r"^n_head must divide d_model=16; got n_head=3$",
        ),
        (
            lambda: tiny_gpt(norm="middle"),
            ArgumentError,
            r"norm must be one of \['none', 'post', 'pre'\]",
        ),
        (
            lambda: tiny_gpt(gate="rezro"),
            ArgumentError,
            r"^gate must be one of \['layerscale', 'rezero'\] or None; got gate='rezro'$",
        ),
        (lambda: tiny_gpt(n_layer=0), ArgumentError, r"^n_layer must be >= 1; got n_layer=0$"),
        (lambda: tiny_gpt(d_model=16.0), TypeError, r"^d_model must be an int; got d_model=16.0$"),
        (lambda: CharTransformer(vocab_size=0), ArgumentError, r"vocab_size must be >= 1"),
        (lambda: tiny_gpt()(tokens(1, 9)), ArgumentError, r"at most seq_len=8 positions; got"),
        (lambda: ViT(patch=5), ArgumentError, r"^patch must divide image_size=28; got patch=5$"),
        (lambda: ViT(n_head=5), ArgumentError, r"n_head must divide d_model=64; got n_head=5"),
        (lambda: ViT(gate="x"), ArgumentError, r"gate must be one of"),
        (lambda: CharRNN(cell="rnn_tanh"), ArgumentError, r"cell must be one of \['gru', 'lstm'\]"),
        (lambda: CharRNN(hidden=0), ArgumentError, r"^hidden must be >= 1; got hidden=0$"),
        (
            lambda: SeqRNN(cell="lstn"),
            ArgumentError,
            r"cell must be one of \['gru', 'lstm', 'rnn_relu', 'rnn_tanh'\]; got cell='lstn' "
            r"\(did you mean 'lstm'\?\)",
        ),
        (lambda: SeqRNN(order="cols"), ArgumentError, r"order must be one of \['permuted', "),
        (
            lambda: SeqRNN(order="pixels", pool=3),
            ArgumentError,
            r"^pool must divide image_size=28; got pool=3$",
        ),
        (lambda: SeqRNN(pool=0), ArgumentError, r"^pool must be >= 1; got pool=0$"),
        (
            lambda: recurrent_forward(nn.LSTM(2, 3), torch.zeros(1, 2, 2)),
            ArgumentError,
            r"rnn must be batch_first",
        ),
    ],
)
def test_argument_errors(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    if error is ArgumentError:
        argument = message.lstrip("^").split(" ")[0]
        if argument in {"n_head", "norm", "gate", "n_layer", "vocab_size", "patch", "cell",
                        "hidden", "order", "pool", "rnn"}:  # fmt: skip
            assert info.value.argument == argument


def test_seq_rnn_rows_ignores_pool():
    assert SeqRNN(hidden=4, order="rows", pool=3).rnn.input_size == 28
