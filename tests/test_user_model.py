"""Your own model: `--model MODULE:FUNCTION --model-arg NAME=VALUE` in compare, train, diagnose,
plan; `initlab models`; the errors of a bad factory, each before anything is written."""

import inspect
import json
import logging

import pytest
import torch

from initlab._checks import ArgumentError
from initlab.cli import main
from initlab.experiments.config import CompareConfig
from initlab.zoo.factory import build_factory_model, parse_model_args, resolve_factory
from initlab.zoo.models import MODEL_ALIASES, MODELS, build_model

QUICK = ["--train-subset", "300", "--test-subset", "100", "--epochs", "1", "--no-progress"]
SPEC = "tests.factories:tiny_mlp"


def test_compare_trains_a_factory_model_stacked_and_resumes_it(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    argv = ["compare", "--model", SPEC, "--model-arg", "width=8", "--schemes", "zeros,normal"]
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        assert main([*argv, "--seeds", "2", *QUICK, "--out", str(out)]) == 0
    assert "training 4 runs together, stacked" in caplog.text
    table = capsys.readouterr().out
    assert "zeros" in table and "normal" in table
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["model_params"]) == (SPEC, {"width": 8})
    config = CompareConfig.from_json((out / "config.json").read_text())
    assert (config.model, config.model_params) == (SPEC, {"width": 8})
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    init = {r["run"]: r for r in records if r["type"] == "init"}
    assert sorted(init) == ["normal/0", "normal/1", "zeros/0", "zeros/1"]
    # the schemes reached the factory's model (layers 1 and 3 of the Sequential): zeros leaves
    # every activation at 0, normal does not
    assert init["zeros/0"]["activation_std"] == {"1": 0.0, "3": 0.0}
    assert all(v > 0 for v in init["normal/0"]["activation_std"].values())
    # a resume of the finished sweep rebuilds the factory model from config.json, trains
    # nothing and prints the same table
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == table.splitlines()[:3]


