"""The auto policy on Hugging Face GPT-2: tied input/output embeddings and the fused Conv1D
q/k/v projection; the same tying in plain PyTorch modules."""

import math

import pytest
import torch
from torch import nn

import initlab
from initlab.policy import Rule, init_model, plan
from initlab.policy.streams import fill_box_

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# Moment tests (STYLE.md): |s / sigma - 1| <= 5 c / sqrt(n), c = 0.707 (normal), 0.447 (uniform).
NORMAL_C, UNIFORM_C = 0.707, 0.447
V, T, B = 1000, 32, 8


def close_std(t: torch.Tensor, sigma: float, c: float) -> bool:
    return abs(t.float().std().item() / sigma - 1) <= 5 * c / math.sqrt(t.numel())


def gpt2(d: int, **config) -> nn.Module:
    cfg = transformers.GPT2Config(
        vocab_size=V, n_positions=T, n_embd=d, n_layer=2, n_head=4, bos_token_id=0,
        eos_token_id=0, **config,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg)


def initial_loss(model: nn.Module, seed: int = 0, **options) -> float:
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))
    init_model(model, example_input={"input_ids": ids}, seed=seed, **options)
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def loss_band(s2: float) -> tuple[float, float]:
    """Expected initial loss and a 5-sigma tolerance for logits i.i.d. N(0, s2) over V classes.

    Per position the loss is logsumexp(z) - z_y. E[logsumexp] = ln V + s2/2 - (e^s2 - 1)/(2V)
    to second order (the log of a mean of V lognormals), E[z_y] = 0 for random labels. The
    std of z_y is sqrt(s2), averaged over the N = B (T - 1) predicted positions; the common
    part of logsumexp (one E for all positions) has relative std sqrt((e^s2 - 1) / V).
    """
    n = B * (T - 1)
    mean = math.log(V) + s2 / 2 - math.expm1(s2) / (2 * V)
    return mean, 5 * (math.sqrt(s2 / n) + math.sqrt(math.expm1(s2) / V))


@pytest.mark.parametrize("d", [64, 256])
def test_tied_gpt2_starts_at_the_loss_of_unit_variance_logits(d):
    # Before: wte (tied to lm_head) drawn N(0, 1): logit variance d, loss 30 (d=64), 96.5 (256).
    # Now N(0, 1/d): ln_f gives |h|^2 = d, so logits are i.i.d. N(0, |h|^2 / d) = N(0, 1).
    model = gpt2(d)
    mean, tol = loss_band(1.0)
    assert abs(initial_loss(model) - mean) <= tol
    row = plan(model)["transformer.wte.weight"]
    assert row.rule == "tied embedding: N(0, 1/dim)" and row.tied == ("lm_head.weight",)
    assert row.std == pytest.approx(d**-0.5)
    assert close_std(model.transformer.wte.weight, d**-0.5, NORMAL_C)
    # positions are summed with the token embedding and take its std (as GPT-2's one std)
    assert plan(model)["transformer.wpe.weight"].std == pytest.approx(d**-0.5)
    # the band tells the old init apart: N(0, 1) gives logit std sqrt(d), far above it
    assert initial_loss(gpt2(d), embedding_std=1.0) > mean + 10 * tol


def test_untied_gpt2_keeps_unit_embeddings_and_an_xavier_head():
    d = 64
    model = gpt2(d, tie_word_embeddings=False)
    p = plan(model)
    for name in ("transformer.wte.weight", "transformer.wpe.weight"):
        assert (p[name].rule, p[name].std, p[name].tied) == ("embedding N(0, std)", 1.0, ())
    assert p["lm_head.weight"].rule == "output layer: Xavier"
    # Xavier uniform (V, d): variance 2 / (d + V) per entry, so s2 = |h|^2 2 / (d + V)
    mean, tol = loss_band(2 * d / (d + V))
    assert abs(initial_loss(model) - mean) <= tol


def test_explicit_embedding_std_applies_to_the_tied_embedding_too():
    row = plan(gpt2(64), embedding_std=0.02)["transformer.wte.weight"]
    assert (row.rule, row.std) == ("embedding N(0, std)", 0.02)


class HeadFirst(nn.Module):
    """Tied like nanoGPT, but the head is registered first: its name comes first."""

    def __init__(self, vocab=400, d=32):
        super().__init__()
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(16, d)
        self.tag = nn.Embedding(10, 8)  # another width: not summed with the tied one
        self.lm_head.weight = self.wte.weight


