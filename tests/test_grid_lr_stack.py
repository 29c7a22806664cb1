"""A grid's ``lr`` axis trains in its group's stack (``initlab.experiments.grid``).

Cells that differ only in ``lr`` and ``sw2`` form one group: one stacked sweep whose runs step
at their own rates (``CompareConfig(select_rates=False)``: no validation split is held out, every
cell is reported). Its cells must be those of the former layout, one plain group per rate,
within the stacking tolerance of :mod:`tests.rounding`: the two differ only in how the stacked
sums are rounded (the same data, batches, initial weights and rates). A held-out split would
train on other batches and move the losses by far more than the band (tests/rounding.py: a
batch mix-up moves them 30 to 250 times it), so the comparison also checks that none is held
out.

Tiny MLPs (width 16, 3 steps per epoch on 256 MNIST images) keep the file at a few seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.grid import GridConfig, run_grid
from initlab.experiments.results import read_results
from initlab.schemes import registry
from initlab.schemes.meanfield import MEANFIELD
from tests.rounding import accuracy_tolerance, band

RATES = (0.05, 0.01)
TEST_IMAGES = 128


@pytest.fixture(autouse=True)
def meanfield_registered(monkeypatch):
    monkeypatch.setitem(registry.SCHEMES, "meanfield", MEANFIELD)


def _base(lr: float = 0.01) -> CompareConfig:
    return CompareConfig(
        schemes=("meanfield",),
        seeds=1,
        model="mlp",
        model_params={"width": 16, "activation": "tanh", "depth": 2},
        standardize=True,
        train_subset=256,
        test_subset=TEST_IMAGES,
        train=TrainConfig(
            optimizer="sgd",
            lr=lr,
            momentum=0.9,
            weight_decay=0.0,
            batch_size=32,
            epochs=2,
            max_steps=3,
        ),
    )


def _by_cell(lines: list[dict]) -> dict[tuple, dict]:
    return {(line["lr"], line["sw2"], line["seed"]): line for line in lines}


def test_an_lr_axis_is_one_stacked_group_equal_to_a_group_per_rate(tmp_path):
    grid = GridConfig({"lr": RATES, "sw2": (1.0, 2.0)}, _base())
    groups = grid.groups()
    assert list(groups) == ["all"]
    config, cells = groups["all"]
    assert config.lr_grid == RATES and len(cells) == 4
    run_grid(grid, tmp_path / "stacked", progress=False)
    got = _by_cell(read_results(tmp_path / "stacked" / "cells.jsonl"))
    assert set(got) == {(lr, s, 0) for lr in RATES for s in (1.0, 2.0)}

    # the former layout: each rate a group of its own, trained at train.lr without an lr_grid
    alone = dataclasses.replace(grid, stack_lr=False)
    assert list(alone.groups()) == ["lr=0.05", "lr=0.01"]
    assert [cfg.lr_grid for cfg, _ in alone.groups().values()] == [None, None]
    assert [cfg.train.lr for cfg, _ in alone.groups().values()] == list(RATES)
    run_grid(alone, tmp_path / "alone", progress=False)
    want = _by_cell(read_results(tmp_path / "alone" / "cells.jsonl"))
    assert set(want) == set(got)
    for key, line in got.items():
        ref = want[key]
        assert line["status"] == ref["status"] == "finished"
        assert len(line["epochs"]) == len(ref["epochs"]) == 2
        for a, b in zip(line["epochs"], ref["epochs"], strict=True):
            assert a["step"] == b["step"]  # the whole training set: 3 steps per epoch, no split
            for k in ("train_loss", "test_loss"):
                assert a[k] == pytest.approx(b[k], rel=band(a["step"])), (key, k)
            tolerance = accuracy_tolerance(a["step"], TEST_IMAGES)
            assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=tolerance)
    # the rates really differ (else the stack could have used one rate for all)
    assert got[(0.05, 1.0, 0)]["epochs"][-1]["train_loss"] != pytest.approx(
        got[(0.01, 1.0, 0)]["epochs"][-1]["train_loss"], rel=100 * band(6)
    )
    group = tmp_path / "stacked" / "groups" / "all"
    assert not any("val_accuracy" in line for line in read_results(group / "results.jsonl"))
    with open(group / "summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["lr"]), r["scheme"]) for r in rows] == [
        (lr, s) for lr in RATES for s in config.schemes
    ]
    for lr in RATES:
        assert (group / f"lr={lr!r}" / "report.md").is_file()
    # the group records that it chose no rate, so a resume of the group alone holds out none
    saved = CompareConfig.from_json((group / "config.json").read_text())
    assert saved.select_rates is False and saved.lr_grid == RATES


def test_a_group_written_without_select_rates_resumes_choosing_no_rate(tmp_path):
    # A group's config.json from before the field existed reads back as choosing rates; the
    # grid writes the field in before resuming, so the group is reported rate by rate again.
    grid = GridConfig({"lr": RATES}, dataclasses.replace(_base(), train_subset=64))
    out = tmp_path / "g"
    run_grid(grid, out, progress=False)
    group = out / "groups" / "all"
    raw = json.loads((group / "config.json").read_text())
    del raw["select_rates"]  # as written before
    (group / "config.json").write_text(json.dumps(raw))
    (group / "summary.csv").unlink()
    (out / "cells.jsonl").write_text("")
    for lr in RATES:
        (group / f"lr={lr!r}" / "report.md").unlink()
    run_grid(None, out, resume=True, progress=False)
    assert json.loads((group / "config.json").read_text())["select_rates"] is False
    for lr in RATES:
        assert (group / f"lr={lr!r}" / "report.md").is_file()


def test_select_rates_is_written_only_when_off():
    base = dataclasses.replace(_base(), lr_grid=RATES)
    assert "select_rates" not in json.loads(base.to_json())
    off = dataclasses.replace(base, select_rates=False)
    assert json.loads(off.to_json())["select_rates"] is False
    assert CompareConfig.from_json(off.to_json()) == off
    assert CompareConfig.from_json(base.to_json()).select_rates is True
    with pytest.raises(TypeError, match="select_rates must be True or False; got 'no'"):
        dataclasses.replace(base, select_rates="no")


def test_a_grid_json_written_before_stack_lr_resumes_into_a_group_per_rate():
    grid = GridConfig({"lr": RATES, "sw2": (1.0, 2.0)}, _base())
    assert GridConfig.from_json(grid.to_json()) == grid
    raw = json.loads(grid.to_json())
    del raw["stack_lr"]  # as written before the field existed
    old = GridConfig.from_json(json.dumps(raw))
    assert old.stack_lr is False and list(old.groups()) == ["lr=0.05", "lr=0.01"]


def test_an_lr_by_depth_grid_resumes_and_draws_its_heatmap(tmp_path):
    grid = GridConfig({"lr": RATES, "depth": (1, 2)}, _base())
    assert list(grid.groups()) == ["depth=1", "depth=2"]
    out = tmp_path / "g"
    run_grid(grid, out, progress=False)
    cells = read_results(out / "cells.jsonl")
    assert {(c["lr"], c["depth"]) for c in cells} == {(lr, d) for lr in RATES for d in (1, 2)}
    (figure,) = out.glob("depth_vs_lr*.png")
    assert figure.stat().st_size > 10_000
    # a finished grid resumed: nothing retrained, no cell line repeated
    before = (out / "cells.jsonl").read_text()
    run_grid(None, out, resume=True, progress=False)
    assert (out / "cells.jsonl").read_text() == before
    assert dataclasses.asdict(grid.base) == dataclasses.asdict(
        GridConfig.from_json((out / "grid.json").read_text()).base
    )
