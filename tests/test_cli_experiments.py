"""`initlab train`, `initlab compare` and `initlab schemes` through the command-line entry point."""

import argparse
import json
import logging
import re
import struct

import numpy as np
import pytest

from initlab.cli import build_parser, main
from initlab.schemes.registry import SCHEMES

QUICK = ["--train-subset", "1000", "--test-subset", "200"]


def _subparser(name):
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


@pytest.mark.parametrize("command", ["train", "compare", "schemes"])
def test_help_explains_every_option_with_its_default(command, capsys):
    parser = _subparser(command)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and "default" in action.help, action.option_strings
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert parser.description.split()[0] in capsys.readouterr().out


def test_compare_defaults():
    args = build_parser().parse_args(["compare"])
    assert args.schemes == "xavier-then-he,zeros,normal,xavier_uniform,kaiming_uniform,orthogonal"
    assert (args.seeds, args.epochs, args.model, args.target_accuracy) == (
        3,
        5,
        "mlp-784-128-10",
        0.97,
    )
    train = build_parser().parse_args(["train"])
    assert (train.scheme, train.model) == ("xavier-then-he", "mlp-784-128-10")
    assert (args.optimizer, args.lr, args.weight_decay, args.batch_size) == (
        "adamw",
        1e-3,
        0.01,
        64,
    )


def test_schemes_prints_one_line_per_scheme(capsys):
    assert main(["schemes"]) == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()  # then the shared options
    assert [line.split()[0] for line in lines] == [*SCHEMES]
    by_name = {line.split()[0]: line for line in lines}
    assert "U(-bound, bound), bound=0.05" in by_name["uniform"]
    assert "N(0, std^2), std=0.01" in by_name["normal"]
    assert "reset_parameters()" in by_name["torch_default"]
    assert (
        "no options; compare only: the source is the model pretrained on --pretrain-dataset"
        in (by_name["pretrained"])
    )
    assert by_name["xavier-then-he"].endswith("(alias: seed)")


def test_train_prints_the_reference_examples_two_lines_per_epoch(capsys):
    assert main(["train", "--epochs", "2", *QUICK]) == 0  # xavier-then-he, mlp-784-128-10
    out = capsys.readouterr().out
    pattern = (
        r"Epoch 1, Loss: \d\.\d{4}\nTest Accuracy: \d\d\.\d\d%\n"
        r"Epoch 2, Loss: \d\.\d{4}\nTest Accuracy: \d\d\.\d\d%\n"
    )
    assert re.fullmatch(pattern, out), out


def test_train_reports_divergence_with_exit_status_1(capsys):
    assert main(["train", "--scheme", "normal:std=1e20", "--epochs", "1", *QUICK]) == 1
    assert "Diverged: non-finite loss at epoch 1, step 1" in capsys.readouterr().err


def test_train_rejects_an_unknown_scheme(capsys):
    assert main(["train", "--scheme", "kaiming", *QUICK]) == 2
    err = capsys.readouterr().err
    assert "initlab train: error: argument --scheme: scheme must be one of" in err
    assert "got scheme='kaiming'" in err


