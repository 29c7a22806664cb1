"""load_pretrained on small real models: each trap of pretrained loading, and the report.

Equality checks are exact (torch.equal): a load copies bytes, so anything less is a bug. Every
"loaded equals checkpoint" test first checks that the fresh model differs from the checkpoint,
so that it can fail.
"""

from __future__ import annotations

import builtins
import copy
import json
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from initlab.pretrained import LoadReport, PickleRefusedError, load_pretrained
from initlab.pretrained.adapt import adapt_input_channels, first_conv_weight


class TinyCNN(nn.Module):
    """conv -> BN -> ReLU -> pool -> linear head: the shape of every small image classifier."""

    def __init__(self, in_channels: int = 3, classes: int = 10, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(self.conv(x))), 1).flatten(1))


class Wrapped(nn.Module):
    """A model that holds the checkpointed network under a prefix (like BERT's ``bert.``)."""

    def __init__(self, seed: int = 1):
        super().__init__()
        self.backbone = TinyCNN(seed=seed)
        self.extra = nn.Linear(10, 2)


@pytest.fixture
def checkpoint() -> dict[str, torch.Tensor]:
    source = TinyCNN(seed=0)
    with torch.no_grad():  # non-default statistics, so that buffers are checked too
        source.bn.running_mean.uniform_(-1, 1)
        source.bn.running_var.uniform_(0.5, 2)
        source.bn.num_batches_tracked.fill_(7)
    return {k: v.clone() for k, v in source.state_dict().items()}


def assert_loaded_exactly(model: nn.Module, state: dict, prefix: str = "") -> None:
    got = model.state_dict()
    for key, value in state.items():
        assert torch.equal(got[prefix + key], value), key


def assert_differs(model: nn.Module, state: dict) -> None:
    got = model.state_dict()
    assert any(not torch.equal(got[k], v) for k, v in state.items() if k in got)


# ---------------------------------------------------------------- sources


def test_safetensors_round_trip_loads_every_tensor_bit_for_bit(tmp_path, checkpoint):
    path = tmp_path / "model.safetensors"
    save_file(checkpoint, str(path))
    model = TinyCNN(seed=1)
    assert_differs(model, checkpoint)
    report = load_pretrained(model, path, init_rest=None)
    assert_loaded_exactly(model, checkpoint)
    assert report.clean and report.alignment == ""
    assert sorted(report.loaded_names) == sorted(checkpoint)
    assert report.source == str(path)


