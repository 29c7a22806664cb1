"""User mistakes found by a new-user trial end in ``initlab <cmd>: error: ...`` and exit status 2.

Each test names the mistake and what it did before: a traceback, a message naming an internal
argument instead of the flag typed, or a hint at a flag the command did not have.
"""

import json
import math
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from initlab.cli import main
from initlab.cli._validate import scheme_applies
from initlab.reports.compare import format_loss

QUICK = ["--train-subset", "1000", "--test-subset", "200"]


def fails(argv, capsys, command=None):
    """Run ``initlab argv``, assert exit 2 with one clean error; return (stdout, error text)."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    prefix = f"initlab {command or argv[0]}: error: "
    assert prefix in err and "Traceback" not in err, err
    return out, err.split(prefix, 1)[1]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty download cache and a mirror that refuses connections (a port just closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("INITLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("INITLAB_MIRRORS", f"http://127.0.0.1:{port}/")
    return port


# 1. a failed download -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "compare", "diagnose"])
def test_a_failed_download_prints_its_message(command, offline, tmp_path, capsys):
    # Before: an uncaught DownloadError traceback (it is an OSError, not a FileNotFoundError).
    argv = [command, "--dataset", "kmnist", "--download", "--out", str(tmp_path / "o")]
    if command == "train":
        argv.remove("--out")
        argv.pop()
    _, err = fails(argv, capsys)
    assert err.startswith("could not download train-images-idx3-ubyte.gz from any mirror:\n")
    assert f"http://127.0.0.1:{offline}/train-images-idx3-ubyte.gz: " in err
    assert "set INITLAB_MIRRORS to a working mirror" in err


# 2. plan --json into a missing directory --------------------------------------------------------


def test_plan_json_in_a_missing_directory_fails_before_the_table(tmp_path, capsys):
    # Before: the table, then a FileNotFoundError traceback.
    target = tmp_path / "nonexistent" / "x.json"
    out, err = fails(["plan", "initlab.zoo.models:InitNet", "--json", str(target)], capsys)
    assert out == ""
    assert err.strip() == (
        f"--json {str(target)!r}: the directory {str(target.parent)!r} does not exist; "
        "create it first or give another path"
    )


def test_plan_json_that_is_a_directory_is_refused(tmp_path, capsys):
    _, err = fails(["plan", "initlab.zoo.models:InitNet", "--json", str(tmp_path)], capsys)
    assert f"--json must be a file name; got --json {str(tmp_path)!r}, a directory" in err


def test_plan_json_write_errors_are_reported(tmp_path, capsys, monkeypatch):
    # What output_file cannot foresee (permissions, a full disk) is caught at the write.
    monkeypatch.setattr("initlab.cli._validate.output_file", lambda path, flag: path)
    argv = ["plan", "initlab.zoo.models:InitNet", "--input-shape", "1,784"]
    out, err = fails([*argv, "--json", str(tmp_path)], capsys)
    assert "fc1.weight" in out
    assert err.startswith(f"cannot write --json {tmp_path}: [Errno 21] Is a directory")


# 3. --out that is a file ----------------------------------------------------------------------


def test_diagnose_out_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    # Before: the whole diagnosis printed, then a FileExistsError traceback.
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    out, err = fails(
        ["diagnose", "--model", "initnet", "--schemes", "seed", "--out", str(afile)], capsys
    )
    assert out == ""
    assert err.strip() == (
        f"--out must be a directory (created if missing); got --out {str(afile)!r}, which is a file"
    )
    assert afile.read_text() == "keep me"


def test_compare_out_inside_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    _, err = fails(["compare", "--out", str(afile / "run")], capsys)
    assert f"which is inside {str(afile)!r}, a file" in err


# 4. --resume with a damaged config.json --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"x": 1}', "it lacks the key 'schemes'"),
        ('{"x": ', "it is not valid JSON (Expecting value: line 1 column 7 (char 6))"),
        ("[1, 2]", "it holds no JSON object"),
        ('{"schemes": ["seed"], "train": {}, "x": 1}', "unexpected keyword argument 'x'"),
    ],
)
def test_resume_names_the_damaged_config_and_the_problem(text, problem, tmp_path, capsys):
    # Before: KeyError 'schemes' traceback; malformed JSON did not name the file.
    (tmp_path / "config.json").write_text(text)
    _, err = fails(["compare", "--resume", str(tmp_path)], capsys)
    assert err.startswith(f"cannot resume from {tmp_path / 'config.json'}: ")
    assert problem in err
    assert "it must be the config.json that initlab compare wrote" in err


def test_resume_reports_an_invalid_value_in_the_config(tmp_path, capsys):
    out = tmp_path / "ok"
    argv = ["compare", "--schemes", "seed", "--seeds", "1", "--epochs", "1", "--max-steps", "1"]
    assert main([*argv, *QUICK, "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "schemes": ["kaiming"]}))
    capsys.readouterr()
    _, err = fails(["compare", "--resume", str(out)], capsys)
    assert "config.json: scheme must be one of" in err and "got scheme='kaiming'" in err


# 5. a tuple-valued model parameter given one integer -------------------------------------------


def test_train_channels_given_one_integer(capsys):
    # Before: "cannot unpack non-iterable int object".
    _, err = fails(["train", "--model", "cnn", "--model-param", "channels=8"], capsys)
    assert err.strip() == (
        "channels must be a list of 2 positive integers, e.g. channels=[8,16]; got channels=8"
    )


# 6. --schemes with an empty entry or an unknown name ------------------------------------------


@pytest.mark.parametrize("command", ["compare", "diagnose"])
@pytest.mark.parametrize("schemes", ["seed,,zeros", "seed,", ",seed", " , "])
def test_an_empty_scheme_entry_is_refused(command, schemes, tmp_path, capsys):
    # Before: silently dropped.
    _, err = fails([command, "--schemes", schemes, "--out", str(tmp_path / "o")], capsys)
    assert f"got an empty entry in --schemes {schemes!r}" in err
    assert not (tmp_path / "o").exists()


def test_compare_lists_every_scheme_it_accepts_pretrained_included(tmp_path, capsys):
    from initlab.schemes.registry import scheme_names

    _, err = fails(["compare", "--schemes", "seed,bogus", "--out", str(tmp_path / "o")], capsys)
    assert f"scheme must be one of {scheme_names()}; got scheme='bogus'" in err  # aliases too


def test_diagnose_does_not_offer_pretrained(tmp_path, capsys):
    _, err = fails(["diagnose", "--schemes", "pretrained", "--out", str(tmp_path)], capsys)
    assert "scheme must be one of" in err and "'pretrained'," not in err


# 7. a subset larger than its split ------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "size", "message"),
    [
        (
            "--test-subset",
            "20000",
            "--test-subset must be at most 10000, the size of the mnist test",
        ),
        ("--train-subset", "70000", "--train-subset must be at most 60000, the size of the mnist "),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_too_large_subset_names_its_flag(command, flag, size, message, tmp_path, capsys):
    # Before: "n_test must be between 0 and 10000 ...; got n_test=20000".
    argv = [command, flag, size] + (["--out", str(tmp_path / "o")] if command == "compare" else [])
    _, err = fails(argv, capsys)
    assert message in err and f"got {flag} {size}" in err and "n_t" not in err
    assert not (tmp_path / "o").exists()


# 8. diagnose offers what it suggests -----------------------------------------------------------


def test_diagnose_missing_data_suggests_a_flag_it_has(tmp_path, capsys):
    # Before: the error suggested --download, which diagnose did not have.
    argv = ["diagnose", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path)]
    _, err = fails([*argv, "--out", str(tmp_path / "o")], capsys)
    # the flag of the argument at fault leads the line, and the advice names the flags
    # (cli._validate.in_flags), not the library's data_dir and download=True
    assert err.startswith("argument --data-dir: dataset 'fashion-mnist': ")
    assert "Give their directory with --data-dir DIR or fetch them with --download" in err
    from initlab.cli import build_parser

    assert build_parser().parse_args(["diagnose", "--download"]).download is True


# 9. fixup on a model without residual blocks --------------------------------------------------


def test_train_fixup_on_a_plain_model_says_which_models_to_use(capsys):
    # Before: fixup_'s raw message, naming neither the model nor --model resmlp.
    _, err = fails(["train", "--scheme", "fixup", *QUICK], capsys)
    assert err.startswith(
        "argument --model: scheme 'fixup' does not apply to model 'mlp-784-128-10' (fixup needs "
    )
    assert "use model 'resmlp' or 'resnet'): fixup_ found no residual" in err


def test_the_applicability_check_passes_what_applies_and_keeps_other_errors():
    scheme_applies("resmlp", "fixup", {"depth": 2, "width": 8})
    scheme_applies("initnet", "lsuv", {})  # data-dependent: left to the run
    with pytest.raises(ValueError, match=r"^scheme must be one of .*got scheme='kaiming'"):
        scheme_applies("initnet", "kaiming", {})
    with pytest.raises(ValueError, match=r"^depth must be >= 1; got depth=0$"):
        scheme_applies("mlp", "seed", {"depth": 0})


# 10. huge losses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "text"),
    [
        (0.23456, "0.2346"),  # the seed's format, unchanged below 1e6
        (999999.0, "999999.0000"),
        (45130176098.0, "4.513e+10"),
        (-2.5e7, "-2.5e+07"),
        (math.inf, "inf"),
        (math.nan, "nan"),
    ],
)
def test_format_loss(loss, text):
    assert format_loss(loss) == text


def test_train_prints_a_huge_loss_readably(monkeypatch, capsys):
    def huge(*args, on_epoch, **kwargs):
        on_epoch(SimpleNamespace(epoch=1, train_loss=45130176098.0, test_accuracy=0.1))
        return SimpleNamespace(status="finished")

    monkeypatch.setattr("initlab.experiments.trainer.train", huge)
    assert main(["train", *QUICK]) == 0
    assert capsys.readouterr().out == "Epoch 1, Loss: 4.513e+10\nTest Accuracy: 10.00%\n"


# 11. an unknown flag ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "diagnose", "gain"])
def test_an_unknown_flag_shows_the_subcommands_usage(command, capsys):
    # Before: "usage: initlab [-h] [-v] [--version] COMMAND ..." and "initlab: error: ...".
    with pytest.raises(SystemExit) as exit_:
        main([command, "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: initlab {command} [-h]")
    assert err.endswith(f"initlab {command}: error: unrecognized arguments: --no-progress\n")


# numeric options are checked by argparse, which names the flag --------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # before: "epochs must be an integer >= 1; got epochs=0" (the library's argument name)
        (["train", "--epochs", "0"], "argument --epochs: must be at least 1; got 0"),
        (["train", "--batch-size", "0"], "argument --batch-size: must be at least 1; got 0"),
        (["train", "--max-steps", "-1"], "argument --max-steps: must be at least 1; got -1"),
        (["train", "--log-every", "-1"], "argument --log-every: must be at least 0; got -1"),
        (["train", "--log-every", "x"], "argument --log-every: expected an integer >= 0; got 'x'"),
        (["train", "--lr", "-1"], "argument --lr: must be a finite number >= 0; got -1"),
        (["train", "--lr", "inf"], "argument --lr: must be a finite number >= 0; got inf"),
        (["train", "--lr", "nan"], "argument --lr: must be a finite number >= 0; got nan"),
        (["train", "--weight-decay", "-0.1"], "argument --weight-decay: must be a finite number"),
        (
            ["train", "--momentum", "fast"],
            "argument --momentum: expected a number >= 0; got 'fast'",
        ),
        (["compare", "--seeds", "0"], "argument --seeds: must be at least 1; got 0"),
        (["compare", "--pretrain-epochs", "0"], "argument --pretrain-epochs: must be at least 1"),
        (
            ["compare", "--target-accuracy", "97"],
            "argument --target-accuracy: must be a fraction in (0, 1], e.g. 0.97; got 97",
        ),
        (["compare", "--target-accuracy", "0"], "argument --target-accuracy: must be a fraction"),
        (["diagnose", "--batch-size", "0"], "argument --batch-size: must be at least 1; got 0"),
        (["diagnose", "--depth", "0"], "argument --depth: must be at least 1; got 0"),
    ],
)
def test_numeric_options_are_checked_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"initlab {argv[0]}: error: {message}" in capsys.readouterr().err


def test_numeric_options_keep_their_values_and_defaults():
    from initlab.cli import build_parser

    args = build_parser().parse_args(["train", "--lr", "0", "--log-every", "0", "--epochs", "2"])
    assert (args.lr, args.log_every, args.epochs, args.weight_decay) == (0.0, 0, 2, 0.01)
    args = build_parser().parse_args(["compare", "--target-accuracy", "1"])
    assert (args.target_accuracy, args.seeds, args.momentum) == (1.0, 3, 0.9)


# 12. the missing-dataset message --------------------------------------------------------------


def test_missing_data_lists_directories_not_every_spelling(tmp_path, capsys):
    # Before: 4 files x 4 spellings x 3 directories = 48 lines of paths.
    _, err = fails(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path)], capsys)
    listing = [line for line in err.splitlines() if line.startswith("  ")]
    assert listing == [
        f"  {tmp_path}: none of the four",
        f"  {tmp_path / 'fashion-mnist'}: none of the four",
        f"  {tmp_path / 'FashionMNIST' / 'raw'}: none of the four",
    ]
    # the command line leads the message with the flag and words its advice in flags
    assert err.startswith("argument --data-dir: dataset 'fashion-mnist': the four IDX files")
    assert "Give their directory with --data-dir DIR or fetch them with --download" in err


# 13. library arguments and the flags that set them ---------------------------------------------


def test_the_pretrained_sources_directory_is_named_by_its_own_flag(tmp_path, capsys):
    # The library names the config field (pretrain.data_dir) and offers no download (the source
    # does not download); the command line leads the line with the flag that set it.
    argv = ["compare", "--schemes", "pretrained", "--pretrain-dataset", "fashion-mnist"]
    argv += ["--pretrain-data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    _, err = fails(argv, capsys)
    assert err.startswith(
        "argument --pretrain-data-dir: scheme 'pretrained' pretrains on 'fashion-mnist': "
        "dataset 'fashion-mnist': the four IDX files were not found"
    )
    assert "Give their directory with --pretrain-data-dir DIR" in err and "download" not in err
    assert not (tmp_path / "o").exists()


def test_a_data_dir_that_does_not_exist_is_named_by_its_flag(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    _, err = fails(["train", "--data-dir", str(missing)], capsys)
    assert err.strip() == (
        f"argument --data-dir: data_dir {str(missing)!r} does not exist or is not a directory; "
        "give the directory that holds the 'mnist' IDX files"
    )


def test_print_error_leads_with_the_flag_only_for_an_argument_it_knows(capsys):
    from initlab._checks import ArgumentError
    from initlab.cli import FLAGS, print_error

    assert print_error("train", ArgumentError("model_params", "too few logits"), FLAGS) == 2
    assert capsys.readouterr().err == "initlab train: error: argument --model-arg: too few logits\n"
    assert print_error("train", ArgumentError("elsewhere", "as written"), FLAGS) == 2
    assert capsys.readouterr().err == "initlab train: error: as written\n"
    assert print_error("train", ValueError("plain"), FLAGS) == 2
    assert capsys.readouterr().err == "initlab train: error: plain\n"


# the installed entry point: no traceback on a real process's stderr ----------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "cnn", "--model-param", "channels=8"], "channels must be a list"),
        (["train", "--dataset", "kmnist", "--download"], "could not download"),
    ],
)
def test_the_command_line_exits_2_without_a_traceback(argv, message, offline, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "initlab", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 2
    assert f"initlab {argv[0]}: error: {message}" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_compare_table_formats_a_huge_first_epoch_loss_readably():
    from initlab.reports.compare import SummaryRow, format_table

    row = SummaryRow("sgd_lr3", 1, 0.1, None, 0.1, 1.7577848e11, None, 0, 0)
    assert "1.758e+11" in format_table([row], 0.97) and "175778480000" not in format_table(
        [row], 0.97
    )
