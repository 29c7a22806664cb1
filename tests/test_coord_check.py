"""The quantitative coordinate check.

Exact values on a model whose updates are computed by hand; the log-log fit against hand
arithmetic; standard parameterization against muP on MNIST (Tensor Programs V);
the result's table, dict and figure; bad input.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab._checks import ArgumentError
from initlab.datasets import load_dataset
from initlab.parameterize.coord_check import (
    coord_check,
    layer_kind,
    loglog_slope,
    mlp_builder,
    shape_role,
    verdict_of,
    weight_shape,
)

# ----------------------------------------------------------------------------- the fit


def test_loglog_slope_of_an_exact_power_law_has_no_error():
    widths = [32, 64, 128, 256]
    values = [[3.0 * w**0.5, 3.0 * w**0.5] for w in widths]  # two seeds, identical
    slope, stderr = loglog_slope(widths, values)
    assert slope == pytest.approx(0.5, abs=1e-12)
    assert stderr == pytest.approx(0.0, abs=1e-12)


def test_loglog_slope_and_stderr_by_hand():
    # log w = 0, 1, 2 and log v = 0, 1, 3: mean x 1, mean y 4/3, Sxx 2, Sxy 3, slope 1.5;
    # residuals 1/6, -1/3, 1/6, RSS 1/6, one degree of freedom: stderr = sqrt(1/6 / 2).
    slope, stderr = loglog_slope([1.0, math.e, math.e**2], [[1.0], [math.e], [math.e**3]])
    assert slope == pytest.approx(1.5, rel=1e-12)
    assert stderr == pytest.approx(math.sqrt(1 / 12), rel=1e-12)


def test_loglog_slope_edge_cases():
    assert loglog_slope([8, 16], [[0.0], [0.0]]) == (0.0, 0.0)  # nothing moves anywhere
    assert all(math.isnan(v) for v in loglog_slope([8, 16], [[0.0], [1.0]]))
    assert all(math.isnan(v) for v in loglog_slope([8, 16], [[1.0], [math.nan]]))
    slope, stderr = loglog_slope([8, 16], [[1.0], [2.0]])  # two points: a slope, no error
    assert slope == pytest.approx(1.0) and math.isnan(stderr)


def test_verdict_thresholds():
    assert [verdict_of(s, 0.15, -0.15) for s in (0.16, 0.15, -0.15, -0.16, math.nan)] == [
        "grows",
        "stable",
        "stable",
        "shrinks",
        "undetermined",
    ]
    assert verdict_of(0.3, 0.5, -0.15) == "stable"


class _Gain(nn.Module):
    """A learned per-feature scale that is no normalization layer: role ``vector``."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))


class _Positions(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, 8, width))


@pytest.mark.parametrize(
    ("make", "role"),
    [
        (lambda w: nn.Linear(3, w), "input"),
        (lambda w: nn.Linear(w, w), "hidden"),
        (lambda w: nn.Linear(w, 3), "output"),
        (lambda w: nn.Embedding(50, w), "embedding"),  # stored (num, dim): read as (dim, num)
        (lambda w: nn.Conv2d(w, w, 3), "hidden"),
        (lambda w: nn.LayerNorm(w), "norm"),
        (lambda w: _Gain(w), "vector"),
        (lambda w: nn.LayerNorm(4), "fixed"),
        (lambda w: nn.MultiheadAttention(w, 1), "hidden"),
        (lambda w: _Positions(w), "-"),
    ],
)
def test_roles_from_the_weight_shapes_at_two_widths(make, role):
    small, large = make(8), make(16)
    kind = layer_kind(small)
    assert shape_role([weight_shape(small), weight_shape(large)], kind) == role


# ----------------------------------------------------------------------------- exact values

ETA, BATCH = 0.01, 4


def _summing_readout(width: int, seed: int):
    # y = W x with W = 1/w (1 x w) and x = ones: the output is 1 at every width. The loss
    # sum(y) has gradient dL/dW = sum_b x_b = BATCH * ones, so one SGD step changes W by
    # -ETA * BATCH per entry and the output by -ETA * BATCH * w: after t steps by
    # t * ETA * BATCH * w, a slope of exactly 1 against width.
    model = nn.Linear(width, 1, bias=False)
    nn.init.constant_(model.weight, 1.0 / width)
    return model, torch.optim.SGD(model.parameters(), lr=ETA), lambda out, y: out.sum()


def _summing_readout_any_width(width: int, seed: int):
    # the same on inputs of the widest width, of which the model reads the first `width`
    model, optimizer, loss = _summing_readout(width, seed)
    return nn.Sequential(_First(width), model), optimizer, loss


