"""Per-layer activation standard deviation at initialization (a stand-in for diagnostics).

The sweep records it for every run so the report can show how each scheme scales the signal
through the layers before training.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["activation_stds"]

_HOOKED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def activation_stds(model: nn.Module, batch: torch.Tensor) -> dict[str, float]:
    """Return the std of every Linear/Conv layer's output for one forward pass of ``batch``.

    The std is taken over all elements of the output (batch, units and positions together).
    The forward runs in training mode on a copy of ``model`` under a forked RNG, so neither the
    model (BatchNorm running statistics) nor the global random state changes.

    Args:
        model: the initialized model.
        batch: an input batch, e.g. ``(B, 1, 28, 28)`` images, on the model's device.

    Returns:
        ``{qualified layer name: std}`` in forward order.

    Example:
        >>> from initlab.experiments.models import InitNet
        >>> sorted(activation_stds(InitNet(), torch.rand(8, 784)))
        ['fc1', 'fc2']
    """
    probe = copy.deepcopy(model).train()
    stds: dict[str, float] = {}
    handles = [
        module.register_forward_hook(_recorder(name, stds))
        for name, module in probe.named_modules()
        if isinstance(module, _HOOKED)
    ]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            probe(batch)
    finally:
        for handle in handles:
            handle.remove()
    return stds


def _recorder(name: str, stds: dict[str, float]):
    def hook(module, inputs, output):
        stds[name] = float(output.float().std())

    return hook
