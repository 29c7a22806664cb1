"""LSUV: per-layer target reached on real MNIST, hooks read the right tensor, state restored."""

import pytest
import torch
from torch import nn

from initlab import orthogonal_
from initlab.datadriven import lsuv_
from initlab.datasets.families import load_dataset


@pytest.fixture(scope="module")
def mnist_batch():
    images = load_dataset("mnist").test_images[:512]
    return images.reshape(512, 784).float() / 255.0  # pixels in [0, 1], as trained on


def _deep_mlp(depth, activation, width=64, inplace=False):
    layers = []
    for i in range(depth):
        layers += [
            nn.Linear(784 if i == 0 else width, width),
            activation(inplace=True) if inplace else activation(),
        ]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _output_stats(model, x):
    """(var, mean) of every Linear output, recomputed layer by layer without hooks."""
    stats = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, nn.Linear):
                stats.append((x.var(correction=0).item(), x.mean().item()))
    return stats


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
def test_every_layer_reaches_target_variance_on_mnist(mnist_batch, activation):
    model = _deep_mlp(20, activation)
    report = lsuv_(model, mnist_batch, generator=torch.Generator().manual_seed(0))
    stats = _output_stats(model, mnist_batch)
    assert len(stats) == len(report.layers) == 21
    for (var, mean), row in zip(stats, report.layers, strict=True):
        assert abs(var - 1.0) <= 0.1, row  # the paper's criterion, |Var - 1| <= Tol_var
        assert abs(mean) <= 1e-4  # bias shifted by the output mean (float32 rounding only)
        assert row.status == "converged" and row.std == pytest.approx(var**0.5, rel=1e-4)


def test_target_std_and_std_tolerance(mnist_batch):
    model = _deep_mlp(5, nn.Tanh)
    report = lsuv_(model, mnist_batch, target_std=0.5, tol=0.01, tol_on="std")
    for var, _ in _output_stats(model, mnist_batch):
        assert abs(var**0.5 / 0.5 - 1) <= 0.01
    assert report.to_dict()["tol_on"] == "std" and report.target_std == 0.5


def test_inplace_activation_after_the_hooked_layer(mnist_batch):
    # ReLU(inplace=True) overwrites the Linear's output right after the hook; statistics must be
    # those of the Linear's output (mean 0, var 1), not of the rectified tensor (mean > 0).
    model = _deep_mlp(3, nn.ReLU, inplace=True)
    report = lsuv_(model, mnist_batch, tol=0.01)
    with torch.no_grad():
        first = model[0](mnist_batch)
    assert abs(first.var(correction=0).item() - 1) <= 0.01
    assert abs(report.layers[0].mean) <= 1e-4 and abs(first.mean().item()) <= 1e-4


def test_zero_variance_layer_is_skipped_with_a_warning():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(0.3)  # constant output: variance exactly 0
    before = model[0].weight.clone()
    with pytest.warns(RuntimeWarning, match=r"layer '0' has output variance 0.0 .*skipped"):
        report = lsuv_(model, torch.randn(64, 8), orthogonal_preinit=False, correct_mean=False)
    assert report.layers[0].status == "zero_variance"
    assert torch.equal(model[0].weight, before)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_one_model_forward_and_few_layer_evaluations():
    # nn.Linear's output is linear in (weight, bias): the rescaled and shifted outputs are
    # computed from the hooked one, so each layer runs once, and so does the model.
    model = _deep_mlp(30, nn.ReLU)
    calls = {"model": 0, "layers": 0}
    model.register_forward_pre_hook(lambda *_: calls.__setitem__("model", calls["model"] + 1))
    originals = {}
    for m in model:
        if isinstance(m, nn.Linear):
            originals[m] = m.forward

            def counted(*a, _f=m.forward, **k):
                calls["layers"] += 1
                return _f(*a, **k)

            m.forward = counted
    report = lsuv_(model, torch.rand(128, 784))
    assert report.forward_passes == 1 and calls["model"] == 1
    assert calls["layers"] == 31
    assert all(r.iterations == 1 for r in report.layers)  # s * y has exactly the target std