def test_compare_prints_the_table_and_writes_the_out_dir(tmp_path, capsys):
    out = tmp_path / "cmp"
    # the old names (seed, initnet) still work, and the table keeps the name given
    argv = ["compare", "--schemes", "seed,zeros", "--model", "initnet", "--seeds", "2"]
    argv += ["--epochs", "1", "--no-progress"]
    assert main([*argv, *QUICK, "--out", str(out), "--target-accuracy", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("  ")[0] == "scheme" and "epochs to 50%" in lines[0]
    seed_row, zeros_row = lines[1].split(), lines[2].split()
    assert seed_row[0] == "seed" and seed_row[-3:] == ["1.0", "(2/2)", "0/2"]
    assert zeros_row[0] == "zeros" and zeros_row[-2:] == ["(0/2)", "0/2"]
    for name in ("config.json", "results.jsonl", "summary.csv", "report.md", "train_loss.png"):
        assert (out / name).is_file()
    # resuming a finished sweep trains nothing and prints the same table
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == lines[:3]


def test_compare_model_params_and_errors(tmp_path, capsys):
    argv = [
        "compare",
        "--schemes",
        "lecun_normal",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--no-progress",
    ]
    model = ["--model", "mlp", "--model-param", "depth=1", "--model-param", "activation=tanh"]
    assert main([*argv, *model, *QUICK, "--out", str(tmp_path / "a")]) == 0
    assert '"activation": "tanh"' in (tmp_path / "a" / "config.json").read_text()
    capsys.readouterr()
    assert main([*argv, *QUICK, "--out", str(tmp_path / "a")]) == 2
    assert "resume it with --resume" in capsys.readouterr().err
    assert main([*argv, "--model-param", "depth", "--out", str(tmp_path / "b")]) == 2
    assert "argument --model-param: a model argument must be NAME=VALUE" in capsys.readouterr().err


def test_compare_log_every_sets_the_loss_curve_windows(tmp_path, capsys):
    argv = ["compare", "--schemes", "seed", "--seeds", "1", "--epochs", "1", "--no-progress"]
    out = tmp_path / "c"
    assert main([*argv, *QUICK, "--log-every", "6", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["log_every"] == 6
    lines = (out / "results.jsonl").read_text().splitlines()
    (epoch,) = [ln for ln in map(json.loads, lines) if ln["type"] == "epoch"]
    assert [s for s, _ in epoch["loss_curve"]] == [6, 12, 16]  # 16 steps of 64 over 1000 images
    with pytest.raises(SystemExit) as exit_:
        main([*argv, *QUICK, "--log-every", "-2", "--out", str(tmp_path / "d")])
    assert exit_.value.code == 2
    assert "argument --log-every: must be at least 0; got -2" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--train-subset", "--test-subset"])
def test_a_subset_of_zero_is_refused_naming_the_flag(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", flag, "0"])
    assert exit_.value.code == 2
    assert f"argument {flag}: must be at least 1; got 0" in capsys.readouterr().err


def test_train_help_shows_a_single_percent_sign(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # undo the help's line wrapping
    assert "'Test Accuracy: A%'" in out and "%%" not in out


def test_ctrl_c_during_train_prints_one_line_and_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("initlab.experiments.trainer.train", interrupted)
    assert main(["train", "--epochs", "1", *QUICK]) == 130
    assert capsys.readouterr().err.strip() == "initlab train: interrupted"


def test_version_prints_the_package_version(capsys):
    import initlab

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"initlab {initlab.__version__}"


@pytest.mark.parametrize("model", ["mlp-784-128-10", "cnn", "lstm", "transformer"])
def test_compare_refuses_fixup_on_a_plain_model_before_writing_anything(model, tmp_path, capsys):
    out = tmp_path / "f"
    argv = ["compare", "--schemes", "zeros,fixup", "--model", model, "--seeds", "1", "--epochs"]
    assert main([*argv, "1", *QUICK, "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"argument --model: scheme 'fixup' does not apply to model '{model}'" in err
    assert "(fixup needs residual blocks: use model 'resmlp' or 'resnet'): fixup_ found" in err
    assert not out.exists()  # so the same command with --model resmlp is not refused


@pytest.mark.parametrize(
    ("schemes", "message"),
    [
        ("kaiming_normal:nonlinearity=tanh", "scheme 'kaiming_normal' takes no options; got "),
        ("pretrained:x=1", "scheme 'pretrained' takes no options (its weights come from the "),
        ("seed:gain=2", "scheme 'seed' takes no options; got 'gain=2' in scheme='seed:gain=2'"),
    ],
)
def test_compare_scheme_option_errors_say_what_is_accepted(schemes, message, tmp_path, capsys):
    argv = ["compare", "--schemes", schemes, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_resume_warns_about_the_options_it_ignores(tmp_path, capsys, caplog):
    out = tmp_path / "r"
    argv = ["compare", "--schemes", "seed", "--seeds", "1", "--epochs", "1", "--no-progress"]
    with caplog.at_level(logging.INFO):
        assert main([*argv, *QUICK, "--out", str(out)]) == 0
    assert "1 run to train, 0 already done" in caplog.text  # singular, not "1 runs"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["compare", "--resume", str(out), "--epochs", "5", "--lr=0.1"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["--resume uses the sweep's saved config.json; ignoring --epochs, --lr"]
    # --epochs 5 is the default, yet typed: reported. --no-progress is honored on resume
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_resume_of_a_directory_without_config_says_how_to_start(tmp_path, capsys):
    out = tmp_path / "nope"
    assert main(["compare", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} has no config.json, so there is no sweep to resume; start one with " in err
    assert "initlab compare --out" in err and "Errno" not in err


def test_ctrl_c_in_compare_says_how_unfinished_runs_continue(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("initlab.experiments.sweep.run_sweep", interrupted)
    # before the sweep wrote its config there is nothing to resume
    assert main(["compare", "--out", str(tmp_path / "i")]) == 130
    err = capsys.readouterr().err
    assert "Interrupted before anything was written; run the same command again" in err
    assert "--resume" not in err
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "config.json").write_text("{}")  # what a started sweep has written
    assert main(["compare", "--out", str(tmp_path / "i")]) == 130
    err = capsys.readouterr().err
    assert "finished epochs are kept in results.jsonl, unfinished runs continue from their " in err
    assert f"last finished epoch with: initlab compare --resume {tmp_path / 'i'}" in err


def test_a_misspelled_model_param_lists_the_accepted_ones(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["compare", "--model", "mlp", "--model-param", "dept=4", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model 'mlp' takes the parameters ['activation', 'depth'," in err
    assert "got dept=4 (did you mean 'depth'?)" in err
    assert not out.exists()
    assert main(["train", "--model", "cnn", "--model-param", "depth=3", *QUICK]) == 2
    assert "model 'cnn' takes the parameters ['channels', 'image_size', 'num_classes']; got " in (
        capsys.readouterr().err
    )


def _emnist_letters(directory, n=64):
    """Write random 28x28 EMNIST-letters files (labels 1..26) into ``directory``."""
    rng = np.random.default_rng(0)
    for stem in ("train", "test"):
        base = directory / f"emnist-letters-{stem}"
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 26 + 1
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (directory / f"{base.name}-{kind}-ubyte").write_bytes(header + array.tobytes())


def test_the_head_fits_the_dataset_and_a_too_small_one_is_refused(tmp_path, capsys):
    _emnist_letters(tmp_path)
    out = tmp_path / "e"
    argv = ["compare", "--dataset", "emnist-letters", "--data-dir", str(tmp_path), "--model"]
    argv += ["mlp", "--schemes", "seed,zeros", "--seeds", "1", "--epochs", "1", "--no-progress"]
    # a head set too small by hand is refused before any result is written
    assert main([*argv, "--out", str(out), "--model-param", "num_classes=10"]) == 2
    err = capsys.readouterr().err
    assert "the labels need 26 classes but the model returns 10 logits" in err
    # the library names its argument (model_params); the command line names the flag
    assert "error: argument --model-param: dataset 'emnist-letters':" in err
    assert "num_classes=26 in model_params" in err
    assert not (out / "results.jsonl").exists()  # the same --out works once fixed:
    # left unset, the zoo model's head gets the dataset's 26 classes, and the report says so
    assert main([*argv, "--out", str(out)]) == 0
    assert "{'num_classes': 26}" in (out / "report.md").read_text()
    argv = ["train", "--dataset", "emnist-letters", "--data-dir", str(tmp_path), "--epochs", "1"]
    assert main(argv) == 0  # mlp-784-128-10, here 784 -> 128 -> 26
    assert "Test Accuracy" in capsys.readouterr().out
    assert main([*argv, "--model-param", "num_classes=5"]) == 2
    assert "the labels need 26 classes but the model returns 5 logits" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "compare", "diagnose"])
def test_model_help_names_every_zoo_model(command, capsys):
    from initlab.zoo.models import MODELS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert all(name in text for name in MODELS)


def test_train_refuses_a_scheme_that_loads_a_source_before_loading_data(capsys):
    assert main(["train", "--scheme", "pretrained", *QUICK]) == 2
    err = capsys.readouterr().err
    assert "scheme 'pretrained' loads a source checkpoint, which only initlab compare " in err
    assert "use initlab compare --schemes pretrained" in err
