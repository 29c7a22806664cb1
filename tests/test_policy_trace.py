"""Finding the activation after each layer: traced (module and functional calls) and structural."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.introspect.activations import Activation, from_module
from initlab.policy import analyze


class Functional(nn.Module):
    """Every activation written as a function call, in a custom forward."""

    def __init__(self):
        super().__init__()
        self.names = ["relu", "tanh", "leaky", "silu", "quick", "gelu", "gelu_tanh", "mish", "selu"]
        self.names.append("out")
        self.fc = nn.ModuleDict({n: nn.Linear(8, 8) for n in self.names})

    def forward(self, x):
        f = self.fc
        x = F.relu(f["relu"](x))
        x = torch.tanh(f["tanh"](x))
        x = F.leaky_relu(f["leaky"](x), 0.2)
        h = f["silu"](x)
        x = h * torch.sigmoid(h)  # SiLU written by hand
        h = f["quick"](x)
        x = h * torch.sigmoid(1.702 * h)  # QuickGELU: a swish
        x = F.gelu(f["gelu"](x))
        h = f["gelu_tanh"](x)  # GPT-2's hand-written tanh GELU
        x = 0.5 * h * (1.0 + torch.tanh(0.7978845608 * (h + 0.044715 * torch.pow(h, 3.0))))
        h = f["mish"](x)
        x = h * torch.tanh(F.softplus(h))  # Mish written by hand
        x = torch.selu(f["selu"](x))
        x = x.relu().neg().neg()  # a Tensor method on an activation output: belongs to no layer
        return f["out"](x)


def test_functional_activations_are_traced_in_execution_order():
    ctx = analyze(Functional(), torch.randn(4, 8))
    acts = {n.removeprefix("fc."): c.activation for n, c in ctx.layers.items()}
    assert ctx.source == "trace"
    assert acts == {
        "relu": Activation("relu"),
        "tanh": Activation("tanh"),
        "leaky": Activation("leaky_relu", 0.2),
        "silu": Activation("silu"),
        "quick": Activation("silu"),
        "gelu": Activation("gelu", "none"),
        "gelu_tanh": Activation("gelu", "tanh"),
        "mish": Activation("mish"),
        "selu": Activation("selu"),
        "out": None,
    }
    assert [n for n, c in ctx.layers.items() if c.is_output] == ["fc.out"]


class Branches(nn.Module):
    """Two branches computed before either activation: order alone would get this wrong."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        return self.head(torch.relu(a) * b.sigmoid())  # a function and a Tensor method


def test_dataflow_assigns_each_branch_its_own_activation():
    ctx = analyze(Branches(), torch.randn(3, 4))
    assert ctx.of("a").activation == Activation("relu")
    assert ctx.of("b").activation == Activation("sigmoid")
    assert ctx.of("head").is_output


def test_structure_reads_sequential_order_skipping_norm_and_dropout():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8), nn.LeakyReLU(0.1), nn.Linear(8, 3),
    )  # fmt: skip
    ctx = analyze(net)
    assert ctx.source == "structure"
    assert ctx.of("0").activation == Activation("relu")
    assert ctx.of("5").activation == Activation("leaky_relu", 0.1)
    assert ctx.of("7").activation is None and ctx.of("7").is_output
    assert not ctx.of("0").is_output and not ctx.of("1").is_output  # a norm is never the output


def test_trace_does_not_change_the_model():
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 1)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    analyze(net, torch.randn(16, 3))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net[0]._forward_hooks and not net[0]._forward_pre_hooks


class Residual(nn.Module):
    def __init__(self, downsample: bool):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.down = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)) if downsample else None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out += x if self.down is None else self.down(x)
        return F.relu(out)


@pytest.mark.parametrize("downsample", [False, True])
def test_residual_branch_end_is_the_deeper_operand(downsample):
    ctx = analyze(nn.Sequential(Residual(downsample), Residual(False)), torch.randn(2, 4, 5, 5))
    ends = sorted(n for n, c in ctx.layers.items() if c.residual_end)
    # the branch ends in conv2 -> bn2 (a norm passes conv2 on); never the downsample path
    assert ends == ["0.bn2", "0.conv2", "1.bn2", "1.conv2"]
    assert ctx.n_residual == 2
    # the ReLU after bn2 and the add follows conv2 (a norm passes its input's layers on)
    assert ctx.of("0.conv2").activation == Activation("relu")
    assert ctx.of("0.conv1").activation == Activation("relu")


