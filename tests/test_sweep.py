"""The comparison runner: files written, resume after an interrupt, divergence, the summary."""

import csv
import dataclasses
import json
import logging
import re

import pytest
import torch

from initlab.experiments import sweep
from initlab.experiments.pretrain import PretrainConfig
from initlab.experiments.results import merge_rank_files
from initlab.experiments.sweep import CompareConfig, read_results, run_sweep
from initlab.experiments.trainer import TrainConfig
from initlab.reports.compare import (
    SummaryRow,
    _band,
    _loss_points,
    format_table,
    summarize,
    write_report,
)

# 1000 training images = 16 steps of 64 per epoch: a sweep of 4 runs x 2 epochs takes ~1 s.
SMALL = {"train_subset": 1000, "test_subset": 200, "train": TrainConfig(epochs=2)}


def _comparable(lines):
    """Lines without wall times, keyed so that line order does not matter."""
    out = {}
    for line in lines:
        line = {k: v for k, v in line.items() if k != "wall_time_s"}
        out[(line["type"], line["run"], line.get("epoch"))] = line
    return out


def test_sweep_writes_config_results_summary_report_and_figures(tmp_path):
    config = CompareConfig(schemes=("seed", "zeros"), seeds=2, **SMALL)
    result = run_sweep(config, tmp_path, progress=False)
    assert CompareConfig.from_json((tmp_path / "config.json").read_text()) == config
    lines = read_results(tmp_path / "results.jsonl")
    # per run: one init line, one line per epoch, one status line
    assert [line["type"] for line in lines] == ["init", "epoch", "epoch", "status"] * 4
    assert [line["run"] for line in lines[::4]] == ["seed/0", "zeros/0", "seed/1", "zeros/1"]
    assert {line["status"] for line in lines if line["type"] == "status"} == {"finished"}
    assert set(lines[0]["activation_std"]) == {"fc1", "fc2"}
    # the zeros scheme's outputs are all zero at init, the seed's are not
    assert lines[4]["activation_std"] == {"fc1": 0.0, "fc2": 0.0}
    assert lines[0]["activation_std"]["fc1"] > 0.1

    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["scheme"] for r in rows] == ["seed", "zeros"]
    finals = [ln["test_accuracy"] for ln in lines if ln["type"] == "epoch" and ln["epoch"] == 2]
    seed_finals = finals[0::2]  # runs alternate seed, zeros
    assert float(rows[0]["final_accuracy_mean"]) == pytest.approx(sum(seed_finals) / 2)
    assert result.rows[0].final_accuracy_mean == pytest.approx(sum(seed_finals) / 2)
    # Zero weights: every hidden unit is identical and fc2 gets zero input, so the network
    # predicts from fc2's bias alone: one class for every image, the same for both seeds.
    assert result.rows[1].final_accuracy_std == 0.0

    report = (tmp_path / "report.md").read_text()
    assert "| scheme | final test acc (mean ± std) |" in report
    assert "| seed | " in report and "| zeros | " in report
    for name in ("train_loss.png", "test_error.png", "activation_std_at_init.png"):
        assert f"]({name})" in report
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


# 3 epochs, so that an interrupt after epoch 2 leaves a run with an epoch still to train.
THREE = {**SMALL, "train": TrainConfig(epochs=3)}


def _interrupt_at(run, epoch, calls):
    def hook(name, record):
        calls.append((name, record.epoch))
        if (name, record.epoch) == (run, epoch):
            raise KeyboardInterrupt

    return hook


