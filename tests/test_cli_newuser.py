"""What a new user types at ``initlab verify``, ``spectrum`` and ``deeplinear``, and what they
read back: every mistake named by the positional or flag the user typed, before any work, and
never a traceback (R5's findings)."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file

from initlab.cli import deeplinear, spectrum
from initlab.cli import verify as cli_verify
from initlab.zoo.models import build_model


def _command(module, name, argv):
    parser = argparse.ArgumentParser(prog="initlab")
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([name, *argv])
    return args.func(args)


# --- initlab verify -----------------------------------------------------------------------


def test_verify_names_the_positional_or_flag_at_fault(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = [
        (["missing.safetensors"], "MODEL_SPEC: no such file or directory 'missing.safetensors'"),
        (["sub/model"], "MODEL_SPEC: no such file or directory 'sub/model'"),
        (["mpl"], "(did you mean 'mlp'?)"),
        (["mlp", "--model-arg", "depth=abc"], "--model-arg: depth must be an int"),
        (["mlp", "--model-arg", "depth=0"], "--model-arg: depth must be >= 1"),
        (["mlp", "--model-arg", "nosuch=3"], "--model-arg: model 'mlp' takes the parameters"),
        (["mlp", "--model-arg", "depth"], "--model-arg: a model argument must be NAME=VALUE"),
    ]
    for argv, expected in cases:
        assert _command(cli_verify, "verify", argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err, (argv, err)
        assert "model='" not in err  # never the library's own argument name
    save_file(build_model("mlp", depth=1, width=4).state_dict(), "m.safetensors")
    assert _command(cli_verify, "verify", ["m.safetensors", "--model-arg", "width=4"]) == 2
    assert "MODEL_SPEC 'm.safetensors' is a checkpoint" in capsys.readouterr().err


def test_verify_refuses_a_pickled_module_without_advice_it_cannot_follow(tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(build_model("mlp", depth=1, width=4), path)  # the module, not its state dict
    assert _command(cli_verify, "verify", [str(path)]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "Nothing in the file was run" in err
    assert "trust_pickle" not in err  # a library argument: the command has no such flag
    assert "initlab verify reads only tensors, never pickles" in err


def test_verify_prints_the_summary_alone_when_nothing_is_wrong(capsys):
    assert _command(cli_verify, "verify", ["mlp", "--model-arg", "depth=1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "(4 tensors checked against the model alone (no receipt): 0 failed, 0 warned; --all "
        "lists every tensor)"
    ]
    assert _command(cli_verify, "verify", ["mlp", "--model-arg", "depth=1", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["tensor", "shape", "dtype", "verdict", "evidence"] and len(out) == 6


# --- initlab spectrum ---------------------------------------------------------------------

_SMALL = ["--seeds", "1", "--examples", "2"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--schemes", "orthogonal,nosuch"], "argument --schemes: scheme must be one of"),
        (["--schemes", "fixup"], "argument --schemes: scheme 'fixup' does not apply"),
        (["--schemes", "pretrained"], "argument --schemes: scheme must be one of"),
        (["--examples", "0"], "argument --examples: must be at least 1; got 0"),
        (["--seeds", "0"], "argument --seeds: must be at least 1; got 0"),
        (["--model-arg", "depth=0"], "argument --model-arg: depth must be >= 1"),
        (["--model-arg", "nosuch=1"], "argument --model-arg: model 'mlp' takes the parameters"),
        (["--model", "char-gpt"], "argument --model: model 'char-gpt' cannot take the --inputs"),
    ],
)
def test_spectrum_names_the_flag_at_fault(argv, expected, capsys):
    assert _command(spectrum, "spectrum", [*_SMALL, *argv]) == 2
    assert expected in capsys.readouterr().err


def test_spectrum_refuses_a_file_as_out_before_the_work_and_says_what_it_ran(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _command(spectrum, "spectrum", [*_SMALL, "--out", str(blocker)]) == 2
    captured = capsys.readouterr()
    assert "--out must be a directory" in captured.err and captured.out == ""
    argv = [*_SMALL, "--model-arg", "depth=1", "--model-arg", "width=8", "--inputs", "gaussian"]
    argv += ["--schemes", "orthogonal"]
    assert _command(spectrum, "spectrum", argv) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "mlp (depth=1, width=8) on 2 Gaussian inputs, 1 seed"
    )


# --- initlab deeplinear -------------------------------------------------------------------

_TINY = ["--depths", "1", "--seeds", "1", "--width", "4", "--examples", "8", "--max-steps", "30"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--schemes", "lsuv"], "argument --schemes: scheme 'lsuv' needs a data batch"),
        (["--schemes", "fixup"], "argument --schemes: scheme 'fixup' does not apply"),
        (["--schemes", "orthogonal,"], "argument --schemes: --schemes must be scheme names"),
        (["--width", "0"], "argument --width: in_features must be an int >= 1"),
        (["--seeds", "0"], "argument --seeds: must be at least 1; got 0"),
    ],
)
def test_deeplinear_names_the_flag_at_fault(argv, expected, capsys):
    assert _command(deeplinear, "deeplinear", [*_TINY, *argv]) == 2
    assert expected in capsys.readouterr().err


def test_deeplinear_takes_lr_grid_as_train_and_transfer_do(capsys):
    argv = [*_TINY, "--schemes", "orthogonal"]
    assert _command(deeplinear, "deeplinear", [*argv, "--lrs", "0.3,1"]) == 0
    by_lrs = capsys.readouterr().out
    assert _command(deeplinear, "deeplinear", [*argv, "--lr-grid", "0.3,1"]) == 0
    assert capsys.readouterr().out == by_lrs
    assert by_lrs.splitlines()[2].split()[:2] == ["orthogonal", "1"]


@pytest.mark.parametrize(
    ("module", "name"), [(cli_verify, "verify"), (spectrum, "spectrum"), (deeplinear, "deeplinear")]
)
def test_help_states_every_options_default(module, name):
    parser = argparse.ArgumentParser(prog="initlab")
    sub = parser.add_subparsers(dest="command")
    module.register(sub)
    for action in sub.choices[name]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and "default" in action.help, action.option_strings


def test_deeplinear_help_states_every_default(capsys):
    with pytest.raises(SystemExit):
        _command(deeplinear, "deeplinear", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 1,2,4,8,16,32)", "default: orthogonal,lecun_normal)",
                    "default: 0.03,0.1,0.3,1)"):  # fmt: skip
        assert default in text
