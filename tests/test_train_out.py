"""`initlab train --out/--resume`, its progress bar, and `--tensorboard` (train and run_sweep)."""

import contextlib
import io
import sys
from collections import defaultdict

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from initlab._checks import ArgumentError
from initlab.cli import main
from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.core import EpochRecord
from initlab.experiments.results import read_results
from initlab.experiments.sweep import run_sweep
from initlab.experiments.tensorboard import TensorBoardLog

# 256 training images in batches of 64: 4 optimizer steps per epoch
TINY = ["--train-subset", "256", "--test-subset", "256", "--seed", "3"]
STEPS = 4
RUN = "xavier-then-he/3"  # the run id of --seed 3 under the default scheme
MISSING = "--tensorboard needs the tensorboard package: pip install 'initlab[tensorboard]'"


def call(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI; return its exit status, stdout and stderr (not terminals: no bar)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def epochs(out_dir) -> list[dict]:
    """The epoch lines of ``out_dir/results.jsonl``, wall times left out (they vary)."""
    lines = read_results(out_dir / "results.jsonl")
    return [
        {k: v for k, v in ln.items() if k != "wall_time_s"} for ln in lines if ln["type"] == "epoch"
    ]


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for one run: tag -> [(step, value)], purges applied."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def expected(lines: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The scalars the epoch lines of results.jsonl say TensorBoard must show (float32: the
    event files store 32-bit floats), an epoch's at its last step, epoch * STEPS."""
    want = defaultdict(list)
    for line in lines:
        assert line["steps"] == STEPS
        end = line["epoch"] * STEPS
        tags = {"loss/train": "train_loss", "loss/test": "test_loss", "epoch": "epoch"}
        tags["accuracy/test"] = "test_accuracy"
        for tag, key in tags.items():
            want[tag].append((end, float(np.float32(line[key]))))
        for name, norm in line["grad_norms"].items():
            want[f"grad_norm/{name}"].append((end, float(np.float32(norm))))
        want["loss/train_window"] += [(s, float(np.float32(v))) for s, v in line["loss_curve"]]
    return dict(want)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """One uninterrupted run, printed without --out and written with --out (no TensorBoard)."""
    root = tmp_path_factory.mktemp("plain")
    argv = ["train", "--epochs", "2", "--log-every", "3", *TINY]
    status, printed, _ = call([*argv, "--tensorboard", str(root / "tb")])
    assert status == 0
    status, written, err = call([*argv, "--out", str(root / "out")])
    assert status == 0
    return {"printed": printed, "written": written, "err": err, "root": root}


