"""The report's metric switch (accuracy, loss, bits per character), diverged steps, new figures.

Synthetic result lines with known test losses give hand-computed means, differences, Welch
intervals and rankings. Each scheme's three seeds are ``m - 0.02, m, m + 0.02`` bits per
character, so every sample std is 0.02 and two such schemes have the Welch interval
``d ± t(0.975, 4) * sqrt(2 * 0.02**2 / 3)`` = ``d ± 2.7764451 * 0.0163299`` = ``d ± 0.0453``
(equal variances and sizes: Welch-Satterthwaite df = 2 (n - 1) = 4).
"""

import csv
import math
import types

import pytest

from initlab._checks import ArgumentError
from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.reports.compare import (
    FIGURES,
    SEQUENCE_FIGURES,
    choose_rates,
    conclusions,
    config_metric,
    format_conclusions,
    format_table,
    summarize,
    write_report,
)
from initlab.reports.figures import _grad_norm_figure, _loss_figure, _panel_names
from initlab.reports.stats import welch_interval
from initlab.reports.summary import runs_of

LN2 = math.log(2.0)
STEPS = 10  # optimizer steps per epoch
HALF = 2.7764451051977934 * math.sqrt(2 * 0.02**2 / 3)  # t(0.975, df=4) * se = 0.04534

# final test bits per character of each seed (test loss = bpc * ln 2 nats)
BPC = {
    "gpt2": [1.00, 1.02, 1.04],
    "small_init": [1.01, 1.03, 1.05],
    "torch_default": [1.50, 1.52, 1.54],
    "normal": [1.20, None, 1.24],  # seed 1 diverges in epoch 2 at its step 3: step 13
}
SCHEMES = tuple(BPC)


def _lines(bpc=BPC, lr=None):
    lines = []
    for scheme, values in bpc.items():
        for seed, final in enumerate(values):
            run = f"{scheme}/{seed}" if lr is None else f"{scheme}@{lr:g}/{seed}"
            base = {"run": run, "scheme": scheme, **({} if lr is None else {"lr": lr})}
            lines.append({"type": "init", **base, "activation_std": {"fc1": 1.0}})
            for epoch in (1, 2):
                if final is None and epoch == 2:
                    break
                loss = (final if final is not None else 2.0) * LN2 + (0.5 if epoch == 1 else 0)
                lines.append(
                    {
                        "type": "epoch",
                        **base,
                        "epoch": epoch,
                        "steps": STEPS,
                        "train_loss": loss + 0.1,
                        "test_loss": loss,
                        "test_accuracy": 0.5 - loss / 10,
                        "val_loss": loss + 0.01 * seed,
                        "val_accuracy": 0.5 - loss / 10,
                        # two windows per epoch, ending at steps 5 and 10 of the epoch
                        "loss_curve": [
                            [(epoch - 1) * STEPS + 5, loss + 0.2],
                            [epoch * STEPS, loss + 0.1],
                        ],
                        "grad_norms": {"embed.weight": 0.1 * epoch, "head.weight": 2.0 * epoch},
                    }
                )
            status = {"type": "status", **base, "status": "finished"}
            if final is None:
                status.update(status="diverged", epoch=2, step=3)
            lines.append(status)
    return lines


def _config(**extra):
    """A comparison config with the sequence fields another module adds (``task``, ``metric``)."""
    config = CompareConfig(train=TrainConfig(epochs=2, batch_size=32))
    fields = {**vars(config), "schemes": SCHEMES, "task": "char-lm", "metric": None, **extra}
    return types.SimpleNamespace(**fields)


def test_bpc_ranking_means_differences_and_sentences():
    rows = summarize(_lines(), SCHEMES, 0.97, metric="final_bpc")
    by = {r.scheme: r for r in rows}
    assert [r.scheme for r in sorted(rows, key=lambda r: r.rank)] == [
        "gpt2",
        "small_init",
        "normal",
        "torch_default",
    ]
    assert by["gpt2"].metric_mean == pytest.approx(1.02, abs=1e-12)
    assert by["small_init"].diff_to_best == pytest.approx(0.01, abs=1e-12)
    assert by["small_init"].diff_ci95_high - 0.01 == pytest.approx(HALF, rel=1e-7)
    assert by["small_init"].verdict == "indistinguishable"
    assert by["torch_default"].diff_to_best == pytest.approx(0.50, abs=1e-12)
    assert by["torch_default"].verdict == "worse"
    # normal: 2 finished seeds (1.20, 1.24), the diverged one left out of the mean
    assert (by["normal"].metric_runs, by["normal"].metric_mean) == (2, pytest.approx(1.22))
    assert by["normal"].diverged_steps == (13,)  # 10 steps of epoch 1 + step 3 of epoch 2
    # the final loss in nats, kept beside the accuracy fields
    assert by["gpt2"].final_loss_mean == pytest.approx(1.02 * LN2)
    assert by["gpt2"].final_loss_std == pytest.approx(0.02 * LN2)
    assert by["gpt2"].best_loss == pytest.approx(1.00 * LN2)
    sentences = conclusions(rows)  # the rows carry their metric
    assert sentences[0] == "gpt2 is best: final bpc 1.020 bits per character (mean of 3 runs)."
    assert sentences[1] == (
        "small_init and gpt2 are indistinguishable at 3 seeds (difference 0.010 ± 0.045 bits"
        " per character, 95% Welch interval)."
    )
    w = welch_interval([1.20, 1.24], BPC["gpt2"])  # df 1.68: checked against SciPy elsewhere
    assert sentences[2] == (
        f"gpt2 is better than normal by 0.200 ± {w.high - w.difference:.3f} bits per character"
        " (95% Welch interval, 2 and 3 seeds)."
    )
    assert sentences[3] == (
        "gpt2 is better than torch_default by 0.500 ± 0.045 bits per character"
        " (95% Welch interval, 3 seeds)."
    )
    assert format_conclusions(rows).startswith("Conclusion (ranked by final bpc on the test set)")