def test_interrupted_sweep_continues_from_its_checkpoint_to_the_same_lines(tmp_path, caplog):
    config = CompareConfig(schemes=("seed", "xavier_normal"), seeds=2, **THREE)
    run_sweep(config, tmp_path / "full", progress=False)
    assert not (tmp_path / "full" / "checkpoints").exists()  # removed once the sweep is done

    with pytest.raises(KeyboardInterrupt):
        run_sweep(
            config,
            tmp_path / "cut",
            progress=False,
            on_epoch=_interrupt_at("xavier_normal/0", 2, []),
        )
    cut = read_results(tmp_path / "cut" / "results.jsonl")
    assert [(ln["type"], ln["run"], ln.get("epoch")) for ln in cut if ln["type"] != "init"] == [
        ("epoch", "seed/0", 1),
        ("epoch", "seed/0", 2),
        ("epoch", "seed/0", 3),
        ("status", "seed/0", None),
        ("epoch", "xavier_normal/0", 1),
        ("epoch", "xavier_normal/0", 2),
        ("status", "xavier_normal/0", None),
    ]
    assert cut[-1]["status"] == "interrupted"
    # one checkpoint: the interrupted run's, after epoch 2 (the finished run's is deleted)
    (path,) = (tmp_path / "cut" / "checkpoints").iterdir()
    raw = torch.load(path, weights_only=True)  # plain dicts, ints and tensors only
    assert list(raw["runs"]) == ["xavier_normal/0"]
    assert (raw["runs"]["xavier_normal/0"]["epoch"], raw["runs"]["xavier_normal/0"]["steps"]) == (
        2,
        32,
    )

    trained = []
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        result = run_sweep(
            None,
            tmp_path / "cut",
            resume=True,
            progress=False,
            on_epoch=lambda r, e: trained.append((r, e.epoch)),
        )
    assert "continuing from checkpoints: xavier_normal/0 after epoch 2" in caplog.text
    # seed/0 is kept; xavier_normal/0 trains only its third epoch; the others from scratch
    assert trained == [("xavier_normal/0", 3)] + [
        (run, epoch) for run in ("seed/1", "xavier_normal/1") for epoch in (1, 2, 3)
    ]
    full = read_results(tmp_path / "full" / "results.jsonl")
    resumed = read_results(tmp_path / "cut" / "results.jsonl")
    assert len(resumed) == len(full) == 4 * 5  # no line twice
    # the same numbers to the last bit: the state is restored exactly
    assert _comparable(resumed) == _comparable(full)
    assert (tmp_path / "cut" / "summary.csv").read_text() == (
        tmp_path / "full" / "summary.csv"
    ).read_text()
    assert result.config == config
    assert not (tmp_path / "cut" / "checkpoints").exists()


def test_an_epoch_written_but_not_checkpointed_is_dropped_and_trained_again(tmp_path, monkeypatch):
    # The sweep stops after epoch 2's line is written but before its checkpoint (a kill
    # between the two): resuming drops that line and trains epoch 2 again, from epoch 1's state.
    config = CompareConfig(schemes=("seed",), seeds=1, **THREE)
    run_sweep(config, tmp_path / "full", progress=False)
    real = sweep.save_checkpoint

    def killed_on_epoch_2(path, states):
        if next(iter(states.values())).epoch == 2:
            raise KeyboardInterrupt
        real(path, states)

    monkeypatch.setattr(sweep, "save_checkpoint", killed_on_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    cut = read_results(tmp_path / "cut" / "results.jsonl")
    assert [ln.get("epoch") for ln in cut if ln["type"] == "epoch"] == [1, 2]
    trained = []
    run_sweep(
        None,
        tmp_path / "cut",
        resume=True,
        progress=False,
        on_epoch=lambda r, e: trained.append(e.epoch),
    )
    assert trained == [2, 3]
    resumed = read_results(tmp_path / "cut" / "results.jsonl")
    full = read_results(tmp_path / "full" / "results.jsonl")
    assert len(resumed) == len(full) == 5
    assert _comparable(resumed) == _comparable(full)


def test_a_checkpoint_without_its_lines_is_not_used(tmp_path):
    # results.jsonl lost the run's epoch lines (edited by hand): the run starts over.
    config = CompareConfig(schemes=("seed",), seeds=1, **THREE)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, tmp_path, progress=False, on_epoch=_interrupt_at("seed/0", 2, []))
    results = tmp_path / "results.jsonl"
    kept = [ln for ln in read_results(results) if ln.get("epoch") != 1]
    results.write_text("".join(json.dumps(ln) + "\n" for ln in kept))
    trained = []
    run_sweep(None, tmp_path, resume=True, progress=False, on_epoch=lambda r, e: trained.append(e))
    assert [e.epoch for e in trained] == [1, 2, 3]
    epochs = [ln["epoch"] for ln in read_results(results) if ln["type"] == "epoch"]
    assert epochs == [1, 2, 3]


