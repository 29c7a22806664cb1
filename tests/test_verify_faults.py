"""Fault injection: known initialization bugs, each injected into a model initlab handles, each
caught by ``verify``; and no false alarm on correctly initialized or loaded models.

The patterns: re-init after load, ``to_empty`` without init, a tie broken after
``to_empty``, buffers left uninitialized after meta materialization, a reused seeded
initializer, double initialization at another scale, a bfloat16 round trip, a transposed
(wrong-layout) weight from a checkpoint, a sharded init on 2 ranks that each draw with the same
seed, a partial load reported as complete; and memory holding integers, and NaN weights.
Hugging Face models come from tiny configs, offline (tests/test_meta_path.py).
"""

import warnings

import pytest
import torch
from torch import nn

import initlab as il
from initlab.policy import plan
from initlab.policy.receipt import record_model, tensor_hash
from initlab.policy.verify import verify
from initlab.zoo.models import build_model

transformers = pytest.importorskip("transformers")
from tests.test_meta_path import BUILDERS  # noqa: E402

transformers.logging.set_verbosity_error()


def hf(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return BUILDERS[name]()[0]


def on_meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return BUILDERS[name]()[0]


def failed(report, check: str) -> dict[str, str]:
    """Name -> evidence (joined by " | ") of the tensors that failed ``check``."""
    out = {}
    for v in report.verdicts:
        for f in v.findings:
            if f.check == check and f.status == "fail":
                out[v.name] = f"{out[v.name]} | {f.evidence}" if v.name in out else f.evidence
    return out


def quiet_plan(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan(model, *args, **kwargs)


# ---- the bug patterns ---------------------------------------------------------------------


def test_reinit_after_load_gpt2():
    # transformers #46620 / #35437: weights re-initialized after the load, reported as loaded
    ckpt = hf("gpt2", seed=1).state_dict()
    model = hf("gpt2")
    receipt = il.load_pretrained(model, ckpt, receipt=True).receipt
    assert verify(model, receipt).ok
    model.apply(model._init_weights)  # the late init: what a second post_init() does
    bad = failed(verify(model, receipt), "receipt")
    assert "transformer.h.0.mlp.c_fc.weight" in bad
    assert (
        "not the bytes loaded from checkpoint tensor 'transformer.h.0.mlp.c_fc.weight'"
        in (bad["transformer.h.0.mlp.c_fc.weight"])
    )


def test_to_empty_without_init_llama():
    cpu = hf("llama")  # kept alive: freed, its memory could come back, values and all
    receipt = quiet_plan(cpu).apply(seed=0, receipt=True).receipt
    model = on_meta("llama")
    model.to_empty(device="cpu")  # and nothing else: every tensor is whatever memory held
    report = verify(model, receipt)
    assert not report.ok
    bad = failed(report, "receipt")
    # Memory is whatever it held: a norm weight can land on freed memory that held ones and then
    # is what was planned (verify is right to pass it). Every tensor whose bytes differ from the
    # receipt's fails, and every weight matrix does (no allocation reproduces a drawn matrix).
    changed = [n for n, p in model.named_parameters() if tensor_hash(p) != receipt[n].sha256]
    assert changed and all(n in bad for n in changed), set(changed) - set(bad)
    matrices = [n for n, p in model.named_parameters() if p.dim() == 2 and n != "lm_head.weight"]
    assert all(n in bad for n in matrices), set(matrices) - set(bad)


def test_tie_broken_after_to_empty_gpt2():
    cpu = hf("gpt2")
    receipt = quiet_plan(cpu).apply(seed=0, receipt=True).receipt
    assert receipt["transformer.wte.weight"].tied == ("lm_head.weight",)
    model = on_meta("gpt2")
    model.to_empty(device="cpu")  # gives lm_head its own Parameter
    model.load_state_dict(cpu.state_dict())  # every value right, the tie gone
    report = verify(model, receipt)
    evidence = failed(report, "tie")["transformer.wte.weight"]
    assert "'lm_head.weight' and 'transformer.wte.weight' were one tensor; now two" in evidence
    assert "(equal values)" in evidence


@pytest.mark.parametrize(
    ("name", "buffer"),
    [("llama", "model.rotary_emb.inv_freq"), ("bert", "bert.embeddings.position_ids")],
)
def test_uninitialized_buffer_after_meta_materialization(name, buffer):
    correct = dict(hf(name).named_buffers())[buffer].clone()
    model = on_meta(name)
    p = quiet_plan(model)
    model.to_empty(device="cpu")
    p.apply(seed=0, restore=False)  # the parameters drawn, the buffers left as memory
    tensor = dict(model.named_buffers())[buffer]
    if torch.equal(tensor, correct):  # the allocator handed back the old values: make it junk
        tensor.copy_(torch.arange(tensor.numel()).view(tensor.shape).to(tensor.dtype) + 7)
    evidence = failed(verify(model), "constructor")[buffer]  # no receipt needed
    assert evidence.startswith("differs from what its module computes")


def test_reused_seeded_initializer_bert():
    # keras-hub #352: one initializer object with a fixed seed, reused: the layers are equal
    model = hf("bert")

    def seeded_normal_(w):
        nn.init.normal_(w, 0.0, 0.02, generator=torch.Generator().manual_seed(1337))

    for m in model.modules():
        if isinstance(m, nn.Linear):
            seeded_normal_(m.weight)
    bad = failed(verify(model), "duplicate")
    q = "bert.encoder.layer.0.attention.self.query.weight"
    assert q in bad and "bert.encoder.layer.1.attention.self.key.weight" in bad[q]


def test_double_initialization_at_another_scale_resnet():
    model = build_model("resnet", widths=(4, 8))
    p = quiet_plan(model).apply(seed=0, receipt=True)
    for m in model.modules():  # an old init_weights() run after the plan
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 1.0)
    report = verify(model, p.receipt)
    assert "stem.0.weight" in failed(report, "receipt")
    assert "vs planned std" in failed(report, "distribution")["stem.0.weight"]
    assert not failed(verify(model, p), "distribution").keys() - set(failed(report, "receipt"))


def test_bfloat16_round_trip_vit():
    model = hf("vit")
    p = quiet_plan(model).apply(seed=0, receipt=True)
    model.to(torch.bfloat16).to(torch.float32)  # a cast "for memory", then back
    bad = failed(verify(model, p.receipt), "receipt")
    w = next(n for n, t in model.named_parameters() if t.ndim == 2)  # names vary by version
    assert "rounded through bfloat16" in bad[w]
    cast = failed(verify(model.to(torch.bfloat16), p.receipt), "receipt")
    assert "dtype bfloat16, receipt float32" in cast[w]


def test_transposed_weight_from_a_wrong_layout_checkpoint_gpt2():
    source = hf("gpt2", seed=3)
    receipt = record_model(source)  # what the trained model held
    state = source.state_dict()
    # a converter writes Linear layout (out, in) for GPT-2's Conv1D (in, out) weights; the
    # square ones load into a GPT-2 without a shape error, transposed
    for key in [k for k in state if k.endswith("attn.c_proj.weight")]:
        state[key] = state[key].T.contiguous()
    model = hf("gpt2")
    model.load_state_dict(state)
    bad = failed(verify(model, receipt), "receipt")
    assert "transpose of the recorded tensor" in bad["transformer.h.0.attn.c_proj.weight"]


def test_sharded_init_on_two_ranks_with_one_seed_llama():
    single = hf("llama")
    receipt = quiet_plan(single).apply(seed=0, receipt=True).receipt
    model = hf("llama")
    with torch.no_grad():
        for _, w in model.named_parameters():
            if w.ndim == 2 and w.shape[0] % 2 == 0:  # two ranks fill their half from seed 0
                for half in w.chunk(2, dim=0):
                    half.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(0))
    alone = failed(verify(model), "shards")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert "its 2 blocks of 16 along dim 0 are identical" in alone[q]
    assert q in failed(verify(model, receipt), "receipt")


