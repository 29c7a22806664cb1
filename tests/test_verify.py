"""``initlab.policy.verify``: the checks' numbers, the report, bad input, and that verify never
writes into the model. The injected bug patterns are in tests/test_verify_faults.py."""

import argparse
import json
import math

import pytest
import torch
from torch import nn

import initlab as il
from initlab.cli import verify as cli_verify
from initlab.policy import plan
from initlab.policy.receipt import ReceiptError, record_model
from initlab.policy.verify import Z, _planned, verify
from initlab.zoo.models import build_model


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def snapshot(model: nn.Module) -> dict:
    out = {}
    for n, t in (*model.named_parameters(), *model.named_buffers()):
        out[n] = (t.detach().clone(), t.data_ptr(), t.requires_grad)
    return out


@pytest.mark.parametrize("with_receipt", [False, True])
def test_verify_never_modifies_the_model(with_receipt):
    model = build_model("resnet", widths=(4, 8))  # BatchNorm buffers: recomputed on a copy
    receipt = plan(model).apply(seed=0, receipt=True).receipt if with_receipt else None
    before = snapshot(model)
    report = verify(model, receipt)
    assert report.ok, report.table(only_problems=True)
    after = snapshot(model)
    assert before.keys() == after.keys()
    for n, (value, ptr, grad) in before.items():
        assert torch.equal(value, after[n][0]) and ptr == after[n][1] and grad == after[n][2], n


def test_report_table_dict_and_lookup():
    model = mlp()
    p = plan(model).apply(seed=0, receipt=True)
    report = verify(model, p.receipt)
    assert report.ok and len(report.verdicts) == 4
    assert report["0.weight"].status == "ok"
    assert "passed: receipt, distribution" in report.table()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["failed"] == 0 and data["tensors"][0]["name"] == "0.weight"
    with pytest.raises(KeyError):
        report["nope"]


def test_std_tolerance_never_fails_a_correct_draw_and_catches_a_1_5x_one():
    # the planned row: N(0, 0.02^2); tolerance 6 sqrt((3 - 1) / (4 n)) = 0.0663 for n = 4096
    model = nn.Linear(64, 64, bias=False)
    p = plan(model, rules=[il.Rule("w", "normal", param="weight", std=0.02)])
    tolerance = Z * math.sqrt(2 / (4 * 4096)) + 2.0**-24
    for seed in range(50):  # 50 correct draws: at z = 6 each fails with probability ~2e-9
        p.apply(seed=seed)
        assert verify(model, p).ok
    with torch.no_grad():
        model.weight.normal_(0, 0.02 * (1 + 2 * tolerance))
    finding = verify(model, p)["weight"].findings[-1]
    assert finding.status == "fail" and f"+-{tolerance:.4f} for n=4096" in finding.evidence


def test_uniform_bound_and_constant_checks():
    model = nn.Linear(8, 8)
    p = plan(model, rules=[il.Rule("w", "uniform", param="weight", bound=0.1),
                           il.Rule("b", "constant", param="bias", value=0.5)])  # fmt: skip
    p.apply(seed=0)
    assert verify(model, p).ok
    with torch.no_grad():
        model.weight[0, 0] = 0.11
        model.bias[1] = 0.25
    report = verify(model, p)
    assert "beyond the planned bound 0.1" in report["weight"].evidence()
    assert "planned constant 0.5" in report["bias"].evidence()


def test_truncated_normal_std_by_hand():
    # N(0, 1) cut at +-2: variance 1 - 2 * 2 * phi(2) / (2 Phi(2) - 1)
    # = 1 - 4 * 0.0539910 / 0.9544997 = 0.773741, std 0.879626
    std, kurtosis, bound = _planned({"distribution": "truncated_normal", "std": 1.0,
                                     "bound": 2.0}, (4,))  # fmt: skip
    assert std == pytest.approx(0.879626, abs=1e-6) and bound == 2.0 and kurtosis == 3.0
    assert _planned({"distribution": "uniform", "bound": 3.0}, (4,))[:2] == pytest.approx(
        (3**0.5, 1.8)
    )


