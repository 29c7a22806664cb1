"""`initlab train --lr-grid`: one run per rate, the rate chosen on the validation split.

The choice is checked against the rule written out here from ``results.jsonl``'s own lines
(the highest validation accuracy after the final epoch, ties to the rate listed first), not
against the library function that makes it.
"""

import contextlib
import csv
import io
import json
import tempfile

import pytest

from initlab.cli import main
from initlab.experiments.results import read_results

# 256 training images, 26 of them (round(0.1 * 256)) held out: 230 train in 4 steps of 64 per
# epoch; SGD rates three orders apart so that the runs differ (the test does not rely on which
# one wins: it recomputes the choice)
GRID = ["--lr-grid", "1e-3,3e-2,0.3", "--optimizer", "sgd"]
TINY = ["--train-subset", "256", "--test-subset", "128", "--epochs", "2", "--seed", "1"]
RATES = (1e-3, 3e-2, 0.3)


def call(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI; return its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The grid run with --out, and the same command without it (a temporary directory)."""
    root = tmp_path_factory.mktemp("grid")
    with_out = call(["train", *GRID, *TINY, "--out", str(root / "out")])
    scratch = root / "scratch"
    scratch.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)  # where the run's files go
    try:
        without = call(["train", *GRID, *TINY])
    finally:
        tempfile.tempdir = saved
    return {"out": root / "out", "with": with_out, "without": without, "scratch": scratch}


def _chosen_by_hand(lines: list[dict]) -> float:
    """The rule of compare --lr-grid, one seed: the rate of the highest final-epoch validation
    accuracy; a tie goes to the rate listed first (max keeps the first maximum)."""
    final = {}
    for line in lines:
        if line["type"] == "epoch" and line["epoch"] == 2:
            final[line["lr"]] = line["val_accuracy"]
    assert set(final) == set(RATES)
    return max(RATES, key=lambda lr: final[lr])


def test_the_rate_is_chosen_on_the_validation_split_and_its_test_lines_printed(written):
    status, printed, err = written["with"]
    assert status == 0, err
    lines = read_results(written["out"] / "results.jsonl")
    chosen = _chosen_by_hand(lines)
    # one line per rate and epoch while training, validation only
    for lr in RATES:
        for epoch in (1, 2):
            (line,) = [
                ln
                for ln in lines
                if ln["type"] == "epoch" and ln["lr"] == lr and ln["epoch"] == epoch
            ]
            assert (
                f"lr {lr:g}: Epoch {epoch}, Loss: {line['train_loss']:.4f}, Validation "
                f"Accuracy: {100 * line['val_accuracy']:.2f}%"
            ) in printed.splitlines()
    assert "Test Accuracy" not in printed.split("Chosen learning rate")[0]  # no test peeking
    head, tail = printed.split("Chosen learning rate: ")
    assert tail.startswith(f"{chosen:g}, the highest validation accuracy after the final epoch")
    assert "10% of the training data held out (seeded with --seed 1)" in tail
    # then the seed's two lines per epoch of the chosen run: its test numbers
    mine = [ln for ln in lines if ln["type"] == "epoch" and ln["lr"] == chosen]
    want = []
    for line in mine:
        want += [
            f"Epoch {line['epoch']}, Loss: {line['train_loss']:.4f}",
            f"Test Accuracy: {100 * line['test_accuracy']:.2f}%",
        ]
    assert tail.splitlines()[1:] == want
    # recorded: the config's grid, summary.csv's chosen rate, report.md's section
    assert json.loads((written["out"] / "config.json").read_text())["lr_grid"] == list(RATES)
    with open(written["out"] / "summary.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["lr"]) == chosen
    assert "## Learning rate per scheme" in (written["out"] / "report.md").read_text()
    assert f"Wrote {written['out']}: config.json" in err


def test_without_out_the_same_lines_print_and_nothing_is_left_behind(written):
    status, printed, err = written["without"]
    assert status == 0, err
    assert printed == written["with"][1]  # training is deterministic
    assert "Wrote" not in err
    assert list(written["scratch"].iterdir()) == []  # the temporary directory is gone


def test_resuming_a_finished_grid_run_prints_the_choice_again(written):
    status, printed, err = call(["train", "--resume", str(written["out"])])
    assert status == 0, err
    # nothing left to train: no epoch lines, the choice and the chosen run's lines again
    assert printed == "Chosen" + written["with"][1].split("Chosen", 1)[1]


def test_lr_and_lr_grid_together_are_refused(tmp_path):
    status, printed, err = call(["train", "--lr", "0.1", *GRID, "--out", str(tmp_path / "o")])
    assert (status, printed) == (2, "")
    assert err == (
        "initlab train: error: argument --lr-grid: --lr-grid tries every rate it lists and "
        "--lr gives one rate; give one of them, not both (got --lr 0.1 and --lr-grid "
        "0.001,0.03,0.3)\n"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e-3,x", "expected comma-separated learning rates such as 1e-4,3e-4,1e-3; got '1e-3,x'"),
        ("1e-3,0", "every rate must be a finite number > 0; got 1e-3,0"),
        ("0.1,0.1", "a rate is repeated; got 0.1,0.1"),
    ],
)
def test_a_bad_grid_is_refused_by_the_parser(value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--lr-grid", value])
    assert exit_.value.code == 2
    assert f"argument --lr-grid: {message}" in capsys.readouterr().err


def test_without_out_the_log_names_no_temporary_directory(tmp_path, caplog, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    argv = ["train", "--lr-grid", "1e-3,1e-2", "--train-subset", "64", "--test-subset", "16"]
    argv += ["--epochs", "1", "--max-steps", "1"]
    with caplog.at_level("INFO"):
        assert call([*argv, "--out", str(tmp_path / "kept")])[0] == 0
        # with --out the sweep says where it writes (so the capture works) ...
        assert [r for r in caplog.records if str(tmp_path / "kept") in r.getMessage()]
        caplog.clear()
        assert call(argv)[0] == 0
    # ... without, it writes into a temporary directory that the log does not name
    assert not [r for r in caplog.records if str(scratch) in r.getMessage()]