def test_partial_load_reported_as_complete_bert():
    ckpt = hf("bert", seed=5).state_dict()
    receipt = il.load_pretrained(hf("bert"), ckpt, receipt=True).receipt  # the complete load
    model = hf("bert")
    half = dict(list(ckpt.items())[: len(ckpt) // 2])
    model.load_state_dict(half, strict=False)  # "loaded" without a word about the rest
    bad = failed(verify(model, receipt), "receipt")
    params = dict(model.named_parameters())
    # not loaded, and not equal by construction (LayerNorm's ones and zeros are)
    missing = [k for k in params if k not in half and not torch.equal(params[k], ckpt[k])]
    assert len(missing) >= 5 and all(k in bad for k in missing)
    assert not any(k in bad for k in half)  # what was loaded is the checkpoint's


def test_memory_holding_integers_and_nan_t5():
    model = hf("t5")
    with torch.no_grad():
        w = model.shared.weight
        w.view(-1)[:64] = torch.arange(64, dtype=torch.int32).view(torch.float32)
        model.encoder.block[0].layer[0].SelfAttention.q.weight[0, 0] = float("nan")
    report = verify(model)
    assert "subnormal" in failed(report, "uninitialized")["shared.weight"]
    q = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert failed(report, "finite")[q] == "1 of 512 entries are NaN or inf"  # q: (2 heads x 8, 32)


# ---- no false alarm --------------------------------------------------------------------------

ZOO = ["mlp-784-128-10", "mlp", "cnn", "resmlp", "lstm", "resnet", "char-gpt", "vit",
       "char-rnn", "seq-rnn"]  # fmt: skip
HF = ["gpt2", "bert", "llama", "t5", "vit", "whisper", "wav2vec2"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_as_constructed_and_as_planned(name):
    model = build_model(name)
    assert verify(model).ok, verify(model).table(only_problems=True)
    for policy in ("auto", "flax"):  # flax: truncated normal draws
        receipt = quiet_plan(model, policy).apply(seed=0, receipt=True).receipt
        report = verify(model, receipt)
        assert report.ok, report.table(only_problems=True)


def test_zoo_transformer_as_planned_and_its_cloned_layers_as_constructed():
    model = build_model("transformer")
    # nn.TransformerEncoder deep-copies one layer: every layer starts identical. A finding,
    # not a false alarm; after a plan the layers are independent draws.
    assert "encoder.layers.0.linear1.weight" in failed(verify(model), "duplicate")
    receipt = quiet_plan(model).apply(seed=0, receipt=True).receipt
    assert verify(model, receipt).ok


@pytest.mark.parametrize("name", HF)
def test_hf_model_constructed_meta_materialized_and_loaded(name):
    model = hf(name)
    assert verify(model).ok, verify(model).table(only_problems=True)
    meta = on_meta(name)
    p = quiet_plan(meta)
    meta.to_empty(device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p.apply(seed=0, receipt=True)
    report = verify(meta, p.receipt)
    assert report.ok, report.table(only_problems=True)
    loaded = hf(name, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        receipt = il.load_pretrained(loaded, model.state_dict(), receipt=True).receipt
    report = verify(loaded, receipt)
    assert report.ok, report.table(only_problems=True)
    assert verify(model.state_dict(), receipt).ok  # the checkpoint itself, against the load
