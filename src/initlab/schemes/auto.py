"""A policy preset as a scheme's weight policy: the ``auto`` scheme is ``Preset("auto")``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from initlab.policy import plan

__all__ = ["Preset", "auto_weights"]

# Zoo models accept (B, 1, 28, 28); a zero image is enough to trace which operations follow
# which layer (the trace follows the data flow, not the values).
_PROBE_SHAPE = (2, 1, 28, 28)


@dataclass(frozen=True)
class Preset:
    """Initialize every parameter by ``initlab.plan(model, name)``, traced on the batch.

    Biases follow the policy too (e.g. zero, LSTM forget gate 1), after the scheme's bias rule.
    The plan's random streams are seeded from one draw of ``generator``.

    Attributes:
        name: a policy preset (see :mod:`initlab.policy.presets`), e.g. ``"auto"``.
    """

    name: str = "auto"

    def __call__(self, model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
        """Plan and apply the preset; ``batch`` (a tensor or ``(inputs, ...)``) gives the
        example input (its first 2 examples), else a zero image of shape ``(2, 1, 28, 28)``."""
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        example = inputs[:2] if inputs is not None else torch.zeros(_PROBE_SHAPE)
        plan(model, self.name, example_input=example).apply(generator=generator)


#: The ``auto`` scheme's policy (the name it had as a function).
auto_weights = Preset("auto")