class _First(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return x[:, : self.n]


def test_hand_computed_slopes_across_widths():
    widths = [8, 16, 32, 64]
    batch = (torch.ones(BATCH, 64), torch.zeros(BATCH))
    check = coord_check(
        _summing_readout_any_width, widths, batch, steps=(1, 2), seeds=(0, 1), layers=["1"]
    )
    (act,) = check.select(quantity="activation")
    assert act.slope == pytest.approx(0.0, abs=1e-6) and act.verdict == "stable"
    for row in check.select(quantity="change"):
        assert row.values == pytest.approx([row.step * ETA * BATCH * w for w in widths], rel=1e-5)
        assert row.slope == pytest.approx(1.0, abs=1e-6)
        assert row.stderr == pytest.approx(0.0, abs=1e-5)
        assert row.verdict == "grows" and row.role == "output"
    assert check.losses[(8, None, 0)] == pytest.approx([BATCH * 1.0, BATCH * (1 - ETA * BATCH * 8)])


# ----------------------------------------------------------------------------- SP against muP

WIDTHS = [64, 128, 256, 512]
BASE = WIDTHS[0]
LR = 1e-3


@pytest.fixture(scope="module")
def mnist_batches():
    # 256 MNIST training images, average-pooled 4x4 to 7x7 = 49 inputs, in 4 batches of 64.
    # Pooling keeps the input layer's fan-in (49) below every width: the hidden layer's change
    # is the sum of its own update's term (grows like width under SP) and the term from the
    # input layer's change (width-independent), and with 784 inputs the second dominates up to
    # widths of a few thousand (slope about 0.3 at 64..1024, docs/parameterize_checks.md).
    data = load_dataset("mnist").subset(256, 0, seed=0)
    x = F.avg_pool2d(data.inputs("train"), 4).reshape(256, -1)
    return [(x[i : i + 64], data.train_labels[i : i + 64]) for i in range(0, 256, 64)]


def _mlp(width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)  # PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    return nn.Sequential(
        nn.Linear(49, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def sp_adam(width: int, seed: int):
    model = _mlp(width, seed)
    return model, torch.optim.Adam(model.parameters(), lr=LR), F.cross_entropy


def mup_adam(width: int, seed: int):
    # muP for Adam, Tensor Programs V (Yang et al. 2022) Table 3, in its equivalent form with a
    # readout multiplier (TP V Table 8, the form of mup's MuReadout + MuAdam): every init
    # variance 1/fan_in (PyTorch's default has it); the readout's output times 1/width_mult,
    # width_mult = width / BASE; the hidden (width x width) weight's Adam lr divided by
    # width_mult; the input weights, biases and readout weight at lr. Table 3's readout lr
    # lr/fan_in is here in the multiplier: Adam's step does not depend on the gradient's scale,
    # so a multiplier 1/width_mult already scales the readout's effective update by it.
    model = _mlp(width, seed)
    ratio = BASE / width
    model[4].register_forward_hook(lambda module, args, out: out * ratio)
    hidden = [model[2].weight]
    rest = [p for p in model.parameters() if all(p is not h for h in hidden)]
    groups = [{"params": rest, "lr": LR}, {"params": hidden, "lr": LR * ratio}]
    return model, torch.optim.Adam(groups), F.cross_entropy


@pytest.fixture(scope="module")
def sp_and_mup(mnist_batches):
    return (
        coord_check(sp_adam, WIDTHS, mnist_batches),
        coord_check(mup_adam, WIDTHS, mnist_batches),
    )


def test_hidden_layer_change_grows_under_sp_and_is_flat_under_mup(sp_and_mup):
    # Tensor Programs V and mup's coord check (README): under SP with Adam a hidden layer's
    # change grows about like width, under muP it is width-independent. Measured (seeds 0..2,
    # steps 1..3): SP slope 0.76..0.79, muP 0.03, standard errors 0.02..0.03 from 12 points; the
    # expected thresholds (0.5 and 0.15) are 9 and 6 standard errors from the measurements.
    sp, mup = sp_and_mup
    for step in (1, 2, 3):
        (sp_row,) = sp.select(role="hidden", quantity="change", step=step)
        (mup_row,) = mup.select(role="hidden", quantity="change", step=step)
        assert sp_row.slope >= 0.5 and sp_row.verdict == "grows", sp.table()
        assert abs(mup_row.slope) <= 0.15 and mup_row.verdict == "stable", mup.table()
        assert 0 < sp_row.stderr < 0.1 and 0 < mup_row.stderr < 0.1


def test_input_layer_is_stable_under_both(sp_and_mup):
    # The input layer's fan-in (49) does not grow: its update's effect is width-independent
    # under SP too (flat in mup's SP coord check); both slopes measured within 0.05 of 0.
    for check in sp_and_mup:
        for row in check.select(role="input"):
            assert row.verdict == "stable", check.table()


def test_roles_and_rows(sp_and_mup):
    sp, _ = sp_and_mup
    assert {r.layer: r.role for r in sp.rows} == {"0": "input", "2": "hidden", "4": "output"}
    # one activation row and one change row per step for each of the 3 layers
    assert len(sp.rows) == 3 * (1 + 3)
    assert [r.quantity for r in sp.rows[:3]] == ["activation"] * 3
    assert sp.widths == tuple(WIDTHS) and sp.seeds == (0, 1, 2) and sp.steps == (1, 2, 3)


def test_table_dict_and_plot(sp_and_mup, tmp_path):
    sp, _ = sp_and_mup
    table = sp.table()
    assert table.splitlines()[0].split()[:4] == ["layer", "role", "quantity", "step"]
    assert "w=512" in table and "grows" in table and len(table.splitlines()) == 1 + len(sp.rows)
    data = json.loads(json.dumps(sp.to_dict()))
    assert len(data["rows"]) == len(sp.rows) and "w64-dNone-s0" in data["losses"]
    path = sp.plot(tmp_path / "fig" / "coord.png", title="SP")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_ticks_are_the_widths(sp_and_mup, tmp_path, monkeypatch):
    # the x axis is labeled at the measured widths only (matplotlib's default minor labels
    # 3x10^2, 4x10^2, ... overlapped on a 64..1024 axis)
    from matplotlib.figure import Figure

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: drawn.append(fig))
    sp, _ = sp_and_mup
    sp.plot(tmp_path / "coord.png")
    (fig,) = drawn
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(w) for w in WIDTHS]
        assert list(ax.get_xticks(minor=True)) == []


