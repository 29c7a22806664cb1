"""initlab plan / diagnose: explicit input shapes and model options fail with clear messages."""

import pytest

from initlab.cli import main

MLP = "initlab.zoo.models:MLP"


@pytest.mark.parametrize("shape", ["1x784", "1,784", "1 x 784", "2X1x28x28"])
def test_plan_accepts_comma_and_x_shapes(shape, capsys):
    assert main(["plan", MLP, "--input-shape", shape]) == 0
    assert "activations from trace" in capsys.readouterr().out


@pytest.mark.parametrize("shape", ["abc", "1,,784", "0x784", "1.5,784"])
def test_plan_rejects_a_malformed_shape(shape, capsys):
    assert main(["plan", MLP, "--input-shape", shape]) == 2
    err = capsys.readouterr().err
    assert "--input-shape must be positive integers separated by ',' or 'x'" in err
    assert repr(shape) in err


def test_plan_with_an_explicit_shape_that_fails_the_forward_is_an_error(capsys):
    # Before: a UserWarning and a plan from the module structure, exit 0.
    assert main(["plan", MLP, "--input-shape", "1,3,32,32"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # the flag that set example_input, then the library's own message, not rewritten
    assert "error: --input-shape 1,3,32,32: example_input did not run through the model" in (
        captured.err
    )
    assert "RuntimeError" in captured.err and "3072" in captured.err


def test_diagnose_rejects_options_the_model_does_not_take(capsys, tmp_path):
    # Before: a raw TypeError from SmallCNN.__init__.
    assert main(["diagnose", "--model", "cnn", "--depth", "3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model 'cnn' does not take --depth; it takes none of --depth" in err


def test_diagnose_names_what_a_model_takes(capsys, tmp_path):
    argv = ["diagnose", "--model", "transformer", "--width", "8", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "does not take --width; it takes --depth" in capsys.readouterr().err


def test_plan_residual_option_without_input_shape_is_an_error(capsys):
    # Before: exit 0 and a plan in which the option changed nothing.
    assert main(["plan", MLP, "--option", "zero_init_residual=true"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: --input-shape: zero_init_residual=True needs example_input" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "autoo"], "--policy autoo: policy must be one of"),
        (["--option", "mode=fan_avg"], "--option mode: mode must be one of ['fan_in', 'fan_out']"),
        (["--option", "std=-1"], "--option std: std must be a finite number >= 0; got std=-1"),
    ],
)
def test_plan_errors_name_the_flag_that_set_the_library_argument(argv, message, capsys):
    assert main(["plan", MLP, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"initlab plan: error: {message}")
