"""load_pretrained refuses bad data instead of loading it silently.

Each refusal is checked three ways: the error names the source, the tensor and the way out
(an option, or key_map={name: None} to drop the tensor); it is raised before anything is
written (the model equals a copy taken before the call, bit for bit); and the good case next
to it still loads, so that a test cannot pass by refusing everything.
"""

from __future__ import annotations

import os
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrizations

from initlab.pretrained import CheckpointReadError, PickleRefusedError, load_pretrained


def net(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, classes))


def trained_state(seed: int = 0) -> dict[str, torch.Tensor]:
    source = net(seed)
    with torch.no_grad():  # statistics unlike the constructed ones, so buffers are checked too
        source[1].running_mean.uniform_(-1, 1)
        source[1].running_var.uniform_(0.5, 2)
    return {k: v.detach().clone() for k, v in source.state_dict().items()}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} was written by a refused load"


def refused(model: nn.Module, source, match: str, **options) -> str:
    """Load, expect a ValueError matching ``match``, check nothing was written; the message.

    Whatever is raised, the model is checked first: a load that fails partway must not have
    written the tensors before the failing one.
    """
    before = snapshot(model)
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked below
        load_pretrained(model, source, **options)
    assert_unchanged(model, before)
    assert isinstance(info.value, ValueError), repr(info.value)
    assert re.search(match, str(info.value)), str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- non-finite values


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("key", ["3.weight", "1.running_var"])  # a parameter, a buffer
def test_non_finite_entries_are_refused_naming_file_tensor_and_key_map(tmp_path, bad, key):
    state = trained_state()
    state[key] = state[key].clone()
    state[key].view(-1)[2] = bad
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    message = refused(net(1), path, match="NaN or infinite")
    assert str(path) in message and f"'{key}' -> model '{key}'" in message
    assert "1 of " in message and f"key_map={{'{key}': None}}" in message
    # The way out the message names: drop it, load the rest, the policy initializes it.
    model = net(1)
    report = load_pretrained(model, path, key_map={key: None}, seed=0)
    assert key not in report.loaded_names and len(report.loaded) == len(state) - 1
    assert torch.isfinite(model.state_dict()[key]).all()


def test_a_non_finite_value_the_model_builds_itself_loads():
    # A persistent -inf causal mask is part of the architecture, not a broken weight: the
    # checkpoint's copy equals the model's own, so it loads. A different -inf is refused.
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 3)
            self.register_buffer("mask", torch.full((3, 3), -float("inf")).triu(1))

    state = Masked().state_dict()
    model = Masked()
    assert load_pretrained(model, state, init_rest=None).clean
    assert torch.equal(model.mask, state["mask"])
    state["mask"] = state["mask"].clone()
    state["mask"][2, 0] = -float("inf")  # where the model holds 0
    message = refused(Masked(), state, match="NaN or infinite")
    assert "1 of 9 entries" in message and "first at index (2, 0)" in message


def test_finite_values_that_overflow_the_model_dtype_are_refused():
    state = {"weight": torch.tensor([[1.0, 7e4]]), "bias": torch.zeros(1)}
    message = refused(nn.Linear(2, 1).half(), state, match=r"finite in the checkpoint \(float32\)")
    assert "1 of 2 entries overflow to infinity in the model's float16" in message
    assert "largest |value| 7e+04" in message and "65504" in message
    state["weight"][0, 1] = 6e4  # fits float16: loads, rounded as any cast to float16 is
    model = nn.Linear(2, 1).half()
    load_pretrained(model, state, init_rest=None)
    assert torch.equal(model.weight, state["weight"].half())


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    "dtype, kind",
    [
        (torch.int64, "integer"),
        (torch.int8, "integer"),
        (torch.uint8, "integer"),
        (torch.bool, "bool"),
        (torch.complex64, "complex"),
    ],
)
def test_integer_bool_or_complex_tensors_are_not_cast_into_float_parameters(dtype, kind):
    state = trained_state()
    state["0.weight"] = torch.ones(8, 4, dtype=dtype)
    message = refused(net(1), state, match=rf"{kind} values \({str(dtype)[6:]}\)")
    assert "'0.weight' -> model '0.weight'" in message and "float32 tensor" in message
    assert "key_map={'0.weight': None}" in message


