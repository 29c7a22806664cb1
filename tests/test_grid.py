"""Grids (``initlab.experiments.grid``, ``initlab sweep``) and the mean-field Gaussian scheme.

The grid tests train tiny MLPs (width 16, 3 steps per epoch on 256 MNIST images) so that the
whole file runs in about 30 s; what they check is the bookkeeping (cells, groups, stacking,
resume, refusal), not what the networks learn.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest
import torch

from initlab._checks import ArgumentError
from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.grid import (
    GridConfig,
    GridTooLargeError,
    cell_lines,
    estimate_seconds,
    parse_axis,
    run_grid,
)
from initlab.experiments.results import read_results
from initlab.schemes import registry
from initlab.schemes.meanfield import MEANFIELD, meanfield_name
from initlab.zoo.models import build_model


@pytest.fixture(autouse=True)
def meanfield_registered(monkeypatch):
    """The scheme by name, as it is once the registry lists it (idempotent when it does)."""
    monkeypatch.setitem(registry.SCHEMES, "meanfield", MEANFIELD)


def _base(**train) -> CompareConfig:
    settings = dict(
        optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, batch_size=32, epochs=2
    )
    return CompareConfig(
        schemes=("meanfield",),
        seeds=2,
        model="mlp",
        model_params={"width": 16, "activation": "tanh"},
        standardize=True,
        train_subset=256,
        test_subset=128,
        train=TrainConfig(**{**settings, "max_steps": 3, **train}),
    )


# --- the scheme ------------------------------------------------------------------------------


def test_meanfield_scheme_draws_exactly_n0_sw2_over_fan_in_then_biases():
    """Bit-for-bit the draws of torch's normal_ with std sqrt(sw2/fan_in) in weight order, then
    std sqrt(sb2) for the biases in module order, from one generator."""
    model = build_model("mlp", depth=2, width=8, activation="tanh")
    MEANFIELD.apply(model, {"sw2": 1.5, "sb2": 0.04}, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    weights = [p for n, p in model.named_parameters() if p.ndim == 2]
    biases = [p for n, p in model.named_parameters() if p.ndim == 1]
    for w in weights:
        expected = torch.empty_like(w).normal_(0.0, math.sqrt(1.5 / w.shape[1]), generator=g)
        assert torch.equal(w, expected)
    for b in biases:
        assert torch.equal(b, torch.empty_like(b).normal_(0.0, 0.2, generator=g))


def test_meanfield_scheme_variance_by_layer_fan_in():
    """Sample variance x fan_in is sw2: 784 x 512 draws give a relative standard error of
    sqrt(2 / 401408) = 0.22%; 1% is 4.5 standard errors."""
    model = build_model("mlp", depth=1, width=512, activation="relu")
    MEANFIELD.apply(model, {"sw2": 2.0, "sb2": 0.0}, generator=torch.Generator().manual_seed(0))
    first = model.hidden[0][0]
    assert float(first.weight.detach().var()) * 784 == pytest.approx(2.0, rel=0.01)
    assert torch.equal(first.bias, torch.zeros(512))  # sb2 = 0: N(0, 0) is 0


def test_meanfield_by_name_and_bad_variances():
    assert meanfield_name(1.76, 0.05) == "meanfield:sw2=1.76:sb2=0.05"
    scheme, options = registry.parse_scheme("meanfield:sw2=1.76:sb2=0.05")
    assert scheme is MEANFIELD and options == {"sw2": 1.76, "sb2": 0.05}
    with pytest.raises(ValueError, match="sw2 must be a finite number >= 0; got sw2=-1"):
        meanfield_name(-1, 0.0)
    with pytest.raises(ValueError, match="sb2"):
        MEANFIELD.apply(
            build_model("mlp", depth=1, width=4),
            {"sw2": 1.0, "sb2": -0.1},
            generator=torch.Generator().manual_seed(0),
        )


# --- the grid's config -------------------------------------------------------------------------


def test_parse_axis_and_its_errors():
    assert parse_axis("depth=10,20") == ("depth", (10, 20))
    assert parse_axis("sw2=1,1.5") == ("sw2", (1.0, 1.5))
    assert parse_axis("activation=tanh,relu") == ("activation", ("tanh", "relu"))
    with pytest.raises(ArgumentError, match="grid axis must be one of") as error:
        parse_axis("dept=10")
    assert error.value.argument == "grid"
    with pytest.raises(ArgumentError, match="axis depth takes int values; got 'x'"):
        parse_axis("depth=10,x")
    with pytest.raises(ArgumentError, match="axis depth takes integers >= 1; got depth=0"):
        parse_axis("depth=0")
    with pytest.raises(ArgumentError, match="axis lr takes finite numbers > 0; got lr=0.0"):
        parse_axis("lr=0")
    with pytest.raises(ArgumentError, match="expected NAME=V1,V2"):
        parse_axis("depth")


def test_grid_config_refuses_bad_axes():
    with pytest.raises(ArgumentError, match="cannot be combined with sw2/sb2"):
        GridConfig({"scheme": ("auto",), "sw2": (1.0,)}, _base())
    with pytest.raises(ArgumentError, match=r"distinct values; got sw2=\[1.0, 1.0\]"):
        GridConfig({"sw2": (1.0, 1.0)}, _base())
    with pytest.raises(ArgumentError, match="optimizer must be one of") as error:
        GridConfig({"optimizer": ("sgdd",)}, _base())
    assert error.value.argument == "grid"
    with pytest.raises(ArgumentError, match="budget_minutes"):
        GridConfig({"sw2": (1.0,)}, _base(), budget_minutes=0)


def test_groups_stack_what_shares_shapes_and_optimizer():
    """depth separates groups; sw2 x sb2 are the schemes, lr the rates of one stacked comparison."""
    grid = GridConfig(
        {"depth": (1, 2), "sw2": (1.0, 2.0), "sb2": (0.0, 0.1), "lr": (0.1, 0.01)}, _base()
    )
    groups = grid.groups()
    assert list(groups) == ["depth=1", "depth=2"]
    config, cells = groups["depth=2"]
    assert config.model_params == {"width": 16, "activation": "tanh", "depth": 2}
    assert config.lr_grid == (0.1, 0.01) and config.seeds == 2
    assert config.schemes == (
        "meanfield:sw2=1.0:sb2=0.0",
        "meanfield:sw2=1.0:sb2=0.1",
        "meanfield:sw2=2.0:sb2=0.0",
        "meanfield:sw2=2.0:sb2=0.1",
    )
    assert len(cells) == 8
    assert cells[("meanfield:sw2=2.0:sb2=0.1", 0.01)] == {
        "depth": 2,
        "sw2": 2.0,
        "sb2": 0.1,
        "lr": 0.01,
    }
    assert grid.runs() == 16 * 2
    by_scheme = GridConfig(
        {"scheme": ("auto", "orthogonal"), "optimizer": ("sgd", "adamw")}, _base()
    )
    assert {name: cfg.schemes for name, (cfg, _) in by_scheme.groups().items()} == {
        "optimizer=sgd": ("auto", "orthogonal"),
        "optimizer=adamw": ("auto", "orthogonal"),
    }
    assert GridConfig.from_json(grid.to_json()) == grid


def test_cell_lines_count_steps_from_the_start_and_locate_divergence():
    results = [
        {"type": "epoch", "scheme": "a", "seed": 0, "epoch": 1, "steps": 3, "test_accuracy": 0.5,
         "test_loss": 1.0, "train_loss": 1.1},
        {"type": "status", "scheme": "a", "seed": 0, "status": "diverged", "epoch": 2, "step": 2},
    ]  # fmt: skip
    (line,) = cell_lines("depth=2", {("a", None): {"depth": 2, "sw2": 9.0}}, results)
    assert line["diverged_step"] == 5 and line["status"] == "diverged"
    assert line["epochs"] == [
        {"epoch": 1, "step": 3, "test_accuracy": 0.5, "test_loss": 1.0, "train_loss": 1.1}
    ]
    assert line["depth"] == 2 and line["sw2"] == 9.0 and line["seed"] == 0


# --- running grids -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2 x 2 grid (depth x sw2, sb2 fixed), 2 seeds, 2 epochs of 3 steps: 8 runs, 2 groups."""
    mp = pytest.MonkeyPatch()
    mp.setitem(registry.SCHEMES, "meanfield", MEANFIELD)
    out = tmp_path_factory.mktemp("grid") / "g"
    grid = GridConfig(
        {"depth": (1, 2), "sw2": (1.0, 2.0), "sb2": (0.05,)}, _base(eval_steps=(2, 4))
    )
    run_grid(grid, out, progress=False, metric="train_accuracy")
    mp.undo()
    return grid, out


