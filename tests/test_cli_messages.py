"""Messages a fresh user met that named library arguments instead of flags, or were wrong.

Each refusal comes before anything is trained or written; the tests check the whole line.
"""

import contextlib
import io
import re

import pytest

from initlab.cli import main
from initlab.cli._validate import in_flags
from initlab.datasets.families import DATASETS, DataNotFoundError
from initlab.datasets.text import MIN_CHARS
from initlab.experiments.config import CompareConfig
from initlab.experiments.tasks import TASKS
from initlab.reports.markdown import _grid_section
from initlab.reports.summary import METRICS
from initlab.zoo.models import model_defaults


def call(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI; return its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def refused(argv: list[str], tmp_path) -> str:
    """The error line(s) of a refused command, after checking it wrote nothing."""
    command = argv[0]
    out = tmp_path / "o"
    argv = [*argv, "--out", str(out)] if command != "models" else argv
    status, printed, err = call(argv)
    assert (status, printed) == (2, "")
    assert not out.exists()
    prefix = f"initlab {command}: error: "
    assert err.startswith(prefix)
    return err[len(prefix) :].rstrip("\n")


# --task vit without Fashion-MNIST's files: the advice names the flags --------------------------


@pytest.mark.parametrize("command", ["train", "diagnose", "compare"])
def test_task_vit_without_its_files_names_data_dir_and_download(command, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = refused([command, "--task", "vit", "--data-dir", str(empty)], tmp_path)
    assert err.splitlines() == [
        "argument --data-dir: --task vit trains on 'fashion-mnist', which initlab does not "
        "embed: dataset 'fashion-mnist': the four IDX files were not found (each raw or .gz, "
        "spelled train-images-idx3-ubyte or train-images.idx3-ubyte); searched:",
        f"  {empty}: none of the four",
        f"  {empty / 'fashion-mnist'}: none of the four",
        f"  {empty / 'FashionMNIST' / 'raw'}: none of the four",
        "Give their directory with --data-dir DIR or fetch them with --download (or run: "
        "apt-get install dataset-fashion-mnist).",
    ]
    assert "data_dir" not in err and "download=True" not in err


def test_in_flags_rewords_only_missing_files_of_an_argument_with_a_flag():
    error = DataNotFoundError("kmnist", searched="not found:\n  /x: none", fetchable=False)
    worded = in_flags(error, {"data_dir": "--data-dir", "download": "--download"})
    assert worded.argument == "data_dir"
    assert (
        str(worded)
        == "dataset 'kmnist': not found:\n  /x: none\nGive their directory with --data-dir DIR."
    )
    assert in_flags(error, {}) is error  # no flag for data_dir: the library's words stay
    source = error.reworded("pretrain.data_dir", fetchable=False, context="scheme 'p' needs: ")
    worded = in_flags(source, {"pretrain.data_dir": "--pretrain-data-dir"}, "vit")
    assert str(worded) == (  # the library's context kept: no task trains on kmnist
        "scheme 'p' needs: dataset 'kmnist': not found:\n  /x: none\nGive their directory with "
        "--pretrain-data-dir DIR."
    )
    missing_dir = DataNotFoundError("mnist", directory="/nope")  # its message names the path
    assert in_flags(missing_dir, {"data_dir": "--data-dir"}) is missing_dir
    other = ValueError("x")
    assert in_flags(other, {"data_dir": "--data-dir"}) is other


# --model-arg seq_len under --task char-lm: the context length and the window (--seq-len) ------


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model-arg", "seq_len=0"],
            "seq_len is the model's context length, an integer >= 1 that defaults to the "
            "training window (--seq-len, the task's default 64); got seq_len=0",
        ),
        (
            ["--model-arg", "seq_len=abc"],
            "seq_len is the model's context length, an integer >= 1 that defaults to the "
            "training window (--seq-len, the task's default 64); got seq_len='abc'",
        ),
        (
            ["--model-arg", "seq_len=32"],
            "seq_len=32 (the model's context length) is shorter than the training windows of 64 "
            "characters (--seq-len, the task's default 64); give --seq-len 32, or leave seq_len "
            "out of --model-arg: it follows --seq-len",
        ),
        (
            ["--model-arg", "seq_len=32", "--seq-len", "48"],
            "seq_len=32 (the model's context length) is shorter than the training windows of 48 "
            "characters (--seq-len); give --seq-len 32, or leave seq_len out of --model-arg: it "
            "follows --seq-len",
        ),
        (
            ["--model", "char-rnn", "--model-arg", "seq_len=32"],
            "model 'char-rnn' takes no seq_len; the windows it trains on are set with --seq-len; "
            "got seq_len=32",
        ),
    ],
)
def test_a_model_seq_len_is_told_apart_from_the_window(command, argv, message, tmp_path):
    err = refused([command, "--task", "char-lm", *argv], tmp_path)
    assert err == f"argument --model-arg: {message}"


