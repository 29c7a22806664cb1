"""char-gpt without LayerNorm (norm="none"), the decoder T-Fixup is derived for.

Huang et al. 2020, "Improving Transformer Optimization Through Better Initialization", Sec. 3:
T-Fixup removes every LayerNorm; its decoder rule scales v, the attention output, the MLP and
the input embedding by (9N)^(-1/4).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.schemes.registry import initialize
from initlab.zoo.factory import parse_model_args
from initlab.zoo.models import build_model
from initlab.zoo.transformer import CharTransformer

# float32 sums of a few dozen products in another order (batched against single matrix
# products): differences are a few ulp of values of order 1, as in tests/test_zoo_sequence.py.
ATOL = 1e-5


def tiny(seed: int = 0, **options) -> CharTransformer:
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=11, seq_len=8, d_model=16, n_layer=2, n_head=2, norm="none")
    return CharTransformer(**{**kwargs, **options})


def tokens(*shape, seed=0) -> torch.Tensor:
    return torch.randint(0, 11, shape, generator=torch.Generator().manual_seed(seed))


def test_the_model_has_no_layernorm_and_no_norm_parameters():
    model = tiny()
    assert model.norm_position == "none"
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert isinstance(model.ln_f, nn.Identity)
    for block in model.blocks:
        assert isinstance(block.ln1, nn.Identity) and isinstance(block.ln2, nn.Identity)
    # By hand (d = 16, L = 2): per block q, k, v, proj 4 (d^2 + d); fc d*4d + 4d;
    # proj 4d*d + d; no LayerNorm weights. tok_emb 11 d, pos_emb 8 d, head 11 d (no bias).
    d = 16
    block = 4 * (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    assert sum(p.numel() for p in model.parameters()) == 11 * d + 8 * d + 2 * block + 11 * d


def test_the_cli_value_none_builds_it_through_the_registry():
    params = parse_model_args(["norm=none", "n_layer=3", "d_model=16", "n_head=2"])
    assert params["norm"] == "none"  # a bare word, not Python's None
    model = build_model("char-gpt", **params)
    assert model.norm_position == "none" and model.n_layer == 3


def test_each_block_is_the_plain_residual_sum():
    """x1 = a x + attn(x), x2 = a x1 + mlp(x1), then the head reads the sum directly."""
    model = tiny(n_layer=1)
    model.residual_scale.fill_(1.5)  # alpha enters the residual stream as in pre-LN
    x = tokens(3, 8)
    with torch.no_grad():
        h = model.tok_emb(x) + model.pos_emb[:8]
        block = model.blocks[0]
        h = 1.5 * h + block.attn(h)
        h = 1.5 * h + block.mlp(h)
        torch.testing.assert_close(model(x), model.head(h), rtol=0, atol=ATOL)


def test_later_tokens_do_not_change_earlier_logits():
    model, x = tiny(), tokens(2, 8)
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    with torch.no_grad():
        a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
    assert not torch.equal(a[:, 5:], b[:, 5:])


def test_rezero_gates_combine_with_no_norm():
    """With gates 0 every block is the identity: the logits are head(tok_emb + pos_emb)."""
    model = tiny(gate="rezero")
    x = tokens(2, 8)
    with torch.no_grad():
        expected = model.head(model.tok_emb(x) + model.pos_emb[:8])
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


# Stacked (vmap) forward and backward: the 'char-gpt no norm' case of tests/test_zoo_sequence.py.

# ---------------------------------------------------------------- T-Fixup in its own setting

D, L, VOCAB = 64, 4, 256


@pytest.fixture(scope="module")
def tfixup_net():
    model = tiny(vocab_size=VOCAB, seq_len=64, d_model=D, n_layer=L, n_head=4)
    return initialize(model, "tfixup", generator=torch.Generator().manual_seed(0))


def _check_uniform(tensors, bound):
    """Every entry within the bound, the bound reached, and the std of U(-b, b), b / sqrt(3).

    Moment test (STYLE.md): the sample std's relative std is c / sqrt(n), c = 0.447 for a
    uniform (sqrt((kurtosis - 1) / 4), kurtosis 1.8); band 5 c / sqrt(n). n >= 32,768 here,
    a band of 1.2%: a missing (9L)^(-1/4) = 0.41 or a gain of sqrt(2) is far outside it.
    """
    x = torch.cat([t.detach().flatten() for t in tensors])
    assert float(x.abs().max()) <= bound
    assert float(x.abs().max()) >= 0.99 * bound
    sigma = bound / math.sqrt(3)
    assert abs(float(x.std()) / sigma - 1) <= 5 * 0.447 / math.sqrt(x.numel())


def test_tfixup_scales_the_no_norm_decoder_by_9n_to_the_minus_quarter(tfixup_net):
    scale = 36**-0.25  # (9 N)^(-1/4), N = 4 decoder layers
    blocks = tfixup_net.blocks
    square = [b.attn.v.weight for b in blocks] + [b.attn.proj.weight for b in blocks]
    _check_uniform(square, scale * math.sqrt(6 / (2 * D)))  # Xavier bound of d x d, scaled
    mlp = [b.mlp.fc.weight for b in blocks] + [b.mlp.proj.weight for b in blocks]
    _check_uniform(mlp, scale * math.sqrt(6 / (5 * D)))  # Xavier bound of d x 4d, scaled
    qk = [b.attn.q.weight for b in blocks] + [b.attn.k.weight for b in blocks]
    _check_uniform(qk, math.sqrt(6 / (2 * D)))  # q and k stay plain Xavier
    # Input embedding N(0, (d^(-1/2) (9N)^(-1/4))^2): normal moment test, c = 0.707
    # (sqrt(2) / 2), 16,384 entries: band 2.8%; the unscaled d^(-1/2) is 2.4 times too large.
    x = tfixup_net.tok_emb.weight.detach().flatten()
    sigma = D**-0.5 * scale
    assert abs(float(x.std()) / sigma - 1) <= 5 * 0.707 / math.sqrt(x.numel())
    assert float(tfixup_net.residual_scale) == 1.0


def test_deepnorm_is_refused_on_the_no_norm_model():
    with pytest.raises(ValueError, match=r"deepnorm.*post-LN.*got norm_position='none'"):
        initialize(tiny(), "deepnorm", generator=torch.Generator())


def test_an_unknown_norm_lists_none_among_the_choices():
    with pytest.raises(ArgumentError, match=r"norm must be one of \['none', 'post', 'pre'\]"):
        tiny(norm="layer")
