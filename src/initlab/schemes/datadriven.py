"""The data-driven schemes as whole-model rules for :mod:`initlab.schemes.registry`.

Each has the scheme signature ``init_weights(model, *, generator, batch=None)``; biases and norm
layers have already been set by the scheme registry's bias rule when it runs.
"""

from __future__ import annotations

import torch
from torch import nn

from initlab.datadriven.fixup import fixup_
from initlab.datadriven.lsuv import lsuv_
from initlab.initializers import kaiming_normal_

__all__ = ["fixup_weights", "lsuv_weights"]


def lsuv_weights(model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
    """LSUV with the paper's defaults (orthogonal pre-init, unit variance within 0.1) on ``batch``.

    Raises:
        ValueError: ``batch`` is None (LSUV needs data).
    """
    if batch is None:
        raise ValueError("the lsuv scheme needs a data batch: pass batch=(inputs, ...) to it")
    lsuv_(model, batch, generator=generator)


def fixup_weights(model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
    """He-normal (fan_in, ReLU gain) for every weight, then Fixup's rules for residual blocks.

    Raises:
        ValueError: the model declares no residual block (see :mod:`initlab.datadriven.fixup`).
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
    fixup_(model, generator=generator)