def test_grid_writes_cells_groups_report_and_heatmap(finished):
    grid, out = finished
    cells = read_results(out / "cells.jsonl")
    assert len(cells) == 8
    assert {(c["depth"], c["sw2"], c["seed"]) for c in cells} == {
        (d, s, k) for d in (1, 2) for s in (1.0, 2.0) for k in (0, 1)
    }
    assert all(c["sb2"] == 0.05 and c["status"] == "finished" for c in cells)
    assert all([e["step"] for e in c["epochs"]] == [3, 6] for c in cells)
    # training accuracy after steps 2 and 4: fractions of the 256 training images
    assert all([e["step"] for e in c["evals"]] == [2, 4] for c in cells)
    assert all((e["train_accuracy"] * 256).is_integer() for c in cells for e in c["evals"])
    # each cell's numbers are its group's epoch lines
    group = read_results(out / "groups" / "depth=2" / "results.jsonl")
    epoch = next(
        line for line in group
        if line["type"] == "epoch" and line["scheme"] == "meanfield:sw2=2.0:sb2=0.05"
        and line["seed"] == 1 and line["epoch"] == 2
    )  # fmt: skip
    cell = next(c for c in cells if (c["depth"], c["sw2"], c["seed"]) == (2, 2.0, 1))
    assert cell["epochs"][1]["test_accuracy"] == epoch["test_accuracy"]
    assert json.loads((out / "grid.json").read_text())["axes"]["depth"] == [1, 2]
    assert (out / "depth_vs_sw2_sb2=0.05.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "![depth_vs_sw2_sb2=0.05](depth_vs_sw2_sb2=0.05.png)" in report
    assert "| 2 | 2.0 | 0.05 | 2 | 0 |" in report and "training accuracy" in report


def test_grid_group_trained_stacked(finished, caplog):
    """The 4 runs of a group train as one stack (the sweep logs it)."""
    grid, out = finished
    lines = read_results(out / "groups" / "depth=1" / "results.jsonl")
    assert [line["type"] for line in lines[:4]] == ["init"] * 4  # stacked: every init first


def test_resume_skips_finished_groups_and_reruns_the_missing_one(finished, tmp_path):
    grid, out = finished
    copy = tmp_path / "g"
    import shutil

    shutil.copytree(out, copy)
    kept = (copy / "groups" / "depth=1" / "results.jsonl").read_bytes()
    # as if stopped before the second group started: its directory and cell lines are gone
    shutil.rmtree(copy / "groups" / "depth=2")
    lines = read_results(copy / "cells.jsonl")
    (copy / "cells.jsonl").write_text(
        "".join(json.dumps(c) + "\n" for c in lines if c["group"] == "depth=1")
    )
    run_grid(None, copy, resume=True, progress=False)
    assert (copy / "groups" / "depth=1" / "results.jsonl").read_bytes() == kept
    again = read_results(copy / "cells.jsonl")
    assert again[:4] == lines[:4]  # the finished group's lines, untouched
    # training is deterministic: the rerun group gives the same numbers
    key = lambda c: (c["depth"], c["sw2"], c["seed"])  # noqa: E731
    assert sorted(again, key=key) == sorted(lines, key=key)
    # a second resume has nothing left to train and adds no line
    run_grid(None, copy, resume=True, progress=False)
    assert read_results(copy / "cells.jsonl") == again


def test_resume_continues_a_group_stopped_mid_training(finished, tmp_path, monkeypatch):
    """Ctrl-C after the first epoch of the second group; the resumed grid continues that group
    from its checkpoint and ends with the uninterrupted grid's numbers."""
    from initlab.experiments import grid as grid_module

    grid, out = finished
    real = grid_module.run_sweep

    def stop_in_depth_2(config, sub, **kwargs):
        def stop(run, record):
            raise KeyboardInterrupt

        hook = stop if sub.name == "depth=2" and not kwargs["resume"] else None
        return real(config, sub, on_epoch=hook, **kwargs)

    monkeypatch.setattr(grid_module, "run_sweep", stop_in_depth_2)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path / "g", progress=False)
    assert {c["group"] for c in read_results(tmp_path / "g" / "cells.jsonl")} == {"depth=1"}
    run_grid(None, tmp_path / "g", resume=True, progress=False)
    key = lambda c: (c["depth"], c["sw2"], c["seed"])  # noqa: E731
    expected = sorted(read_results(out / "cells.jsonl"), key=key)
    assert sorted(read_results(tmp_path / "g" / "cells.jsonl"), key=key) == expected


