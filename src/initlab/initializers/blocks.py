"""Per-block initialization of fused weights (LSTM/GRU gates, attention q/k/v)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from initlab._checks import positive_int
from initlab.initializers._args import warned, zero_element

__all__ = ["per_block_"]


def per_block_(
    tensor: torch.Tensor,
    blocks: int,
    fn: Callable[..., torch.Tensor],
    /,
    **kwargs,
) -> torch.Tensor:
    r"""Initialize each of ``blocks`` equal slices of dim 0 on its own: ``fn(block, **kwargs)``.

    A fused weight stacks independent matrices along dim 0: ``nn.LSTM``'s ``weight_hh_l0`` is
    ``(4 H, H)`` (gates i, f, g, o), ``nn.GRU``'s ``(3 H, H)``, ``nn.MultiheadAttention``'s
    ``in_proj_weight`` ``(3 E, E)`` (q, k, v). Initializing the whole tensor at once computes
    the wrong fans (``fan_out = 4 H``) and, for :func:`orthogonal_`, makes the gates mutually
    orthogonal instead of each one orthogonal. The blocks are views, filled in order, so a
    ``generator`` in ``kwargs`` gives a reproducible result.

    Args:
        tensor: at least 1-D; ``tensor.size(0)`` must be divisible by ``blocks``.
        blocks: number of equal slices along dim 0, an int >= 1.
        fn: an in-place initializer taking the block as its first argument.
        **kwargs: keyword arguments passed to every call of ``fn``.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor`` is 0-D or ``blocks`` does not divide ``tensor.size(0)``.
        TypeError: if ``blocks`` is not an int or ``fn`` is not callable.

    Example:
        >>> w = per_block_(torch.empty(4 * 32, 32), 4, orthogonal_)  # each gate orthogonal
    """
    blocks = positive_int("blocks", blocks)
    if not callable(fn):
        raise TypeError(f"fn must be a callable initializer; got fn={fn!r}")
    if tensor.ndim == 0 or tensor.size(0) % blocks:
        raise ValueError(
            f"blocks must divide dim 0 of the tensor; got blocks={blocks} for "
            f"shape={tuple(tensor.shape)}"
        )
    size = tensor.size(0) // blocks
    empty = zero_element(tensor)  # warns once for the whole tensor, not once per block
    with torch.no_grad(), warned() if empty else contextlib.nullcontext():
        # views of a Parameter made outside no_grad would carry a grad_fn
        for i in range(blocks):
            fn(tensor.narrow(0, i * size, size), **kwargs)
    return tensor