def test_rank_files_are_appended_in_rank_order_once_after_a_torn_last_line(tmp_path):
    # what a torchrun session killed mid-write leaves; a merge cut short before deleting the
    # rank files already appended rank 2's line, so repeating it must not add that line again
    def text(*runs):
        return "".join(json.dumps({"type": "status", "run": run}) + "\n" for run in runs)

    (tmp_path / "results.jsonl").write_text(text("a/0", "c/0") + '{"type": "ep')
    (tmp_path / "results.rank10.jsonl").write_text(text("k/0"))
    (tmp_path / "results.rank2.jsonl").write_text(text("c/0", "d/0"))
    (tmp_path / "results.rank1.jsonl").write_text(text("b/0") + '{"run": "b/')
    merge_rank_files(tmp_path)
    lines = (tmp_path / "results.jsonl").read_text()
    assert lines == text("a/0", "c/0", "b/0", "d/0", "k/0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]


def _counts(err: str, total: int) -> list[int]:
    return [int(n) for n in re.findall(rf"(\d+)/{total} ", err)]


@pytest.mark.parametrize("vectorize", [False, True])
def test_the_progress_bar_counts_run_steps_and_is_absent_when_nothing_is_left(
    tmp_path, capsys, vectorize
):
    config = CompareConfig(schemes=("seed", "zeros"), seeds=1, **THREE)
    capsys.readouterr()
    run_sweep(config, tmp_path, vectorize=vectorize)
    # 2 runs x 3 epochs x 16 steps (tests/test_progress.py checks each update)
    counts = _counts(capsys.readouterr().err, 96)
    assert counts[0] == 0 and counts[-1] == 96 and counts == sorted(counts)
    run_sweep(None, tmp_path, resume=True, vectorize=vectorize)
    assert "step" not in capsys.readouterr().err  # nothing left: no bar, no "0step"


def test_a_diverged_run_completes_the_bar(tmp_path, capsys):
    config = CompareConfig(schemes=("normal:std=1e20", "seed"), seeds=1, **THREE)
    capsys.readouterr()
    run_sweep(config, tmp_path, vectorize=True)
    counts = _counts(capsys.readouterr().err, 96)
    # the diverged run's remaining steps count as done: the bar ends full, never going back
    assert counts[-1] == 96 and counts == sorted(counts)


def test_a_failed_pretrained_start_leaves_the_folder_reusable(tmp_path):
    out, empty = tmp_path / "out", tmp_path / "empty"
    empty.mkdir()
    bad = CompareConfig(
        schemes=("pretrained",),
        seeds=1,
        pretrain=PretrainConfig(dataset="fashion-mnist", data_dir=str(empty)),
        **SMALL,
    )
    with pytest.raises(FileNotFoundError, match="pretrains on 'fashion-mnist'") as error:
        run_sweep(bad, out, progress=False)
    message = str(error.value)
    # the error names the config field that sets the pretraining source (the command line
    # maps it to --pretrain-data-dir), and no download: the source does not download
    assert error.value.argument == "pretrain.data_dir"
    assert "Give their directory as pretrain.data_dir" in message
    assert "download" not in message and "--" not in message
    assert not (out / "results.jsonl").exists() and not (out / "config.json").exists()
    good = dataclasses.replace(
        bad, pretrain=PretrainConfig(subset=200, epochs=1), train=TrainConfig(epochs=1)
    )
    run_sweep(good, out, progress=False)  # not refused: nothing of the failed start is left
    assert CompareConfig.from_json((out / "config.json").read_text()) == good


def test_a_start_that_fails_before_its_first_line_removes_its_files(tmp_path):
    # lr 1e30: pretraining diverges, so the first run fails after results.jsonl was opened
    config = CompareConfig(
        schemes=("pretrained", "seed"),
        seeds=1,
        train_subset=200,
        test_subset=50,
        train=TrainConfig(epochs=1, lr=1e30),
        pretrain=PretrainConfig(subset=200, epochs=1),
    )
    with pytest.raises(RuntimeError, match="diverged"):
        run_sweep(config, tmp_path, progress=False)
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "config.json").exists()


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    # std 1e20: the logits overflow float32 on the very first batch.
    config = CompareConfig(schemes=("normal:std=1e20", "seed"), seeds=1, **SMALL)
    result = run_sweep(config, tmp_path, progress=False)
    statuses = [ln for ln in read_results(tmp_path / "results.jsonl") if ln["type"] == "status"]
    assert statuses[0]["status"] == "diverged"
    assert (statuses[0]["epoch"], statuses[0]["step"]) == (1, 1)
    assert statuses[1]["status"] == "finished"
    diverged, seed = result.rows
    assert (diverged.diverged, diverged.final_accuracy_mean, diverged.loss_epoch1) == (
        1,
        None,
        None,
    )
    assert seed.diverged == 0 and seed.final_accuracy_mean > 0.5
    table = format_table(result.rows, config.target_accuracy)
    assert "normal:std=1e20" in table and "1/1" in table


