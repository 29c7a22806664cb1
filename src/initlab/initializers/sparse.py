"""Sparse initialization: a fixed number of zeros in every column."""

from __future__ import annotations

import math

import torch

from initlab._checks import floating, non_negative
from initlab.initializers._args import nothing_to_fill, real

__all__ = ["sparse_"]


def sparse_(
    tensor: torch.Tensor,
    *,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill a matrix in place from N(0, std**2), then zero ``ceil(sparsity * rows)`` per column.

    The zero rows of each column are a uniformly random subset, independent across columns.
    Same semantics as ``torch.nn.init.sparse_``, except that the zero pattern is drawn from
    ``generator`` too (reproducible) and the global generator is untouched when a generator is
    given (PyTorch's uses ``torch.randperm`` without it). ``std`` is a standard deviation.

    Source: Martens, "Deep learning via Hessian-free optimization" (ICML 2010), Sec. 5 (sparse
    initialization: a fixed number of nonzero incoming weights per unit).

    Args:
        tensor: a 2-D ``(rows, cols)`` floating-point tensor; meta and zero-element tensors are
            left as they are.
        sparsity: fraction of each column set to zero, in ``[0, 1)``.
        std: standard deviation of the nonzero entries, finite, ``>= 0``.
        generator: random stream for values and pattern; ``None`` draws from the global one.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor`` is not 2-D, ``sparsity`` is outside ``[0, 1)`` or ``std < 0``.
        TypeError: if ``tensor`` is not floating point or an argument is not a real number.

    Example:
        >>> w = sparse_(torch.empty(100, 30), sparsity=0.9)  # 90 zeros per column
    """
    floating(tensor, "sparse_")
    if tensor.ndim != 2:
        raise ValueError(f"sparse_ needs a 2-D tensor; got shape={tuple(tensor.shape)}")
    sparsity = real("sparsity", sparsity)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1); got sparsity={sparsity!r}")
    std = non_negative("std", std)
    if nothing_to_fill(tensor):
        return tensor
    rows, cols = tensor.shape
    with torch.no_grad():
        tensor.normal_(0, std, generator=generator)
        # argsort of i.i.d. uniforms is a uniform random permutation per column; float64 makes
        # ties (which would favour low indices) practically impossible
        keys = torch.rand(
            rows, cols, dtype=torch.float64, device=tensor.device, generator=generator
        )
        zero_rows = keys.argsort(dim=0)[: math.ceil(sparsity * rows)]
        tensor.scatter_(0, zero_rows, 0.0)
    return tensor
