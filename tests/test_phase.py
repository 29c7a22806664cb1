"""Phase diagrams (``initlab.reports.phase``): overlay values, cell aggregation, diverged cells."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from initlab._checks import ArgumentError
from initlab.diagnostics.meanfield import critical_weight_variance, mean_field
from initlab.reports.phase import (
    _overlays,
    _position,
    cell_grid,
    heatmap,
    order_to_chaos,
    run_value,
    trainable_depth,
    write_grid_report,
)


def _cell(sw2, depth, seed, accuracies=(0.5, 0.8), diverged=None, **extra):
    epochs = [
        {"epoch": i + 1, "step": 10 * (i + 1), "test_accuracy": a, "test_loss": 1 - a,
         "train_loss": 1.1 - a}
        for i, a in enumerate(accuracies)
    ]  # fmt: skip
    return {
        "type": "cell", "group": f"depth={depth}", "sw2": sw2, "depth": depth, "seed": seed,
        "status": "diverged" if diverged else "finished", "diverged_step": diverged,
        "epochs": epochs, **extra,
    }  # fmt: skip


# --- the mean-field overlays -----------------------------------------------------------------


def test_order_to_chaos_at_hand_checked_points():
    """tanh, sb2 = 0: chi_1 = sw2 tanh'(0)^2 = sw2 at q* = 0, so the edge is sw2 = 1;
    ReLU: chi_1 = sw2 / 2, the edge is He's 2; tanh, sb2 = 0.05: 1.76 (Schoenholz et al.
    2017, Fig. 1). The bisection's tolerance is 1e-4."""
    tanh0, tanh005 = order_to_chaos("tanh", [0.0, 0.05])
    assert tanh0 == pytest.approx(1.0, abs=2e-4)
    assert tanh005 == pytest.approx(1.76, abs=0.01)
    assert order_to_chaos("relu", [0.0])[0] == pytest.approx(2.0, abs=2e-4)
    assert tanh005 == pytest.approx(critical_weight_variance("tanh", 0.05), abs=2e-4)


def test_trainable_depth_is_six_xi_c():
    """tanh at sw2 = 0.5, sb2 = 0 (ordered, q* = 0): chi_1 = 0.5, xi_c = 1 / ln 2, so the
    trainable depth is 6 / ln 2 = 8.656 layers; elsewhere 6 x mean_field's xi_c."""
    (depth,) = trainable_depth("tanh", [0.5], 0.0)
    assert depth == pytest.approx(6 / math.log(2), rel=1e-6)
    for sw2 in (1.2, 2.5):
        expected = 6 * mean_field("tanh", sw2, 0.05).xi_c
        assert trainable_depth("tanh", [sw2], 0.05)[0] == pytest.approx(expected, rel=1e-12)


