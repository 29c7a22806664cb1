r"""Adapt a pretrained first convolution to a different number of input channels.

A network pretrained on RGB images (3 channels) is often fine-tuned on grayscale images
(1 channel) or on images with extra channels (RGB + depth, multispectral). Only the input
channel axis of the first convolution's weight ``(out, in, *kernel)`` differs; its other
weights fit. Re-initializing that convolution would throw away the low-level filters, so its
checkpoint weight ``W`` with ``c`` input channels becomes ``W'`` with ``m`` channels:

- fewer channels (``m < c``, grayscale from RGB when ``m = 1``): fold the channels cyclically,
  ``W'[:, j] = sum_{i < c, i mod m = j} W[:, i]``. Then ``conv(W', x') = conv(W, x)`` whenever
  ``x[:, i] = x'[:, i mod m]``: for ``m = 1``, a grayscale image gives the response the
  checkpoint gave to that image replicated on its three channels.
- more channels (``m > c``): repeat the channels cyclically and divide each copy by the number
  of copies of its source channel, ``W'[:, j] = W[:, j mod c] / n_{j mod c}`` with
  ``n_i = #{j < m : j mod c = i}``. Then ``conv(W', x') = conv(W, x)`` whenever
  ``x'[:, j] = x[:, j mod c]``: an input replicated onto the new channels gives the response the
  checkpoint gave. When ``c`` divides ``m`` this is timm's repeat-and-rescale by ``c / m``.

In both cases an input whose channels are all equal gives the same response as before, and the
bias is unchanged. Source: the rule of timm's ``adapt_input_conv``
(``timm/models/_manipulate.py``), generalized here so that the response is preserved exactly
for any ``m`` (timm rescales by ``c / m`` even when ``c`` does not divide ``m``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["adapt_input_channels", "first_conv_weight"]


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Return a copy of conv ``weight`` ``(out, c, *kernel)`` adapted to ``in_channels`` inputs.

    The rule (fold for fewer channels, repeat and rescale for more) is in this module's
    docstring. Computed in float64 and cast back, so that the sum of a fold is exact to the
    rounding of the result.

    Args:
        weight: a convolution weight ``(out, c, *kernel)``, floating point.
        in_channels: the model's number of input channels ``m >= 1``.

    Returns:
        A new tensor ``(out, in_channels, *kernel)`` of ``weight``'s dtype and device.

    Raises:
        ValueError: ``weight`` has fewer than 3 dimensions or ``in_channels < 1``.

    Example:
        >>> w = torch.ones(8, 3, 3, 3)
        >>> adapt_input_channels(w, 1)[0, 0, 0, 0].item()
        3.0
    """
    if weight.ndim < 3:
        raise ValueError(
            "weight must be a convolution weight (out, in, *kernel); "
            f"got shape={tuple(weight.shape)}"
        )
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1; got in_channels={in_channels!r}")
    c, m = weight.shape[1], in_channels
    device = weight.device  # every intermediate beside the weight: a CUDA state_dict stays there
    w = weight.detach().to(torch.float64)
    if m <= c:
        folded = torch.zeros(
            weight.shape[0], m, *weight.shape[2:], dtype=torch.float64, device=device
        )
        folded.index_add_(1, torch.arange(c, device=device) % m, w)
        return folded.to(weight.dtype)
    source = torch.arange(m, device=device) % c
    copies = (m - source + c - 1) // c  # n_i = #{j < m : j mod c = i} = ceil((m - i) / c)
    scale = (1.0 / copies.to(torch.float64)).view(1, m, *([1] * (weight.ndim - 2)))
    return (w[:, source] * scale).to(weight.dtype)


def first_conv_weight(model: nn.Module) -> str | None:
    """Return the parameter name of the first convolution's weight, in registration order.

    Only an ungrouped convolution (``groups == 1``) qualifies: grouped or depthwise first
    layers tie channels to groups, so the fold/repeat rule would not preserve the response.
    Returns ``None`` if the first convolution is grouped or there is none.
    """
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if module.groups != 1:
                return None
            return f"{name}.weight" if name else "weight"
    return None