def test_modes_global_rng_and_reproducibility():
    model = nn.Sequential(nn.Linear(784, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10))
    model.train()
    model[3].eval()  # a mixed mode must survive too
    x = torch.rand(64, 784)
    rng = torch.get_rng_state()
    lsuv_(model, x, train=True, generator=torch.Generator().manual_seed(1))  # dropout draws
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == [True, True, True, True, False]
    again = nn.Sequential(nn.Linear(784, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10))
    for net in (model, again):  # biases are not pre-initialized: start both from zero
        nn.init.zeros_(net[0].bias), nn.init.zeros_(net[3].bias)
        lsuv_(net, x, generator=torch.Generator().manual_seed(1))
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_global_rng_untouched_by_orthogonal_preinit_without_generator():
    model = nn.Sequential(nn.Linear(20, 50), nn.Tanh(), nn.Linear(50, 5))
    x = torch.randn(256, 20)
    rng = torch.get_rng_state()
    lsuv_(model, x)  # generator=None: the pre-init draws from a fork of the global RNG
    assert torch.equal(torch.get_rng_state(), rng)
    # The fork starts at the caller's state: the pre-init equals orthogonal_ drawn from it.
    again = nn.Sequential(nn.Linear(20, 50), nn.Tanh(), nn.Linear(50, 5))  # draws: before
    expected = torch.empty(50, 20)
    torch.set_rng_state(rng)
    orthogonal_(expected, method="householder")
    torch.set_rng_state(rng)
    lsuv_(again, x, max_iter=1, tol=1e9)  # tol so wide that no layer is rescaled
    assert torch.equal(again[0].weight, expected)


def test_conv_layers_are_calibrated(mnist_batch):
    model = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3),
        nn.Flatten(), nn.Linear(8 * 24 * 24, 10),
    )  # fmt: skip
    report = lsuv_(model, (mnist_batch[:128], torch.zeros(128)))
    assert [r.name for r in report.layers] == ["1", "3", "5"]
    assert all(abs(r.std**2 - 1) <= 0.1 for r in report.layers)
    assert "converged" in report.table()


