"""The ``auto`` scheme of ``initlab compare``: the policy's architecture-aware plan."""

from __future__ import annotations

import torch
from torch import nn

from initlab.policy import plan

__all__ = ["auto_weights"]

# Zoo models accept (B, 1, 28, 28); a zero image is enough to trace which operations follow
# which layer (the trace follows the data flow, not the values).
_PROBE_SHAPE = (2, 1, 28, 28)


def auto_weights(model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
    """Initialize every parameter by ``initlab.plan(model, "auto")``, traced on ``batch``.

    ``batch`` (a tensor or ``(inputs, ...)``) is the example input when given; otherwise a zero
    image of shape ``(2, 1, 28, 28)``. Biases follow the policy too (zero, LSTM forget gate 1).
    The random streams are seeded from one draw of ``generator``.
    """
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    example = inputs[:2] if inputs is not None else torch.zeros(_PROBE_SHAPE)
    plan(model, "auto", example_input=example).apply(generator=generator)