def test_resume_continues_a_factory_sweep_from_its_results(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["compare", "--model", SPEC, "--model-arg", "width=8", "--schemes", "normal"]
    assert main([*argv, "--seeds", "1", *QUICK, "--out", str(out)]) == 0
    text = (out / "results.jsonl").read_text()
    epoch = next(r for r in map(json.loads, text.splitlines()) if r["type"] == "epoch")
    # drop every line: the resume must build the factory model again and retrain the run
    (out / "results.jsonl").write_text("")
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    again = (out / "results.jsonl").read_text()
    redone = next(r for r in map(json.loads, again.splitlines()) if r["type"] == "epoch")
    assert redone["test_accuracy"] == epoch["test_accuracy"]  # deterministic training
    assert redone["train_loss"] == epoch["train_loss"]


def test_train_and_diagnose_take_a_factory_model(tmp_path, capsys):
    argv = ["train", "--model", SPEC, "--model-arg", "width=8", "--scheme", "kaiming_normal"]
    assert main([*argv, "--train-subset", "300", "--test-subset", "100", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Epoch 1, Loss: ") and "Test Accuracy: " in out
    argv = ["diagnose", "--model", SPEC, "--model-arg", "width=8", "--schemes", "normal"]
    assert main([*argv, "--batch-size", "32", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "diagnoses.json").is_file()


def test_model_param_still_works_and_errors_name_the_flag_typed(tmp_path, capsys):
    base = ["compare", "--model", "mlp", "--out", str(tmp_path / "x")]
    assert main([*base, "--model-param", "dept=4"]) == 2
    err = capsys.readouterr().err
    assert "got dept=4 (did you mean 'depth'?)" in err
    assert main([*base, "--model-arg", "depth"]) == 2
    assert "argument --model-arg: a model argument must be NAME=VALUE" in capsys.readouterr().err
    assert main([*base, "--model-param", "depth"]) == 2
    assert "argument --model-param: a model argument must be" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


BAD = [
    ("tests.factories", "a model factory must be MODULE:FUNCTION, e.g. tests.factories:build_net"),
    ("tests.no_such_module:f", "cannot import module 'tests.no_such_module' (ModuleNotFoundError"),
    ("tests.factories:tiny_mpl", "tests.factories has no attribute 'tiny_mpl'"),
    ("tests.factories:NOT_CALLABLE", "'tests.factories:NOT_CALLABLE' is a int, not a callable"),
    (
        "tests.factories:raises",
        "argument --model: calling the model factory tests.factories:raises() raised "
        "RuntimeError: no GPU for width 4",
    ),
    ("tests.factories:not_a_module", "must return a torch.nn.Module; it returned list"),
    (
        "tests.factories:three_logits",
        "the labels need 10 classes but the model returns 3 logits",
    ),
]


@pytest.mark.parametrize("spec, message", BAD)
@pytest.mark.parametrize("command", ["compare", "train", "diagnose"])
def test_a_bad_factory_is_a_clear_error_before_anything_is_written(
    tmp_path, capsys, command, spec, message
):
    if command == "diagnose" and spec.endswith("three_logits"):
        message = "returns 3 logits but the labels need 10"
    out = tmp_path / "out"
    argv = [command, "--model", spec]
    argv += ["--out", str(out)] if command != "train" else []
    argv += ["--train-subset", "100", "--test-subset", "50"] if command != "diagnose" else []
    assert main([*argv, "--epochs", "1"] if command != "diagnose" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"initlab {command}: error: "), err
    assert message in err, err
    assert spec in err or "labels need" in err or "logits but" in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert not out.exists()


def test_model_arg_values_are_literals_never_evaluated():
    parsed = parse_model_args(
        [
            "width=8",
            "lr=1e-3",
            "scale=-0.5",
            "channels=[8, 16]",
            "sizes=(1,2)",
            "name='a b'",
            'quoted="x=y"',
            "norm=batch",
            "flag=True",
            "bias=false",
            "none=None",
            "opts={'k': [1, 2.5]}",
        ]
    )
    assert parsed == {
        "width": 8,
        "lr": 0.001,
        "scale": -0.5,
        "channels": [8, 16],
        "sizes": [1, 2],  # stored as config.json stores it, so a resume builds the same model
        "name": "a b",
        "quoted": "x=y",
        "norm": "batch",
        "flag": True,
        "bias": False,
        "none": None,
        "opts": {"k": [1, 2.5]},
    }
    assert type(parsed["width"]) is int and type(parsed["lr"]) is float
    for text in ["x=__import__('os')", "x=1+", "x=open('f')", "x=a b", "x=[1, y]"]:
        with pytest.raises(ArgumentError, match="not a literal and is never evaluated") as info:
            parse_model_args([text])
        assert info.value.argument == "model_params"
    for text in ["x={1, 2}", "x=1j", "x=b'a'", "x=float('nan')"]:
        with pytest.raises(ArgumentError):
            parse_model_args([text])
    for text in ["width", "=3", "2x=1", "class=1"]:
        with pytest.raises(ArgumentError, match="must be NAME=VALUE"):
            parse_model_args([text])


def test_the_help_examples_are_accepted_by_their_models():
    # the --model-arg help's examples: --model mlp depth=3 norm=batch; --model cnn channels=[8,16]
    mlp = build_model("mlp", **parse_model_args(["depth=3", "norm=batch"]))
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in mlp.modules()) == 3
    cnn = build_model("cnn", **parse_model_args(["channels=[8,16]"]))
    assert (cnn.conv1.out_channels, cnn.conv2.out_channels) == (8, 16)
    with pytest.raises(TypeError, match="model 'cnn' takes the parameters"):
        build_model("cnn", **parse_model_args(["norm=batch"]))


def test_library_factory_errors_name_the_argument():
    with pytest.raises(ArgumentError, match="did you mean 'width'") as info:
        build_factory_model(SPEC, {"widht": 3})
    assert info.value.argument == "model_params"
    with pytest.raises(ArgumentError) as info:
        resolve_factory("tests.factories:NOT_CALLABLE")
    assert info.value.argument == "model"
    with pytest.raises(ArgumentError, match="cannot import"):
        CompareConfig(model="tests.nope:f")
    assert CompareConfig(model=SPEC, model_params={"width": 4}).model == SPEC


def test_models_lists_every_zoo_model_with_its_defaults(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, factory in MODELS.items():
        assert f"\n{name}" in f"\n{out}", name
        block = out.split(f"\n{name}", 1)[-1] if not out.startswith(name) else out
        for param in inspect.signature(factory).parameters.values():
            assert param.name in block
    assert "mlp-784-128-10 (alias: initnet) - An MLP" in out
    assert set(MODEL_ALIASES) == {"initnet"}
    lines = out.splitlines()
    cnn = lines.index(next(line for line in lines if line.startswith("cnn - ")))
    assert [line.split() for line in lines[cnn + 1 : cnn + 4]] == [
        ["channels", "=", "(16,", "32)"],
        ["num_classes", "=", "10"],
        ["image_size", "=", "28"],
    ]
    mlp = lines.index(next(line for line in lines if line.startswith("mlp - ")))
    assert lines[mlp + 1].split() == ["depth", "=", "2"]
    assert lines[mlp + 4].split() == ["norm", "=", "None"]
    assert main(["models", SPEC]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1:] == ["  width       = 16", "  num_classes = 10"]
    assert main(["models", "tests.factories:nope"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err


def test_plan_takes_model_args(capsys):
    argv = ["plan", SPEC, "--model-arg", "width=8", "--model-arg", "num_classes=3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "8x784" in out and "3x8" in out
    assert main(["plan", SPEC, "--model-arg", "x=__import__('os')"]) == 2
    assert "never evaluated" in capsys.readouterr().err


def test_a_factory_model_that_cannot_be_stacked_trains_one_run_at_a_time(tmp_path, caplog):
    argv = ["compare", "--model", "tests.factories:dropout_mlp", "--schemes", "normal"]
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        assert main([*argv, "--seeds", "2", *QUICK, "--out", str(tmp_path / "o")]) == 0
    assert "training 2 runs one after the other: " in caplog.text
    assert "dropout" in caplog.text.lower()


def test_resume_says_when_the_sweeps_factory_no_longer_imports(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    config = CompareConfig(schemes=("normal",), seeds=1, model=SPEC).to_json()
    (out / "config.json").write_text(config.replace(SPEC, "tests.gone_module:net"))
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume from {out / 'config.json'}: model factory 'tests.gone_module:net'" in err
    assert "run --resume where that module imports" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_models_piped_into_a_reader_that_closes_early_stops_quietly():
    # `initlab models | head -1`: the pipe closes after one line; no traceback, status 141.
    import subprocess
    import sys

    script = "import sys; from initlab.cli import main; sys.exit(main(['models']))"
    proc = subprocess.run(
        f'{sys.executable} -c "{script}" | head -1',
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
