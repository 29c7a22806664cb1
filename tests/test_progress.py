"""The sweep's progress bar: counted in optimizer steps, and log lines kept off its line."""

import contextlib
import logging
import sys

import pytest

from initlab.experiments import sweep
from initlab.experiments.core import PROGRESS_EVERY
from initlab.experiments.sweep import CompareConfig, run_sweep
from initlab.experiments.trainer import TrainConfig

# 1000 training images = 16 steps of 64 per epoch; 2 runs x 2 epochs = 64 run-steps
TINY = {"train_subset": 1000, "test_subset": 200, "train": TrainConfig(epochs=2)}
STEPS = 16


@pytest.fixture
def bars(monkeypatch):
    """The sweep's bars, each with the list of its updates."""
    made = []
    make = sweep._bar

    def spy(total, show):
        bar = make(total, show)
        bar.updates = []
        update = bar.update

        def counted(n=1):
            bar.updates.append(n)
            return update(n)

        bar.update = counted
        made.append(bar)
        return bar

    monkeypatch.setattr(sweep, "_bar", spy)
    return made


@pytest.mark.parametrize("vectorize", [False, True])
def test_the_bar_counts_run_steps_and_moves_within_an_epoch(tmp_path, bars, vectorize):
    config = CompareConfig(schemes=("seed", "zeros"), seeds=1, **TINY)
    assert config.train.steps_per_epoch(1000) == STEPS
    run_sweep(config, tmp_path, vectorize=vectorize)
    (bar,) = bars
    assert (bar.total, bar.n, bar.unit) == (2 * 2 * STEPS, 2 * 2 * STEPS, "step")
    # every PROGRESS_EVERY steps and at an epoch's last step (stacked: times the 2 runs)
    runs = 2 if vectorize else 1
    per_epoch = [PROGRESS_EVERY * runs, (STEPS - PROGRESS_EVERY) * runs]
    moves = [n for n in bar.updates if n]
    assert moves == per_epoch * (2 * 2 // runs)


def test_a_diverged_runs_remaining_steps_complete_the_bar(tmp_path, bars):
    config = CompareConfig(schemes=("normal:std=1e20", "seed"), seeds=1, **TINY)
    run_sweep(config, tmp_path, vectorize=True)
    (bar,) = bars
    assert bar.n == bar.total == 2 * 2 * STEPS
    assert all(n >= 0 for n in bar.updates)  # never backwards


def test_the_printed_results_do_not_depend_on_the_bar(tmp_path):
    config = CompareConfig(schemes=("seed", "zeros"), seeds=1, **TINY)
    shown = run_sweep(config, tmp_path / "shown", vectorize=True)
    hidden = run_sweep(config, tmp_path / "hidden", progress=False, vectorize=True)
    strip = [{k: v for k, v in vars(row).items() if "time" not in k} for row in shown.rows]
    assert strip == [{k: v for k, v in vars(row).items() if "time" not in k} for row in hidden.rows]


@contextlib.contextmanager
def console_log():
    """A console handler on the root logger on stderr, as ``initlab``'s CLI sets one up;
    made inside the test, where ``sys.stderr`` is pytest's capture of the test's stderr."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_log_lines_print_above_the_bar_never_glued_to_it(tmp_path, capsys):
    config = CompareConfig(schemes=("seed", "zeros"), seeds=1, **TINY)
    capsys.readouterr()
    with console_log():
        run_sweep(config, tmp_path, vectorize=True)
    err = capsys.readouterr().err
    assert "runs stacked" in err  # the bar was drawn
    infos = [line for line in err.split("\n") if "INFO" in line]
    assert any("training 2 runs together, stacked" in line for line in infos)
    for line in infos:
        # the bar redraws after a carriage return; the record must start its own segment
        segment = line.split("\r")[-1]
        assert segment.startswith("INFO "), repr(line)
