"""Sparse initialization: a fixed number of zeros in every column (PyTorch) or row (Martens)."""

from __future__ import annotations

import math

import torch

from initlab._checks import NORMAL_Z_MAX, fill_fits, floating, non_negative, one_of, real
from initlab.initializers._args import zero_element

__all__ = ["sparse_"]


def sparse_(
    tensor: torch.Tensor,
    *,
    sparsity: float,
    std: float = 0.01,
    per: str = "column",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill a matrix in place from N(0, std**2), then zero a fixed count per column (or row).

    ``per="column"`` (default, PyTorch's semantics): ``ceil(sparsity * rows)`` zeros in every
    column, so every *input* unit feeds the same number of output units. This is what
    ``torch.nn.init.sparse_`` does, except that the zero pattern is drawn from ``generator`` too
    (reproducible) and the global generator is untouched when a generator is given (PyTorch's
    uses ``torch.randperm`` without it).

    ``per="row"`` (Martens' scheme): ``ceil(sparsity * cols)`` zeros in every row of the
    ``(out, in)`` weight, so every *output* unit keeps exactly ``cols - ceil(sparsity * cols)``
    nonzero incoming weights (Martens used 15: ``sparsity = (cols - 15) / cols``).

    The zero positions of each column (row) are a uniformly random subset, independent across
    columns (rows). ``std`` is a standard deviation.

    Source: Martens, "Deep learning via Hessian-free optimization" (ICML 2010), Sec. 5 (sparse
    initialization: a fixed number of nonzero incoming weights per unit, i.e. ``per="row"``).

    Args:
        tensor: a 2-D ``(rows, cols)`` = ``(out, in)`` floating-point tensor; meta tensors are
            left as they are, and zero-element ones too, with PyTorch's warning.
        sparsity: fraction of each column (row) set to zero, in ``[0, 1)``.
        std: standard deviation of the nonzero entries, finite, ``>= 0``, and one whose draws
            fit the dtype (as for :func:`normal_`).
        per: ``"column"`` (PyTorch) or ``"row"`` (Martens): along which the zero count is fixed.
        generator: random stream for values and pattern; ``None`` draws from the global one.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor`` is not 2-D, ``sparsity`` is outside ``[0, 1)``, ``std`` is
            negative, not finite or gives draws the dtype cannot hold, or ``per`` is unknown.
        TypeError: if ``tensor`` is not floating point or an argument is not a real number.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> w = sparse_(torch.empty(100, 30), sparsity=0.9)  # 90 zeros per column
        >>> w = sparse_(torch.empty(100, 30), sparsity=0.5, per="row")  # 15 nonzeros per row
    """
    floating(tensor, "sparse_")
    if tensor.ndim != 2:
        raise ValueError(f"sparse_ needs a 2-D tensor; got shape={tuple(tensor.shape)}")
    sparsity = real("sparsity", sparsity)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1); got sparsity={sparsity!r}")
    std = non_negative("std", std)
    largest = NORMAL_Z_MAX * std
    fill_fits(
        "sparse_",
        tensor.dtype,
        f"std={std!r}",
        largest=largest,
        typical=std,
        shrink="a smaller std",
        grow="a larger std",
    )
    dim = 0 if one_of("per", per, ("column", "row")) == "column" else 1  # the axis counted along
    if zero_element(tensor) or tensor.is_meta:
        return tensor
    with torch.no_grad():
        tensor.normal_(0, std, generator=generator)
        # argsort of i.i.d. uniforms is a uniform random permutation per column (row); float64
        # makes ties (which would favour low indices) practically impossible
        keys = torch.rand(
            tensor.shape, dtype=torch.float64, device=tensor.device, generator=generator
        )
        zeros = math.ceil(sparsity * tensor.shape[dim])
        tensor.scatter_(dim, keys.argsort(dim=dim).narrow(dim, 0, zeros), 0.0)
    return tensor