def test_tied_weight_is_planned_as_the_embedding_in_either_order_and_without_a_trace():
    model = HeadFirst()
    p = init_model(model, seed=0)  # no example_input: tying is read from shared Parameters
    row = p["lm_head.weight"]
    assert (row.name, row.layer_kind, row.module, row.tied) == (
        "lm_head.weight", "embedding", "wte", ("wte.weight",),
    )  # fmt: skip
    assert (row.fan_in, row.fan_out) == (400, 32)  # the embedding's (num, dim) reading
    assert row.rule == "tied embedding: N(0, 1/dim)" and row.std == pytest.approx(32**-0.5)
    assert close_std(model.wte.weight, 32**-0.5, NORMAL_C)
    assert p["wpe.weight"].rule == "embedding beside a tied one: N(0, 1/dim)"  # not itself tied
    assert p["wpe.weight"].std == pytest.approx(32**-0.5)
    assert (p["tag.weight"].rule, p["tag.weight"].std) == ("embedding N(0, std)", 1.0)


class TiedGRU(nn.Module):
    """A GRU language model with tied embeddings: no norm before the head."""

    def __init__(self, d=64):
        super().__init__()
        self.emb, self.gru, self.out = (
            nn.Embedding(V, d),
            nn.GRU(d, d, 2, batch_first=True),
            nn.Linear(d, V),
        )
        self.out.weight = self.emb.weight

    def forward(self, ids):  # (B, T) -> (B, T, V)
        return self.out(self.gru(self.emb(ids))[0])


def test_tied_gru_lm_logits_are_as_small_as_its_hidden_state_not_unit_variance():
    # README: unit-variance logits need a normalized hidden state; with E ~ N(0, 1/d),
    # Var(logit) = d Var(h) / d = E[h^2], and a GRU's h is tanh-bounded and here small.
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    model = TiedGRU()
    init_model(model, example_input=ids, seed=0)
    with torch.no_grad():
        h = model.gru(model.emb(ids))[0]
        logits = model(ids)
    rms = h.pow(2).mean().sqrt().item()
    assert rms < 0.15 and logits.std().item() == pytest.approx(rms, rel=0.1)
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), ids.reshape(-1)).item()
    assert abs(loss - math.log(V)) < 0.02  # ln V + Var/2 ~ ln V + 0.01, not ln V + 1/2


# ---- meta -> to_empty -> apply: ties the model lost are restored -------------------------


def test_meta_gpt2_is_re_tied_by_apply_after_to_empty_and_equals_a_cpu_init():
    with torch.device("meta"):
        meta = gpt2(64)
    p = plan(meta, "gpt2")
    meta.to_empty(device="cpu")  # gives lm_head its own (uninitialized) Parameter
    assert meta.lm_head.weight is not meta.transformer.wte.weight
    with pytest.warns(UserWarning, match=r"re-tied .*'lm_head.weight = transformer.wte.weight'"):
        p.apply(seed=0)
    assert meta.lm_head.weight is meta.transformer.wte.weight
    real = gpt2(64)
    plan(real, "gpt2").apply(seed=0)
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = meta.eval()(input_ids=ids).logits, real.eval()(input_ids=ids).logits
    assert torch.isfinite(got).all() and torch.equal(got, want)


def test_meta_plain_tie_is_re_tied_and_a_tie_that_survives_is_left_alone(recwarn):
    with torch.device("meta"):
        model = HeadFirst()
    p = plan(model)
    model.to_empty(device="cpu")
    with pytest.warns(UserWarning, match=r"re-tied .*'wte.weight = lm_head.weight'"):
        p.apply(seed=1)
    assert model.wte.weight is model.lm_head.weight
    assert close_std(model.lm_head.weight, 32**-0.5, NORMAL_C)  # the tied rule, not garbage
    recwarn.clear()
    p.apply(seed=1)  # tied now: nothing to restore, no warning
    assert not [w for w in recwarn if "re-tied" in str(w.message)]


def test_a_tied_alias_replaced_by_another_shape_is_refused():
    model = HeadFirst()
    p = plan(model)
    model.wte = nn.Embedding(400, 16)
    with pytest.raises(ValueError, match=r"'wte.weight', planned as tied to 'lm_head.weight'"):
        p.apply(seed=0)


# ---- BertForMaskedLM: the output bias is planned as the decoder Linear's bias ----------


def bert_mlm() -> nn.Module:
    cfg = transformers.BertConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=T,
    )  # fmt: skip
    return transformers.BertForMaskedLM(cfg)