def test_receipt_of_another_model_names_the_first_mismatches():
    receipt = record_model(mlp())
    other = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match="does not fit this model") as info:
        verify(other, receipt)
    message = str(info.value)
    assert "not in the receipt: 3.weight, 3.bias" in message
    assert "other shape: 2.weight (receipt (4, 32), model (5, 32))" in message
    with pytest.raises(ValueError, match=r"missing from the model: 2.weight, 2.bias"):
        verify(nn.Sequential(nn.Linear(16, 32)), receipt)


def test_damaged_receipt_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "r.json"
    record_model(mlp()).save(path)
    path.write_text(path.read_text()[:-40])  # truncated
    with pytest.raises(ReceiptError, match=f"receipt file '{path}' is not valid JSON"):
        verify(mlp(), path)
    with pytest.raises(TypeError, match="receipt must be a Receipt"):
        verify(mlp(), 3)
    with pytest.raises(TypeError, match="model must be an nn.Module or a mapping"):
        verify([1, 2])


def test_state_dict_against_a_load_receipt_and_absent_tied_name():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    receipt = record_model(model)
    state = {"0.weight": model[0].weight.detach().clone()}  # safetensors keeps one of the two
    assert verify(state, receipt).ok
    state["1.weight"] = state["0.weight"] + 1
    assert "tied names" in verify(state, receipt)["0.weight"].evidence()


def _parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_verify.register(sub)
    return parser.parse_args(["verify", *argv])


def test_cli_verify_exit_codes_and_json(tmp_path, capsys):
    model = build_model("mlp", depth=1, width=8)
    state = model.state_dict()
    from safetensors.torch import save_file

    ckpt = tmp_path / "m.safetensors"
    save_file(state, ckpt)
    report = il.load_pretrained(build_model("mlp", depth=1, width=8), ckpt,
                                receipt=tmp_path / "r.json")  # fmt: skip
    assert report.clean
    args = _parse([str(ckpt), str(tmp_path / "r.json"), "--json", str(tmp_path / "v.json")])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True
    state["head.bias"] = state["head.bias"] + 1  # the checkpoint changed since the load
    save_file(state, ckpt)
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "not the bytes loaded from checkpoint tensor 'head.bias'" in out
    (tmp_path / "bad.json").write_text("{")
    args = _parse([str(ckpt), str(tmp_path / "bad.json")])
    assert args.func(args) == 2
    assert f"receipt file '{tmp_path / 'bad.json'}' is not valid JSON" in capsys.readouterr().err
    args = _parse(["mlp", "--model-arg", "depth=1"])  # a zoo model alone: PyTorch's init
    assert args.func(args) == 0


def test_running_statistics_warn_without_a_receipt_and_fail_against_one():
    model = build_model("resnet", widths=(4, 8))
    receipt = plan(model).apply(seed=0, receipt=True).receipt
    with torch.no_grad():
        model.stem[1].running_mean.fill_(0.5)  # as if loaded, or trained a step
    alone = verify(model)["stem.1.running_mean"]
    assert alone.status == "warn" and "in 4 of 4 entries" in alone.evidence()
    against = verify(model, receipt)["stem.1.running_mean"]
    assert against.status == "fail"
    assert {f.check for f in against.findings if f.status == "fail"} == {"constructor", "receipt"}


def test_hugging_face_buffers_are_recomputed_on_a_copy_and_left_alone():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=37, max_position_embeddings=16,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg)
    before = snapshot(model)
    report = verify(model)
    assert report["model.rotary_emb.inv_freq"].findings[0].check == "constructor"
    assert report.ok
    after = snapshot(model)
    for n, (value, ptr, _) in before.items():
        assert torch.equal(value, after[n][0]) and ptr == after[n][1], n


def test_duplicates_by_design_are_no_alarm():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    with torch.no_grad():
        for m in model[:2]:
            m.weight.copy_(torch.eye(4))  # identity: 12 of 16 entries are 0
        for m in model[2:]:
            m.weight.copy_(torch.arange(16.0).view(4, 4).sin())  # a fixed table, frozen
            m.weight.requires_grad_(False)
    assert verify(model).ok
    model[3].weight.requires_grad_(True)
    model[2].weight.requires_grad_(True)
    assert "identical to 3.weight" in verify(model)["2.weight"].evidence()


def test_a_model_on_the_meta_device_is_an_error():
    with torch.device("meta"):
        model = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"tensors \['weight', 'bias'\] are on the meta device"):
        verify(model)