def test_budget_refusal_before_anything_runs(tmp_path):
    grid = GridConfig({"sw2": (1.0, 2.0), "sb2": (0.0, 0.1)}, _base(), budget_minutes=1e-6)
    with pytest.raises(GridTooLargeError) as error:
        run_grid(grid, tmp_path / "g", progress=False)
    message = str(error.value)
    assert error.value.argument == "budget_minutes"
    assert "4 cells x 2 seeds = 8 runs in 1 group;" in message
    assert "estimated from a timed probe of 5 training steps" in message
    assert "over the budget of 1e-06 min. Nothing was run" in message
    assert not (tmp_path / "g").exists()


def test_estimate_scales_with_steps():
    """Twice the epochs, twice the run-steps; the time is run-steps x the probed step time."""
    one = estimate_seconds(GridConfig({"sw2": (1.0, 2.0)}, _base(epochs=1)))
    two = estimate_seconds(GridConfig({"sw2": (1.0, 2.0)}, _base(epochs=2)))
    assert one.run_steps == 2 * 2 * 3 and two.run_steps == 2 * one.run_steps
    assert one.seconds > one.run_steps * one.seconds_per_run_step + 10  # tests, group costs
    assert one.probe_runs == 4  # 2 cells x 2 seeds, stacked
    params = {"width": 16, "activation": "tanh", "dropout": 0.1}  # dropout: one by one
    alone = estimate_seconds(
        GridConfig({"sw2": (1.0, 2.0)}, dataclasses.replace(_base(), model_params=params))
    )
    assert alone.probe_runs == 1 and alone.run_steps == 2 * 2 * 6


