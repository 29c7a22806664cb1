"""Meta device -> ``to_empty`` -> ``InitPlan.apply``: every tensor of the model ends up holding
what the model built on the CPU holds (the plan's draws, and for buffers, frozen parameters and
parameters no rule covers the value its constructor computes), or ``apply`` raises naming
each tensor it cannot restore.

Why exact equality: the CPU-built model gets the same plan applied with the same seed, so
planned parameters are the same draws from the same named streams, and every other tensor is
computed by the same deterministic constructor code (``torch.arange``, sinusoids, the rope
``inv_freq`` formula, BatchNorm's zeros and ones). So both models hold bitwise equal tensors
(checked first, buffers included, also the non-persistent ones ``state_dict`` leaves out) and
run the same forward, the same ops in the same order on the same CPU with the same thread
count, whose kernels are deterministic: their outputs are bitwise equal as well.
"""

import pytest
import torch
from torch import nn

from initlab.policy import plan
from initlab.zoo.models import build_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V, T, B = 64, 8, 2


def ids(seed: int = 0, high: int = V) -> torch.Tensor:
    return torch.randint(3, high, (B, T), generator=torch.Generator().manual_seed(seed))


def gpt2():
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(cfg), {"input_ids": ids()}


def bert():
    cfg = transformers.BertConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=16,
    )  # fmt: skip
    # no position_ids / token_type_ids passed: the forward reads the buffers
    return transformers.BertForMaskedLM(cfg), {"input_ids": ids()}


def llama():
    cfg = transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=37, max_position_embeddings=16,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg), {"input_ids": ids()}


