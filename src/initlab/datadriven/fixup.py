r"""Fixup: train deep residual networks without normalization, by initialization alone.

Source: Zhang, Dauphin, Ma, "Fixup Initialization: Residual Learning Without Normalization"
(ICLR 2019), Sec. 3: with ``L`` residual branches of ``m`` weight layers each,

1. initialize the classification layer and the last layer of each residual branch to 0;
2. initialize every other layer by a standard method (He et al. 2015) and scale the weight
   layers inside residual branches by ``L ** (-1 / (2m - 2))``;
3. add a scalar multiplier (initialized at 1) in every branch and a scalar bias (initialized at
   0) before each weight layer and activation.

Rule 3 is architecture: blocks that want it own those scalars and declare them (below).

For networks *with* normalization the analogous trick is to zero the scale (gamma) of the last
normalization layer of each residual branch (Goyal et al., "Accurate, Large Minibatch SGD:
Training ImageNet in 1 Hour" (2017), Sec. 5.1): ``fixup_(..., variant="zero_norm")``.

The residual-branch protocol: a module is a residual block if it has a method
``residual_branch()`` returning the modules of its residual branch in forward order (the weight
layers, Linear or Conv as :data:`initlab.introspect.kinds.WEIGHT_TYPES` lists them, and any
normalization layers, as :func:`initlab.introspect.kinds.is_norm` recognizes them). It may
also have an attribute ``branch_scalars``: an iterable of the scalar parameters of rule 3, all
set to 0 (biases, and the multiplier written as ``1 + s``, which keeps it at 1 under any bias
rule).
``initlab.zoo.residual.ResidualMLP`` implements the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from initlab._checks import one_of
from initlab.initializers import kaiming_normal_, zeros_
from initlab.introspect.kinds import WEIGHT_TYPES, is_norm

__all__ = ["FixupReport", "fixup_", "residual_blocks"]


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return ``(name, block)`` for every submodule that declares ``residual_branch()``."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if callable(getattr(m, "residual_branch", None))
    ]


@dataclass(frozen=True)
class FixupReport:
    """What :func:`fixup_` did.

    Attributes:
        variant: ``"fixup"`` or ``"zero_norm"``.
        blocks: number ``L`` of residual blocks found.
        branch_layers: weight layers ``m`` per branch (fixup only, else 0).
        scale: the factor ``L ** (-1 / (2m - 2))`` applied to the inner branch layers (fixup).
        zeroed: qualified names of the tensors set to 0.
    """

    variant: str
    blocks: int
    branch_layers: int = 0
    scale: float = 1.0
    zeroed: tuple[str, ...] = ()


def fixup_(
    model: nn.Module,
    *,
    variant: str = "fixup",
    head: str | None = None,
    generator: torch.Generator | None = None,
) -> FixupReport:
    r"""Initialize the residual blocks of ``model`` in place by Fixup (or zero-gamma).

    ``variant="fixup"`` (Zhang et al. 2019, Sec. 3): every weight layer of each branch but the
    last is drawn from He's N(0, 2 / fan_in) and multiplied by ``L ** (-1 / (2m - 2))``, the
    last one and the classification layer ``head`` are set to 0, and so are branch-layer biases
    and the block's ``branch_scalars``. ``L`` is the number of residual
    blocks and ``m`` the number of weight layers per branch (>= 2, the same for all blocks).
    Layers outside the branches (stem, head apart from zeroing) are left to the caller, who
    should give them a standard initialization first (the ``fixup`` scheme uses He).

    ``variant="zero_norm"`` (Goyal et al. 2017, Sec. 5.1): the weight (gamma) of the last
    normalization layer of each branch is set to 0, so every block starts as the identity;
    nothing else changes.

    Args:
        model: a module containing residual blocks (see the protocol in the module docstring).
        variant: ``"fixup"`` or ``"zero_norm"``.
        head: qualified name of the classification layer to zero (fixup only); ``None`` picks
            the last ``nn.Linear`` registered outside the residual branches.
        generator: random stream for the He draws; ``None`` uses the global generator.

    Returns:
        A :class:`FixupReport` with L, m, the branch scale and the names of zeroed tensors.

    Raises:
        ValueError: no residual blocks, a branch with fewer than 2 weight layers or with
            different layer counts (fixup), a branch without a normalization layer (zero_norm),
            or an unknown ``variant`` or ``head``.

    Example:
        >>> from initlab.zoo.residual import ResidualMLP
        >>> fixup_(ResidualMLP(depth=4, width=16)).scale  # 4 ** (-1 / 2)
        0.5
    """
    one_of("variant", variant, ("fixup", "zero_norm"))
    blocks = residual_blocks(model)
    if not blocks:
        raise ValueError(
            "fixup_ found no residual block: a block must define residual_branch() returning "
            "its branch modules in forward order (see initlab.datadriven.fixup)"
        )
    names = {id(m): n for n, m in model.named_modules()}
    with torch.no_grad():
        if variant == "zero_norm":
            return FixupReport(variant, len(blocks), zeroed=tuple(_zero_last_norms(blocks, names)))
        m = _branch_depth(blocks)
        scale = len(blocks) ** (-1.0 / (2 * m - 2))
        zeroed = [_init_block(block, scale, generator, names) for _, block in blocks]
        head_name, head_module = _head(model, blocks, head)
        zeros_(head_module.weight)
        if head_module.bias is not None:
            zeros_(head_module.bias)
    return FixupReport(variant, len(blocks), m, scale, (*zeroed, f"{head_name}.weight"))


def _weights(block: nn.Module) -> list[nn.Module]:
    return [m for m in block.residual_branch() if isinstance(m, WEIGHT_TYPES)]


def _branch_depth(blocks: Sequence[tuple[str, nn.Module]]) -> int:
    depths = {name: len(_weights(block)) for name, block in blocks}
    if len(set(depths.values())) != 1 or min(depths.values()) < 2:
        raise ValueError(
            "fixup needs every residual branch to have the same number m >= 2 of weight layers "
            f"(its scale is L ** (-1 / (2m - 2))); got {depths}"
        )
    return next(iter(depths.values()))


def _init_block(block, scale, generator, names) -> str:
    *inner, last = _weights(block)
    for layer in inner:
        kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu", generator=generator)
        layer.weight.mul_(scale)
    zeros_(last.weight)
    for layer in (*inner, last):
        if layer.bias is not None:
            zeros_(layer.bias)
    for scalar in getattr(block, "branch_scalars", ()):
        zeros_(scalar)
    return f"{names[id(last)]}.weight"


def _head(model, blocks, head) -> tuple[str, nn.Module]:
    inside = {id(m) for _, b in blocks for m in b.modules()}
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if head is not None:
        return head, linears[one_of("head", head, linears)]
    outside = [(n, m) for n, m in linears.items() if id(m) not in inside]
    if not outside:
        raise ValueError("fixup_ found no classification layer (nn.Linear outside the branches)")
    return outside[-1]


def _zero_last_norms(blocks, names) -> list[str]:
    zeroed = []
    for name, block in blocks:
        norms = [m for m in block.residual_branch() if is_norm(m)]
        if not norms or getattr(norms[-1], "weight", None) is None:
            raise ValueError(
                f"zero_norm needs an affine normalization layer in every residual branch; "
                f"block {name!r} has none"
            )
        zeros_(norms[-1].weight)
        zeroed.append(f"{names[id(norms[-1])]}.weight")
    return zeroed