@pytest.mark.parametrize("policy, rule", [("auto", "output bias"), ("bert", "biases 0")])
def test_bert_mlm_output_bias_is_read_as_the_decoder_linear_bias_and_zeroed(policy, rule, recwarn):
    model = bert_mlm()
    head = model.cls.predictions
    assert head.bias is head.decoder.bias  # one Parameter, first named under the head
    with torch.no_grad():
        head.bias.fill_(3.0)  # as if trained: re-initializing must reset it
    p = init_model(model, policy, seed=0)
    row = p["cls.predictions.bias"]
    assert (row.module, row.layer_kind, row.rule, row.tied) == (
        "cls.predictions.decoder", "linear", rule, ("cls.predictions.decoder.bias",),
    )  # fmt: skip
    assert p.uncovered == [] and not [w for w in recwarn if "no rule covers" in str(w.message)]
    assert torch.equal(head.bias, torch.zeros(V))  # Hugging Face's _init_weights: Linear bias 0


def test_bert_mlm_embedding_labels_say_which_is_tied_and_which_is_beside_it():
    p = plan(bert_mlm())
    tied = p["bert.embeddings.word_embeddings.weight"]
    assert tied.rule == "tied embedding: N(0, 1/dim)" and tied.std == pytest.approx(64**-0.5)
    assert tied.tied == ("cls.predictions.decoder.weight",)
    for name in ("position_embeddings", "token_type_embeddings"):
        row = p[f"bert.embeddings.{name}.weight"]
        assert (row.rule, row.tied) == ("embedding beside a tied one: N(0, 1/dim)", ())
        assert row.std == pytest.approx(64**-0.5)


def test_meta_bert_mlm_output_bias_is_re_tied_and_zero():
    with torch.device("meta"):
        model = bert_mlm()
    p = plan(model, "bert")
    model.to_empty(device="cpu")
    with pytest.warns(UserWarning, match=r"'cls.predictions.decoder.bias = cls.predictions.bias'"):
        p.apply(seed=0)
    head = model.cls.predictions
    assert head.decoder.bias is head.bias and torch.equal(head.bias, torch.zeros(V))
    assert head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    # apply also restored the buffers to_empty left uninitialized (tests/test_meta_path.py)
    assert torch.equal(model.bert.embeddings.position_ids, torch.arange(T)[None])
    with torch.no_grad():
        assert torch.isfinite(model.eval()(input_ids=ids).logits).all()


# ---- Conv1D (in, out): fused q/k/v along dim 1 ---------------------------------------------


def test_layer_fans_reads_a_conv1d_weight_as_in_out():
    # Before: read as (out, in) by compute_fans, fans swapped: (48, 16).
    conv = transformers.pytorch_utils.Conv1D(48, 16)  # nf = 48 outputs, nx = 16 inputs
    assert tuple(conv.weight.shape) == (16, 48)
    lf = initlab.layer_fans(conv, "weight")
    assert (lf.fan_in, lf.fan_out, lf.blocks) == (16, 48, 1)


def test_conv1d_fans_read_the_in_out_layout_and_qkv_blocks():
    d = 32
    p = plan(gpt2(d, add_cross_attention=True))

    def fans(name):
        r = p[f"transformer.h.0.{name}"]
        return r.fan_in, r.fan_out, r.blocks, r.block_dim

    assert fans("attn.c_attn.weight") == (d, d, 3, 1)  # (d, 3d): q, k, v
    assert fans("attn.c_attn.bias") == (d, d, 3, 0)
    assert fans("crossattention.c_attn.weight") == (d, d, 2, 1)  # (d, 2d): k, v
    assert fans("crossattention.q_attn.weight") == (d, d, 1, 0)
    assert fans("attn.c_proj.weight") == (d, d, 1, 0)
    assert fans("mlp.c_fc.weight") == (d, 4 * d, 1, 0)  # (in, out): not split, not swapped
    assert fans("mlp.c_proj.weight") == (4 * d, d, 1, 0)
    assert (
        "3 blocks (q, k, v) along the output dim 1"
        in p["transformer.h.0.attn.c_attn.weight"].reason
    )


def test_conv1d_c_attn_is_xavier_per_block():
    d = 128  # blocks of 128 x 128 = 16384 entries
    model = gpt2(d)
    p = init_model(model, seed=0)
    row = p["transformer.h.0.attn.c_attn.weight"]
    assert (row.layer_kind, row.rule) == ("linear", "attention q/k/v blocks: Xavier per block")
    assert "3 blocks (q, k, v)" in row.reason
    bound = math.sqrt(6 / (d + d))  # per block; the whole (d, 3d) matrix would give 6 / 4d
    assert row.bound == pytest.approx(bound)
    weight = model.transformer.h[0].attn.c_attn.weight.detach()
    assert weight.abs().max() <= bound
    for block in weight.split(d, dim=1):
        assert close_std(block, bound / math.sqrt(3), UNIFORM_C)