def test_errors_name_the_argument():
    model = nn.Sequential(nn.Linear(4, 4))
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"tol_on must be one of \['std', 'variance'\]; .*'std'"):
        lsuv_(model, x, tol_on="stdd")
    with pytest.raises(ValueError, match=r"tol must be a number > 0; got tol=-0.1"):
        lsuv_(model, x, tol=-0.1)
    with pytest.raises(ValueError, match=r"max_iter must be >= 1; got max_iter=0"):
        lsuv_(model, x, max_iter=0)
    with pytest.raises(TypeError, match=r"max_iter must be an int; got max_iter=2.0"):
        lsuv_(model, x, max_iter=2.0)
    with pytest.raises(TypeError, match="data must be a floating-point tensor.*int64"):
        lsuv_(model, torch.ones(8, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="found no layer"):
        lsuv_(nn.Sequential(nn.ReLU()), x)


class _Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        self.fc(x)
        raise RuntimeError("boom")


def test_hooks_removed_and_modes_restored_on_exceptions():
    model, x = _Boom(), torch.randn(16, 8)
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        lsuv_(model, x)
    assert not model.fc._forward_hooks and model.training and model.fc.training


class _SquashedLinear(nn.Linear):
    """A Linear whose output is tanh-squashed: |y| < 1, so an output std of 2 is unreachable."""

    def forward(self, x):
        return torch.tanh(super().forward(x))


def test_unreachable_target_stops_at_max_iter_with_a_warning():
    model = nn.Sequential(_SquashedLinear(16, 16))
    with pytest.warns(RuntimeWarning, match=r"layer '0' did not reach tol=0.1 in max_iter=4"):
        report = lsuv_(model, torch.randn(256, 16), target_std=2.0, max_iter=4)
    row = report.layers[0]
    assert row.status == "max_iter" and row.iterations == 4 and row.std < 1.0


class _CountedLinear(nn.Linear):
    """A subclass: its forward could be anything, so lsuv_ must re-run it after a rescaling."""


def test_subclass_layers_are_re_evaluated_and_stats_match_float64():
    # No bias shift after the last look at the output: the re-evaluated output after the one
    # rescaling is already final, so each of the 31 layers runs twice (hooked call + one
    # re-evaluation), never a third time.
    model = _deep_mlp(30, nn.ReLU)
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            model[i] = _CountedLinear(m.in_features, m.out_features)
    calls = []
    for m in model:
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda *_: calls.append(1))
            m.forward = lambda *a, _f=m.forward, **k: (calls.append(1), _f(*a, **k))[1]
    x = torch.rand(128, 784)
    report = lsuv_(model, x, correct_mean=False, generator=torch.Generator().manual_seed(0))
    hooked = 31  # the hook counts the 31 module calls; forward counts those plus re-evaluations
    assert len(calls) - hooked == 2 * 31
    # the reported std is that of each layer's final output, as a float64 reference computes it
    stats = _output_stats(model, x)
    for (var, _), row in zip(stats, report.layers, strict=True):
        assert row.std == pytest.approx(var**0.5, rel=1e-5)
    # a large mean and a constant output: no cancellation, and exactly zero variance
    from initlab.datadriven.lsuv import _moments

    y = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 0.01 + 1000.0
    var, mean = torch.var_mean(y.double(), correction=0)
    assert _moments(y) == pytest.approx((float(var), float(mean)), rel=1e-4)
    assert _moments(torch.full((64, 8), 0.3))[0] == 0.0


class _RecurrentAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.att = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h, _ = self.lstm(x)
        h, _ = self.att(h, h, h)  # calls out_proj's weight functionally: its hook never fires
        return self.head(h)


def test_weights_lsuv_leaves_alone_are_named_in_warnings():
    model = _RecurrentAttention()
    lstm_before = model.lstm.weight_hh_l0.clone()
    with pytest.warns(RuntimeWarning) as caught:
        report = lsuv_(model, torch.randn(32, 5, 8), generator=torch.Generator().manual_seed(0))
    messages = [str(w.message) for w in caught]
    assert any("recurrent modules keep their weights" in m and "['lstm']" in m for m in messages)
    assert any("1 layer(s) did not run" in m and "['att.out_proj']" in m for m in messages)
    assert [r.name for r in report.layers] == ["head"]
    assert torch.equal(model.lstm.weight_hh_l0, lstm_before)
    assert str(report) == report.table() and str(report).splitlines()[1].startswith("head")


# --- all or nothing ------------------------------------------------------------------------------


def _snapshot(model):
    """Every parameter and buffer: the tensor object and a copy of its bytes."""
    return {
        name: (t, t.detach().clone())
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }


def _assert_bitwise_unchanged(model, snapshot):
    now = dict([*model.named_parameters(), *model.named_buffers()])
    assert now.keys() == snapshot.keys()
    for name, (tensor, copy) in snapshot.items():
        assert now[name] is tensor, name  # the same tensor registered
        bits = tensor.detach().flatten().view(torch.uint8)  # bytes, so -0.0 and NaN count too
        assert torch.equal(bits, copy.flatten().view(torch.uint8)), name