def test_loss_metric_is_in_nats_and_accuracy_ranks_the_other_way():
    rows = summarize(_lines(), SCHEMES, 0.97, metric="final_loss")
    by = {r.scheme: r for r in rows}
    assert by["small_init"].diff_to_best == pytest.approx(0.01 * LN2, abs=1e-12)  # 0.00693
    assert conclusions(rows)[1] == (
        "small_init and gpt2 are indistinguishable at 3 seeds (difference 0.007 ± 0.031 nats,"
        " 95% Welch interval)."
    )  # 0.0453 * ln 2 = 0.0314
    # accuracy = 0.5 - loss / 10: the highest accuracy is the lowest loss, the same order
    by_accuracy = summarize(_lines(), SCHEMES, 0.97)
    assert [r.rank for r in by_accuracy] == [r.rank for r in rows] == [1, 2, 4, 3]
    assert conclusions(by_accuracy)[0].startswith("gpt2 is best: final accuracy")


def test_table_and_summary_csv_follow_the_metric(tmp_path):
    rows = summarize(_lines(), SCHEMES, 0.97, metric="final_bpc")
    table = format_table(rows, 0.97).splitlines()
    assert table[0].split("  ")[0] == "scheme" and "final test bpc (mean ± std)" in table[0]
    assert "epochs to" not in table[0]
    # train bpc after epoch 1: (final ln2 + 0.5 + 0.1) / ln2 = 1.02 + 0.6 / ln2 = 1.886 for gpt2
    assert table[1].split() == ["gpt2", "1.020", "±", "0.020", "1.000", "1.886", "0/3"]
    # normal: finals 1.20 and 1.24 (the diverged seed left out); epoch 1 of all three seeds
    assert table[4].split() == ["normal", "1.220", "±", "0.028", "1.200", "2.346", "1/3"] + [
        "(at",
        "step",
        "13)",
    ]
    write_report(tmp_path, _config(), _lines())
    with open(tmp_path / "summary.csv", newline="") as f:
        got = list(csv.DictReader(f))
    header = list(got[0])
    at = header.index("best_accuracy")
    assert header[at + 1 : at + 4] == ["final_bpc_mean", "final_bpc_std", "best_bpc"]
    assert header[header.index("diverged") + 1] == "diverged_steps"
    assert header[header.index("rank") - 1] == "metric"
    normal = got[3]
    assert float(normal["final_bpc_mean"]) == pytest.approx(1.22)
    assert (normal["diverged"], normal["diverged_steps"]) == ("1", "13")
    assert normal["metric"] == "final_bpc"
    assert float(got[1]["diff_to_best"]) == pytest.approx(0.01)


def test_config_metric_defaults_and_errors():
    assert config_metric(types.SimpleNamespace()) == "final_accuracy"  # an image config
    assert config_metric(_config()) == "final_bpc"  # char-lm's default
    assert config_metric(_config(task="seq-mnist")) == "final_accuracy"
    assert config_metric(_config(metric="loss")) == "final_loss"
    assert config_metric(_config(metric="accuracy")) == "final_accuracy"
    with pytest.raises(ArgumentError, match="metric must be one of accuracy, loss, bpc, got 'f1'"):
        config_metric(_config(metric="f1"))
    with pytest.raises(ArgumentError, match="final_accuracy, best_accuracy, final_loss, final_bpc"):
        summarize(_lines(), SCHEMES, 0.97, metric="bpc")


