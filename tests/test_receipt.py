"""Init receipts: statistics and hashes by hand, the JSON file, and the receipts that
``InitPlan.apply`` and ``load_pretrained`` write."""

import hashlib
import json
import math

import pytest
import torch
from torch import nn

import initlab as il
from initlab.policy import plan
from initlab.policy.receipt import (
    Receipt,
    ReceiptError,
    read_receipt,
    record_model,
    tensor_hash,
    tensor_stats,
)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_stats_by_hand():
    st = tensor_stats(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    # mean 2/4; E[x^2] = 14/4 = 3.5, variance 3.5 - 0.25 = 3.25 (population)
    assert st["mean"] == 0.5 and st["std"] == pytest.approx(math.sqrt(3.25), rel=1e-12)
    assert (st["min"], st["max"], st["zeros"], st["nonfinite"], st["subnormal"]) == (
        -2.0, 3.0, 0.25, 0.0, 0.0,
    )  # fmt: skip


def test_stats_of_non_finite_are_over_the_finite_entries():
    st = tensor_stats(torch.tensor([1.0, math.nan, math.inf, 3.0]))
    assert st["nonfinite"] == 2 and st["mean"] == 2.0 and st["std"] == 1.0
    assert (st["min"], st["max"]) == (1.0, 3.0)


def test_subnormal_fraction_float32_but_not_float16():
    x = torch.tensor([1e-40, 0.0, 1.0, 2.0])  # 1e-40 < finfo(float32).tiny = 1.18e-38
    assert tensor_stats(x)["subnormal"] == 0.25
    assert tensor_stats(torch.tensor([1e-6, 1.0], dtype=torch.float16))["subnormal"] == 0.0


def test_subnormal_sample_of_a_large_tensor_sees_a_page_of_integers():
    x = torch.randn(1 << 18)
    x[:4096] = torch.arange(4096, dtype=torch.int32).view(torch.float32)  # ints read as floats
    # the first sampled run is x[0:4096]: 4095 subnormal entries (arange's 0 is a zero)
    assert tensor_stats(x)["subnormal"] == pytest.approx(4095 / (16 * 4096))


def test_std_of_a_tensor_with_a_large_mean_is_exact():
    x = 1000.0 + torch.randn(10_000, dtype=torch.float64) * 1e-3
    assert tensor_stats(x.float())["std"] == pytest.approx(
        float(x.float().double().std(correction=0)), rel=1e-6
    )
    assert tensor_stats(torch.ones(5))["std"] == 0.0


def test_hash_is_sha256_of_the_contiguous_bytes():
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert tensor_hash(x) == hashlib.sha256(x.numpy().tobytes()).hexdigest()
    assert tensor_hash(x.T) == hashlib.sha256(x.T.contiguous().numpy().tobytes()).hexdigest()
    assert tensor_hash(x.double()) != tensor_hash(x)
    assert len(tensor_hash(x.bfloat16())) == 64


def test_record_model_sources_ties_and_defaults():
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5), nn.BatchNorm1d(5))
    model[1].weight = model[0].weight  # tied, as a language model's head
    r = record_model(model, {"0.weight": {"kind": "plan", "distribution": "normal", "std": 1.0}},
                     seed=3)  # fmt: skip
    assert list(r.tensors)[:2] == ["0.weight", "1.bias"]
    assert r["0.weight"].tied == ("1.weight",) and r["0.weight"].seed == 3
    assert r["1.bias"].source == {"kind": "untouched"} and r["1.bias"].seed is None
    assert r["2.running_mean"].source == {"kind": "module"}
    assert r["2.running_mean"].kind == "buffer" and r["2.num_batches_tracked"].dtype == "int64"
    assert r.names()["1.weight"] == "0.weight"