def test_a_context_at_least_the_window_is_accepted(tmp_path):
    # seq_len=80 >= the window 64: one step trains (the model's positions cover the window)
    argv = ["train", "--task", "char-lm", "--model-arg", "seq_len=80", "--epochs", "1"]
    argv += ["--max-steps", "1", "--train-subset", "4", "--test-subset", "4"]
    status, printed, err = call(argv)
    assert status == 0, err
    assert printed.startswith("Epoch 1, Loss: ")


# the too-short --text-file: no window length it does not use ---------------------------------


def test_a_too_short_text_file_says_what_the_minimum_is_for(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("to be or not " * 100, encoding="utf-8")  # 1300 characters
    err = refused(
        ["train", "--task", "char-lm", "--text-file", str(text), "--seq-len", "8"], tmp_path
    )
    assert err == (
        f"argument --text-file: text_file {str(text)!r} has 1300 characters; at least "
        f"{MIN_CHARS} are needed, so that its validation and test parts (5% of the text each, "
        f"at least {round(0.05 * MIN_CHARS)} characters) are more than a sample of a few words"
    )
    assert "256" not in err


# --val-fraction under --task char-lm: refused; the report words the fixed split ---------------


@pytest.mark.parametrize("command", ["train", "compare"])
def test_val_fraction_is_refused_with_a_language_model(command, tmp_path):
    argv = [command, "--task", "char-lm", "--lr-grid", "1e-3,3e-3", "--val-fraction", "0.2"]
    err = refused(argv, tmp_path)
    assert err == (
        "argument --val-fraction: task 'char-lm' holds out a fixed validation part of its corpus "
        "(the 5% of the text after the training part), so --val-fraction does not apply; drop "
        "it (--lr-grid chooses on that part)"
    )


def test_the_char_lm_grid_report_names_the_fixed_validation_part():
    config = CompareConfig.for_task("char-lm", seeds=1, lr_grid=(1e-3, 3e-3))
    schemes = config.schemes
    chosen = {s: 1e-3 for s in schemes}
    means = {s: {1e-3: 2.5, 3e-3: 2.6} for s in schemes}
    text = _grid_section(config, chosen, means, METRICS["final_bpc"])
    assert (
        "on the corpus's training part; the rate is chosen on its fixed validation part (the 5% "
        "of the text after the training part)." in text
    )
    assert "seeded" not in text and "10%" not in text
    image = CompareConfig(seeds=1, lr_grid=(1e-3, 3e-3), val_fraction=0.2)
    text = _grid_section(
        image,
        {s: 1e-3 for s in image.schemes},
        {s: {1e-3: 0.9, 3e-3: 0.8} for s in image.schemes},
        METRICS["final_accuracy"],
    )
    assert (
        "on the training data less a validation split of 20% (seeded with the first seed)" in text
    )


# initlab models --task: the values a task trains its models with ------------------------------


def test_models_task_lists_the_tasks_models_with_its_values():
    status, printed, err = call(["models", "--task", "char-lm"])
    assert status == 0, err
    task = TASKS["char-lm"]
    heads = [line.split(" ")[0] for line in printed.splitlines() if re.match(r"^[a-z]", line)]
    assert heads == [task.model, *[m for m in task.model_names() if m != task.model]]
    section = printed.split("\nchar-rnn")[0]  # char-gpt's lines, the task's default model
    zoo = model_defaults("char-gpt")
    for name, value in task.model_params.items():
        line = f"  {name.ljust(10)} = {value!r}"
        if value != zoo[name]:
            line += f"  (task; zoo: {zoo[name]!r})"
        assert line in section.splitlines(), line
    assert f"  seq_len    = --seq-len ({task.seq_len})  (task; zoo: {zoo['seq_len']!r})" in section
    assert "  vocab_size = the corpus's characters (--text-file)" in printed


def test_models_refuses_a_factory_with_a_task(tmp_path):
    err = refused(["models", "tests.factories:tiny", "--task", "vit"], tmp_path)
    assert err.startswith("argument --task: --task lists the zoo models of a task")


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if t.kind == "classify"])
def test_models_task_shows_the_head_fitted_to_the_tasks_data(name):
    status, printed, err = call(["models", "--task", name])
    assert status == 0, err
    task = TASKS[name]
    section = printed.split("\n")[1:]
    first = section[: next(i for i, ln in enumerate(section[1:], 1) if not ln.startswith(" "))]
    (line,) = [ln for ln in first if ln.lstrip().startswith("num_classes ")]
    zoo = model_defaults(task.model)["num_classes"]
    info = DATASETS.get(task.dataset)
    if "num_classes" in task.model_params:
        want = task.model_params["num_classes"]
    else:
        want = info.num_classes if info is not None else f"the classes of {task.dataset}"
    shown = want if isinstance(want, str) else repr(want)
    assert line.split("= ", 1)[1] == (shown if want == zoo else f"{shown}  (task; zoo: {zoo!r})")
