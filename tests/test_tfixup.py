"""T-Fixup (Huang et al. 2020, Sec. 3) against its formula on the zoo's decoder-only char-gpt."""

from __future__ import annotations

import math

import pytest
import torch

from initlab.schemes.registry import initialize, parse_scheme
from initlab.schemes.transformer import tfixup_scale
from initlab.zoo.transformer import CharTransformer, ViT

D, L, VOCAB, T = 64, 3, 256, 64


def model() -> CharTransformer:
    torch.manual_seed(0)  # the constructed weights, overwritten by the scheme
    return CharTransformer(vocab_size=VOCAB, seq_len=T, d_model=D, n_layer=L, n_head=4)


@pytest.fixture(scope="module")
def net():
    return initialize(model(), "tfixup", generator=torch.Generator().manual_seed(0))


def test_the_decoder_factor_is_9n_to_the_minus_quarter():
    assert tfixup_scale(3) == pytest.approx(27**-0.25)
    assert tfixup_scale(1) == pytest.approx(1 / math.sqrt(3))  # 9^(-1/4) = 3^(-1/2)


def _check_uniform(tensors, bound):
    """Every entry within the bound, and the std of U(-b, b), b / sqrt(3).

    Moment test (STYLE.md): |s / sigma - 1| <= 5 c / sqrt(n) with c = 0.447 for a uniform
    (the relative std of the sample std); n >= 12,288 here, so the band is 2%: a missing
    (9L)^(-1/4) = 0.44 or a gain of sqrt(2) is far outside it.
    """
    x = torch.cat([t.detach().flatten() for t in tensors])
    assert float(x.abs().max()) <= bound
    assert float(x.abs().max()) >= 0.99 * bound  # the full range is used: not a smaller bound
    sigma = bound / math.sqrt(3)
    assert abs(float(x.std()) / sigma - 1) <= 5 * 0.447 / math.sqrt(x.numel())


def test_scaled_weights_are_xavier_uniform_times_the_factor(net):
    scale = (9 * L) ** -0.25
    blocks = net.blocks
    # v and the attention output (d x d): b = scale * sqrt(6 / (d + d))
    square = [b.attn.v.weight for b in blocks] + [b.attn.proj.weight for b in blocks]
    _check_uniform(square, scale * math.sqrt(6 / (2 * D)))
    # the MLP's d -> 4d and 4d -> d: b = scale * sqrt(6 / (d + 4d))
    mlp = [b.mlp.fc.weight for b in blocks] + [b.mlp.proj.weight for b in blocks]
    _check_uniform(mlp, scale * math.sqrt(6 / (5 * D)))


def test_q_k_and_the_head_are_plain_xavier_uniform(net):
    qk = [b.attn.q.weight for b in net.blocks] + [b.attn.k.weight for b in net.blocks]
    _check_uniform(qk, math.sqrt(6 / (2 * D)))
    _check_uniform([net.head.weight], math.sqrt(6 / (VOCAB + D)))  # 16,384 entries


def test_embeddings_are_normal_with_std_d_to_the_minus_half_times_the_factor(net):
    sigma = D**-0.5 * (9 * L) ** -0.25
    # Normal moment test: c = 0.707; token table 16,384 entries (band 2.8%), positions 4,096
    # (band 5.5%); the unscaled d^(-1/2) would be 2.3 times too large.
    for table in (net.tok_emb.weight, net.pos_emb):
        x = table.detach().flatten()
        assert abs(float(x.std()) / sigma - 1) <= 5 * 0.707 / math.sqrt(x.numel())
        assert abs(float(x.mean())) <= 5 * sigma / math.sqrt(x.numel())


def test_norms_biases_and_residual_scale_are_the_defaults(net):
    for name, p in net.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        elif ".ln" in name or name.startswith("ln_f"):
            assert torch.equal(p, torch.ones_like(p)), name
    assert float(net.residual_scale) == 1.0


def test_same_seed_same_weights_and_the_global_rng_untouched(net):
    fresh = model()
    state = torch.get_rng_state()
    again = initialize(fresh, "tfixup", generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(), strict=True))
    other = initialize(model(), "tfixup", generator=torch.Generator().manual_seed(1))
    assert not torch.equal(net.blocks[0].attn.v.weight, other.blocks[0].attn.v.weight)


def test_an_encoder_only_model_is_refused_naming_what_it_needs():
    with pytest.raises(ValueError, match=r"tfixup.*decoder-only.*causal.*ViT has patch_emb"):
        initialize(ViT(d_model=16, depth=1, n_head=2), "tfixup", generator=torch.Generator())


def test_tfixup_takes_the_common_options():
    assert parse_scheme("tfixup:zero_head=1")[1] == {"scaled_embedding": 0.0, "zero_head": 1.0}
