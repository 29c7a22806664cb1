"""diagnose sees activations called as functions: rows, exact statistics, verdicts."""

import contextlib
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.diagnostics.diagnose import diagnose
from initlab.introspect.hooks import _denormals_flushed
from initlab.introspect.trace import ActivationWatch
from initlab.zoo.models import InitNet

CE = F.cross_entropy


def _codes(d):
    return [v.code for v in d.verdicts]


def _rows(d):
    return {r.name: r for r in d.layers}


def _rms(t):
    return t.double().pow(2).mean().sqrt().item()


def _images(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_initnet_with_a_huge_negative_bias_is_dead():
    net = InitNet()
    with torch.no_grad():
        net.fc1.bias.fill_(-100.0)
    # Pixels lie in [0, 1] and nn.Linear's default weights in +-1/sqrt(784) = +-1/28, so every
    # pre-activation is at most 784 * (1/28) * 1 - 100 = -72 < 0: all 128 units are dead.
    d = diagnose(net, _images(), loss_fn=CE)
    assert [(r.name, r.module_type, r.kind) for r in d.layers] == [
        ("fc1", "Linear", "weight"),
        ("fc1.relu", "functional", "activation"),
        ("fc2", "Linear", "weight"),
    ]
    relu = d.layers[1]
    assert relu.dead_fraction == 1.0 and relu.mean == 0.0 and relu.std == 0.0
    assert relu.saturated_fraction is None and relu.shape == (64, 128)
    dead = [v for v in d.verdicts if v.code == "dead_layers"]
    assert dead and dead[0].layers == ("fc1.relu",) and "worst fc1.relu: 100%" in dead[0].message


def test_initnet_at_its_seed_init_has_no_dead_verdict():
    torch.manual_seed(0)
    net = InitNet()
    d = diagnose(net, _images(), loss_fn=CE)
    relu = _rows(d)["fc1.relu"]
    x = _images()[0].reshape(64, 784)
    expected = torch.relu(net.fc1(x)).detach()
    assert relu.dead_fraction == float((expected == 0).all(dim=0).double().mean())
    assert relu.dead_fraction < 0.5 and "dead_layers" not in _codes(d)


class _Saturating(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.fc1, self.fc2 = fn, nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(self.fn(self.fc1(x)))


@pytest.mark.parametrize(("fn", "name"), [(torch.tanh, "tanh"), (torch.sigmoid, "sigmoid")])
def test_functional_tanh_and_sigmoid_with_huge_weights_saturate(fn, name):
    model = _Saturating(fn)
    with torch.no_grad():
        model.fc1.weight.mul_(100.0)  # pre-activation std ~ 100 * 0.14: almost all saturate
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(0))
    d = diagnose(model, x)
    y = fn(model.fc1(x)).detach()
    bounds = (y.abs() > 0.99) if name == "tanh" else ((y < 0.01) | (y > 0.99))
    row = _rows(d)[f"fc1.{name}"]
    assert row.saturated_fraction == float(bounds.double().mean()) > 0.5
    assert row.dead_fraction is None
    saturated = [v for v in d.verdicts if v.code == "saturated_layers"]
    assert saturated and saturated[0].layers == (f"fc1.{name}",)


def _module_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32),
        nn.Sigmoid(), nn.Linear(32, 32), nn.ReLU6(), nn.Linear(32, 32), nn.GELU(),
        nn.Linear(32, 10),
    )  # fmt: skip
    with torch.no_grad():
        model[0].bias.fill_(-3.0)  # a dead ReLU, so that verdicts are not all "healthy"
    return model


def test_module_activation_rows_and_verdicts_are_unchanged(monkeypatch):
    model = _module_mlp()
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    d = diagnose(model, (x, y), loss_fn=CE)
    assert [r.name for r in d.layers] == [str(i) for i in range(11)]
    assert "functional" not in {r.module_type for r in d.layers}
    # Without the functional watch (the diagnosis before it existed): the same, bit for bit.
    monkeypatch.setattr(ActivationWatch, "watching", lambda self, x: contextlib.nullcontext())
    monkeypatch.setattr(ActivationWatch, "paused", lambda self: contextlib.nullcontext())
    before = diagnose(model, (x, y), loss_fn=CE)
    assert d.table() == before.table()
    assert json.dumps(d.to_dict()) == json.dumps(before.to_dict())
    dead = [v for v in d.verdicts if v.code == "dead_layers"]
    assert dead and dead[0].layers == ("1", "7")  # the ReLU and the ReLU6