def test_orthogonal_rule_on_conv1d_c_attn_is_orthogonal_per_block_and_box_exact():
    d = 48
    model = gpt2(d)
    qkv = Rule("q/k/v orthogonal", "orthogonal", param="*attn.c_attn.weight")
    p = init_model(model, rules=[qkv], seed=3)
    weight = model.transformer.h[0].attn.c_attn.weight.detach()
    for block in weight.split(d, dim=1):  # each (in, d) block, not rows of dim 0
        assert torch.allclose(block.T @ block, torch.eye(d), atol=1e-5)
    row = p["transformer.h.0.attn.c_attn.weight"]
    assert row.std == pytest.approx(d**-0.5)
    # a shard along either dim draws exactly its entries of the whole (DTensor contract)
    top, right = torch.empty(d // 2, 3 * d), torch.empty(d, 3 * d // 2)
    fill_box_(top, row, 3, (0, 0))
    fill_box_(right, row, 3, (0, 3 * d // 2))
    assert torch.equal(top, weight[: d // 2]) and torch.equal(right, weight[:, 3 * d // 2 :])


# ---- apply(seed) reproducible for what is handed back to Hugging Face's own init -----------


def wav2vec2(global_seed: int) -> nn.Module:
    torch.manual_seed(global_seed)  # construction draws from the global RNG
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=20,
    )  # fmt: skip
    return transformers.Wav2Vec2ForCTC(cfg)


def everything(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def test_wav2vec2_same_seed_gives_every_tensor_equal_whatever_the_construction(recwarn):
    # Before: masked_spec_embed was handed to Wav2Vec2Model.init_weights(), which does nothing
    # after construction (every module is marked _is_hf_initialized), and the weight-normed
    # positional conv's weight_g/weight_v had no rule and kept the construction's draws.
    a, b = wav2vec2(1), wav2vec2(2)
    conv = "wav2vec2.encoder.pos_conv_embed.conv"
    v = f"{conv}.parametrizations.weight.original1"
    assert not torch.equal(a.get_parameter(v), b.get_parameter(v))  # constructions differ
    # as after from_pretrained: a loaded tensor is flagged, and transformers' init skips it
    a.wav2vec2.masked_spec_embed._is_hf_initialized = True
    p = plan(a)
    assert p.uncovered == [] and not [w for w in recwarn if "no rule covers" in str(w.message)]
    for leaf in ("original0", "original1"):
        row = p[f"{conv}.parametrizations.weight.{leaf}"]
        assert row.distribution == "keep" and "through its parametrization" in row.reason
    assert "Hugging Face Wav2Vec2Model._init_weights" in p["wav2vec2.masked_spec_embed"].reason
    p.apply(seed=0)
    plan(b).apply(seed=0)
    want = everything(b)
    for name, tensor in everything(a).items():
        assert torch.equal(tensor, want[name]), name
    assert a.wav2vec2.masked_spec_embed._is_hf_initialized is True  # the flag is put back
    plan(b).apply(seed=1)
    assert not torch.equal(b.wav2vec2.masked_spec_embed, a.wav2vec2.masked_spec_embed)


def test_wav2vec2_own_inits_draw_what_construction_draws():
    # the oracle is construction: masked_spec_embed U(0, 1) (Wav2Vec2PreTrainedModel
    # ._init_weights); the conv's own reset_parameters U(+-1/sqrt(fan_in)) (kaiming_uniform_,
    # a=sqrt(5)) on the effective weight, then weight_norm's split g = |w| over dims 0, 1
    # (dim=2), v = w. Hugging Face's normal_ on conv.weight writes a temporary (the
    # parametrization recomputes the weight), so construction never applies it.
    model = wav2vec2(0)
    plan(model).apply(seed=3)
    spec = model.wav2vec2.masked_spec_embed
    assert spec.min() >= 0 and spec.max() <= 1 and close_std(spec, 12**-0.5, UNIFORM_C)
    weight = model.wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight
    g, v = weight.original0.detach(), weight.original1.detach()
    assert torch.allclose(g, v.norm(dim=(0, 1), keepdim=True))
    bound = 1 / math.sqrt(16 * 16)  # in_channels / groups * kernel = 16 * 16
    assert v.abs().max() <= bound and close_std(v, bound / math.sqrt(3), UNIFORM_C)
