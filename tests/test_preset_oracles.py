"""Presets against their sources' own code, parameter by parameter, over several configurations.

The oracle is what the source's code writes: a model (or module) is constructed while every
in-place fill that ``torch.nn.init`` and Hugging Face's ``transformers.initialization`` end in
(``Tensor.normal_``, ``uniform_``, ``fill_``, ``zero_``; ``trunc_normal_`` as one call) is
recorded with its arguments. The last whole-tensor call on a parameter is the distribution the
source draws it from (later row fills are padding rows); a plan row must name the same
distribution with the same std / bound / value, exactly. Where draws differ, the values are
compared statistically (``agrees``: std within 5 c / sqrt(n), see test_policy_presets).
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn

from initlab.policy import plan
from tests.test_policy_presets import agrees

transformers = pytest.importorskip("transformers")
hf_init = pytest.importorskip("transformers.initialization")

_METHODS = ("normal_", "uniform_", "fill_", "zero_")


@contextlib.contextmanager
def recording():
    """Record ``(tensor, spec)`` for every init fill while constructing; yields the list."""
    calls: list[tuple[torch.Tensor, tuple]] = []
    inside_trunc = [False]
    originals = {name: getattr(torch.Tensor, name) for name in _METHODS}

    def wrap(name):
        original = originals[name]

        def method(self, *args, **kwargs):
            if not inside_trunc[0]:
                if name == "normal_":
                    mean = args[0] if args else kwargs.get("mean", 0.0)
                    std = args[1] if len(args) > 1 else kwargs.get("std", 1.0)
                    assert mean == 0, "no preset plans a non-zero mean"
                    calls.append((self, ("normal", float(std))))
                elif name == "uniform_":
                    low = args[0] if args else kwargs.get("from", 0.0)
                    high = args[1] if len(args) > 1 else kwargs.get("to", 1.0)
                    assert low == -high, "no preset plans an asymmetric uniform"
                    calls.append((self, ("uniform", float(high))))
                elif name == "fill_":
                    calls.append((self, ("constant", float(args[0]))))
                else:
                    calls.append((self, ("constant", 0.0)))
            return original(self, *args, **kwargs)

        return method

    init_module = hf_init
    trunc = init_module.TORCH_INIT_FUNCTIONS["trunc_normal_"]

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        assert mean == 0 and a == -b
        calls.append((tensor, ("truncated_normal", float(std), float(b))))
        inside_trunc[0] = True
        try:
            return trunc(tensor, mean=mean, std=std, a=a, b=b, generator=generator)
        finally:
            inside_trunc[0] = False

    deepcopy = nn.Parameter.__deepcopy__

    def copied(self, memo):  # nn.TransformerEncoder's layers are deep copies of one layer
        result = deepcopy(self, memo)
        calls.append((result, ("copy of", self)))
        return result

    nn.Parameter.__deepcopy__ = copied
    for name in _METHODS:
        setattr(torch.Tensor, name, wrap(name))
    init_module.TORCH_INIT_FUNCTIONS["trunc_normal_"] = trunc_normal_
    try:
        yield calls
    finally:
        for name in _METHODS:
            delattr(torch.Tensor, name)  # back to torch._C.TensorBase's method
        init_module.TORCH_INIT_FUNCTIONS["trunc_normal_"] = trunc
        nn.Parameter.__deepcopy__ = deepcopy


def source_spec(calls, param: torch.Tensor) -> tuple[tuple, tuple[int, ...]]:
    """The distribution the source's last whole-tensor fill of ``param`` used, and the rows it
    zeroed afterwards (an embedding's padding row)."""
    spec, rows = None, set()
    for i, (tensor, what) in enumerate(calls):
        if tensor is param and what[0] == "copy of":  # what the original held at the copy
            spec, rows = source_spec(calls[:i], what[1])
            rows = set(rows)
        elif tensor is param:
            spec, rows = what, set()
        elif tensor._base is param:
            row = (tensor.storage_offset() - param.storage_offset()) // param.stride(0)
            assert what == ("constant", 0.0) and tensor.shape == param.shape[1:], what
            rows.add(row)
    return spec, tuple(sorted(rows))


def planned(row) -> tuple:
    if row.distribution == "normal":
        return ("normal", row.std)
    if row.distribution == "uniform":
        return ("uniform", row.bound)
    if row.distribution == "truncated_normal":
        return ("truncated_normal", row.std, row.bound)
    if row.distribution == "constant":
        assert len(set(row.value)) == 1, row
        return ("constant", row.value[0])
    return (row.distribution,)


def same(a: tuple, b: tuple) -> bool:
    """Same distribution and parameters (to rounding)."""
    if a[0] != b[0] or len(a) != len(b):
        return False
    return all(x == pytest.approx(y, rel=1e-12) for x, y in zip(a[1:], b[1:], strict=True))


def check_against_source(build, policy: str, **options):
    """Construct with ``build`` under the recorder (the oracle), plan ``policy`` on a second
    construction, and compare every row; then apply and compare values statistically."""
    torch.manual_seed(0)
    with recording() as calls:
        reference = build()
    specs = {}
    for name, param in reference.named_parameters():
        specs[name] = source_spec(calls, param)
    model = build()
    p = plan(model, policy, **options)
    mismatches = []
    for row in p.rows:
        spec, rows = specs[row.name]
        if row.distribution == "keep":
            continue
        if spec is None or not same(planned(row), spec) or rows != row.zero_rows:
            mismatches.append(f"{row.name}: plan {planned(row)} rows {row.zero_rows}, "
                              f"source {spec} rows {rows}")  # fmt: skip
    assert not mismatches, "\n".join(mismatches)
    p.apply(seed=0)
    for row in p.rows:
        if row.distribution in {"normal", "uniform", "truncated_normal", "constant"}:
            agrees(row, reference.get_parameter(row.name), "source")
            agrees(row, model.get_parameter(row.name), "applied")
    return p, reference, model


# ---------------------------------------------------------------- torch: reset_parameters

TORCH_MODULES = {
    "linear": lambda: nn.Linear(300, 200),
    "linear_no_bias": lambda: nn.Linear(70, 30, bias=False),
    "conv1d_groups": lambda: nn.Conv1d(12, 18, 5, groups=3),
    "conv2d": lambda: nn.Conv2d(16, 32, 3),
    "conv3d": lambda: nn.Conv3d(4, 8, (2, 3, 3), bias=False),
    "conv_transpose1d": lambda: nn.ConvTranspose1d(12, 8, 4, groups=4, dilation=2),
    "conv_transpose2d": lambda: nn.ConvTranspose2d(32, 16, 3, groups=2),
    "embedding_pad": lambda: nn.Embedding(200, 16, padding_idx=3),
    "embedding_negative_pad": lambda: nn.Embedding(200, 16, padding_idx=-1),
    "rnn_bidirectional": lambda: nn.RNN(10, 20, num_layers=2, bidirectional=True),
    "lstm_proj": lambda: nn.LSTM(10, 24, proj_size=8),
    "gru": lambda: nn.GRU(10, 16, bias=False),
    "cells": lambda: nn.ModuleList([nn.LSTMCell(8, 12), nn.GRUCell(8, 12), nn.RNNCell(8, 12)]),
    "mha_kdim_bias_kv": lambda: nn.MultiheadAttention(32, 4, kdim=16, vdim=24, add_bias_kv=True),
    "mha_no_bias": lambda: nn.MultiheadAttention(32, 4, bias=False),
    "encoder_layer": lambda: nn.TransformerEncoderLayer(32, 4, 64),
    "transformer": lambda: nn.Transformer(32, 4, 1, 1, 64),
    "norms": lambda: nn.ModuleList(
        [nn.LayerNorm(16), nn.LayerNorm(16, bias=False), nn.GroupNorm(4, 16), nn.RMSNorm(16)]
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(TORCH_MODULES))
def test_torch_preset_draws_what_reset_parameters_draws(name):
    check_against_source(TORCH_MODULES[name], "torch")


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.inorm = nn.InstanceNorm1d(8, affine=True, track_running_stats=True)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return self.inorm(y.flatten(2))


def test_torch_preset_resets_running_statistics_as_a_fresh_module():
    """PyTorch's _NormBase.reset_parameters() calls reset_running_stats(): running_mean 0,
    running_var 1, num_batches_tracked 0. After training steps, the torch preset must give the
    buffers a fresh module has, and weight 1, bias 0."""
    torch.manual_seed(0)
    model, fresh = ConvBN(), ConvBN()
    with torch.no_grad():
        for _ in range(3):  # train-mode forwards move the statistics
            model(torch.randn(4, 3, 6, 6) * 3 + 1)
        model.bn.weight.fill_(2.0)
    assert model.bn.num_batches_tracked.item() == 3
    p = plan(model, "torch").apply(seed=0)
    assert p["bn.weight"].distribution == "keep"
    for name, buffer in fresh.named_buffers():
        assert torch.equal(model.get_buffer(name), buffer), name
    assert torch.equal(model.bn.weight, torch.ones(8)) and not model.bn.bias.any()
    # only= that leaves part of the module out does not re-initialize it whole: stats stay
    with torch.no_grad():
        model(torch.randn(4, 3, 6, 6) + 1)
    stats = model.bn.running_mean.clone()
    plan(model, "torch", only=["bn.weight"]).apply(seed=0)
    assert torch.equal(model.bn.running_mean, stats)


# ---------------------------------------------------------------- Hugging Face GPT-2 and BERT


def gpt2(cls: str, **config):
    config = transformers.GPT2Config(n_embd=32, n_head=2, n_positions=16, vocab_size=64,
                                     **config)  # fmt: skip
    return lambda: getattr(transformers, cls)(config)


GPT2 = {
    "model_1_layer": gpt2("GPT2Model", n_layer=1),
    "lm_3_layers_range_005": gpt2("GPT2LMHeadModel", n_layer=3, initializer_range=0.05),
    "lm_cross_untied": gpt2("GPT2LMHeadModel", n_layer=2, add_cross_attention=True,
                            tie_word_embeddings=False, initializer_range=0.01),
    "double_heads": gpt2("GPT2DoubleHeadsModel", n_layer=2),
    "sequence_classification": gpt2("GPT2ForSequenceClassification", n_layer=2, num_labels=3,
                                    initializer_range=0.03),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GPT2))
def test_gpt2_preset_draws_what_gpt2_init_weights_draws(name):
    p, reference, _ = check_against_source(GPT2[name], "gpt2")
    assert {r.distribution for r in p.rows} <= {"normal", "constant"}
    config = reference.config
    # GPT2PreTrainedModel._init_weights: every c_proj, cross-attention's too, by sqrt(2 n_layer)
    scaled = [r for r in p.rows if r.name.endswith("c_proj.weight")]
    expected = config.initializer_range / math.sqrt(2 * config.n_layer)
    assert scaled and all(r.std == pytest.approx(expected) for r in scaled)
    # only= (as load_pretrained plans the tensors a checkpoint lacks) keeps every row
    some = [scaled[0].name, scaled[-1].name, p.rows[0].name]
    for row in plan(GPT2[name](), "gpt2", only=some).rows:
        assert (row.distribution, row.std) == (p[row.name].distribution, p[row.name].std)


def test_gpt2_residual_scale_counts_branches_without_a_config_under_only():
    """A GPT-2-like model without a config: the scale counts the residual projections of the
    whole model, so only= gives a projection the std a full plan gives."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.mlp = nn.Module(), nn.Module()
            self.attn.c_proj, self.mlp.c_proj = nn.Linear(8, 8), nn.Linear(8, 8)

    model = nn.Sequential(Block(), Block(), Block())
    full = plan(model, "gpt2")["0.attn.c_proj.weight"]
    part = plan(model, "gpt2", only=["0.attn.c_proj.weight"])["0.attn.c_proj.weight"]
    assert full.std == part.std == pytest.approx(0.02 / math.sqrt(6))


def bert(cls: str, **config):
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=64,
                                     max_position_embeddings=16, **config)  # fmt: skip
    return lambda: getattr(transformers, cls)(config)


BERT = {
    "model": bert("BertModel"),
    "masked_lm_range_005_pad_3": bert("BertForMaskedLM", initializer_range=0.05, pad_token_id=3),
    "pretraining_untied": bert("BertForPreTraining", tie_word_embeddings=False),
    "classification_range_001": bert("BertForSequenceClassification", initializer_range=0.01),
}


@pytest.mark.parametrize("name", sorted(BERT))
def test_bert_preset_draws_what_bert_init_weights_draws(name):
    p, reference, _ = check_against_source(BERT[name], "bert")
    assert {r.distribution for r in p.rows} <= {"normal", "constant"}
    std = reference.config.initializer_range
    assert all(r.std == pytest.approx(std) for r in p.rows if r.distribution == "normal")


def test_hf_presets_take_an_explicit_std_over_the_config():
    model = GPT2["lm_3_layers_range_005"]()
    p = plan(model, "gpt2", std=0.01)
    assert p["transformer.h.0.attn.c_attn.weight"].std == 0.01
    assert p["transformer.h.0.mlp.c_proj.weight"].std == pytest.approx(0.01 / math.sqrt(6))
    assert p["transformer.wte.weight"].std == 0.01


# ---------------------------------------------------------------- auto against T5's and ViT's


def t5(cls: str, **config):
    config = transformers.T5Config(vocab_size=128, d_ff=64, num_layers=2,
                                   relative_attention_num_buckets=8, **config)  # fmt: skip
    return lambda: getattr(transformers, cls)(config)


T5 = {
    "encoder_square": t5("T5EncoderModel", d_model=32, d_kv=8, num_heads=4),
    "lm_tied_wide_heads": t5("T5ForConditionalGeneration", d_model=32, d_kv=16, num_heads=4,
                             attn_implementation="eager"),
    "lm_untied": t5("T5ForConditionalGeneration", d_model=48, d_kv=8, num_heads=2,
                    tie_word_embeddings=False),
    "mt5": lambda: transformers.MT5EncoderModel(transformers.MT5Config(
        vocab_size=64, d_model=32, d_kv=8, num_heads=2, d_ff=64, num_layers=1)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(T5))
def test_auto_draws_t5_attention_as_t5_init_weights(name):
    """T5's scores q.k^T are not divided by sqrt(d_kv) (T5Attention.scaling = 1); its init
    folds that into q: N(0, 1/(d_kv d_model)), k N(0, 1/d_model), relative attention bias
    N(0, 1/d_model), and a tied embedding N(0, 1) (the head's input is scaled by d_model^-1/2).
    auto takes these rules from T5PreTrainedModel._init_weights, for any head count and width."""
    with recording() as calls:
        reference = T5[name]()
    p = plan(T5[name](), "auto")
    compared = 0
    for row in p.rows:
        leaf = row.name.rsplit(".", 2)[-2]
        # a tied head whose input T5 does not rescale (scale_decoder_outputs=False, which
        # transformers 5 sets for tie_word_embeddings=False while still tying) takes auto's
        # N(0, 1/dim) for unit-variance logits instead of T5's N(0, 1)
        rescaled = getattr(reference.config, "scale_decoder_outputs", False)
        tied_shared = row.name == "shared.weight" and row.tied and rescaled
        if leaf in {"q", "k", "relative_attention_bias"} or tied_shared:
            spec, _ = source_spec(calls, reference.get_parameter(row.name))
            assert same(planned(row), spec), (row.name, planned(row), spec)
            compared += 1
    assert compared >= 3


def attention_statistics(model, ids):
    """RMS of the first encoder layer's scores q.k^T (without the position bias), mean
    attention entropy of that layer (nats) and std of the LM logits."""
    attention = model.encoder.block[0].layer[0].SelfAttention
    out = {}
    hooks = [
        attention.q.register_forward_hook(lambda m, i, o: out.__setitem__("q", o)),
        attention.k.register_forward_hook(lambda m, i, o: out.__setitem__("k", o)),
    ]
    with torch.no_grad():
        result = model(input_ids=ids, decoder_input_ids=ids, output_attentions=True)
    for hook in hooks:
        hook.remove()
    shape = (*ids.shape, attention.n_heads, attention.key_value_proj_dim)
    scores = torch.einsum("bihd,bjhd->bhij", out["q"].view(shape), out["k"].view(shape))
    weights = result.encoder_attentions[0]
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1).mean()
    return scores.pow(2).mean().sqrt().item(), entropy.item(), result.logits.std().item()


def test_auto_t5_attention_and_logits_match_hugging_face_at_init():
    """Scores of unit variance (what 1/sqrt(d_head) gives scaled attention), the same
    attention entropy and LM logits of the same size as under Hugging Face's own init.

    Tolerances: the statistics are averages over 4 x 32 x 32 token pairs per head, so their
    spread comes from the weight draw. Measured over 12 draws (this config and d_model 64;
    seeds 0-5), both inits give score RMS 0.94-1.06, entropy 2.97-3.07 nats (ln 32 = 3.47)
    and logit std 1.00-1.10: sd about 0.03 each. The bounds (score RMS within 25 % of 1,
    entropy within 0.15 nats and logit std within 25 % of Hugging Face's) are over 5 sd wide;
    without the T5 rules, score RMS is sqrt(d_kv) = 4, entropy about 1 nat, logit std
    d_model^-1/2 = 0.18."""
    torch.manual_seed(0)
    model = T5["lm_tied_wide_heads"]().eval()  # eager attention: returns its weights
    ids = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    rms_hf, entropy_hf, logits_hf = attention_statistics(model, ids)
    plan(model, "auto", example_input={"input_ids": ids[:1], "decoder_input_ids": ids[:1]}).apply(
        seed=0
    )
    rms, entropy, logits = attention_statistics(model, ids)
    assert abs(rms - 1) <= 0.25 and abs(rms_hf - 1) <= 0.25, (rms, rms_hf)
    assert abs(entropy - entropy_hf) <= 0.15, (entropy, entropy_hf)
    assert abs(logits / logits_hf - 1) <= 0.25, (logits, logits_hf)


def test_auto_draws_vit_position_and_class_embeddings_as_timm_and_hugging_face():
    """ViTPreTrainedModel._init_weights (and timm's VisionTransformer) call
    trunc_normal_(std=0.02) with PyTorch's absolute bounds a=-2, b=2: 100 std, so in effect
    N(0, 0.02^2), not N(0, 0.02^2) cut at +-2 std (whose std is 0.0176)."""
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, image_size=16, patch_size=4)  # fmt: skip
    with recording() as calls:
        reference = transformers.ViTModel(config)
    p = plan(transformers.ViTModel(config), "auto")
    for name in ("embeddings.position_embeddings", "embeddings.cls_token"):
        spec, _ = source_spec(calls, reference.get_parameter(name))
        assert spec == ("truncated_normal", 0.02, 2.0)
        assert same(planned(p[name]), spec), (name, planned(p[name]))
    # the drawn std is the source's 0.02: n = 64 * 1024 draws; |s / 0.02 - 1| <= 5 c / sqrt(n)
    # = 1.4 % with the normal's c = 0.707 (a cut at 100 std changes no moment measurably)
    net = nn.Module()
    net.pos_embed = nn.Parameter(torch.empty(1, 1024, 64))
    plan(net, "auto").apply(seed=0)
    n = net.pos_embed.numel()
    assert abs(net.pos_embed.std().item() / 0.02 - 1) <= 5 * 0.707 / math.sqrt(n)
