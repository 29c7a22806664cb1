"""The report's conclusion (Welch intervals, sentences, summary.csv), its figures, file modes."""

import csv
import math
import os
import stat

import pytest
from scipy import stats

from initlab._checks import ArgumentError
from initlab._files import atomic_write
from initlab.experiments.sweep import CompareConfig, run_sweep
from initlab.experiments.trainer import TrainConfig
from initlab.reports.compare import (
    conclusions,
    format_conclusions,
    format_table,
    split_far,
    summarize,
    write_report,
)
from initlab.reports.figures import _error_figure, _loss_figure
from initlab.reports.stats import student_t_quantile, welch_interval
from initlab.reports.summary import runs_of


@pytest.mark.parametrize("p", [0.975, 0.995, 0.9, 0.6, 0.025])
@pytest.mark.parametrize("df", [1, 1.37, 2, 2.5, 4.55, 9, 30, 500])
def test_t_quantile_matches_scipy(p, df):
    assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-10, abs=1e-12)


def test_t_quantile_limits_and_errors():
    assert student_t_quantile(0.5, 3) == 0.0
    assert student_t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, rel=1e-12)
    with pytest.raises(ArgumentError, match="p.*between 0 and 1, got 1.0"):
        student_t_quantile(1.0, 3)
    with pytest.raises(ArgumentError, match="df.*positive.*got 0"):
        student_t_quantile(0.9, 0)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
