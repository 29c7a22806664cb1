"""Fixup: the paper's rules exactly, the residual-branch protocol, and its effect at init."""

import math

import pytest
import torch
from torch import nn

from initlab.datadriven import fixup_
from initlab.diagnostics import diagnose
from initlab.schemes.registry import initialize
from initlab.zoo.models import MLP
from initlab.zoo.residual import ResidualMLP


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_rules_of_the_paper():
    model = ResidualMLP(depth=8, width=64)
    report = fixup_(model, generator=_gen())
    assert report.blocks == 8 and report.branch_layers == 2
    assert report.scale == 8 ** (-1 / 2)  # L^(-1/(2m-2)) with m = 2
    assert report.zeroed[-1] == "head.weight" and report.zeroed[0] == "blocks.0.fc2.weight"
    for block in model.blocks:
        assert not block.fc2.weight.any() and not block.fc2.bias.any()
        assert not block.fc1.bias.any()
        assert all(s.item() == 0.0 for s in block.branch_scalars)
    assert not model.head.weight.any() and not model.head.bias.any()
    # fc1: He N(0, 2 / fan_in) times the scale. Pooled over 8 blocks, n = 8 * 64 * 64 = 32768
    # draws; a normal sample std has relative sd 0.707 / sqrt(n): 5 sigma is 2 %.
    w = torch.cat([b.fc1.weight.flatten() for b in model.blocks])
    sigma = math.sqrt(2 / 64) * 8 ** (-1 / 2)
    assert abs(w.std().item() / sigma - 1) <= 5 * 0.707 / math.sqrt(w.numel())


def test_blocks_start_as_identity():
    model = ResidualMLP(depth=6, width=32)
    fixup_(model, generator=_gen())
    x = torch.rand(16, 784)
    with torch.no_grad():
        h = model.stem(x)  # post-ReLU, >= 0, so relu(h + 0) == h
        assert torch.equal(model.blocks(h), h)
        assert not model(x).any()  # the zeroed head gives zero logits


class _ThreeLayerBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(3))

    def residual_branch(self):
        return list(self.layers)

    def forward(self, x):
        out = x
        for layer in self.layers:
            out = torch.relu(layer(out))
        return x + out


def test_protocol_with_three_layer_branches():
    model = nn.Sequential(*(_ThreeLayerBlock(16) for _ in range(16)), nn.Linear(16, 2))
    report = fixup_(model, generator=_gen())
    assert report.branch_layers == 3 and report.scale == pytest.approx(16 ** (-1 / 4))
    assert not model[0].layers[2].weight.any() and model[0].layers[1].weight.any()


def test_zero_norm_variant():
    model = ResidualMLP(depth=3, width=8, norm="batch")
    before = model.blocks[0].fc2.weight.clone()
    report = fixup_(model, variant="zero_norm")
    assert report.zeroed == tuple(f"blocks.{i}.norm2.weight" for i in range(3))
    assert all(not b.norm2.weight.any() and b.norm1.weight.all() for b in model.blocks)
    assert torch.equal(model.blocks[0].fc2.weight, before)  # nothing else touched


def test_he_explodes_where_fixup_does_not():
    x = torch.rand(64, 784)
    he = initialize(ResidualMLP(depth=50, width=64), "kaiming_normal", generator=_gen())
    assert "exploding_activations" in [v.code for v in diagnose(he, x).verdicts]
    fixed = initialize(ResidualMLP(depth=50, width=64), "fixup", generator=_gen())
    # Healthy, with the gradient judged too: the zero head blocks the backward signal at step 0
    # by design, and the zeroed last branch layers add into the residual stream, so neither is
    # reported as vanishing gradients or as unbroken symmetry.
    d = diagnose(fixed, (x, torch.randint(0, 10, (64,))), loss_fn=nn.functional.cross_entropy)
    assert [v.code for v in d.verdicts] == ["healthy"]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="found no residual block"):
        initialize(MLP(depth=2, width=8), "fixup", generator=_gen())
    one_layer = nn.Sequential(_ThreeLayerBlock(4), nn.Linear(4, 2))
    one_layer[0].residual_branch = lambda: [one_layer[0].layers[0]]
    with pytest.raises(ValueError, match=r"same number m >= 2 of weight layers.*\{'0': 1\}"):
        fixup_(one_layer)
    with pytest.raises(ValueError, match=r"variant must be one of .*did you mean 'fixup'"):
        fixup_(ResidualMLP(depth=1, width=4), variant="fixpu")
    with pytest.raises(ValueError, match=r"head must be one of .*did you mean 'head'"):
        fixup_(ResidualMLP(depth=1, width=4), head="haed")
    with pytest.raises(ValueError, match="block 'blocks.0' has none"):
        fixup_(ResidualMLP(depth=1, width=4), variant="zero_norm")


class T5LayerNorm(nn.Module):
    """A third-party norm (Hugging Face's T5 RMS norm), known as a norm by its class name."""

    def __init__(self, width):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class _NormedBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.norm = T5LayerNorm(width)

    def residual_branch(self):
        return [self.fc1, self.fc2, self.norm]

    def forward(self, x):
        return x + self.norm(self.fc2(torch.relu(self.fc1(x))))


def test_zero_norm_finds_norms_by_the_one_norm_definition():
    # initlab.introspect.kinds.is_norm: PyTorch's norm classes and third-party ones by name
    model = nn.Sequential(_NormedBlock(8), _NormedBlock(8), nn.Linear(8, 2))
    report = fixup_(model, variant="zero_norm")
    assert report.zeroed == ("0.norm.weight", "1.norm.weight")
    assert not model[0].norm.weight.any() and model[0].fc2.weight.any()