def test_directory_source_prefers_safetensors(tmp_path, checkpoint):
    save_file(checkpoint, str(tmp_path / "model.safetensors"))
    # A decoy pickle beside it must not be read: the safetensors file wins.
    torch.save({"junk": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    model = TinyCNN(seed=1)
    report = load_pretrained(model, tmp_path, init_rest=None)
    assert report.clean and report.source.endswith("model.safetensors")
    assert_loaded_exactly(model, checkpoint)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict", "module", "net"])
def test_pt_file_with_wrapper_dict_loads_with_weights_only(tmp_path, checkpoint, wrapper):
    path = tmp_path / "ckpt.pt"
    torch.save({wrapper: checkpoint, "epoch": 3, "optimizer": {"lr": 0.1}}, path)
    model = TinyCNN(seed=1)
    report = load_pretrained(model, path, init_rest=None)
    assert report.clean
    assert_loaded_exactly(model, checkpoint)


def test_nested_wrappers_and_a_module_source_load(checkpoint):
    model = TinyCNN(seed=1)
    assert load_pretrained(model, {"model": {"state_dict": checkpoint}}, init_rest=None).clean
    assert_loaded_exactly(model, checkpoint)
    other = TinyCNN(seed=2)
    report = load_pretrained(other, model, init_rest=None)
    assert report.clean and report.source == "module TinyCNN"
    assert_loaded_exactly(other, checkpoint)


class _WritesMarker:
    """Unpickling this object calls ``builtins.open(path, "w")``: it creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


class _RunsShell:
    """Unpickling this object runs ``touch path`` through ``os.system``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.mark.parametrize(
    ("payload", "culprit"), [(_WritesMarker, "io.open"), (_RunsShell, f"{os.name}.system")]
)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, checkpoint, payload, culprit):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": checkpoint, "hook": payload(marker)}, path)
    assert not marker.exists()  # saving only records the call; nothing ran yet
    model = TinyCNN(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PickleRefusedError, match="needs full unpickling") as info:
        load_pretrained(model, path)
    message = str(info.value)
    assert "arbitrary code" in message and "Nothing in the file was run" in message
    assert "safetensors" in message and "trust_pickle=True" in message
    assert f"it calls or builds {culprit}" in message  # names the offending global
    assert isinstance(info.value, ValueError)
    assert not marker.exists()
    assert_loaded_exactly(model, before)  # the model is untouched


class TrustedConfig:
    """A harmless custom object that still needs full unpickling."""

    def __init__(self, width):
        self.width = width


def test_trusted_pickle_opt_in_warns_and_loads(tmp_path, checkpoint):
    path = tmp_path / "trusted.ckpt"
    torch.save({"state_dict": checkpoint, "config": TrustedConfig(8)}, path)
    with pytest.raises(PickleRefusedError, match="TrustedConfig"):
        load_pretrained(TinyCNN(seed=1), path)
    model = TinyCNN(seed=1)
    with pytest.warns(UserWarning, match="trust_pickle=True: fully unpickling .*trusted source"):
        report = load_pretrained(model, path, trust_pickle=True, init_rest=None)
    assert report.clean
    assert_loaded_exactly(model, checkpoint)
    # A whole pickled model (torch.save(model)) loads through its state_dict, trusted only.
    whole = tmp_path / "whole.pt"
    source = TinyCNN(seed=0)
    source.load_state_dict(checkpoint)
    torch.save(source, whole)
    with pytest.raises(PickleRefusedError, match="TinyCNN"):
        load_pretrained(TinyCNN(seed=1), whole)
    model = TinyCNN(seed=1)
    with pytest.warns(UserWarning, match="trust_pickle=True"):
        assert load_pretrained(model, whole, trust_pickle=True, init_rest=None).clean
    assert_loaded_exactly(model, checkpoint)


def _write_shards(folder, state, shards):
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in names[i::shards]}
        save_file(part, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index, weight_map


def test_sharded_index_loads_all_shards(tmp_path, checkpoint):
    index, _ = _write_shards(tmp_path, checkpoint, shards=3)
    model = TinyCNN(seed=1)
    report = load_pretrained(model, index, init_rest=None)
    assert report.clean and len(report.loaded) == len(checkpoint)
    assert_loaded_exactly(model, checkpoint)
    # The directory form finds the index when there is no single-file checkpoint.
    model = TinyCNN(seed=2)
    assert load_pretrained(model, tmp_path, init_rest=None).clean
    assert_loaded_exactly(model, checkpoint)


def test_sharded_pickle_index_reads_shards_with_weights_only(tmp_path, checkpoint):
    names = sorted(checkpoint)
    weight_map = {}
    for i, part in enumerate((names[:4], names[4:])):
        shard = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save({k: checkpoint[k] for k in part}, tmp_path / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    model = TinyCNN(seed=1)
    assert load_pretrained(model, tmp_path, init_rest=None).clean
    assert_loaded_exactly(model, checkpoint)
    # One poisoned shard poisons the load: refused, and it never runs.
    marker = tmp_path / "PWNED"
    evil = {k: checkpoint[k] for k in names[4:]}
    torch.save(
        {**evil, "hook": _WritesMarker(marker)}, tmp_path / "pytorch_model-00002-of-00002.bin"
    )
    with pytest.raises(PickleRefusedError, match="pytorch_model-00002-of-00002.bin"):
        load_pretrained(TinyCNN(), index)
    assert not marker.exists()


def test_sharded_index_errors(tmp_path, checkpoint):
    index, weight_map = _write_shards(tmp_path, checkpoint, shards=2)
    lying = tmp_path / "lying.safetensors.index.json"
    lying.write_text(
        json.dumps({"weight_map": {**weight_map, "ghost.weight": weight_map["fc.bias"]}})
    )
    with pytest.raises(
        ValueError, match=r"names 1 tensor\(s\) its shards lack: \['ghost.weight'\]"
    ):
        load_pretrained(TinyCNN(), lying)
    escape = tmp_path / "escape.safetensors.index.json"
    escape.write_text(json.dumps({"weight_map": {"fc.bias": "../elsewhere.safetensors"}}))
    with pytest.raises(ValueError, match="outside its directory; refused"):
        load_pretrained(TinyCNN(), escape)
    empty = tmp_path / "empty.safetensors.index.json"
    empty.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match="has no 'weight_map'"):
        load_pretrained(TinyCNN(), empty)
    gone = tmp_path / "gone.safetensors.index.json"
    gone.write_text(json.dumps({"weight_map": {"fc.bias": "missing.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_pretrained(TinyCNN(), gone)


def test_source_errors(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(TinyCNN(), tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_pretrained(TinyCNN(), tmp_path)
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"cannot tell the format .*\.safetensors"):
        load_pretrained(TinyCNN(), odd)
    with pytest.raises(TypeError, match="entries that are not tensors: \\['epoch'\\]"):
        load_pretrained(TinyCNN(), {**checkpoint, "epoch": 3})
    with pytest.raises(TypeError, match="source must be a state_dict"):
        load_pretrained(TinyCNN(), 42)
    with pytest.raises(ValueError, match="holds no tensors"):
        load_pretrained(TinyCNN(), {})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got dict"):
        load_pretrained(checkpoint, checkpoint)
    with pytest.raises(ValueError, match=r"on_mismatch must be one of .*did you mean 'reinit'"):
        load_pretrained(TinyCNN(), checkpoint, on_mismatch="reinti")


def test_meta_model_is_refused(checkpoint):
    with torch.device("meta"):
        model = TinyCNN()
    with pytest.raises(ValueError, match=r"meta device.*model.to_empty\(device='cpu'\)"):
        load_pretrained(model, checkpoint)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "module._orig_mod."])
def test_wrapper_prefix_is_stripped(checkpoint, prefix):
    model = TinyCNN(seed=1)
    report = load_pretrained(model, {prefix + k: v for k, v in checkpoint.items()}, init_rest=None)
    assert report.clean
    assert report.alignment == f"stripped {prefix!r} from checkpoint names"
    assert_loaded_exactly(model, checkpoint)


def test_model_side_prefix_is_matched(checkpoint):
    model = Wrapped(seed=1)
    report = load_pretrained(model, checkpoint, init_rest=None)
    assert report.alignment == "matched under the model prefix 'backbone.'"
    assert_loaded_exactly(model, checkpoint, prefix="backbone.")
    assert report.missing == ("extra.weight", "extra.bias") and not report.unexpected
    # init_rest=None: nothing writes them, and the report says so (not "re-initialized").
    assert not report.reinitialized
    assert [(c.name, c.detail) for c in report.constructed] == [
        ("extra.weight", "init_rest=None: not initialized"),
        ("extra.bias", "init_rest=None: not initialized"),
    ]


def test_explicit_prefixes_and_no_alignment(checkpoint):
    state = {"module." + k: v for k, v in checkpoint.items()}
    model = TinyCNN(seed=1)
    report = load_pretrained(model, state, strip_prefixes=("module.",), init_rest=None)
    assert report.clean and report.alignment == "stripped ['module.'] from checkpoint names"
    assert_loaded_exactly(model, checkpoint)
    with pytest.raises(ValueError, match="no checkpoint tensor matches a model tensor by name"):
        load_pretrained(TinyCNN(), state, strip_prefixes=None)
    with pytest.raises(ValueError, match="strip_prefixes must be 'auto', None or a sequence"):
        load_pretrained(TinyCNN(), state, strip_prefixes="module.")


def test_zero_matches_is_an_error_and_changes_nothing(checkpoint):
    model = TinyCNN(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    alien = {"encoder.block.weight": torch.zeros(3), "decoder.out.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"nothing would load.*key_map") as info:
        load_pretrained(model, alien)
    assert "encoder.block.weight" in str(info.value) and "conv.weight" in str(info.value)
    assert_loaded_exactly(model, before)


def test_every_matched_name_of_another_shape_is_an_error_and_changes_nothing():
    # A checkpoint with every size doubled: all 8 names match, no shape does (BN's scalar
    # num_batches_tracked, shape (), would match: it is left out).
    wide = {k: v for k, v in TinyCNN(in_channels=3).state_dict().items()}
    wide = {k: torch.zeros(*(2 * n for n in v.shape)) for k, v in wide.items() if v.ndim}
    model = TinyCNN(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        ValueError,
        match=r"every checkpoint tensor that matches a model name "
        r"differs in shape \(8 of them, e\.g\. conv\.weight: checkpoint "
        r"\(16, 6, 6, 6\) vs model \(8, 3, 3, 3\)\), so nothing would load",
    ):
        load_pretrained(model, wide)
    assert_loaded_exactly(model, before)


def test_key_map_dict_and_callable(checkpoint):
    renamed = {k.replace("conv", "stem"): v for k, v in checkpoint.items()}
    model = TinyCNN(seed=1)
    mapping = {"stem.weight": "conv.weight", "stem.bias": "conv.bias"}
    assert load_pretrained(model, renamed, key_map=mapping, init_rest=None).clean
    assert_loaded_exactly(model, checkpoint)
    model = TinyCNN(seed=1)
    report = load_pretrained(
        model,
        renamed,
        key_map=lambda k: None if k.startswith("bn.") else k.replace("stem", "conv"),
        init_rest=None,
    )
    assert {i.source_key for i in report.ignored} == {k for k in renamed if k.startswith("bn.")}
    assert {i.reason for i in report.ignored} == {"dropped by key_map"}
    assert set(report.missing) == {k for k in checkpoint if k.startswith("bn.")}
    with pytest.raises(ValueError, match="key_map maps two checkpoint tensors to the same name"):
        load_pretrained(TinyCNN(), checkpoint, key_map=lambda k: "x")
    with pytest.raises(TypeError, match="key_map must be None, a dict"):
        load_pretrained(TinyCNN(), checkpoint, key_map=["conv.weight"])


def test_unexpected_and_missing_are_reported(checkpoint):
    state = {k: v for k, v in checkpoint.items() if k != "bn.running_var"}
    state["aux.weight"] = torch.ones(2)
    model = TinyCNN(seed=1)
    constructed = model.bn.running_var.clone()
    report = load_pretrained(model, state, init_rest=None)
    assert report.unexpected == ("aux.weight",) and report.missing == ("bn.running_var",)
    assert not report.clean
    # A missing buffer keeps its constructed value: the policy initializes parameters only.
    assert torch.equal(model.bn.running_var, constructed)
    assert report.reinitialized == ()


def test_non_persistent_buffer_is_ignored_not_unexpected():
    class WithTable(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.register_buffer("positions", torch.arange(4), persistent=False)

    state = {**WithTable().state_dict(), "positions": torch.arange(4)}
    report = load_pretrained(WithTable(), state, init_rest=None)
    assert report.clean and [i.source_key for i in report.ignored] == ["positions"]
    assert report.ignored[0].reason.startswith("non-persistent buffer")


def test_tied_weights_count_as_loaded_under_both_names():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight

    source = Tied()
    state = {"embed.weight": source.embed.weight.detach().clone()}  # safetensors-style: one copy
    model = Tied()
    report = load_pretrained(model, state, init_rest=None)
    assert report.clean and sorted(report.loaded_names) == ["embed.weight", "out.weight"]
    assert torch.equal(model.out.weight, state["embed.weight"])


def test_dtype_cast_is_reported(checkpoint):
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in checkpoint.items()}
    model = TinyCNN(seed=1)
    report = load_pretrained(model, half, init_rest=None)
    row = next(r for r in report.loaded if r.name == "conv.weight")
    assert (row.source_dtype, row.dtype) == ("float16", "float32")
    assert torch.equal(model.conv.weight, half["conv.weight"].float())
    assert "float16 -> float32" in report.table()


# ---------------------------------------------------------------- shapes


def test_head_mismatch_under_on_mismatch_reinit_is_never_partly_copied(checkpoint):
    model = TinyCNN(classes=5, seed=1)
    constructed = model.fc.weight.detach().clone()
    report = load_pretrained(model, checkpoint, on_mismatch="reinit", init_rest=None)
    assert {(m.name, m.source_shape, m.model_shape) for m in report.mismatched} == {
        ("fc.weight", (10, 8), (5, 8)),
        ("fc.bias", (10,), (5,)),
    }
    assert {m.action for m in report.mismatched} == {"left as constructed"}
    assert not report.missing and not report.unexpected and not report.clean
    # No row of the checkpoint's head leaked into the model's head.
    assert torch.equal(model.fc.weight, constructed)
    body = {k: v for k, v in checkpoint.items() if not k.startswith("fc.")}
    assert_loaded_exactly(model, body)
    assert {(r.name, r.reason) for r in report.constructed} == {
        ("fc.weight", "shape mismatch"),
        ("fc.bias", "shape mismatch"),
    }


def test_on_mismatch_error_lists_every_mismatch_and_writes_nothing(checkpoint):
    model = TinyCNN(classes=5, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="2 checkpoint tensor") as info:
        load_pretrained(model, checkpoint, on_mismatch="error")
    message = str(info.value)
    assert "fc.weight (checkpoint fc.weight): checkpoint (10, 8) vs model (5, 8)" in message
    assert "fc.bias (checkpoint fc.bias): checkpoint (10,) vs model (5,)" in message
    assert_loaded_exactly(model, before)


def test_new_head_allows_a_new_classifier_under_on_mismatch_error(checkpoint):
    model = TinyCNN(classes=5, seed=1)
    report = load_pretrained(
        model, checkpoint, on_mismatch="error", new_head="auto", init_rest=None
    )
    assert not report.mismatched and not report.missing
    assert {i.source_key for i in report.ignored} == {"fc.weight", "fc.bias"}
    assert {r.reason for r in report.constructed} == {"new head"}
    # Same shape, declared new: not loaded either.
    model = TinyCNN(seed=1)
    constructed = model.fc.weight.detach().clone()
    report = load_pretrained(model, checkpoint, new_head="fc", init_rest=None)
    assert torch.equal(model.fc.weight, constructed)
    assert "fc.weight" not in report.loaded_names and report.clean
    with pytest.raises(ValueError, match=r"new_head pattern\(s\) \['head'\] match no parameter"):
        load_pretrained(TinyCNN(), checkpoint, new_head="head")
    with pytest.raises(ValueError, match="new_head='auto' takes the last nn.Linear"):
        load_pretrained(
            nn.Sequential(nn.Conv2d(3, 8, 3)), {"0.bias": torch.zeros(8)}, new_head="auto"
        )


def test_adapt_input_channels_hand_values():
    w = torch.arange(1.0, 4.0).view(1, 3, 1, 1)  # channels 1, 2, 3
    assert adapt_input_channels(w, 1).flatten().tolist() == [6.0]
    assert adapt_input_channels(w, 2).flatten().tolist() == [1.0 + 3.0, 2.0]
    assert adapt_input_channels(w, 3).flatten().tolist() == [1.0, 2.0, 3.0]
    # m = 6: each channel twice, halved; m = 4: channel 0 twice (halved), 1 and 2 once.
    assert adapt_input_channels(w, 6).flatten().tolist() == [0.5, 1.0, 1.5, 0.5, 1.0, 1.5]
    assert adapt_input_channels(w, 4).flatten().tolist() == [0.5, 2.0, 3.0, 0.5]
    with pytest.raises(ValueError, match="in_channels must be an int >= 1; got in_channels=0"):
        adapt_input_channels(w, 0)
    with pytest.raises(ValueError, match=r"convolution weight .*got shape=\(3, 4\)"):
        adapt_input_channels(torch.zeros(3, 4), 1)


_DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("in_channels", [1, 2, 4])  # fold, fold, repeat
def test_adapt_input_channels_stays_on_the_weight_device(device, in_channels):
    # A state_dict loaded on another device (meta here: no CPU fallback; CUDA when present) is
    # adapted there: CPU-built intermediates would raise a device mismatch.
    w = torch.ones(8, 3, 3, 3, dtype=torch.float16, device=device)
    out = adapt_input_channels(w, in_channels)
    assert out.device == w.device and out.dtype == torch.float16
    assert out.shape == (8, in_channels, 3, 3)


@pytest.mark.parametrize(
    ("channels", "lift"),
    [
        (1, [0, 0, 0]),  # grayscale model: checkpoint saw the image replicated on R, G, B
        (2, [0, 1, 0]),  # fold: checkpoint channel i saw model channel i mod 2
        (6, [0, 1, 2, 0, 1, 2]),  # model input: the RGB image replicated twice
        (4, [0, 1, 2, 0]),  # RGB + a copy of R, a count that 3 does not divide
    ],
)
def test_first_conv_adaptation_preserves_the_response(checkpoint, channels, lift):
    model = TinyCNN(in_channels=channels, seed=1)
    report = load_pretrained(model, checkpoint, on_mismatch="error", init_rest=None)
    assert [(a.name, a.source_shape, a.shape) for a in report.adapted] == [
        ("conv.weight", (8, 3, 3, 3), (8, channels, 3, 3))
    ]
    assert report.clean and "conv.weight" in {r.name for r in report.adapted}
    expected = "folded into" if channels < 3 else "repeated onto"
    assert f"3 input channels {expected} {channels}" in report.adapted[0].rule
    reference = TinyCNN(seed=0)
    reference.load_state_dict(checkpoint)
    model.eval(), reference.eval()
    generator = torch.Generator().manual_seed(0)
    if channels < 3:  # model input x; the checkpoint saw x[:, lift]
        x = torch.randn(4, channels, 9, 9, generator=generator, dtype=torch.float64)
        model_in, reference_in = x, x[:, lift]
    else:  # checkpoint input x; the model sees it replicated as x[:, lift]
        x = torch.randn(4, 3, 9, 9, generator=generator, dtype=torch.float64)
        model_in, reference_in = x[:, lift], x
    model.double(), reference.double()
    # Float32 weights, float64 activations: the only error is the rounding of W' to float32,
    # relative 2**-24 per weight, far below 1e-6 on outputs of order 1.
    torch.testing.assert_close(model(model_in), reference(reference_in), rtol=1e-6, atol=1e-6)


def test_adaptation_off_or_grouped_first_conv_is_a_mismatch(checkpoint):
    report = load_pretrained(
        TinyCNN(in_channels=1),
        checkpoint,
        adapt_first_conv=False,
        on_mismatch="reinit",
        init_rest=None,
    )
    assert [m.name for m in report.mismatched] == ["conv.weight"] and not report.adapted
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 1))
    assert first_conv_weight(grouped) is None
    assert first_conv_weight(TinyCNN()) == "conv.weight"
    # Only the first conv is adapted: a later conv with other in-channels is a plain mismatch.
    state = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)).state_dict()
    report = load_pretrained(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(2, 4, 1)),
        state,
        on_mismatch="reinit",
        init_rest=None,
    )
    assert [m.name for m in report.mismatched] == ["1.weight"] and not report.adapted


# ---------------------------------------------------------------- freeze


def test_freeze_true_freezes_every_loaded_parameter_only(checkpoint):
    model = TinyCNN(classes=5, seed=1)
    report = load_pretrained(model, checkpoint, freeze=True, new_head="fc", init_rest=None)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert set(report.frozen) == {"conv.weight", "conv.bias", "bn.weight", "bn.bias"}


def test_freeze_patterns_select_loaded_parameters(checkpoint):
    model = TinyCNN(seed=1)
    report = load_pretrained(model, checkpoint, freeze=["conv", "*.bias"], init_rest=None)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv.weight", "conv.bias", "bn.bias", "fc.bias"} == set(report.frozen)


def test_freeze_pattern_matching_nothing_loaded_is_an_error_before_any_write(checkpoint):
    model = TinyCNN(classes=5, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"freeze pattern\(s\) \['fc'\] match no loaded parameter"):
        load_pretrained(model, checkpoint, freeze="fc", on_mismatch="reinit")
    assert_loaded_exactly(model, before)
    with pytest.raises(TypeError, match="freeze must be a non-empty pattern"):
        load_pretrained(TinyCNN(), checkpoint, freeze=3)


# ---------------------------------------------------------------- report


def test_report_table_and_dict(checkpoint):
    state = {"module." + k: v for k, v in checkpoint.items()}
    state["module.aux"] = torch.zeros(1)
    model = TinyCNN(in_channels=1, classes=4, seed=1)
    report = load_pretrained(model, state, on_mismatch="reinit", init_rest=None)
    assert isinstance(report, LoadReport)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["clean"] is False and data["unexpected"] == ["module.aux"]
    assert data["alignment"] == "stripped 'module.' from checkpoint names"
    assert data["mismatched"][0] == {
        "name": "fc.weight",
        "source_key": "module.fc.weight",
        "source_shape": [10, 8],
        "model_shape": [4, 8],
        "action": "left as constructed",
    }
    assert data["adapted"][0]["shape"] == [8, 1, 3, 3]
    assert len(data["loaded"]) == len(checkpoint) - 3  # conv.weight adapted, fc.* mismatched
    table = report.table()
    assert report.summary() in table
    assert "6 loaded, 0 missing, 1 unexpected, 2 mismatched, 1 adapted" in table
    lines = table.splitlines()
    assert any(line.startswith("unexpected") and "module.aux" in line for line in lines)
    assert any("checkpoint (10, 8) vs model (4, 8)" in line for line in lines)
    assert sum(line.startswith("loaded") for line in lines) == 6
    assert sum(line.startswith("loaded") for line in str(report).splitlines()) == 0


# ---------------------------------------------------------------- the policy inits only the rest


def test_policy_initializes_only_what_was_not_loaded(checkpoint):
    import initlab

    state = {k: v for k, v in checkpoint.items() if k != "conv.bias"}  # one missing parameter
    model = TinyCNN(classes=5, seed=1)  # and a mismatched head
    twin = copy.deepcopy(model)
    constructed = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = load_pretrained(model, state, on_mismatch="reinit", seed=0)
    rest = ["conv.bias", "fc.weight", "fc.bias"]
    # Every loaded tensor is bit for bit the checkpoint's, after the policy ran.
    assert_loaded_exactly(model, {k: v for k, v in state.items() if not k.startswith("fc.")})
    assert [r.name for r in report.reinitialized] == rest
    assert {m.action for m in report.mismatched} == {"re-initialized"}
    # The rest is exactly the policy's plan for those names, with the same seed.
    initlab.plan(twin, "auto", only=rest).apply(seed=0)
    for name in rest:
        assert torch.equal(model.get_parameter(name), twin.get_parameter(name)), name
    assert not torch.equal(model.fc.weight, constructed["fc.weight"])
    row = next(r for r in report.reinitialized if r.name == "fc.weight")
    # Xavier uniform bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (8 + 5)), by hand.
    assert row.reason == "shape mismatch" and f"U(-{(6 / 13) ** 0.5:.4g}" in row.rule
    assert [r["name"] for r in report.init_plan["rows"]] == rest


def test_init_rest_seed_contract(checkpoint):
    def head(seed):
        model = TinyCNN(classes=5, seed=1)
        load_pretrained(model, checkpoint, new_head="fc", seed=seed)
        return model.fc.weight.detach().clone()

    assert torch.equal(head(3), head(3))
    assert not torch.equal(head(3), head(4))


def test_a_plan_that_would_touch_a_loaded_tensor_is_refused(checkpoint, monkeypatch):
    import initlab.policy

    class Greedy:
        """A policy plan that (wrongly) includes a loaded parameter."""

        applied = False
        rows = [SimpleNamespace(name="conv.weight"), SimpleNamespace(name="fc.weight")]

        def apply(self, **kwargs):
            Greedy.applied = True

    monkeypatch.setattr(initlab.policy, "plan", lambda *a, **k: Greedy())
    model = TinyCNN(classes=5, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"includes loaded tensors \['conv.weight'\]"):
        load_pretrained(model, checkpoint, new_head="fc")
    assert not Greedy.applied
    assert_loaded_exactly(model, before)  # refused before the load wrote anything


def test_a_clean_report_prints_no_empty_table():
    source = TinyCNN(seed=0).state_dict()
    report = load_pretrained(TinyCNN(seed=1), source, init_rest=None)
    assert report.clean and not report.adapted
    assert str(report).splitlines() == [
        f"source: {report.source}",
        f"{len(source)} loaded, 0 missing, 0 unexpected, 0 mismatched, 0 adapted, "
        "0 re-initialized, 0 left as constructed, 0 ignored, 0 frozen",
    ]
    assert report.table().splitlines()[2].startswith("status")  # with the loaded rows: a table