def test_step_metric_without_eval_steps_is_refused(tmp_path):
    grid = GridConfig({"sw2": (1.0, 2.0)}, _base())
    with pytest.raises(ArgumentError, match="'train_accuracy' is measured at the training's"):
        run_grid(grid, tmp_path / "g", progress=False, metric="train_accuracy")
    assert not (tmp_path / "g").exists()


def test_cli_metrics_are_the_reports():
    from initlab.cli import sweep
    from initlab.reports.phase import METRICS

    assert tuple(METRICS) == sweep.METRICS


def test_existing_grid_is_refused(finished):
    grid, out = finished
    with pytest.raises(FileExistsError, match="grid.json exists"):
        run_grid(grid, out, progress=False)


# --- the command ---------------------------------------------------------------------------


def _cli(argv):
    from initlab.cli import sweep

    parser = argparse.ArgumentParser(prog="initlab")
    sweep.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", *argv])
    return args.func(args)


COMMON = [
    "--seeds", "2", "--model-arg", "depth=2", "--model-arg", "width=16",
    "--model-arg", "activation=tanh", "--standardize", "--train-subset", "256",
    "--test-subset", "128", "--epochs", "1", "--max-steps", "3", "--optimizer", "sgd",
    "--lr", "0.01", "--batch-size", "32", "--no-progress",
]  # fmt: skip


def test_cli_sweep_sw2_by_sb2_with_diverged_cells(tmp_path, capsys):
    """ReLU with sw2 = 10^8 and SGD at lr 100 overflows in its first epoch: a result (status
    diverged, no value, hatched) beside the cells that train."""
    out = tmp_path / "s"
    argv = ["--grid", "sw2=1.0,1e8", "--grid", "sb2=0,0.5", *COMMON, "--out", str(out)]
    argv += [
        "--model-arg",
        "activation=relu",
        "--model-arg",
        "depth=3",
        "--lr",
        "100",
        "--eval-steps",
        "3,1",
    ]  # later wins
    assert _cli(argv) == 0
    printed = capsys.readouterr().out
    assert f"Wrote {out}" in printed and "sb2_vs_sw2.png" in printed
    cells = read_results(out / "cells.jsonl")
    assert sorted((c["sw2"], c["sb2"]) for c in cells) == sorted(
        [(w, b) for w in (1.0, 1e8) for b in (0.0, 0.5)] * 2
    )
    for c in cells:
        assert c["status"] == ("diverged" if c["sw2"] == 1e8 else "finished")
        assert [e["step"] for e in c["evals"]] == ([] if c["sw2"] == 1e8 else [1, 3])
    assert list((out / "groups").iterdir()) == [out / "groups" / "all"]
    report = (out / "report.md").read_text()
    assert "| 100000000.0 | 0.5 | 2 | 2 | - |" in report  # both seeds diverged: no value
    # --resume of a finished grid trains nothing and rewrites the report
    assert _cli(["--resume", str(out), "--no-progress", "--metric", "test_loss"]) == 0
    assert "test loss" in (out / "report.md").read_text()
    assert read_results(out / "cells.jsonl") == cells


def test_cli_sweep_errors(tmp_path, capsys):
    assert _cli(["--grid", "depth=1,x", *COMMON, "--out", str(tmp_path / "a")]) == 2
    assert "argument --grid: axis depth takes int values" in capsys.readouterr().err
    assert _cli([*COMMON, "--out", str(tmp_path / "b")]) == 2
    assert "argument --grid: give at least one axis" in capsys.readouterr().err
    argv = ["--grid", "sw2=1,2", *COMMON, "--budget-minutes", "0.000001", "--out"]
    assert _cli([*argv, str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "initlab sweep: error: argument --budget-minutes: the grid has 2 cells" in err
    assert not (tmp_path / "c").exists()


def test_model_axis_the_model_does_not_take_is_refused():
    base = CompareConfig(schemes=("meanfield",), model="mlp-784-128-10")
    with pytest.raises(ArgumentError, match="axis depth is a model argument, and model") as error:
        GridConfig({"depth": (1, 2)}, base)
    assert error.value.argument == "grid"
