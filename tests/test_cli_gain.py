import math

import pytest

from initlab.cli import main


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_gain_relu_side_by_side(capsys):
    assert main(["gain", "relu"]) == 0
    name, table, computed, why = _lines(capsys)
    assert name == "relu"
    assert table.split(":")[1].strip() == f"{math.sqrt(2):.10f}"
    assert computed.split()[2] == f"{math.sqrt(2):.10f}"
    assert why.strip().startswith("equal:")


def test_gain_tanh_explains_difference(capsys):
    assert main(["gain", "tanh"]) == 0
    _, table, computed, why = _lines(capsys)
    assert table.endswith("1.6666666667")
    assert computed.split()[2] == "1.5925374197"
    assert "rule of thumb" in why


def test_gain_leaky_relu_param_goes_to_both(capsys):
    assert main(["gain", "leaky_relu", "--param", "0.2"]) == 0
    name, table, computed, _ = _lines(capsys)
    expected = f"{math.sqrt(2 / 1.04):.10f}"
    assert name == "leaky_relu (param=0.2)"
    assert table.endswith(expected)
    assert computed.split()[2] == expected


@pytest.mark.parametrize(
    ("name", "table", "computed", "why"),
    [
        ("gelu", "n/a", "1.5335304412", "not in PyTorch's table"),
        ("conv2d", "1.0000000000", "n/a", "a linear map"),
    ],
)
def test_gain_name_known_to_one_side(capsys, name, table, computed, why):
    assert main(["gain", name]) == 0
    _, table_line, computed_line, why_line = _lines(capsys)
    assert table_line.endswith(table)
    assert computed_line.split()[2] == computed
    assert why in why_line


def test_gain_list(capsys):
    assert main(["gain", "--list"]) == 0
    pytorch, initlab = _lines(capsys)
    assert pytorch.startswith("PyTorch calculate_gain: linear, conv1d")
    assert "leaky_relu (negative_slope=0.01)" in initlab
    assert "gelu_tanh" in initlab


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gain", "rellu"], "NAME must be one of .* got NAME='rellu' (did you mean 'relu'?)"),
        (["gain", "relu", "--param", "0.1"], "activation 'relu' takes no parameter"),
        (["gain"], "give an activation NAME or --list"),
    ],
)
def test_gain_errors(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab gain: error: ")
    assert all(part in err for part in message.split(" .* "))