def test_json_is_one_line_per_tensor_strict_and_round_trips(tmp_path):
    model = mlp()
    with torch.no_grad():
        model[0].bias.fill_(math.nan)  # no finite entry: mean, std, min, max are NaN
    r = record_model(model)
    path = r.save(tmp_path / "r.json")
    text = path.read_text()
    lines = [ln for ln in text.splitlines() if '"name"' in ln]
    assert len(lines) == 4  # one per tensor
    # strict JSON: no NaN literal (a non-finite stat is written as text)
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"literal {c}"))
    assert data["tensors"][1]["stats"]["mean"] == "nan"
    back = read_receipt(path)
    assert back.to_dict() == r.to_dict() | {"tensors": back.to_dict()["tensors"]}
    assert math.isnan(back["0.bias"].stats["mean"]) and back["0.bias"].sha256 == r["0.bias"].sha256


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read"),
        ('{"format": "initlab.Receipt", "version": 1, "tensors": [', "not valid JSON"),
        ('{"format": "other"}', "is not an initlab receipt"),
        ('{"format": "initlab.Receipt", "version": 9, "tensors": []}', "version 9"),
        ('{"format": "initlab.Receipt", "version": 1, "tensors": [{"name": "w"}]}', "lacks"),
        ('{"format": "initlab.Receipt", "version": 1, "tensors": '
         '[{"name": "w", "kind": "parameter", "shape": [-1], "dtype": "float32"}]}', "'shape'"),
    ],
)  # fmt: skip
def test_damaged_receipt_names_the_file_and_what_is_wrong(tmp_path, content, says):
    path = tmp_path / "damaged.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ReceiptError, match=says) as info:
        read_receipt(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_apply_receipt_records_the_rows_and_changes_no_draw(tmp_path):
    a, b = mlp(), mlp()
    pa = plan(a).apply(seed=7)
    pb = plan(b).apply(seed=7, receipt=tmp_path / "r.json")
    assert pa.receipt is None
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)
    r = read_receipt(tmp_path / "r.json")
    assert r.to_dict() == pb.receipt.to_dict()
    row = pb["0.weight"]
    src = r["0.weight"].source
    assert src["kind"] == "plan" and src["rule"] == row.rule
    assert src["distribution"] == row.distribution and r["0.weight"].seed == 7 and r.seed == 7
    assert r["0.weight"].sha256 == tensor_hash(b[0].weight)
    assert r["0.weight"].stats == tensor_stats(b[0].weight)
    assert plan(mlp()).apply(seed=1, receipt=True).receipt.origin == "plan"
    with pytest.raises(TypeError, match="receipt must be None, True or a path; got receipt=5"):
        plan(mlp()).apply(seed=1, receipt=5)


def test_load_pretrained_receipt_names_checkpoint_tensors_and_the_policy(tmp_path):
    source = {"module." + k: v for k, v in mlp().state_dict().items() if k != "2.bias"}
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    report = il.load_pretrained(model, source, seed=0, receipt=tmp_path / "load.json")
    r = read_receipt(tmp_path / "load.json")
    assert r.to_dict() == report.receipt.to_dict() and r.origin == "load_pretrained"
    assert report.to_dict()["receipt"] == r.to_dict()  # a field of the report, serialized with it
    json.dumps(report.to_dict())
    assert r["0.weight"].source == {"kind": "checkpoint", "file": report.source,
                                    "tensor": "module.0.weight", "dtype": "float32"}  # fmt: skip
    assert r["0.weight"].sha256 == tensor_hash(source["module.0.weight"])
    assert r["2.bias"].source["kind"] == "plan"  # missing: initialized by the policy
    assert isinstance(Receipt.load(tmp_path / "load.json"), Receipt)
    with pytest.raises(TypeError, match="receipt must be"):
        il.load_pretrained(mlp(), source, receipt=1.5)


def test_stats_of_half_precision_and_integers():
    x = torch.tensor([0.5, -1.5, 2.0, 0.0], dtype=torch.bfloat16)  # exact in bfloat16
    assert tensor_stats(x) == tensor_stats(x.float())
    st = tensor_stats(torch.arange(5))  # 0..4: mean 2, population variance 2
    assert (st["mean"], st["zeros"], st["subnormal"]) == (2.0, 0.2, 0.0)
    assert st["std"] == pytest.approx(math.sqrt(2), rel=1e-12)  # by torch.var: mean not small