def test_lr_grid_is_chosen_on_validation_loss_for_loss_metrics():
    # at lr 0.1 every scheme is 0.3 bpc worse on validation, except gpt2 which diverges there
    good = _lines(lr=0.01)
    worse = {s: [v + 0.3 if v is not None else None for v in vs] for s, vs in BPC.items()}
    worse["torch_default"] = [0.5, 0.5, 0.5]  # better at 0.1
    worse["gpt2"] = [None, None, None]
    lines = good + _lines(worse, lr=0.1)
    chosen, means = choose_rates(lines, SCHEMES, (0.1, 0.01), metric="final_bpc")
    # normal has a diverged seed at both rates: both infinite, the tie goes to the first rate
    assert chosen == {"gpt2": 0.01, "small_init": 0.01, "torch_default": 0.1, "normal": 0.1}
    # val_loss = test loss + 0.01 * seed nats: mean over seeds 0.01 nats above the test mean
    assert means["small_init"][0.01] == pytest.approx(1.03 + 0.01 / LN2)
    assert means["gpt2"][0.1] == math.inf  # a diverged run counts as infinite
    assert means["normal"][0.01] == math.inf  # one seed of three diverged
    by_accuracy, _ = choose_rates(lines, SCHEMES, (0.1, 0.01))
    assert by_accuracy["torch_default"] == 0.1 and by_accuracy["gpt2"] == 0.01


def test_lm_report_names_task_bpc_divergence_and_sequence_figures(tmp_path):
    rows = write_report(tmp_path, _config(), _lines())
    assert rows[0].metric == "final_bpc"
    text = (tmp_path / "report.md").read_text()
    assert "Settings: task `char-lm`, model" in text
    assert "corpus the embedded Shakespeare in windows of the task's default length," in text
    config = _config(text_file="poems.txt", seq_len=32)
    write_report(tmp_path, config, _lines())
    assert "corpus `poems.txt` in windows of 32 characters," in (tmp_path / "report.md").read_text()
    assert "Ranked by final bpc on the test set, lower is better." in text
    assert "| 1 | gpt2 | 1.020 | +0.000 bits per character | best |" in text
    assert "- `normal`: 1 of 3 runs diverged (at step 13)." in text
    # a language model's test figure is in bits per character, not 1 - next-char accuracy
    shown = [*FIGURES.values(), *SEQUENCE_FIGURES.values(), "test_bpc.png"]
    shown.remove("test_error.png")
    for file in shown:
        assert f"]({file})" in text
        assert (tmp_path / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test_error.png" not in text and not (tmp_path / "test_error.png").exists()


def test_a_default_report_keeps_its_columns_and_figures(tmp_path):
    config = CompareConfig(train=TrainConfig(epochs=2))  # no task, no metric: an image run
    config = types.SimpleNamespace(
        **{k: v for k, v in vars(config).items() if k not in ("task", "metric", "schemes")},
        schemes=SCHEMES[:3],
    )
    lines = [line for line in _lines() if line["scheme"] != "normal"]
    write_report(tmp_path, config, lines)
    header = (tmp_path / "summary.csv").read_text().splitlines()[0]
    assert header == (
        "scheme,runs,final_accuracy_mean,final_accuracy_std,best_accuracy,loss_epoch1,"
        "epochs_to_target,reached_target,diverged,rank,metric_runs,metric_mean,diff_to_best,"
        "diff_ci95_low,diff_ci95_high,verdict"
    )
    text = (tmp_path / "report.md").read_text()
    assert "Settings: model" in text and "Diverged runs" not in text
    assert not any(file in text for file in SEQUENCE_FIGURES.values())
    for file in SEQUENCE_FIGURES.values():  # written for every task, listed for sequence tasks
        assert (tmp_path / file).is_file()


def test_log_step_figure_draws_mean_bits_per_character_of_the_windows(tmp_path):
    runs = runs_of(_lines())
    fig = _loss_figure(tmp_path / "a.png", runs, _config(), log_step=True, bits=True)
    (ax,) = [a for a in fig.axes if a.get_ylabel()]
    assert ax.get_xscale() == "log" and "bits per character" in ax.get_ylabel()
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "gpt2")
    # windows at steps 5, 10, 15, 20; the mean over seeds of (final + 0.5 / ln2 ... ) in bits
    assert list(line.get_xdata()) == [5, 10, 15, 20]
    expected = [1.02 + (0.5 + 0.2) / LN2, 1.02 + 0.6 / LN2, 1.02 + 0.2 / LN2, 1.02 + 0.1 / LN2]
    assert list(line.get_ydata()) == pytest.approx(expected)
    assert "Training bits per character against the optimizer step" in ax.get_title()


def test_grad_norm_figure_has_a_panel_per_parameter(tmp_path):
    fig = _grad_norm_figure(tmp_path / "g.png", runs_of(_lines()), _config())
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["embed.weight", "head.weight"]
    head = next(ln for ln in panels[1].get_lines() if ln.get_label() == "gpt2")
    assert list(head.get_xdata()) == [1, 2] and list(head.get_ydata()) == [2.0, 4.0]
    assert panels[1].get_yscale() == "log"
    assert _panel_names([f"p{i}" for i in range(30)], limit=4) == ["p0", "p10", "p19", "p29"]