@pytest.mark.parametrize(
    "a, b",
    [
        ([0.971, 0.975, 0.969], [0.960, 0.958, 0.970, 0.955]),
        ([0.97, 0.98], [0.10, 0.35, 0.61]),  # very unequal variances: df near 2
        ([0.5, 0.5, 0.5], [0.4, 0.45, 0.41]),  # one side without spread: df = n_b - 1
    ],
)
def test_welch_interval_matches_scipy(a, b):
    w = welch_interval(a, b)
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert (w.low, w.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert w.df == pytest.approx(result.df, rel=1e-12)
    assert w.difference == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def test_welch_interval_single_value_and_zero_spread():
    one = welch_interval([0.97], [0.96, 0.95])
    assert (one.low, one.high, one.df, one.half_width) == (None, None, None, None)
    assert one.difference == pytest.approx(0.015) and not one.excludes_zero
    flat = welch_interval([0.5, 0.5], [0.3, 0.3, 0.3])
    assert flat.low == flat.high == flat.difference == pytest.approx(0.2)
    assert flat.df is None and flat.excludes_zero and flat.half_width == 0.0
    with pytest.raises(ArgumentError, match="b.*at least one value"):
        welch_interval([0.5], [])
    with pytest.raises(ArgumentError, match="a.*finite"):
        welch_interval([math.nan, 0.5], [0.5, 0.4])


def _run(scheme, seed, accuracies, status="finished", diverged_at=(3, 5), steps=10):
    run = f"{scheme}/{seed}"
    lines = [
        {"type": "init", "run": run, "scheme": scheme, "activation_std": {"fc1": 1.0}},
    ]
    for epoch, acc in enumerate(accuracies, 1):
        lines.append(
            {
                "type": "epoch",
                "run": run,
                "scheme": scheme,
                "epoch": epoch,
                "steps": steps,
                "test_accuracy": acc,
                "train_loss": 2.3 * (1.0 - acc) + 0.01,
                "loss_curve": [[(epoch - 1) * steps + 5, 2.3 * (1.0 - acc) + 0.02]],
            }
        )
    status_line = {"type": "status", "run": run, "scheme": scheme, "status": status}
    if status == "diverged":
        status_line.update(epoch=diverged_at[0], step=diverged_at[1])
    return lines + [status_line]


def _lines(finals: dict[str, list[float]]) -> list[dict]:
    return [
        line
        for scheme, values in finals.items()
        for seed, acc in enumerate(values)
        for line in _run(scheme, seed, [acc - 0.05, acc])
    ]


def test_indistinguishable_and_better_sentences():
    finals = {
        "xavier_uniform": [0.9790, 0.9801, 0.9776],
        "kaiming_uniform": [0.9785, 0.9812, 0.9797],
        "zeros": [0.1135, 0.1135, 0.1135],
    }
    rows = summarize(_lines(finals), list(finals), target=0.97)
    assert [r.scheme for r in rows] == list(finals)  # table order: as given
    by = {r.scheme: r for r in rows}
    assert [by[s].rank for s in finals] == [2, 1, 3]
    assert (by["kaiming_uniform"].verdict, by["kaiming_uniform"].diff_to_best) == ("best", 0.0)
    w = welch_interval(finals["xavier_uniform"], finals["kaiming_uniform"])
    x = by["xavier_uniform"]
    assert (x.diff_to_best, x.diff_ci95_low, x.diff_ci95_high) == (w.difference, w.low, w.high)
    assert x.verdict == "indistinguishable" and x.diff_ci95_low < 0 < x.diff_ci95_high
    assert by["zeros"].verdict == "worse" and by["zeros"].diff_ci95_high < 0

    sentences = conclusions(rows)
    assert sentences[0] == ("kaiming_uniform is best: final accuracy 97.98% (mean of 3 runs).")
    gap, half = -100 * w.difference, 100 * w.half_width
    assert sentences[1] == (
        f"xavier_uniform and kaiming_uniform are indistinguishable at 3 seeds (difference "
        f"{gap:.2f} ± {half:.2f} points, 95% Welch interval)."
    )
    assert gap == pytest.approx(0.09, abs=0.005)
    z = welch_interval(finals["zeros"], finals["kaiming_uniform"])
    assert sentences[2] == (
        f"kaiming_uniform is better than zeros by {-100 * z.difference:.2f} ± "
        f"{100 * z.half_width:.2f} points (95% Welch interval, 3 seeds)."
    )
    assert format_conclusions(rows).startswith(
        "Conclusion (ranked by final accuracy on the test set):\n- "
    )


def test_single_seed_and_all_diverged_sentences():
    lines = _lines({"a": [0.97], "b": [0.95, 0.96]})
    lines += _run("c", 0, [0.5], status="diverged")
    rows = summarize(lines, ["a", "b", "c"], target=0.9)
    a, b, c = rows
    assert (a.rank, b.rank, c.rank) == (1, 2, None)
    assert b.verdict == "no interval" and b.diff_ci95_low is None
    assert b.diff_to_best == pytest.approx(0.955 - 0.97)
    assert c.verdict == "no result" and c.diff_to_best is None
    sentences = conclusions(rows)
    assert sentences[1] == (
        "a is ahead of b by 1.50 points at 2 and 1 seed: no interval with a single seed on one"
        " side, so whether the difference is real cannot be told (run more seeds)."
    )
    assert sentences[2] == "c has no final accuracy (1/1 runs diverged): not ranked."
    # ranking by each run's best epoch includes the diverged run's epoch
    by_best = summarize(lines, ["a", "b", "c"], target=0.9, metric="best_accuracy")
    assert by_best[2].rank == 3 and by_best[2].metric_mean == 0.5
    with pytest.raises(ArgumentError, match="metric.*final_accuracy, best_accuracy.*'loss'"):
        summarize(lines, ["a"], target=0.9, metric="loss")


def test_ties_keep_the_given_order_and_zero_spread_is_said():
    rows = summarize(_lines({"p": [0.9, 0.9], "q": [0.9, 0.9]}), ["p", "q"], target=0.5)
    assert [(r.rank, r.verdict) for r in rows] == [(1, "best"), (2, "indistinguishable")]
    assert conclusions(rows)[1] == (
        "q and p are indistinguishable at 2 seeds (difference -0.00 ± 0.00 points, 95% Welch "
        "interval; no spread over seeds)."
    ) or conclusions(rows)[1] == (
        "q and p are indistinguishable at 2 seeds (difference 0.00 ± 0.00 points, 95% Welch "
        "interval; no spread over seeds)."
    )


CONFIG = CompareConfig(
    schemes=("kaiming_uniform", "xavier_uniform", "zeros", "normal:std=1e20"),
    seeds=3,
    train=TrainConfig(epochs=3),
)


def _results_with_divergence_and_zeros():
    lines = []
    for seed in range(3):
        lines += _run("kaiming_uniform", seed, [0.93, 0.96, 0.97 + 0.001 * seed])
        lines += _run("xavier_uniform", seed, [0.93, 0.96, 0.97 - 0.001 * seed])
        lines += _run("zeros", seed, [0.1135, 0.1135, 0.1135])
    lines += _run("normal:std=1e20", 0, [0.92], status="diverged", diverged_at=(2, 4))
    lines += _run("normal:std=1e20", 1, [], status="diverged", diverged_at=(1, 3))
    lines += _run("normal:std=1e20", 2, [0.9, 0.93], status="diverged", diverged_at=(3, 1))
    return lines


def _diverged_marks(ax):
    return [ln for ln in ax.get_lines() if ln.get_marker() == "x" and len(ln.get_xdata())]


def test_figures_mark_divergence_and_give_chance_level_its_own_panel(tmp_path):
    runs = runs_of(_results_with_divergence_and_zeros())
    fig = _error_figure(tmp_path / "test_error.png", runs, CONFIG.schemes)
    main, far = fig.axes[:2]
    # zeros (88.65% error) is far above the others (3-7%): its own panel, own scale
    assert [ln.get_label() for ln in far.get_lines() if not ln.get_label().startswith("_")] == [
        "zeros"
    ]
    assert main.get_ylim()[1] < 0.8
    labels = main.get_legend().get_texts()
    names = [t.get_text() for t in labels]
    for scheme in CONFIG.schemes:
        assert scheme in names  # every scheme in the one legend
    assert "run diverged (its last finite point)" in names
    # one x per diverged run at its last finite point: epoch 1 (92%), epoch 2 (93%), and for
    # the run without a finished epoch at the top of the axes (y in axes units) at epoch 1
    marks = _diverged_marks(main)
    points = sorted((float(m.get_xdata()[0]), float(m.get_ydata()[0])) for m in marks)
    assert points == [
        (1.0, pytest.approx(0.08)),
        (1.0, pytest.approx(0.97)),
        (2.0, pytest.approx(0.07)),
    ]
    # distinct dash patterns and markers for the overlapping kaiming/xavier curves
    lines = {ln.get_label(): ln for ln in main.get_lines()}
    k, x = lines["kaiming_uniform"], lines["xavier_uniform"]
    assert (k.get_linestyle(), k.get_marker()) != (x.get_linestyle(), x.get_marker())
    assert k.get_linestyle() != x.get_linestyle() and k.get_marker() != x.get_marker()
    assert (tmp_path / "test_error.png").read_bytes()[:4] == b"\x89PNG"

    fig = _loss_figure(tmp_path / "train_loss.png", runs, CONFIG)
    (ax,) = [a for a in fig.axes if a.get_legend() is not None]
    assert len(_diverged_marks(ax)) == 3
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(s in names for s in CONFIG.schemes)


def test_split_far_keeps_close_schemes_together():
    assert split_far({"a": (0.02, 0.3), "b": (0.5, 0.9)}) == (["a", "b"], [])
    assert split_far({"a": (0.02, 0.1), "z": (0.9, 0.9)}) == (["a"], ["z"])
    assert split_far({}) == ([], [])


def test_summary_csv_and_report_carry_the_conclusion(tmp_path):
    lines = _results_with_divergence_and_zeros()
    rows = write_report(tmp_path, CONFIG, lines)
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["scheme"] for r in table] == list(CONFIG.schemes)
    for column in ("rank", "diff_to_best", "diff_ci95_low", "diff_ci95_high", "verdict"):
        assert column in table[0]
    k, x, z, n = table
    assert (k["rank"], k["verdict"], k["diff_to_best"]) == ("1", "best", "0.0")
    assert x["verdict"] == "indistinguishable"
    assert float(x["diff_ci95_low"]) == pytest.approx(rows[1].diff_ci95_low)
    assert (z["rank"], z["verdict"]) == ("3", "worse")
    assert (n["rank"], n["verdict"], n["diff_to_best"]) == ("", "no result", "")
    report = (tmp_path / "report.md").read_text()
    table_at = report.index("| scheme | final test acc")
    conclusion_at = report.index("## Conclusion")
    assert table_at < conclusion_at
    assert "- kaiming_uniform is best: final accuracy 97.10%" in report
    assert (
        "| 3 | zeros | 11.35% |" in report
        and report.count("final test acc") == 1
        and "| worse |" in report
    )
    assert "95% Welch t interval" in report
    # the printed table is the one of before: no new columns
    assert format_table(rows, 0.97).splitlines()[0].split("  ")[0] == "scheme"
    assert "rank" not in format_table(rows, 0.97)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_every_output_file_has_the_mode_of_a_plain_open(tmp_path, umask_027):
    config = CompareConfig(
        schemes=("seed",),
        seeds=1,
        train_subset=256,
        test_subset=100,
        train=TrainConfig(epochs=1),
    )
    run_sweep(config, tmp_path / "out", progress=False)
    want = 0o666 & ~umask_027
    files = sorted(p for p in (tmp_path / "out").iterdir() if p.is_file())
    names = {p.name for p in files}
    assert {"config.json", "results.jsonl", "summary.csv", "report.md", "train_loss.png"} <= names
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys(names, want)


def test_atomic_write_keeps_an_existing_files_mode(tmp_path, umask_027):
    path = atomic_write(tmp_path / "a.txt", "one")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    os.chmod(path, 0o604)
    atomic_write(path, b"two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o604 and path.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
