"""The ``pretrained`` scheme of ``initlab compare``: pretrain on MNIST, fine-tune on Fashion-MNIST.

The runner pretrains the source (:mod:`initlab.experiments.pretrain`); the scheme's own step
loads it. Small subsets and few steps keep this to seconds; the measurement is in docs/.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from initlab.cli import main
from initlab.experiments.pretrain import PretrainConfig, build_for_run, pretrain
from initlab.experiments.sweep import CompareConfig, read_results, run_sweep
from initlab.experiments.trainer import TrainConfig, run_seeds
from initlab.pretrained import load_pretrained
from initlab.zoo.models import build_model

FASHION = Path("/work/shared/data/fashion-mnist")


@pytest.fixture
def config() -> CompareConfig:
    if not FASHION.is_dir():
        pytest.skip(f"real data directory {FASHION} is missing (see shared/data/SOURCES.md)")
    return CompareConfig(
        schemes=("pretrained", "seed"),
        seeds=1,
        dataset="fashion-mnist",
        data_dir=str(FASHION),
        train_subset=300,
        test_subset=500,
        train=TrainConfig(epochs=1, batch_size=50),
        pretrain=PretrainConfig(subset=2000, epochs=1),
    )


def test_pretrained_run_starts_from_the_checkpoint_with_a_new_head(config, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="initlab.experiments.pretrain"):
        net = build_for_run(config, 0, tmp_path)
    assert "pretraining mlp-784-128-10 on mnist (seed 0, 1 epoch)" in caplog.text  # not "epochs"
    path = tmp_path / "pretrained" / "mnist-seed0.safetensors"
    checkpoint = load_file(str(path))
    assert torch.equal(net.fc1.weight, checkpoint["fc1.weight"])
    assert torch.equal(net.fc1.bias, checkpoint["fc1.bias"])
    assert not torch.equal(net.fc2.weight, checkpoint["fc2.weight"])  # new head
    report = json.loads((tmp_path / "pretrained" / "load-seed0.json").read_text())
    assert [row["name"] for row in report["loaded"]] == ["fc1.weight", "fc1.bias"]
    assert {row["source_key"] for row in report["ignored"]} == {"fc2.weight", "fc2.bias"}
    assert {row["reason"] for row in report["reinitialized"]} == {"new head"}
    # The scheme's load step draws the new head as the runner's own load did before it was a
    # step: load_pretrained with the run's init seed, whatever construction drew.
    ref = build_model("mlp-784-128-10")
    load_pretrained(ref, path, new_head="auto", on_mismatch="error", seed=run_seeds(0)[0])
    for (name, p), (_, q) in zip(net.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    metrics = json.loads((tmp_path / "pretrained" / "mnist-seed0.json").read_text())
    assert metrics["train_size"] == 2000 and len(metrics["epochs"]) == 1
    # Pretraining learned something: 2,000 MNIST images, one epoch, well above chance (0.1).
    assert metrics["epochs"][0]["test_accuracy"] > 0.5
    # A second call (a resumed sweep) reuses the checkpoint instead of pretraining again.
    stamp = path.stat().st_mtime_ns
    assert (
        pretrain(config.pretrain, "initnet", seed=0, train_config=config.train, out_dir=tmp_path)
        == path
    )
    assert path.stat().st_mtime_ns == stamp


def test_compare_sweep_with_the_pretrained_scheme(config, tmp_path):
    result = run_sweep(config, tmp_path, progress=False)
    assert [row.scheme for row in result.rows] == ["pretrained", "seed"]
    statuses = {
        line["run"]: line["status"]
        for line in read_results(tmp_path / "results.jsonl")
        if line["type"] == "status"
    }
    assert statuses == {"pretrained/0": "finished", "seed/0": "finished"}
    saved = CompareConfig.from_json((tmp_path / "config.json").read_text())
    assert saved == config and saved.pretrain.subset == 2000


def test_compare_cli_pretrain_options(tmp_path, capsys):
    if not FASHION.is_dir():
        pytest.skip(f"real data directory {FASHION} is missing")
    out = tmp_path / "run"
    code = main(
        [
            "compare", "--schemes", "pretrained", "--seeds", "1", "--dataset", "fashion-mnist",
            "--data-dir", str(FASHION), "--train-subset", "100", "--test-subset", "100",
            "--epochs", "1", "--max-steps", "2", "--pretrain-subset", "200",
            "--pretrain-epochs", "1", "--no-progress", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["pretrain"] == {"dataset": "mnist", "data_dir": None, "subset": 200, "epochs": 1}
    assert (out / "pretrained" / "mnist-seed0.safetensors").is_file()
    assert "pretrained" in capsys.readouterr().out


def test_pretrain_config_errors():
    with pytest.raises(ValueError, match="pretrain epochs must be an int >= 1; got epochs=0"):
        PretrainConfig(epochs=0)