def test_a_new_sweep_refuses_a_directory_with_results(tmp_path):
    config = CompareConfig(
        schemes=("seed",), seeds=1, train_subset=200, test_subset=50, train=TrainConfig(epochs=1)
    )
    run_sweep(config, tmp_path, progress=False)
    with pytest.raises(FileExistsError, match=r"exists; resume that sweep \(resume=True\)") as info:
        run_sweep(config, tmp_path, progress=False)
    assert info.value.argument == "out_dir"  # an ArgumentError: the CLI prints --out for it


def test_read_results_skips_only_a_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"type": "status", "run": "a/0"}\n{"type": "ep')
    assert read_results(path) == [{"type": "status", "run": "a/0"}]
    path.write_text('{"type": "ep\n{"type": "status", "run": "a/0"}\n')
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        read_results(path)


def _epoch(run, scheme, epoch, acc, loss):
    return {
        "type": "epoch",
        "run": run,
        "scheme": scheme,
        "epoch": epoch,
        "test_accuracy": acc,
        "train_loss": loss,
    }


def _status(run, scheme, status):
    return {"type": "status", "run": run, "scheme": scheme, "status": status}


def test_summary_by_hand():
    lines = [
        _epoch("a/0", "a", 1, 0.90, 0.5),
        _epoch("a/0", "a", 2, 0.96, 0.2),
        _status("a/0", "a", "finished"),
        _epoch("a/1", "a", 1, 0.97, 0.3),
        _epoch("a/1", "a", 2, 0.98, 0.1),
        _status("a/1", "a", "finished"),
        _epoch("a/2", "a", 1, 0.80, 0.7),
        _status("a/2", "a", "diverged"),
    ]
    (row,) = summarize(lines, ["a"], target=0.96)
    # finals 0.96, 0.98 (the diverged run has none): mean 0.97, sample std sqrt(2e-4) = 0.01414
    assert row.final_accuracy_mean == pytest.approx(0.97)
    assert row.final_accuracy_std == pytest.approx(0.0141421356)
    assert row.best_accuracy == 0.98
    assert row.loss_epoch1 == pytest.approx(0.5)  # (0.5 + 0.3 + 0.7) / 3
    assert (row.epochs_to_target, row.reached_target) == (1.5, 2)  # epochs 2 and 1
    assert (row.runs, row.diverged) == (3, 1)
    table = format_table([row], 0.96).splitlines()
    assert table[0].split("  ")[0] == "scheme" and "epochs to 96%" in table[0]
    assert table[1].split() == [
        "a",
        "97.00",
        "±",
        "1.41%",
        "98.00%",
        "0.5000",
        "1.5",
        "(2/3)",
        "1/3",
    ]


def test_one_seed_has_no_std_n_a_in_the_table_and_empty_in_the_csv(tmp_path):
    # a sample std (ddof=1) of one value divides by n - 1 = 0: undefined, not 0
    lines = [_epoch("a/0", "a", 1, 0.97, 0.3), _status("a/0", "a", "finished")]
    (row,) = summarize(lines, ["a"], target=0.96)
    assert (row.final_accuracy_mean, row.final_accuracy_std) == (0.97, None)
    assert format_table([row], 0.96).splitlines()[1].split()[:4] == ["a", "97.00%", "±", "n/a"]
    config = CompareConfig(schemes=("seed",), seeds=1, train=TrainConfig(epochs=1))
    write_report(tmp_path, config, [{**ln, "scheme": "seed", "steps": 16} for ln in lines])
    with open(tmp_path / "summary.csv") as f:
        (csv_row,) = csv.DictReader(f)
    assert (csv_row["final_accuracy_mean"], csv_row["final_accuracy_std"]) == ("0.97", "")
    report = (tmp_path / "report.md").read_text()
    assert "97.00% ± n/a" in report and ", 1 epoch, 1 seed from 0," in report


def test_summary_of_a_scheme_without_runs():
    (row,) = summarize([], ["b"], target=0.9)
    assert row == SummaryRow("b", 0, None, None, None, None, None, 0, 0)
    assert format_table([row], 0.9).splitlines()[1].split() == [
        "b",
        "-",
        "-",
        "-",
        "-",
        "(0/0)",
        "0/0",
    ]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"schemes": ("seed", "xavier")},
            ValueError,
            r"scheme must be one of .*got scheme='xavier'",
        ),
        ({"schemes": ("seed", "seed")}, ValueError, r"schemes must not repeat"),
        ({"schemes": ()}, ValueError, r"schemes must name at least one scheme"),
        ({"seeds": 0}, ValueError, r"^seeds must be >= 1; got seeds=0$"),
        ({"seeds": 2.0}, TypeError, r"^seeds must be an int; got seeds=2.0$"),
        ({"target_accuracy": 97}, ValueError, r"fraction in \(0, 1\]; got target_accuracy=97"),
        ({"model": "vgg99"}, ValueError, r"model must be one of \[.*'initnet'.*got model='vgg99'"),
        ({"bias_init": "ones"}, ValueError, r"bias_init must be one of"),
    ],
)
def test_config_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        CompareConfig(**kwargs)


