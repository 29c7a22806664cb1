"""Shape checks and the no-op rule shared by the tensor initializers.

Scalar checks live in :mod:`initlab._checks` (one place for every layer).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from initlab._checks import warn_zero_element

# Set while an initializer that already warned for its whole tensor fills its pieces.
_WARNED = contextvars.ContextVar("initlab_zero_element_warned", default=False)


def ndim_at_least(tensor: torch.Tensor, ndim: int, what: str) -> None:
    """Raise ValueError unless ``tensor`` has at least ``ndim`` dimensions."""
    if tensor.ndim < ndim:
        raise ValueError(
            f"{what} needs a tensor with at least {ndim} dimensions; "
            f"got shape={tuple(tensor.shape)}"
        )


def zero_element(tensor: torch.Tensor) -> bool:
    """Return True for a zero-element tensor (meta or not), after PyTorch's warning.

    ``torch.nn.init`` warns "Initializing zero-element tensors is a no-op" and returns the
    tensor; every initializer here does the same, once per call (see :func:`warned`).
    """
    if tensor.numel():
        return False
    if not _WARNED.get():
        warn_zero_element()
    return True


@contextlib.contextmanager
def warned() -> Iterator[None]:
    """Within this block zero-element tensors do not warn again (the caller warned once)."""
    token = _WARNED.set(True)
    try:
        yield
    finally:
        _WARNED.reset(token)