class _EveryForm(nn.Module):
    """One branch per way of writing a ReLU; branch k has k of its 8 units dead."""

    forms = {
        "a": lambda h: F.relu(h),
        "b": lambda h: torch.relu(h),
        "c": lambda h: h.relu(),
        "d": lambda h: h.relu_(),
        "e": lambda h: F.relu(h, inplace=True),
    }

    def __init__(self):
        super().__init__()
        self.branch = nn.ModuleDict({k: nn.Linear(8, 8) for k in self.forms})
        self.head = nn.Linear(8 * len(self.forms), 3)
        with torch.no_grad():
            for k, layer in enumerate(self.branch.values(), start=1):
                # inputs in [0, 1], |w| <= 1/sqrt(8): |w . x| <= 8 / sqrt(8) = 2.83 < 100
                layer.bias.fill_(100.0)
                layer.bias[:k] = -100.0

    def forward(self, x):
        hs = [self.forms[k](self.branch[k](x)) for k in self.forms]
        return self.head(torch.cat(hs, dim=1))


def test_every_way_of_calling_relu_is_recorded_with_exact_statistics():
    torch.manual_seed(0)
    model = _EveryForm()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    pre = {k: layer(x) for k, layer in model.branch.items()}
    hs = {k: torch.relu(h) for k, h in pre.items()}
    for t in (*pre.values(), *hs.values()):
        t.retain_grad()
    CE(model.head(torch.cat(list(hs.values()), dim=1)), y).backward()
    model.zero_grad(set_to_none=True)
    d = diagnose(model, (x, y), loss_fn=CE)
    names = [f"branch.{k}" for k in model.forms]
    assert [r.name for r in d.layers] == [n for k in names for n in (k, f"{k}.relu")] + ["head"]
    rows = _rows(d)
    for k, count in zip(model.forms, range(1, 6), strict=True):
        relu, layer, h = rows[f"branch.{k}.relu"], rows[f"branch.{k}"], hs[k].detach().double()
        assert relu.dead_fraction == count / 8
        assert relu.mean == pytest.approx(h.mean().item(), rel=1e-12)
        assert relu.std == pytest.approx(h.std(correction=0).item(), rel=1e-12)
        # The gradient w.r.t. the ReLU's output, and (on the layer's row) w.r.t. its input:
        # for the in-place forms too, the layer's hook ran before the tensor was rectified.
        assert relu.grad_rms == pytest.approx(_rms(hs[k].grad), rel=1e-6)
        assert layer.grad_rms == pytest.approx(_rms(pre[k].grad), rel=1e-6)
        assert layer.mean == pytest.approx(pre[k].double().mean().item(), rel=1e-12)
    assert model.branch.d.weight.grad is None  # restored