def test_an_example_input_that_does_not_run_is_an_error_not_a_fallback():
    # Before: a UserWarning and a plan read from the structure (initlab plan already refused).
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    before = net[0].weight.detach().clone()
    with pytest.raises(ValueError, match=r"example_input did not run through the model \(Runt"):
        analyze(net, torch.randn(2, 7))  # wrong width
    with pytest.raises(ValueError, match="example_input did not run") as info:
        initlab.init_model(net, example_input=torch.randn(2, 7), seed=0)
    assert isinstance(info.value.__cause__, RuntimeError)  # the model's own error, chained
    assert torch.equal(net[0].weight, before)  # nothing written


def test_third_party_activation_modules_by_class_name():
    class NewGELUActivation(nn.Module):  # as in Hugging Face transformers
        def forward(self, x):
            return 0.5 * x * (1 + torch.tanh(x))

    class QuickGELUActivation(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    assert from_module(NewGELUActivation()) == Activation("gelu")
    assert from_module(QuickGELUActivation()) == Activation("silu")
    assert from_module(nn.Linear(2, 2)) is None
    net = nn.Sequential(nn.Linear(2, 2), NewGELUActivation(), nn.Linear(2, 2))
    # the module is recorded as one activation; the tanh inside it is not seen separately
    assert analyze(net, torch.randn(1, 2)).of("0").activation == Activation("gelu")


def test_activation_gains():
    # He et al. 2015 Eq. 15: sqrt(2 / (1 + a^2))
    assert Activation("relu").gain() == pytest.approx(2**0.5, rel=1e-12)
    assert Activation("leaky_relu", 0.2).gain() == pytest.approx((2 / 1.04) ** 0.5, rel=1e-12)
    # 1 / sqrt(E[tanh(z)^2]) with E[tanh(z)^2] = 0.3942944 (numerical integration)
    assert Activation("tanh").gain() == pytest.approx(0.3942944**-0.5, rel=1e-5)
    assert Activation("selu").gain() == pytest.approx(1.0, abs=1e-4)


class FunctionalReLU(nn.Module):
    """Hidden layers whose activation is a function call: structure cannot see it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_no_activation_module_and_no_example_input_warns_once():
    # Before: "no activation: Xavier" on every hidden layer, silently.
    with pytest.warns(UserWarning, match="functional activations") as seen:
        p = initlab.plan(FunctionalReLU())
    assert len(seen) == 1
    assert "['fc1.weight', 'fc2.weight']" in str(seen[0].message)
    assert "pass example_input" in str(seen[0].message).lower()
    assert p["fc1.weight"].rule == "no activation: Xavier"  # the structural reading stands


@pytest.mark.parametrize(
    "build, kwargs",
    [
        (FunctionalReLU, {"example_input": torch.randn(2, 4)}),  # traced: F.relu is seen
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), {}),
        (lambda: nn.Sequential(nn.Linear(4, 2)), {}),  # no hidden layer
        (FunctionalReLU, {"policy": "torch"}),  # no rule of this preset reads activations
    ],
    ids=["traced", "relu_module", "single_layer", "torch_preset"],
)
def test_no_unseen_activation_warning_when_nothing_is_unseen(build, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        initlab.plan(build(), **kwargs)


@pytest.mark.parametrize(
    "act, shown",
    [(nn.GELU(), "gelu"), (nn.GELU(approximate="tanh"), "gelu(tanh)"), (nn.ELU(0.5), "elu(0.5)")],
)
def test_activation_column_prints_gelu_without_its_default_approximation(act, shown):
    # Before: "gelu(none)" for the exact GELU.
    p = initlab.plan(nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 2)))
    assert p["0.weight"].activation == shown
    assert f"  {shown}  " in p.table().splitlines()[1]