def test_out_writes_what_compare_writes_and_prints_the_same_lines(plain):
    out = plain["root"] / "out"
    # the console shows the reference example's lines, the same with and without --out
    assert plain["written"] == plain["printed"]
    assert plain["printed"].count("\n") == 4 and plain["printed"].startswith("Epoch 1, Loss: ")
    for name in ("config.json", "results.jsonl", "summary.csv", "report.md", "train_loss.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()  # removed once the run ended
    assert f"Wrote {out}: config.json, results.jsonl" in plain["err"]
    # the comparison of one scheme and one seed, exactly as initlab compare would save it
    config = CompareConfig(
        schemes=("xavier-then-he",),
        seeds=1,
        first_seed=3,
        train_subset=256,
        test_subset=256,
        train=TrainConfig(epochs=2, seed=3, log_every=3),
    )
    assert (out / "config.json").read_text().strip() == config.to_json()
    # the printed numbers are the written ones
    lines = epochs(out)
    printed = plain["printed"].splitlines()
    for line in lines:
        accuracy = f"Test Accuracy: {100 * line['test_accuracy']:.2f}%"
        assert printed[2 * line["epoch"] - 1] == accuracy
    statuses = [
        ln["status"] for ln in read_results(out / "results.jsonl") if ln["type"] == "status"
    ]
    assert statuses == ["finished"]


def test_tensorboard_without_out_logs_the_numbers_results_jsonl_holds(plain):
    lines = epochs(plain["root"] / "out")
    shown = scalars(plain["root"] / "tb" / RUN)
    assert shown == expected(lines)
    # steps by hand: epochs end at steps 4 and 8; windows of 3 steps, each epoch's last cut short
    assert [s for s, _ in shown["loss/train"]] == [4, 8]
    assert [s for s, _ in shown["loss/train_window"]] == [3, 4, 7, 8]
    assert {"grad_norm/fc1.weight", "grad_norm/fc2.bias"} <= shown.keys()
    assert "accuracy/val" not in shown  # no validation split without --lr-grid


def test_interrupted_out_run_resumes_to_the_same_numbers_and_tensorboard(plain, monkeypatch):
    from initlab.cli import train as cli_train

    out, board = plain["root"] / "stopped", plain["root"] / "tb-stopped"
    show = cli_train.print_epoch

    def stop_after_epoch_1(record, **options):
        show(record, **options)
        raise KeyboardInterrupt  # Ctrl-C once epoch 1 is written and checkpointed

    monkeypatch.setattr(cli_train, "print_epoch", stop_after_epoch_1)
    argv = ["train", "--epochs", "2", "--log-every", "3", *TINY, "--out", str(out)]
    status, printed, err = call([*argv, "--tensorboard", str(board)])
    assert status == 130
    assert printed == "".join(plain["printed"].splitlines(keepends=True)[:2])
    assert f"continue from their last finished epoch with: initlab train --resume {out}" in err
    monkeypatch.undo()

    status, printed, _ = call(["train", "--resume", str(out), "--tensorboard", str(board)])
    assert status == 0
    assert printed == "".join(plain["printed"].splitlines(keepends=True)[2:])  # epoch 2 only
    # writing TensorBoard events and stopping changed nothing: the uninterrupted run's lines
    assert epochs(out) == epochs(plain["root"] / "out")
    assert scalars(board / RUN) == expected(epochs(out))


def test_a_rerun_into_the_same_tensorboard_run_replaces_the_retrained_steps(tmp_path):
    def record(epoch, loss, val=None):
        return EpochRecord(epoch, loss, 2 * loss, 0.5, {"w": loss / 10}, 0.0, STEPS, (), val, val)

    with TensorBoardLog(tmp_path) as log:  # a session that trained epochs 1 and 2
        log("s/0", record(1, 1.0))
        log("s/0", record(2, 0.75))
    with TensorBoardLog(tmp_path) as log:  # resumed after epoch 1: epoch 2 trained again
        log("s/0", record(2, 0.5, val=0.25))
    shown = scalars(tmp_path / "s" / "0")
    assert shown["loss/train"] == [(4, 1.0), (8, 0.5)]  # the first session's step 8 is hidden
    assert shown["grad_norm/w"] == [(4, 0.10000000149011612), (8, 0.05000000074505806)]
    assert shown["loss/val"] == shown["accuracy/val"] == [(8, 0.25)]


def test_train_resume_refuses_a_comparison_of_several_runs(tmp_path):
    config = CompareConfig(schemes=("zeros", "normal"), seeds=2)
    (tmp_path / "config.json").write_text(config.to_json())
    status, printed, err = call(["train", "--resume", str(tmp_path)])
    assert (status, printed) == (2, "")
    assert err == (
        f"initlab train: error: --resume {tmp_path} is a comparison of 4 runs, not one; "
        f"continue it with initlab compare --resume {tmp_path}\n"
    )
    status, _, err = call(["train", "--resume", str(tmp_path / "none")])
    assert status == 2
    assert f"--resume: {tmp_path / 'none'} has no config.json, so there is no run" in err
    with pytest.raises(SystemExit) as exit_:  # a new run's directory or an old one's, not both
        call(["train", "--out", str(tmp_path / "a"), "--resume", str(tmp_path)])
    assert exit_.value.code == 2


@pytest.fixture
def no_tensorboard(monkeypatch):
    """Make ``torch.utils.tensorboard`` fail to import, as without the tensorboard package."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize("out", [False, True])
def test_tensorboard_without_the_package_is_refused_before_anything_runs(
    out, tmp_path, no_tensorboard
):
    argv = ["train", *TINY, "--tensorboard", str(tmp_path / "tb")]
    if out:
        argv += ["--out", str(tmp_path / "out")]
    assert call(argv) == (2, "", f"initlab train: error: {MISSING}\n")
    assert not any(tmp_path.iterdir())  # neither the run's directory nor the log directory
    with pytest.raises(ArgumentError, match=r"needs the tensorboard package.*initlab\[tensorbo"):
        run_sweep(CompareConfig(), tmp_path / "lib", tensorboard=tmp_path / "tb")
    assert not any(tmp_path.iterdir())


class Terminal(io.StringIO):
    """A console: stdout and stderr both, a terminal (so the bar is drawn)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("out", [False, True])
def test_the_bar_counts_steps_and_the_epoch_lines_print_above_it(out, tmp_path, monkeypatch):
    console = Terminal()
    monkeypatch.setattr(sys, "stdout", console)
    monkeypatch.setattr(sys, "stderr", console)
    argv = ["train", "--epochs", "2", *TINY]
    assert main([*argv, "--out", str(tmp_path / "o")] if out else argv) == 0
    text = console.getvalue()
    assert f"{2 * STEPS}/{2 * STEPS} [" in text  # the bar ended at epochs x steps per epoch
    shown = [line for line in text.split("\n") if "Epoch" in line or "Accuracy" in line]
    assert len(shown) == 4
    for line in shown:  # the bar redraws after a carriage return: each line has its own
        assert line.split("\r")[-1].startswith(("Epoch ", "Test Accuracy: ")), repr(line)


def test_a_diverged_out_run_exits_1_and_its_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "d"
    argv = ["train", "--scheme", "normal:std=1e20", "--epochs", "2", *TINY, "--out", str(out)]
    status, printed, err = call(argv)
    assert (status, printed) == (1, "")  # no epoch finished
    assert err.endswith("Diverged: non-finite loss at epoch 1, step 1\n")
    ends = [line for line in read_results(out / "results.jsonl") if line["type"] == "status"]
    assert [(e["status"], e["epoch"], e["step"]) for e in ends] == [("diverged", 1, 1)]
    assert call(argv) == (
        2,
        "",
        f"initlab train: error: {out / 'results.jsonl'} exists; resume it with --resume {out} "
        "or pick another --out\n",
    )


def test_run_sweep_logs_every_stacked_run_to_its_own_tensorboard_run(tmp_path):
    config = CompareConfig(
        schemes=("seed", "zeros"),
        seeds=2,
        train_subset=256,
        test_subset=256,
        train=TrainConfig(epochs=2, log_every=2),
    )
    run_sweep(config, tmp_path / "out", progress=False, vectorize=True, tensorboard=tmp_path / "tb")
    lines = epochs(tmp_path / "out")
    runs = sorted({line["run"] for line in lines})
    assert runs == ["seed/0", "seed/1", "zeros/0", "zeros/1"]
    for run in runs:
        shown = scalars(tmp_path / "tb" / run)
        assert shown == expected([line for line in lines if line["run"] == run]), run
        assert [s for s, _ in shown["loss/train_window"]] == [2, 4, 6, 8]


def test_compare_tensorboard_logs_each_run_and_is_checked_up_front(tmp_path, monkeypatch):
    out, board = tmp_path / "out", tmp_path / "tb"
    argv = ["compare", "--schemes", "seed,zeros", "--seeds", "1", "--epochs", "1", "--no-progress"]
    argv += ["--train-subset", "256", "--test-subset", "256", "--out", str(out)]
    assert call([*argv, "--tensorboard", str(board)])[0] == 0
    lines = epochs(out)
    for run in ("seed/0", "zeros/0"):
        assert scalars(board / run) == expected([ln for ln in lines if ln["run"] == run])
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    argv[-1] = str(tmp_path / "other")
    assert call([*argv, "--tensorboard", str(board)]) == (
        2,
        "",
        f"initlab compare: error: {MISSING}\n",
    )
    assert not (tmp_path / "other").exists()