class _Twice(nn.Module):
    """One layer and one activation called twice; a second activation on an activation."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.fc(torch.tanh(self.fc(x))))
        return self.head(torch.relu(torch.relu(h)))


def test_an_activation_called_twice_gets_two_rows():
    torch.manual_seed(0)
    model = _Twice()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    d = diagnose(model, x, loss_fn=lambda out: out.pow(2).mean())
    # relu(relu(.)) follows an activation: its input comes from no layer.
    assert [r.name for r in d.layers] == [
        "fc", "fc.tanh", "fc#2", "fc.tanh#2", "relu", "relu#2", "head",
    ]  # fmt: skip
    t1 = torch.tanh(model.fc(x))
    t2 = torch.tanh(model.fc(t1))
    expected = [t1, t2, torch.relu(t2)]
    for row, y in zip([d.layers[1], d.layers[3], d.layers[5]], expected, strict=True):
        assert row.std == pytest.approx(y.detach().double().std(correction=0).item(), rel=1e-12)
        assert row.grad_rms is not None and row.grad_rms > 0


class _Composite(nn.Module):
    """Hand-written SiLU and GELU, and a sigmoid gate (a real sigmoid) of another branch."""

    def __init__(self):
        super().__init__()
        self.s, self.g = nn.Linear(8, 8), nn.Linear(8, 8)
        self.a, self.b, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def hidden(self, x):
        h = self.s(x)
        x = h * torch.sigmoid(h)
        h = self.g(x)
        return 0.5 * h * (1.0 + torch.tanh(0.7978845608 * (h + 0.044715 * torch.pow(h, 3.0))))

    def forward(self, x):
        x = self.hidden(x)
        return self.head(self.a(x) * torch.sigmoid(self.b(x)))


def test_hand_written_silu_is_one_row_and_gelu_none():
    torch.manual_seed(0)
    model = _Composite()
    with torch.no_grad():
        for layer in (model.s, model.g):
            layer.weight.mul_(100.0)  # their sigmoid/tanh saturate: no false "saturated" rows
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    d = diagnose(model, x, loss_fn=lambda out: out.pow(2).mean())
    assert [r.name for r in d.layers] == ["s", "s.silu", "g", "a", "b", "b.sigmoid", "head"]
    silu = d.layers[1]
    h = model.s(x).detach()
    expected = (h * torch.sigmoid(h)).double()
    assert silu.mean == pytest.approx(expected.mean().item(), rel=1e-12)
    assert silu.std == pytest.approx(expected.std(correction=0).item(), rel=1e-12)
    assert silu.saturated_fraction is None and silu.grad_rms > 0
    gate = torch.sigmoid(model.b(model.hidden(x))).detach()
    assert d.layers[5].saturated_fraction == float(((gate < 0.01) | (gate > 0.99)).double().mean())
    assert ("saturated_layers" in _codes(d)) == (d.layers[5].saturated_fraction > 0.5)


def test_signal_verdict_reads_functional_activations():
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.ModuleList(nn.Linear(64, 64) for _ in range(10))
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            for layer in self.fc:
                x = torch.tanh(layer(x))
            return self.head(x)

    model = Deep()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.fc:
            layer.weight.normal_(0.0, 0.01, generator=g)  # 0.01 * sqrt(64) = 0.08 per layer
            layer.bias.zero_()
    d = diagnose(model, torch.randn(128, 64, generator=g))
    assert [r.name for r in d.signal()] == [f"fc.{i}.tanh" for i in range(10)]
    assert _codes(d) == ["vanishing_activations"]
    assert "from fc.0.tanh to fc.9.tanh" in d.verdicts[0].message


class _FunctionalBoom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        torch.relu(self.fc(x))
        raise RuntimeError("boom")


def test_hooks_and_mode_removed_on_exceptions():
    model, x = _FunctionalBoom(), torch.randn(4, 4)
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"):
        diagnose(model, x)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert torch._C._len_torch_function_stack() == 0  # the TorchFunctionMode is gone
    assert torch.equal(torch.get_rng_state(), rng) and not _denormals_flushed()


class _FunctionalBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.bn, self.head = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(F.dropout(F.relu(self.bn(self.fc(x))), 0.5, self.training))


def test_functional_model_left_unchanged():
    torch.manual_seed(0)
    model = _FunctionalBN().train()
    model.head.eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    CE(model(x), y).backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    d = diagnose(model, (x, y), loss_fn=CE)
    # a norm passes its input's layer on: the ReLU after bn(fc(x)) is named after fc
    assert [r.name for r in d.layers] == ["fc", "bn", "fc.relu", "head"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    for n, p in model.named_parameters():
        assert p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1])
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert math.isfinite(d.loss)


class _Watched(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.ModuleList(nn.Linear(4, 4) for _ in range(6))
        self.act = nn.ReLU()

    def forward(self, x):
        f = self.fc
        x = F.relu(f[0](x))
        h = f[1](x)
        x = h * torch.sigmoid(1.702 * h)  # QuickGELU, a swish
        h = f[2](x)
        x = h * torch.tanh(F.softplus(h))  # Mish
        h = f[3](x)
        x = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # exact GELU: not reported
        x = F.leaky_relu(f[4](x), 0.2)
        return self.act(f[5](x))  # a module: diagnose's hooks see it, the watch does not


def test_activation_watch_reports_calls_and_composites():
    calls = []
    model, x = _Watched(), torch.randn(3, 4)
    with ActivationWatch(model, calls.append).watching(x):
        out = model(x)
    raw = [(c.index, c.activation.name, c.layers, c.replaces) for c in calls]
    assert raw == [
        (0, "relu", ("fc.0",), ()),
        (1, "sigmoid", ("fc.1",), ()),  # its input 1.702 * h is still fc.1's output
        (2, "silu", ("fc.1",), (1,)),
        (3, "softplus", ("fc.2",), ()),
        (4, "tanh", (), ()),  # follows an activation: its input comes from no layer
        (5, "mish", ("fc.2",), (3, 4)),
        (6, "leaky_relu", ("fc.4",), ()),
    ]
    h = model.fc[1](F.relu(model.fc[0](x)))
    assert torch.equal(calls[2].output, h * torch.sigmoid(1.702 * h))
    assert calls[6].activation.param == 0.2 and calls[6].output.shape == out.shape
    assert torch._C._len_torch_function_stack() == 0 and not model.fc[0]._forward_hooks