@pytest.fixture(scope="module")
def library_sp_and_mup(mnist_batches):
    # the same MLP under initlab's own parameterizations (initlab.parameterize.parametrize)
    return {
        name: coord_check(mlp_builder(name, 49, 10, base_width=BASE), WIDTHS, mnist_batches)
        for name in ("sp", "mup")
    }


def test_library_parameterizations_pass_check_a(library_sp_and_mup):
    # Measured (seeds 0..2, steps 1..3): SP hidden slope 0.79..0.81 (stderr 0.03..0.04), SP
    # readout 0.97..1.01; muP every layer within 0.05 of 0 (stderr <= 0.09, the readout's
    # activation at step 0 the noisiest). Thresholds 0.5 and 0.15 as in the test above.
    sp, mup = library_sp_and_mup["sp"], library_sp_and_mup["mup"]
    for step in (1, 2, 3):
        (row,) = sp.select(role="hidden", quantity="change", step=step)
        assert row.slope >= 0.5, sp.table()
    assert all(r.verdict == "stable" for r in mup.rows), mup.table()
    assert all(abs(r.slope) <= 0.15 for r in mup.rows)


def test_mlp_builder_builds_what_it_says():
    build = mlp_builder("mup", 5, 3, base_width=8, hidden_layers=3, optimizer="sgd", lr=0.5)
    model, optimizer, loss_fn = build(32, 0)
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(32, 5), (32, 32), (32, 32), (3, 32)]
    assert isinstance(optimizer, torch.optim.SGD) and loss_fn is F.cross_entropy
    # muP with SGD scales the learning rate per group: more than one rate, all from lr = 0.5
    assert len({g["lr"] for g in optimizer.param_groups}) > 1
    with pytest.raises(ArgumentError, match=r"optimizer must be one of \['adam', 'adamw', 'sgd'\]"):
        mlp_builder("mup", 5, 3, optimizer="rmsprop")
    with pytest.raises(ArgumentError, match="lr must be > 0; got lr=0"):
        mlp_builder("mup", 5, 3, lr=0)


# ----------------------------------------------------------------------------- depths


def test_depths_are_passed_to_the_builder_and_fitted_each():
    seen = []

    def build(width, depth, seed):
        seen.append((width, depth, seed))
        torch.manual_seed(seed)
        model = nn.Sequential(*[nn.Linear(width if i else 4, width) for i in range(depth)])
        return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda o, y: o.pow(2).mean()

    batch = (torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(8))
    check = coord_check(build, [8, 16], batch, steps=(1,), seeds=(0,), depths=(1, 2))
    assert sorted(seen) == [(8, 1, 0), (8, 2, 0), (16, 1, 0), (16, 2, 0)]
    assert {(r.depth, r.layer) for r in check.rows} == {(1, "0"), (2, "0"), (2, "1")}
    assert "depth" in check.table().splitlines()[0]