def test_sw2_depth_overlays_are_the_mean_field_curves():
    curves = _overlays("sw2", "depth", [1.0, 2.0, 3.0], [10, 20], {}, {"activation": "tanh"})
    (line_x, _, line_label, _), (x, y, curve_label, _) = curves
    assert line_x == pytest.approx([1.0, 1.0], abs=2e-4)  # tanh, sb2 = 0 (the default)
    assert "chi_1 = 1" in line_label and "xi_c" in curve_label
    assert x[0] == 1.0 and x[-1] == 3.0
    picks = [0, len(x) // 2, len(x) - 1]
    expected = [min(6 * mean_field("tanh", x[i], 0.0).xi_c, 1e6) for i in picks]
    assert [y[i] for i in picks] == pytest.approx(expected)
    # no overlay without a known activation, or for other axes
    assert _overlays("sw2", "depth", [1.0], [10], {}, {}) == []
    assert _overlays("lr", "depth", [0.1], [10], {}, {"activation": "tanh"}) == []


def test_sw2_sb2_overlays_line_and_contour():
    """The order-to-chaos line passes through (1.0, 0) for tanh; the 6 xi_c = 20 contour lies
    where mean_field gives 6 xi_c ~= 20 (within the 12 x 12 grid's interpolation)."""
    curves = _overlays("sw2", "sb2", [0.5, 3.0], [0.0, 0.2], {"depth": 20}, {"activation": "tanh"})
    (x, y, _, _), *contours = curves
    assert (x[0], y[0]) == pytest.approx((1.0, 0.0), abs=2e-4)
    assert contours
    for cx, cy, _, _ in contours:
        mid = len(cx) // 2
        assert 6 * mean_field("tanh", cx[mid], cy[mid]).xi_c == pytest.approx(20, rel=0.25)


def test_position_maps_values_to_cells():
    assert _position([1, 2, 4], [1, 3, 4, 5, 0]).tolist() == [0.0, 1.5, 2.0, 2.5, -1.0]
    assert _position([7], [7, 9, 1]).tolist() == [0.0, 1.0, -1.0]


# --- aggregation and drawing ---------------------------------------------------------------


def test_run_value_at_a_step():
    cell = _cell(1.0, 2, 0)
    assert run_value(cell, "test_accuracy", None) == 0.8
    assert run_value(cell, "test_accuracy", 15) == 0.5  # the last evaluation by step 15
    assert run_value(cell, "test_accuracy", 9) is None
    stepped = {**cell, "evals": [{"step": 4, "train_accuracy": 0.3, "full_train_loss": 2.0}]}
    assert run_value(stepped, "train_accuracy", 5) == 0.3  # from the eval_steps' evaluations
    assert run_value(stepped, "full_train_loss", None) == 2.0
    assert run_value(stepped, "train_accuracy", 3) is None
    late = _cell(1.0, 2, 0, diverged=17)
    assert run_value(late, "test_accuracy", 12) == 0.5  # diverged later: fine at step 12
    assert math.isnan(run_value(late, "test_accuracy", 17))
    assert math.isnan(run_value(late, "test_accuracy", None))


def test_cell_grid_means_finite_seeds_and_counts_diverged():
    cells = [
        _cell(1.0, 10, 0, (0.5, 0.7)),
        _cell(1.0, 10, 1, (0.5, 0.9)),
        _cell(4.0, 10, 0, diverged=3),
        _cell(4.0, 10, 1, diverged=5),
        _cell(1.0, 20, 0, (0.5, 0.6)),
        _cell(1.0, 20, 1, diverged=12),
        _cell(4.0, 20, 0, (0.1, 0.2), sb2=9.0),  # another slice
    ]
    xs, ys, mean, diverged, runs = cell_grid(cells, "sw2", "depth", {}, "test_accuracy", None)
    assert xs == [1.0, 4.0] and ys == [10, 20]
    assert mean[0, 0] == pytest.approx(0.8) and math.isnan(mean[0, 1])
    assert mean[1, 0] == pytest.approx(0.6)  # the diverged seed is left out of the mean
    assert diverged.tolist() == [[0, 2], [1, 0]] and runs.tolist() == [[2, 2], [2, 1]]
    _, _, mean, _, _ = cell_grid(cells, "sw2", "depth", {"sb2": 9.0}, "test_accuracy", None)
    assert mean[0, 0] == pytest.approx(0.2)


def test_diverged_cells_drawn_hatched(tmp_path):
    cells = [
        _cell(1.0, 10, 0), _cell(4.0, 10, 0, diverged=3), _cell(4.0, 10, 1, diverged=4),
        _cell(1.0, 20, 0), _cell(1.0, 20, 1, diverged=12), _cell(4.0, 20, 0),
    ]  # fmt: skip
    grid = cell_grid(cells, "sw2", "depth", {}, "test_accuracy", None)
    fig = heatmap(tmp_path / "h.png", *grid, x="sw2", y="depth", metric="test_accuracy", title="t")
    ax = fig.axes[0]
    hatched = {
        (p.get_x(), p.get_y()): p.get_facecolor()[:3]
        for p in ax.patches
        if isinstance(p, Rectangle) and p.get_hatch() == "xx"
    }
    # (sw2=4, depth=10): every seed diverged, gray; (sw2=1, depth=20): one of two, see-through
    assert set(hatched) == {(0.5, -0.5), (-0.5, 0.5)}
    assert hatched[(0.5, -0.5)] == pytest.approx((0.85, 0.85, 0.85))
    texts = {t.get_text() for t in ax.texts}
    assert "div" in texts and "80\n1/2 div" in texts
    assert fig.axes[1].get_ylabel() == "test accuracy (%)"  # the colorbar
    assert ax.get_xlabel().startswith("weight variance") and ax.get_ylabel().startswith("depth")
    assert (tmp_path / "h.png").stat().st_size > 5000


def test_write_grid_report_pairs_and_slices(tmp_path):
    cells = [
        _cell(sw2, depth, 0, lr=lr)
        for sw2 in (1.0, 2.0) for depth in (10, 20) for lr in (0.1, 0.01)
    ]  # fmt: skip
    axes = {"sw2": (1.0, 2.0), "depth": (10, 20), "lr": (0.1, 0.01)}
    figures = write_grid_report(tmp_path, axes, cells, defaults={"activation": "tanh"})
    assert [p.name for p in figures] == [
        "depth_vs_sw2_lr=0.1.png",
        "depth_vs_sw2_lr=0.01.png",
        "depth_vs_lr_sw2=1.png",
        "depth_vs_lr_sw2=2.png",
    ]
    report = (tmp_path / "report.md").read_text()
    assert "| sw2 | depth | lr | seeds | diverged | test accuracy (%) |" in report
    assert "| 1.0 | 10 | 0.1 | 1 | 0 | 80 ± 0 |" in report  # accuracy 0.8, in percent
    with pytest.raises(ArgumentError, match="metric must be one of") as error:
        write_grid_report(tmp_path, axes, cells, metric="accuracy")
    assert error.value.argument == "metric"


def test_loss_heatmap_colors_low_loss_bright(tmp_path):
    """Losses use the reversed map, so that 'good' is bright in both kinds of heatmap."""
    cells = [_cell(1.0, 10, 0, (0.5, 0.9)), _cell(2.0, 10, 0, (0.5, 0.6))]
    cells += [_cell(1.0, 20, 0, (0.5, 0.8)), _cell(2.0, 20, 0, (0.5, 0.7))]
    grid = cell_grid(cells, "sw2", "depth", {}, "test_loss", None)
    assert np.allclose(grid[2], [[0.1, 0.4], [0.2, 0.3]])
    fig = heatmap(tmp_path / "l.png", *grid, x="sw2", y="depth", metric="test_loss", title="t")
    assert fig.axes[0].collections[0].get_cmap().name == "viridis_r"
