"""A residual MLP without (or with) normalization, declaring its branches for Fixup.

Architecture (Zhang et al. 2019, Fig. 1, the Fixup basic block with Linear layers in place of
convolutions): ``stem: Linear(in, width) -> act``, then ``depth`` blocks

    y = act(x + (1 + s) * (fc2(act(fc1(x + a1) + b1) + a2)) + b2)

with scalar biases ``a1, b1, a2, b2`` and the multiplier written as ``1 + s`` so that every
scalar starts at 0 under any scheme's bias rule (the paper's multiplier initialized at 1), then
``head: Linear(width, classes)``. With ``norm`` a normalization layer follows each of fc1 and fc2
inside the branch. Each block implements the residual-branch protocol of
:mod:`initlab.datadriven.fixup`.

With ``post_activation=False`` the outer ``act`` is left out, ``y = x + (1 + s) * branch + b2``:
the identity path of He, Zhang, Ren and Sun, "Identity Mappings in Deep Residual Networks"
(ECCV 2016), Sec. 3, eq. 4, where the stream at block ``L`` is the input plus the sum of the
branch outputs, so at initialization (each branch uncorrelated with its input) its variance is
the input's plus the sum of the branches' variances.
"""

from __future__ import annotations

import torch
from torch import nn

from initlab.zoo._common import NORMS, choice, positive
from initlab.zoo._common import activation as _activation

__all__ = ["ResidualBlock", "ResidualMLP"]


class ResidualBlock(nn.Module):
    """One residual block ``act(x + branch(x))``; ``residual_branch()`` lists the branch layers.

    Args:
        width: features in and out.
        activation: a key of :data:`initlab.zoo.models.ACTIVATIONS`.
        norm: ``None``, ``"batch"`` or ``"layer"``.
        post_activation: apply ``act`` after the add (the default); ``False`` returns
            ``x + branch(x)`` (He et al. 2016, "Identity Mappings", eq. 4).
    """

    def __init__(
        self, width: int, activation: str, norm: str | None, post_activation: bool = True
    ) -> None:
        super().__init__()
        self.post_activation = post_activation
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.norm1 = NORMS[norm](width) if norm else nn.Identity()
        self.norm2 = NORMS[norm](width) if norm else nn.Identity()
        self.act = _activation(activation)
        # a1, b1, a2, b2 and s of the module docstring; 0-D so schemes treat them as biases.
        self.branch_scalars = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in range(5))

    def residual_branch(self) -> list[nn.Module]:
        """The branch's layers in forward order: fc1, [norm1], fc2, [norm2]."""
        layers = [self.fc1, self.norm1, self.fc2, self.norm2]
        return [m for m in layers if not isinstance(m, nn.Identity)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1, b1, a2, b2, s = self.branch_scalars
        out = self.act(self.norm1(self.fc1(x + a1)) + b1)  # (B, width)
        out = self.norm2(self.fc2(out + a2))
        out = x + (1 + s) * out + b2
        return self.act(out) if self.post_activation else out


class ResidualMLP(nn.Module):
    """A residual MLP: Linear stem, ``depth`` two-layer residual blocks, Linear head.

    Layers: ``stem``, ``blocks.0`` ... ``blocks.{depth-1}`` (each with ``fc1``, ``fc2``), ``head``.

    Args:
        depth: number of residual blocks, >= 1.
        width: features of the stem and of every block, >= 1.
        activation: one of ``relu, leaky_relu, tanh, sigmoid, selu, gelu, silu, linear``.
        norm: ``None`` (Fixup's setting), ``"batch"`` or ``"layer"`` inside each branch.
        post_activation: ``True`` (default) applies the activation after each block's add;
            ``False`` leaves the stream linear, ``x + branch(x)`` (He et al. 2016, "Identity
            Mappings in Deep Residual Networks", eq. 4; the stem's activation stays).
        in_features: flattened input size (784 for 28x28 images).
        num_classes: number of output logits.

    Raises:
        ArgumentError: unknown activation or norm, or a size below 1 (a ``ValueError``).
        TypeError: a size is not an int, or ``post_activation`` is not a bool.

    Example:
        >>> ResidualMLP(depth=2, width=8)(torch.zeros(3, 1, 28, 28)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        depth: int = 8,
        width: int = 128,
        activation: str = "relu",
        norm: str | None = None,
        in_features: int = 784,
        num_classes: int = 10,
        post_activation: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(post_activation, bool):
            raise TypeError(
                f"post_activation must be a bool; got post_activation={post_activation!r}"
            )
        positive("depth", depth)
        positive("width", width)
        _activation(activation)  # validates the name before anything is built
        if norm is not None:
            choice("norm", norm, NORMS)
        self.in_features = in_features
        self.stem = nn.Sequential(nn.Linear(in_features, width), _activation(activation))
        self.blocks = nn.Sequential(
            *(ResidualBlock(width, activation, norm, post_activation) for _ in range(depth))
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.in_features)  # (B, ...) -> (B, in_features)
        return self.head(self.blocks(self.stem(x)))