def t5():
    cfg = transformers.T5Config(
        vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=2,
        decoder_start_token_id=0,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(cfg), {
        "input_ids": ids(),
        "decoder_input_ids": ids(1),
    }


def vit():
    cfg = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=37, num_labels=3,
    )  # fmt: skip
    pixels = torch.randn(B, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return transformers.ViTForImageClassification(cfg), {"pixel_values": pixels}


def whisper():
    cfg = transformers.WhisperConfig(
        vocab_size=V, num_mel_bins=8, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
        decoder_ffn_dim=37, max_source_positions=8, max_target_positions=16, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    # the encoder's two convs (stride 1, 2) map 16 frames to its 8 positions
    features = torch.randn(B, 8, 16, generator=torch.Generator().manual_seed(0))
    return transformers.WhisperForConditionalGeneration(cfg), {
        "input_features": features,
        "decoder_input_ids": ids(1),
    }


def wav2vec2():
    # keep rows handed to Hugging Face's init and a weight-normed conv (parametrization)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=20,
    )  # fmt: skip
    audio = torch.randn(B, 400, generator=torch.Generator().manual_seed(0))
    return transformers.Wav2Vec2ForCTC(cfg), {"input_values": audio}


def resnet():
    # Conv + BatchNorm2d zoo model: in eval mode the running statistics are the forward
    x = torch.randn(B, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return build_model("resnet", widths=(4, 8)), x


BUILDERS = {
    "gpt2": gpt2, "bert": bert, "llama": llama, "t5": t5, "vit": vit, "whisper": whisper,
    "wav2vec2": wav2vec2, "resnet": resnet,
}  # fmt: skip


def tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }


def output(model: nn.Module, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(**inputs) if isinstance(inputs, dict) else model.eval()(inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_meta_path_gives_every_tensor_and_the_output_of_the_cpu_path(name, recwarn):
    # Before: buffers, frozen parameters kept to_empty's memory: BERT's position_ids index out
    # of range, LLaMA's inv_freq and Whisper's embed_positions are garbage, BatchNorm's
    # running statistics make the ResNet's eval output arbitrary.
    with torch.device("meta"):
        meta, _ = BUILDERS[name]()
    p = plan(meta)
    # Wav2Vec2's masked_spec_embed is torch.Tensor(n): the legacy constructor ignores the
    # device context, so it alone is built on the CPU
    unique = {n for n, _ in (*meta.named_parameters(), *meta.named_buffers())}
    assert set(p.on_meta) == unique - {"wav2vec2.masked_spec_embed"}
    meta.to_empty(device="cpu")
    p.apply(seed=0)
    cpu, inputs = BUILDERS[name]()
    plan(cpu).apply(seed=0)
    want, got = tensors(cpu), tensors(meta)
    assert want.keys() == got.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    expected = output(cpu, inputs)
    assert torch.isfinite(expected).all()
    assert torch.equal(output(meta, inputs), expected)


def test_the_restored_buffers_are_the_constructors_values():
    # the oracle is the constructor itself, not the plan: a second, never-applied model
    with torch.device("meta"):
        meta, _ = bert()
    p = plan(meta)
    meta.to_empty(device="cpu")
    p.apply(seed=3)
    fresh, _ = bert()
    for name, buffer in fresh.named_buffers():
        assert torch.equal(meta.get_buffer(name), buffer), name
    assert torch.equal(meta.bert.embeddings.position_ids, torch.arange(16)[None])


class Sinusoidal(nn.Module):
    """A position table computed in the constructor, with nothing that can recompute it."""

    def __init__(self, n: int = 6, d: int = 4):
        super().__init__()
        self.proj = nn.Linear(d, d)
        position = torch.arange(n, dtype=torch.float32)[:, None]
        self.register_buffer("table", torch.sin(position / 10 ** torch.arange(d)))
        self.norm = nn.BatchNorm1d(d)  # restorable: reset_running_stats
        self.frozen = nn.Linear(d, d)  # restorable only if drawn: its own init is random
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.norm(self.proj(x + self.table)))


def test_a_tensor_apply_cannot_restore_is_named_with_its_fixes():
    with torch.device("meta"):
        model = Sinusoidal()
    p = plan(model)
    model.to_empty(device="cpu")
    with pytest.raises(ValueError) as info:
        p.apply(seed=0)
    message = str(info.value)
    assert "cannot give 3 tensor(s)" in message
    assert "buffer 'table': no own init of its module or of a module above it writes it" in message
    assert "frozen parameter 'frozen.weight': its own init draws it at random" in message
    assert "include_frozen=True" in message and "apply(..., restore=False)" in message
    assert "'norm.running_mean'" not in message  # BatchNorm's own reset computed it


def test_fixes_named_in_the_error_work():
    with torch.device("meta"):
        model = Sinusoidal()
    p = plan(model, include_frozen=True)  # the frozen layer is drawn by the plan now
    model.to_empty(device="cpu")
    with pytest.raises(ValueError, match=r"(?s)1 tensor\(s\).*buffer 'table'"):
        p.apply(seed=0)
    p.apply(seed=0, restore=False)  # the caller sets what it knows itself
    model.table.copy_(Sinusoidal().table)
    assert torch.equal(model.norm.running_var, torch.ones(4))
    assert model.norm.num_batches_tracked.item() == 0


class Reset(nn.Module):
    """A buffer its own reset_parameters computes (restorable), one it draws (not)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(3))
        self.register_buffer("steps", torch.empty(3, dtype=torch.long))
        self.register_buffer("noise", torch.empty(3))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.ones_(self.weight)
        self.steps.copy_(torch.arange(3))
        self.noise.normal_()


def test_a_random_own_init_is_not_taken_for_the_constructors_value():
    with torch.device("meta"):
        model = Reset()
    p = plan(model)
    model.to_empty(device="cpu")
    with pytest.raises(ValueError, match=r"1 tensor\(s\)") as info:
        p.apply(seed=0)
    assert "buffer 'noise': its own init draws it at random" in str(info.value)
    assert torch.equal(model.steps, torch.arange(3))  # the deterministic one is restored


def test_only_leaves_unplanned_meta_parameters_to_the_caller():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    p = plan(model, only=["0.weight"])
    model.to_empty(device="cpu")
    with torch.no_grad():
        model[0].bias.fill_(7.0)  # e.g. loaded from a checkpoint
    p.apply(seed=0)
    assert torch.equal(model[0].bias, torch.full((3,), 7.0))  # not the plan's, not touched
    assert torch.equal(model[1].running_mean, torch.zeros(3))  # buffers are restored


def test_a_plan_of_a_model_off_the_meta_device_restores_nothing():
    model = nn.BatchNorm1d(3)
    with torch.no_grad():
        model.running_mean.fill_(2.0)  # statistics of a trained model stay
    p = plan(model)
    assert p.on_meta == ()
    p.apply(seed=0)
    assert torch.equal(model.running_mean, torch.full((3,), 2.0))


def test_apply_still_refuses_a_model_not_materialized():
    with torch.device("meta"):
        model = Sinusoidal()
    p = plan(model, include_frozen=True)
    with pytest.raises(ValueError, match=r"meta device: call model.to_empty"):
        p.apply(seed=0)
    with pytest.raises(TypeError, match=r"restore must be True or False; got restore='no'"):
        p.apply(seed=0, restore="no")


class Legacy(nn.Module):
    """A buffer made by the legacy ``torch.Tensor(n)``, which is built on the CPU even under
    ``torch.device("meta")``, and recomputed by the module's reset_parameters."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.register_buffer("scale", torch.Tensor(3))
        self.reset_parameters()

    def reset_parameters(self):
        self.lin.reset_parameters()
        self.scale.fill_(2.0)


def test_a_tensor_built_off_the_meta_device_is_restored_once_to_empty_reallocated_it():
    # Before (and when only meta tensors were recorded): to_empty re-allocates every tensor,
    # so 'scale' held uninitialized memory after apply.
    with torch.device("meta"):
        model = Legacy()
    assert not model.scale.is_meta and model.lin.weight.is_meta
    p = plan(model)
    model.to_empty(device="cpu")
    with torch.no_grad():
        model.scale.fill_(float("nan"))  # what uninitialized memory may hold
    p.apply(seed=0)
    assert torch.equal(model.scale, torch.full((3,), 2.0))


def test_a_tensor_off_the_meta_device_that_was_not_reallocated_is_left_alone():
    with torch.device("meta"):
        model = Legacy()
    with torch.no_grad():
        model.scale.fill_(7.0)  # set after construction: no own init computes it
    p = plan(model)
    model.lin.to_empty(device="cpu")  # only the meta part is materialized
    p.apply(seed=0)
    assert torch.equal(model.scale, torch.full((3,), 7.0))
