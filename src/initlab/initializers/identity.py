"""Identity-preserving initializers: the identity matrix and the Dirac convolution kernel."""

from __future__ import annotations

import torch

from initlab._checks import finite, floating, positive_int, value_fits
from initlab.initializers._args import zero_element

__all__ = ["dirac_", "eye_", "identity_"]


def identity_(tensor: torch.Tensor, *, gain: float = 1.0) -> torch.Tensor:
    r"""Fill a matrix in place with ``gain`` times the identity: ``W[i, j] = gain * (i == j)``.

    For a non-square ``(out, in)`` matrix the ones run down the main diagonal, so as many inputs
    as possible pass through unchanged (PyTorch's ``torch.nn.init.eye_``, which this equals for
    ``gain=1``). Source: Le, Jaitly and Hinton, "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units" (2015) (the identity recurrent matrix of the IRNN).

    Args:
        tensor: a 2-D floating-point tensor; meta tensors are left as they are, and
            zero-element ones too, with PyTorch's warning.
        gain: value on the diagonal, finite, and one the dtype holds (not rounded to inf or,
            if nonzero, to 0).

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor`` is not 2-D, ``gain`` is not finite or the dtype rounds it to
            inf or 0.
        TypeError: if ``tensor`` is not floating point.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> identity_(torch.empty(2, 3), gain=0.5).tolist()
        [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]
    """
    floating(tensor, "identity_")
    if tensor.ndim != 2:
        raise ValueError(f"identity_ needs a 2-D tensor; got shape={tuple(tensor.shape)}")
    gain = finite("gain", gain)
    value_fits("identity_", tensor.dtype, "gain", gain)
    if zero_element(tensor) or tensor.is_meta:
        return tensor
    with torch.no_grad():
        tensor.zero_()
        tensor.diagonal().fill_(gain)
    return tensor


eye_ = identity_  # PyTorch's name (torch.nn.init.eye_)


def dirac_(tensor: torch.Tensor, *, groups: int = 1) -> torch.Tensor:
    r"""Fill a convolution kernel in place so that the convolution copies its input channels.

    For a kernel ``(out, in, *kernel)`` with ``groups`` groups of ``out // groups`` output
    channels: ``W[g * out_g + d, d, k_1 // 2, ..., k_n // 2] = 1`` for every group ``g`` and
    ``d < min(out_g, in)``, 0 elsewhere. A "same"-padded convolution then returns its input
    (the first ``min(out_g, in)`` channels of each group); the extra output channels are 0.
    Same semantics as ``torch.nn.init.dirac_``. Even kernel sizes put the tap at ``k // 2``.

    Source: Zagoruyko and Komodakis, "DiracNets: Training Very Deep Neural Networks Without
    Skip-Connections" (2017) (the Dirac parametrization of a convolution).

    Args:
        tensor: kernel with 3, 4 or 5 dimensions (1-D, 2-D or 3-D convolution), floating point;
            meta tensors are left as they are, and zero-element ones too, with PyTorch's
            warning.
        groups: number of groups of the convolution, an int >= 1 dividing ``tensor.size(0)``.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor.ndim`` is not 3, 4 or 5, or ``groups`` does not divide the
            number of output channels.
        TypeError: if ``tensor`` is not floating point or ``groups`` is not an int.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``torch.nn.init`` does.

    Example:
        >>> w = dirac_(torch.empty(16, 16, 3, 3))  # conv2d(x, w, padding=1) == x
    """
    floating(tensor, "dirac_")
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(
            f"dirac_ needs a convolution kernel with 3, 4 or 5 dimensions; "
            f"got shape={tuple(tensor.shape)}"
        )
    groups = positive_int("groups", groups)
    if tensor.size(0) % groups:
        raise ValueError(
            f"groups must divide the number of output channels {tensor.size(0)}; "
            f"got groups={groups}"
        )
    if zero_element(tensor) or tensor.is_meta:
        return tensor
    per_group = tensor.size(0) // groups
    channel = torch.arange(min(per_group, tensor.size(1)), device=tensor.device)
    outputs = (torch.arange(groups, device=tensor.device)[:, None] * per_group + channel).ravel()
    taps = tuple(k // 2 for k in tensor.shape[2:])
    with torch.no_grad():
        tensor.zero_()
        tensor[(outputs, channel.repeat(groups), *taps)] = 1
    return tensor
