"""Depth-profile figures: exact zeros only are floored on the log axis; readable titles."""

import math
from types import SimpleNamespace

import pytest
from matplotlib.figure import Figure

from initlab.cli.diagnose import _title
from initlab.diagnostics.plots import _draw, _floor_note, plot_depth_profiles


def test_only_exact_zeros_are_floored():
    ax = Figure().subplots()
    # 1e-45 and 1e-300 are positive (float64 statistics of a vanished signal): before, every
    # value below 1.2e-38 was drawn at 1.2e-38.
    floor = _draw(ax, {"a": [1.0, 1e-45, 0.0, 1e-300], "b": [0.5, math.inf, 2.0]})
    assert floor == pytest.approx(1e-301)  # a decade below the smallest positive value
    line_a, zeros_a, line_b = ax.get_lines()
    assert list(line_a.get_ydata()) == [1.0, 1e-45, pytest.approx(1e-301), 1e-300]
    assert list(zeros_a.get_xdata()) == [3] and zeros_a.get_marker() == "v"
    assert zeros_a.get_color() == line_a.get_color()
    ys = list(line_b.get_ydata())
    assert ys[0] == 0.5 and math.isnan(ys[1]) and ys[2] == 2.0  # inf is a gap, not a value
    assert ax.get_yscale() == "log"


def test_no_zero_no_floor_and_all_zero_at_one():
    assert _draw(Figure().subplots(), {"a": [1e-40, 3.0]}) is None
    ax = Figure().subplots()
    assert _draw(ax, {"a": [0.0, 0.0]}) == 1.0
    assert list(ax.get_lines()[0].get_ydata()) == [1.0, 1.0]


def _profile(stds, grads):
    rows = [SimpleNamespace(kind="weight", std=s, grad_rms=None, grad_norm=g)
            for s, g in zip(stds, grads, strict=True)]  # fmt: skip
    return SimpleNamespace(layers=rows, signal=lambda: rows)


def test_figure_names_the_floor_in_the_label(tmp_path):
    path = plot_depth_profiles(
        {"x": _profile([1.0, 0.0], [1e-3, 1e-50])}, tmp_path / "p.png", title="t"
    )
    assert path.stat().st_size > 0
    assert _floor_note(1e-51) == "\n(v: exactly 0, drawn at 1e-51)"
    assert _floor_note(None) == ""


def test_title_is_readable_not_a_dict():
    title = _title("mlp", {"depth": 50, "activation": "tanh", "norm": None}, "mnist", 256)
    assert title == "mlp (depth=50, activation=tanh, norm=None), 256 mnist examples"
    assert _title("cnn", {}, "fashion-mnist", 64) == "cnn, 64 fashion-mnist examples"
