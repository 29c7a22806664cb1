"""Fans of weight tensors: pure math, no randomness.

``fan_in`` is the number of inputs that feed one output unit, ``fan_out`` the number of outputs
one input unit feeds. For a weight laid out as PyTorch's ``(out, in, *kernel)`` both are the
channel count times the receptive field (the product of the kernel dimensions).
Source: Glorot and Bengio, "Understanding the difficulty of training deep feedforward neural
networks" (2010), Sec. 4.2; He et al., "Delving Deep into Rectifiers" (2015), Sec. 2.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["compute_fans"]


def compute_fans(
    tensor_or_shape: torch.Tensor | Sequence[int],
    *,
    in_axis: int | Sequence[int] = 1,
    out_axis: int | Sequence[int] = 0,
    batch_axis: int | Sequence[int] = (),
) -> tuple[int, int]:
    r"""Return ``(fan_in, fan_out)`` of a weight from its shape and declared axes.

    With ``receptive_field = prod(shape[a] for a not in in_axis, out_axis or batch_axis)``:
    ``fan_in = prod(shape[in_axis]) * receptive_field`` and
    ``fan_out = prod(shape[out_axis]) * receptive_field``. Batch axes (for example a stack of
    independent matrices) count in neither. The default axes read PyTorch's ``(out, in, *kernel)``
    layout; JAX/Flax kernels ``(*kernel, in, out)`` use ``in_axis=-2, out_axis=-1``.

    Source: the JAX ``variance_scaling`` convention (``jax.nn.initializers``), which generalizes
    Glorot and Bengio (2010) and He et al. (2015) to any layout.

    Args:
        tensor_or_shape: a tensor (only its shape is read; meta tensors work) or a shape.
        in_axis: axis or axes of input units; negative axes count from the end.
        out_axis: axis or axes of output units.
        batch_axis: axes of independent copies, excluded from both fans.

    Returns:
        ``(fan_in, fan_out)`` as Python ints.

    Raises:
        ValueError: if the shape has fewer than 2 dimensions (a bias has no fans: give it a bias
            rule), if an axis is out of range, or if the axes overlap.

    Example:
        >>> compute_fans((64, 3, 7, 7))
        (147, 3136)
    """
    shape = tuple(
        tensor_or_shape.shape if isinstance(tensor_or_shape, torch.Tensor) else tensor_or_shape
    )
    if len(shape) < 2:
        raise ValueError(
            f"fans need a weight with at least 2 dimensions; got shape={shape}. "
            "A 1-D tensor such as a bias has no fans: initialize it with a bias rule "
            "(zeros_, constant_) or pass fans=(fan_in, fan_out) explicitly"
        )
    ins, outs, batch = (
        _axes(a, len(shape), n)
        for a, n in ((in_axis, "in_axis"), (out_axis, "out_axis"), (batch_axis, "batch_axis"))
    )
    if set(ins) & set(outs) or (set(ins) | set(outs)) & set(batch):
        raise ValueError(
            f"in_axis, out_axis and batch_axis must not overlap; got in_axis={in_axis}, "
            f"out_axis={out_axis}, batch_axis={batch_axis} for shape={shape}"
        )
    used = set(ins) | set(outs) | set(batch)
    receptive_field = math.prod(d for i, d in enumerate(shape) if i not in used)
    fan_in = math.prod(shape[i] for i in ins) * receptive_field
    fan_out = math.prod(shape[i] for i in outs) * receptive_field
    return fan_in, fan_out


def _axes(axis: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}]; got {name}={axis}")
    return tuple(a % ndim for a in axes)