def test_config_json_round_trip_keeps_every_field():
    config = CompareConfig(
        schemes=("normal:std=0.1",),
        seeds=2,
        first_seed=5,
        model="mlp",
        model_params={"depth": 1, "norm": "layer"},
        bias_init="constant:0.01",
        train=TrainConfig(optimizer="sgd", lr=0.05, max_steps=3),
    )
    text = config.to_json()
    assert CompareConfig.from_json(text) == config
    assert json.loads(text)["train"]["optimizer"] == "sgd"


def test_a_sweep_written_before_loss_curves_resumes_and_plots(tmp_path):
    # An old directory: config.json without log_every, epoch lines without loss_curve, the
    # second run interrupted. Resuming must keep the old run as it is and record curves for
    # the rerun one; the figure falls back to one point per epoch for the old run.
    config = CompareConfig(schemes=("seed", "zeros"), seeds=1, **SMALL)
    run_sweep(config, tmp_path / "full", progress=False)
    old = tmp_path / "old"
    old.mkdir()
    raw = json.loads((tmp_path / "full" / "config.json").read_text())
    del raw["train"]["log_every"]
    (old / "config.json").write_text(json.dumps(raw))
    lines = read_results(tmp_path / "full" / "results.jsonl")
    for line in lines:
        line.pop("loss_curve", None)
    kept = [ln for ln in lines if ln["run"] == "seed/0"] + [
        ln for ln in lines if ln["run"] == "zeros/0" and ln["type"] == "init"
    ]
    kept.append({"type": "status", "run": "zeros/0", "scheme": "zeros", "seed": 0,
                 "status": "interrupted"})  # fmt: skip
    (old / "results.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in kept))
    trained = []
    run_sweep(None, old, resume=True, progress=False, on_epoch=lambda r, e: trained.append(r))
    assert trained == ["zeros/0", "zeros/0"]
    resumed = read_results(old / "results.jsonl")
    epochs = {(ln["run"], ln["epoch"]): ln for ln in resumed if ln["type"] == "epoch"}
    assert "loss_curve" not in epochs["seed/0", 1]
    # 16 steps per epoch, default windows of ceil(16 / 10) = 2 steps: 8 per epoch
    assert [s for s, _ in epochs["zeros/0", 2]["loss_curve"]] == list(range(18, 33, 2))
    old_points = _loss_points([epochs["seed/0", 1], epochs["seed/0", 2]])
    assert old_points == [
        (16, epochs["seed/0", 1]["train_loss"]),
        (32, epochs["seed/0", 2]["train_loss"]),
    ]
    assert (old / "train_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (old / "summary.csv").read_text() == (tmp_path / "full" / "summary.csv").read_text()


def test_loss_points_and_bands_by_hand():
    epochs = [
        {"epoch": 2, "steps": 4, "train_loss": 0.5, "loss_curve": [[6, 0.6], [8, 0.4]]},
        {"epoch": 1, "steps": 4, "train_loss": 1.5},  # no curve: its mean at its last step
    ]
    assert _loss_points(epochs) == [(4, 1.5), (6, 0.6), (8, 0.4)]
    assert _loss_points([{"epoch": 1, "steps": 4, "train_loss": 1.5, "loss_curve": []}]) == [
        (4, 1.5)
    ]
    # three runs; the third stopped (diverged) after x=1: x=2 aggregates the other two
    x, mean, low, high = _band([[(1, 1.0), (2, 4.0)], [(1, 3.0), (2, 2.0)], [(1, 8.0)]])
    assert (x, mean, low, high) == ([1, 2], [4.0, 3.0], [1.0, 2.0], [8.0, 4.0])


@pytest.mark.parametrize("epochs", [1, 5])
def test_test_error_axes_whole_epochs_percent_labels_and_room_above_the_top(epochs):
    from matplotlib.figure import Figure

    from initlab.reports.compare import _draw_errors

    accs = {"seed": [0.30, 0.9, 0.95, 0.97, 0.98], "zeros": [0.1135] * 5}
    runs = {
        f"{s}/0": {"scheme": s, "epochs": [
            {"epoch": i + 1, "test_accuracy": a} for i, a in enumerate(accs[s][:epochs])
        ]}
        for s in accs
    }  # fmt: skip
    ax = Figure().add_subplot()
    _draw_errors(ax, runs, ["seed", "zeros"])
    ax.figure.canvas.draw()
    assert list(ax.get_xticks()) == list(range(1, epochs + 1))  # not 0.945 .. 1.05
    assert ax.get_xlim() == (0.5, epochs + 0.5)
    low, high = ax.get_ylim()
    assert high > 1 - 0.1135 and low < 1 - accs["seed"][epochs - 1]  # every point inside
    majors = [t.get_text() for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high]
    assert len(majors) >= 2 and all(re.fullmatch(r"\d+%", t) for t in majors), majors
    assert all(t.get_text() == "" for t in ax.get_yticklabels(minor=True))  # no "6x10^-1"


def test_the_diagnosis_at_init_of_a_dropout_model_is_the_same_on_every_rerun(tmp_path):
    # The init diagnosis runs in train mode (what the first step sees); its dropout masks come
    # from a seeded random state, so two sweeps store the same activation statistics.
    config = CompareConfig(
        schemes=("kaiming_uniform",),
        seeds=1,
        model="mlp",
        model_params={"depth": 2, "width": 32, "dropout": 0.5},
        **{**SMALL, "train": TrainConfig(epochs=1, max_steps=2)},
    )
    stds = []
    for name in ("a", "b"):
        torch.manual_seed(len(name) + len(stds))  # a different global state each time
        run_sweep(config, tmp_path / name, progress=False)
        (init,) = [
            ln for ln in read_results(tmp_path / name / "results.jsonl") if ln["type"] == "init"
        ]
        stds.append(init["activation_std"])
    assert stds[0] == stds[1]