def test_integer_buffers_load_only_exact_values():
    # num_batches_tracked is int64; int32, bool-free exact floats load; a lossy value does not.
    for value in (torch.tensor(7, dtype=torch.int32), torch.tensor(7.0)):
        state = {**trained_state(), "1.num_batches_tracked": value}
        model = net(1)
        report = load_pretrained(model, state, init_rest=None)
        assert report.clean and int(model[1].num_batches_tracked) == 7
        assert model[1].num_batches_tracked.dtype == torch.int64
    state = {**trained_state(), "1.num_batches_tracked": torch.tensor(7.5)}
    message = refused(net(1), state, match="do not fit the model's int64 tensor exactly")
    assert "'1.num_batches_tracked'" in message

    class Narrow(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(2, 2)
            self.register_buffer("count", torch.zeros(2, dtype=torch.int32))

    state = {**Narrow().state_dict(), "count": torch.tensor([1, 2**40])}  # wraps in int32
    refused(Narrow(), state, match="int64 values do not fit the model's int32 tensor exactly")
    state["count"] = torch.tensor([1, 2])
    model = Narrow()
    load_pretrained(model, state, init_rest=None)
    assert model.count.tolist() == [1, 2]


def test_float_dtype_casts_still_load():
    # Between floating dtypes a cast is a precision change, reported and allowed.
    state = {k: v.double() if v.is_floating_point() else v for k, v in trained_state().items()}
    model = net(1)
    report = load_pretrained(model, state, init_rest=None)
    assert report.clean and torch.equal(model[0].weight, state["0.weight"].float())


# ---------------------------------------------------------------- tied weights


class TiedLM(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(6, 4)
        self.out = nn.Linear(4, 6, bias=False)
        self.out.weight = self.embed.weight


def test_a_tied_pair_with_two_different_checkpoint_tensors_is_refused(tmp_path):
    state = {"embed.weight": torch.randn(6, 4), "out.weight": torch.randn(6, 4)}
    path = tmp_path / "tied.safetensors"
    save_file(state, str(path))
    message = refused(TiedLM(1), path, match="the model ties these names")
    assert str(path) in message
    assert "'embed.weight' -> model 'embed.weight' and 'out.weight' -> model 'out.weight'" in (
        message
    )
    assert "whichever came last" in message and "key_map={'out.weight': None}" in message
    # The way out: drop one; the other loads under both names.
    model = TiedLM(1)
    report = load_pretrained(model, path, key_map={"out.weight": None}, init_rest=None)
    assert torch.equal(model.out.weight, state["embed.weight"]) and model.out.weight is (
        model.embed.weight
    )
    assert sorted(report.loaded_names) == ["embed.weight", "out.weight"]


def test_a_tied_pair_saved_twice_with_equal_values_loads():
    state = {"embed.weight": torch.randn(6, 4)}
    state["out.weight"] = state["embed.weight"].clone()  # torch.save of an untied copy
    model = TiedLM(1)
    report = load_pretrained(model, state, init_rest=None)
    assert report.clean and torch.equal(model.embed.weight, state["embed.weight"])
    assert [row.source_key for row in report.loaded] == ["embed.weight", "out.weight"]


# ---------------------------------------------------------------- heads of another size


def test_a_head_of_another_size_is_refused_by_default_naming_the_options(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(trained_state(), str(path))
    message = refused(net(1, classes=5), path, match="differ in shape")
    assert str(path) in message
    assert "3.weight (checkpoint 3.weight): checkpoint (3, 8) vs model (5, 8)" in message
    assert "3.bias (checkpoint 3.bias): checkpoint (3,) vs model (5,)" in message
    assert "new_head=['3']" in message and "on_mismatch='reinit'" in message
    # Both options it names load the body and initialize the head by the policy.
    for options in ({"new_head": "3"}, {"new_head": "auto"}, {"on_mismatch": "reinit"}):
        model = net(1, classes=5)
        report = load_pretrained(model, path, seed=0, **options)
        assert {r.name for r in report.reinitialized} == {"3.weight", "3.bias"}, options
        assert torch.equal(model[0].weight, trained_state()["0.weight"])


# ---------------------------------------------------------------- unreadable files


def _corrupt(tmp_path, kind: str):
    state = trained_state()
    if kind == "safetensors-truncated":
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
        path.write_bytes(path.read_bytes()[:-10])
        return path
    if kind == "safetensors-garbage":
        path = tmp_path / "model.safetensors"
        path.write_bytes(os.urandom(64))
        return path
    if kind == "index-not-json":
        path = tmp_path / "model.safetensors.index.json"
        path.write_text("{'weight_map': ")
        return path
    path = tmp_path / "model.pt"
    if kind == "zip-truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "legacy-truncated":
        torch.save(state, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "unicode":  # a pickle string of invalid UTF-8: UnicodeDecodeError in torch
        path.write_bytes(b"\x80\x02X\x04\x00\x00\x00\xff\xfe\xfd\xfc.")
    elif kind == "bad-opcode":
        path.write_bytes(b"\x80\x02\xb0garbage")
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "zip-truncated",
        "legacy-truncated",
        "empty",
        "unicode",
        "bad-opcode",
        "safetensors-truncated",
        "safetensors-garbage",
        "index-not-json",
    ],
)
@pytest.mark.parametrize("trust_pickle", [False, True])
def test_a_corrupted_file_raises_naming_it(tmp_path, kind, trust_pickle):
    path = _corrupt(tmp_path, kind)
    model = net(1)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trust_pickle's own warning
        with pytest.raises(CheckpointReadError, match=re.escape(repr(str(path)))) as info:
            load_pretrained(model, path, trust_pickle=trust_pickle)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, PickleRefusedError)
    assert info.value.__cause__ is not None  # the reader's own error, kept
    assert "cannot read checkpoint" in str(info.value)
    assert_unchanged(model, before)


def test_a_bad_opcode_says_what_the_bytes_are_not_a_paragraph_of_torch_advice(tmp_path):
    message = refused(net(1), _corrupt(tmp_path, "bad-opcode"), match="Unsupported operand")
    assert "weights_only" not in message and "truncated or corrupted" in message


# ---------------------------------------------------------------- all or nothing


def test_a_tensor_that_cannot_be_copied_midway_leaves_earlier_ones_unwritten():
    # The last tensor (in the model's order) holds no data: the earlier ones must not load.
    state = trained_state()
    state["3.bias"] = torch.empty(3, device="meta")
    message = refused(net(1), state, match="on the meta device and holds no data")
    assert "'3.bias' -> model '3.bias'" in message


def test_every_problem_is_listed_in_one_error():
    state = trained_state()
    state["0.weight"] = state["0.weight"].clone()
    state["0.weight"][0, 0] = float("nan")
    state["1.running_mean"] = torch.zeros(8, dtype=torch.int64)
    state["3.bias"] = torch.empty(3, device="meta")
    message = refused(net(1), state, match=r"3 checkpoint tensor\(s\) cannot be loaded")
    for key in ("0.weight", "1.running_mean", "3.bias"):
        assert f"'{key}' -> model '{key}'" in message


def test_model_tensors_that_cannot_be_written_are_refused_before_any_write():
    with torch.inference_mode():
        frozen_in_time = net(1)
    # Outside inference mode, the model's tensors are inference tensors: no in-place write.
    message = refused(frozen_in_time, trained_state(), match="inference tensor")
    assert "'0.weight' -> model '0.weight'" in message
    model = net(1)
    model[3].bias = nn.Parameter(torch.zeros(1).expand(3))  # three entries, one memory cell
    message = refused(model, trained_state(), match="expanded view")
    assert "'3.bias' -> model '3.bias'" in message


def test_policy_and_seed_errors_come_before_any_write():
    checkpoint = {k: v for k, v in trained_state().items() if not k.startswith("3.")}
    message = refused(net(1), checkpoint, match="no-such-policy", init_rest="no-such-policy")
    assert "auto" in message  # the accepted policies are named
    model = net(1)
    before = snapshot(model)
    with pytest.raises(TypeError, match="seed must be an int; got seed='0'"):
        load_pretrained(model, checkpoint, seed="0")
    assert_unchanged(model, before)


# ---------------------------------------------------------------- weight norm


def wn_net(norm, seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm
        return nn.Sequential(norm(nn.Linear(4, 8)), nn.ReLU(), norm(nn.Linear(8, classes)))


NORMS = {
    "parametrizations": parametrizations.weight_norm,
    "old": torch.nn.utils.weight_norm,
}


def weight_norm_names(style: str, layer: str) -> tuple[str, str]:
    if style == "parametrizations":
        return (
            f"{layer}.parametrizations.weight.original0",
            f"{layer}.parametrizations.weight.original1",
        )
    return f"{layer}.weight_g", f"{layer}.weight_v"


@pytest.mark.parametrize("style", sorted(NORMS))
def test_a_weight_normed_new_head_is_reported_as_what_happened_to_it(style):
    # Whatever the policy does with g and v (a rule, the module's own init through the
    # parametrization, or nothing), the report says re-initialized only for a tensor that was
    # written, and "left as constructed" only for one that holds its constructed value; a
    # policy that cannot initialize them raises, and then nothing is written.
    norm = NORMS[style]
    model = wn_net(norm, seed=1)
    constructed = snapshot(model)
    checkpoint = wn_net(norm).state_dict()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the policy may warn that no rule covers g, v
            report = load_pretrained(model, checkpoint, new_head="2", seed=0)
    except ValueError as error:
        assert "nothing was written" in str(error)
        assert_unchanged(model, constructed)
        return
    head = {"2.bias", *weight_norm_names(style, "2")}
    said = {r.name for r in report.reinitialized} | {c.name for c in report.constructed}
    assert said == head and not {r.name for r in report.reinitialized} & {
        c.name for c in report.constructed
    }
    for row in report.reinitialized:
        if "constant" not in row.rule:  # a random draw cannot reproduce the constructed value
            assert not torch.equal(model.get_parameter(row.name), constructed[row.name]), row
    for row in report.constructed:
        assert torch.equal(model.get_parameter(row.name), constructed[row.name]), row
    for name in checkpoint:
        if not name.startswith("2."):
            assert torch.equal(model.state_dict()[name], checkpoint[name]), name


@pytest.mark.parametrize("style", sorted(NORMS))
def test_parameters_the_plan_does_not_write_are_reported_as_left_as_constructed(style, monkeypatch):
    # A plan whose rows write nothing: no rule covers g ('none'), and an own init ('keep')
    # that does not touch v, as the old weight_norm's Linear.reset_parameters (it writes the
    # computed weight). Neither may be reported as re-initialized.
    import initlab.policy

    g, v = weight_norm_names(style, "2")

    class IdlePlan:
        rows = [
            SimpleNamespace(name=g, tied=(), distribution="none", reason="no rule covers it"),
            SimpleNamespace(name=v, tied=(), distribution="keep", reason="own init"),
            SimpleNamespace(
                name="2.bias",
                tied=(),
                distribution="constant",
                reason="zero",
                rule="bias = 0",
                value=0.0,
                std=None,
                bound=None,
            ),
        ]

        def apply(self, **kwargs):
            with torch.no_grad():
                model[2].bias.zero_()

        def to_dict(self):
            return {"rows": [row.name for row in self.rows]}

    monkeypatch.setattr(initlab.policy, "plan", lambda *a, **k: IdlePlan())
    model = wn_net(NORMS[style], seed=1)
    constructed = snapshot(model)
    report = load_pretrained(model, wn_net(NORMS[style]).state_dict(), new_head="2")
    assert [r.name for r in report.reinitialized] == ["2.bias"]
    assert [(c.name, c.reason, c.detail) for c in report.constructed] == [
        (g, "new head", "no rule covers it"),
        (v, "new head", "own init; that init left this tensor unchanged"),
    ]
    assert torch.equal(model.get_parameter(g), constructed[g])
    assert "1 re-initialized, 2 left as constructed" in report.summary()
    lines = [line for line in str(report).splitlines() if g in line or v in line]
    assert lines and all(line.split("  ")[0] in ("as constructed", "ignored") for line in lines)


def test_init_rest_none_reports_left_as_constructed():
    model = wn_net(parametrizations.weight_norm, seed=1)
    report = load_pretrained(model, wn_net(parametrizations.weight_norm).state_dict(),
                             new_head="2", init_rest=None)  # fmt: skip
    assert not report.reinitialized and len(report.constructed) == 3
    assert {c.detail for c in report.constructed} == {"init_rest=None: not initialized"}


@pytest.mark.parametrize("saved, built", [("old", "parametrizations"), ("parametrizations", "old")])
def test_weight_norm_checkpoints_load_across_both_spellings(saved, built):
    # transformers renames .weight_g/.weight_v to .parametrizations.weight.original0/1 on load
    # (conversion_mapping.py, "legacy"); a checkpoint of either spelling loads into the other.
    state = wn_net(NORMS[saved]).state_dict()
    model = wn_net(NORMS[built], seed=1)
    report = load_pretrained(model, state, init_rest=None)
    assert report.clean and len(report.loaded) == len(state) == 6
    assert "weight-norm names translated for 2 layer(s)" in report.alignment
    x = torch.randn(5, 4)
    assert torch.allclose(model(x), wn_net(NORMS[saved])(x), rtol=0, atol=1e-6)
    # Half a pair is not translated: g without v means nothing.
    half = {k: v for k, v in state.items() if not k.endswith(("_v", "original1"))}
    report = load_pretrained(wn_net(NORMS[built], seed=1), half, init_rest=None)
    assert len(report.unexpected) == 2 and "translated" not in report.alignment


# ---------------------------------------------------------------- devices

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_checks_compare_a_cpu_checkpoint_with_a_model_on_its_device(device):
    # The checkpoint is read on the CPU, the model may live elsewhere: the non-finite check
    # reads the model's own values there, the write crosses devices, a refusal writes nothing.
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.proj = nn.Linear(3, 3)
            self.register_buffer("mask", torch.full((3, 3), -float("inf")).triu(1))

    source = Masked()
    with torch.no_grad():
        source.proj.weight.mul_(3)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    model = Masked().to(device)
    report = load_pretrained(model, state, init_rest=None)
    assert report.clean and model.proj.weight.device.type == device
    for key, value in model.state_dict().items():
        assert torch.equal(value.cpu(), state[key]), key
    state["proj.bias"] = torch.tensor([0.0, float("nan"), 1.0])
    message = refused(Masked().to(device), state, match="NaN or infinite")
    assert "'proj.bias' -> model 'proj.bias'" in message
