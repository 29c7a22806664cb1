"""Peer check: initlab's muP for an MLP equals what the ``mup`` package
(1.0.0, Yang et al. 2022's reference code) produces for the same model after its manual
changes (``MuReadout`` as the output layer, ``set_base_shapes``, ``MuAdam``/``MuAdamW``/
``MuSGD``): per parameter learning rate and weight decay, init scale and the output
multiplier. initlab reads the unchanged zoo MLP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.parameterize import parametrize
from initlab.policy import plan
from initlab.zoo.models import build_model

mup = pytest.importorskip("mup")

BASE, WIDTH, DELTA = 32, 128, 48
LR, WD = 1e-3, 0.01


class MuMLP(nn.Module):
    """The zoo MLP (784 -> w -> w -> 10, ReLU; the same parameter names) the way ``mup``'s
    README asks for it: the output layer a ``MuReadout``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Sequential(nn.Linear(784, width), nn.ReLU()),
            nn.Sequential(nn.Linear(width, width), nn.ReLU()),
        )
        self.head = mup.MuReadout(width, 10)

    def forward(self, x):
        return self.head(self.hidden(x.reshape(x.shape[0], 784)))


def mup_model(seed: int = 0) -> MuMLP:
    torch.manual_seed(seed)
    model = MuMLP(WIDTH)
    # base and delta only lend their shapes (mup reads them), as in mup's README
    return mup.set_base_shapes(model, MuMLP(BASE), delta=MuMLP(DELTA))


def zoo(width: int) -> nn.Module:
    return build_model("mlp", depth=2, width=width)


def initlab_mup(optimizer: str = "adam"):
    return parametrize(zoo(WIDTH), "mup", base=zoo(BASE).to("meta"), optimizer=optimizer,
                       policy="torch")  # fmt: skip


def per_name(model: nn.Module, groups) -> dict[str, tuple[float, float]]:
    """Parameter name -> (lr, weight_decay) of the group that holds it."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


@pytest.mark.parametrize(
    ("optimizer", "mu_optimizer"),
    [("adam", "MuAdam"), ("adamw", "MuAdamW"), ("sgd", "MuSGD")],
)
def test_learning_rate_and_weight_decay_per_parameter_equal_mups(optimizer, mu_optimizer):
    model = mup_model()
    theirs = per_name(model, getattr(mup, mu_optimizer)(model.parameters(), lr=LR,
                                                         weight_decay=WD).param_groups)  # fmt: skip
    p = initlab_mup(optimizer)
    ours = per_name(p.model, p.param_groups(lr=LR, weight_decay=WD))
    assert ours.keys() == theirs.keys()
    for name, (lr, wd) in theirs.items():
        # the same products of the same width ratios (powers of two): equal, to rounding
        assert ours[name][0] == pytest.approx(lr, rel=1e-12), name
        assert ours[name][1] == pytest.approx(wd, rel=1e-12), name
    # and they are not all the same (the check compares something)
    assert len({v for v in theirs.values()}) > 1


def test_init_scale_equals_mups_rescaling_of_the_default_init():
    # mup draws PyTorch's default init, then set_base_shapes multiplies the readout's weight
    # and bias, and every hidden bias, by sqrt(fan-in width multiplier). Drawn from one seed,
    # the mup model divided by a plain model of the same seed is that factor per parameter;
    # initlab's factor is its planned std over the torch policy's std at the model's width.
    torch.manual_seed(0)
    plain = MuMLP(WIDTH)
    mu = mup_model(seed=0)
    p = initlab_mup()
    sp = plan(zoo(WIDTH), "torch")
    for name, theirs in mu.named_parameters():
        mine = plain.get_parameter(name)
        factor = (theirs / mine).detach()
        assert torch.allclose(factor, factor.flatten()[0].expand_as(factor)), name
        ours = p[name].init_std / sp[name].std
        assert ours == pytest.approx(factor.flatten()[0].item(), rel=1e-6), name
    assert p["head.weight"].init_std / sp["head.weight"].std == pytest.approx(2.0)  # sqrt(4)


def test_output_multiplier_equals_mureadouts():
    mu = mup_model(seed=1)
    p = initlab_mup()
    model = p.model
    model.load_state_dict(mu.state_dict())  # the same weights, in the unchanged zoo MLP
    p.attach()
    x = torch.randn(16, 784, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x), mu(x), rtol=0, atol=1e-6)
        p.remove()
        assert not torch.allclose(model(x), mu(x), atol=1e-3)  # without it: SP's readout
    assert p["head.weight"].multiplier == 1 / mu.head.width_mult()