class _Attention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Linear(3, width)
        self.attn = nn.MultiheadAttention(width, 1, batch_first=True)

    def forward(self, x):
        h = self.embed(x)
        return self.attn(h, h, h, need_weights=False)[0].sum(1)


def test_default_layers_skip_modules_the_forward_never_calls():
    # nn.MultiheadAttention reads out_proj's weight without calling it: by default it is left
    # out (the attention module itself is recorded); named explicitly, it is an error.
    def build(width, seed):
        torch.manual_seed(seed)
        model = _Attention(width)
        return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda o, y: o.sum()

    batch = (torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(2))
    check = coord_check(build, [8, 16], batch, steps=(1,), seeds=(0,))
    rows = check.select(quantity="activation")
    assert [(r.layer, r.role) for r in rows] == [("embed", "input"), ("attn", "hidden")]
    with pytest.raises(ArgumentError, match=r"\['attn.out_proj'\] gave no tensor output"):
        coord_check(build, [8, 16], batch, steps=(1,), seeds=(0,), layers=["attn.out_proj"])


def _deep_readout(width: int, depth: int, seed: int):
    # As _summing_readout_any_width with W = depth / w: the output at step 0 is `depth` (slope 1
    # against depth), its gradient does not involve W, so the change after t steps is
    # t * ETA * BATCH * w at every depth (slope 0).
    model, optimizer, loss = _summing_readout_any_width(width, seed)
    with torch.no_grad():
        model[1].weight.mul_(depth)
    return model, optimizer, loss


def test_against_depth_by_hand():
    batch = (torch.ones(BATCH, 64), torch.zeros(BATCH))
    check = coord_check(
        _deep_readout, [16, 64], batch, steps=(2,), seeds=(0, 1), depths=(1, 2, 4), layers=["1"]
    )
    act, change = check.against_depth()  # at the largest width, 64
    assert (act.quantity, act.width, act.depths) == ("activation", 64, (1, 2, 4))
    assert act.values == pytest.approx([1.0, 2.0, 4.0], rel=1e-6)
    assert act.slope == pytest.approx(1.0, abs=1e-6) and act.verdict == "grows"
    assert change.values == pytest.approx([2 * ETA * BATCH * 64] * 3, rel=1e-5)
    assert change.slope == pytest.approx(0.0, abs=1e-6) and change.verdict == "stable"
    (_, narrow) = check.against_depth(16)
    assert narrow.values == pytest.approx([2 * ETA * BATCH * 16] * 3, rel=1e-5)
    with pytest.raises(ArgumentError, match=r"width must be one of the widths run \[16, 64\]"):
        check.against_depth(32)
    flat = coord_check(_summing_readout_any_width, [8, 16], batch, steps=(1,), seeds=(0,))
    with pytest.raises(ArgumentError, match="needs at least 2 depths"):
        flat.against_depth()


# ----------------------------------------------------------------------------- bad input


def _tiny(width, seed):
    model = nn.Linear(3, width)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda o, y: o.sum()


BATCH3 = (torch.ones(2, 3), torch.zeros(2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": [8]}, r"at least 2 distinct widths; got widths=\[8\]"),
        ({"widths": [8, 0]}, "widths must hold positive ints"),
        ({"steps": (0,)}, "steps must hold positive ints"),
        ({"seeds": ()}, "seeds must be a non-empty sequence of ints"),
        ({"batches": []}, "batches must hold at least one"),
        ({"layers": ["nope"]}, r"\['nope'\] not found"),
        ({"grows_above": -0.2}, "shrinks_below=-0.15 must not exceed grows_above=-0.2"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"widths": [8, 16], "batches": BATCH3, **kwargs}
    with pytest.raises(ArgumentError, match=match) as info:
        coord_check(_tiny, args.pop("widths"), args.pop("batches"), **args)
    assert info.value.argument in match or info.value.argument in kwargs


def test_a_builder_that_returns_something_else_is_refused():
    with pytest.raises(TypeError, match=r"must return \(model, optimizer, loss_fn\)"):
        coord_check(lambda w, s: nn.Linear(3, w), [8, 16], BATCH3)
    with pytest.raises(TypeError, match="build must be a callable"):
        coord_check("mlp", [8, 16], BATCH3)


class _OneUnused(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.used, self.unused = nn.Linear(3, width), nn.Linear(2, 2)

    def forward(self, x):
        return self.used(x)


def test_a_layer_that_is_never_called_is_named():
    def build(width, seed):
        model = _OneUnused(width)
        return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda o, y: o.sum()

    with pytest.raises(ArgumentError, match=r"\['unused'\] gave no tensor output"):
        coord_check(build, [8, 16], BATCH3, layers=["used", "unused"])
    assert {r.layer for r in coord_check(build, [8, 16], BATCH3).rows} == {"used"}