class _FailsAfterTwoLayers(nn.Module):
    """Two Linear layers and a BatchNorm run (and are calibrated, the norm's statistics
    updated in train mode), then the forward raises before the third layer."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 4)

    def forward(self, x):
        self.fc2(torch.relu(self.bn(self.fc1(x))))
        raise RuntimeError("boom after fc2")


def test_a_forward_raising_partway_leaves_every_tensor_bitwise_unchanged():
    torch.manual_seed(0)
    model = _FailsAfterTwoLayers()
    with torch.no_grad():
        model.fc1.bias[0] = -0.0
        model.bn.running_mean.fill_(0.25)
    model.train()
    model.bn.eval()  # mixed modes survive
    snapshot = _snapshot(model)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    with pytest.raises(RuntimeError, match="boom after fc2") as error:
        lsuv_(model, torch.randn(64, 8), train=True, generator=generator)
    _assert_bitwise_unchanged(model, snapshot)  # before: fc1, fc2, fc3 and bn's buffers changed
    assert model.training and not model.bn.training and model.fc1.training
    assert torch.equal(generator.get_state(), state)  # a retry draws the same weights
    assert not any(m._forward_hooks for m in model.modules())
    notes = getattr(error.value, "__notes__", None)
    if notes is not None:  # Python >= 3.11
        assert notes == [
            "lsuv_ restored every parameter and buffer of the model to its value before the call"
        ]


def test_data_of_another_dtype_leaves_every_tensor_bitwise_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    snapshot = _snapshot(model)
    with pytest.raises(RuntimeError, match="dtype") as error:
        lsuv_(model, torch.randn(32, 8, dtype=torch.float64))  # float32 weights
    _assert_bitwise_unchanged(model, snapshot)  # before: both weights orthogonal
    notes = getattr(error.value, "__notes__", None)
    if notes is not None:
        assert notes[0].endswith(
            "before the call; data has dtype torch.float64, the calibrated weights torch.float32"
        )


def test_no_calibrated_layer_in_the_pass_leaves_the_weights():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return x * 2  # fc never runs

    torch.manual_seed(0)
    model = Skips()
    snapshot = _snapshot(model)
    with pytest.raises(ValueError, match="none of the calibrated layers ran"):
        lsuv_(model, torch.randn(16, 8))
    _assert_bitwise_unchanged(model, snapshot)  # before: fc's weight made orthogonal


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.full((16, 8), float("nan")), "data must be finite; got 128 NaN or inf of 128"),
        (torch.randn(0, 8), r"data must hold at least one example; got an input of shape \(0, 8\)"),
    ],
    ids=["nan", "empty"],
)
def test_unusable_data_is_an_error_before_any_write(data, message):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    snapshot = _snapshot(model)
    with pytest.raises(ValueError, match=message):
        lsuv_(model, data)
    _assert_bitwise_unchanged(model, snapshot)


def test_default_layer_types_are_linear_and_every_public_convolution():
    from initlab.datadriven.lsuv import DEFAULT_LAYER_TYPES

    calibrated = [
        nn.Linear, nn.LazyLinear,
        nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LazyConv1d, nn.LazyConv2d, nn.LazyConv3d,
        nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
        nn.LazyConvTranspose1d, nn.LazyConvTranspose2d, nn.LazyConvTranspose3d,
    ]  # fmt: skip
    others = [nn.Bilinear, nn.Embedding, nn.LSTM, nn.BatchNorm2d, nn.LayerNorm, nn.PReLU]
    assert [t for t in calibrated if not issubclass(t, DEFAULT_LAYER_TYPES)] == []
    assert [t for t in others if issubclass(t, DEFAULT_LAYER_TYPES)] == []


def test_transposed_and_1d_convolutions_are_calibrated():
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.Tanh(), nn.ConvTranspose1d(4, 4, 3, groups=2), nn.Tanh(),
        nn.Flatten(), nn.Linear(4 * 16, 3),
    )  # fmt: skip
    x = torch.randn(256, 2, 16, generator=torch.Generator().manual_seed(0))
    report = lsuv_(model, x, generator=torch.Generator().manual_seed(1))
    assert [r.name for r in report.layers] == ["0", "2", "5"]
    assert all(r.status == "converged" and abs(r.std**2 - 1) <= 0.1 for r in report.layers)
