"""More zoo models, one per network type of the selection guide: an LSTM, a transformer encoder
and a ResNet-style CNN with batch norm.

Like every zoo model they accept ``(B, 1, 28, 28)``, ``(B, 28, 28)`` or ``(B, 784)`` float input
and return logits ``(B, num_classes)``; they are built with PyTorch's default initialization.
"""

from __future__ import annotations

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.zoo._common import positive, positive_ints

__all__ = ["LSTMClassifier", "PatchTransformer", "SmallResNet"]


class LSTMClassifier(nn.Module):
    """An LSTM that reads an image row by row (28 time steps of 28 pixels), then a Linear head.

    The head reads the last time step's output of the top layer. Layers: ``lstm``, ``head``.

    Args:
        hidden: LSTM hidden size, >= 1.
        num_layers: stacked LSTM layers, >= 1.
        image_size: side of the square one-channel image (rows = time steps).
        num_classes: number of output logits.

    Raises:
        TypeError: ``hidden`` or ``num_layers`` is not an int.
        ArgumentError: ``hidden`` or ``num_layers`` is below 1 (a ``ValueError``).

    Example:
        >>> LSTMClassifier(hidden=16)(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, hidden: int = 128, num_layers: int = 1, image_size: int = 28, num_classes: int = 10
    ) -> None:
        super().__init__()
        positive("hidden", hidden)
        positive("num_layers", num_layers)
        self.image_size = image_size
        self.lstm = nn.LSTM(image_size, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.image_size, self.image_size)  # (B, T=rows, features)
        out, _ = self.lstm(x)  # (B, T, hidden)
        return self.head(out[:, -1])


class PatchTransformer(nn.Module):
    """A small pre-norm transformer encoder on image patches (ViT-style), mean-pooled, then a head.

    ``(B, 1, 28, 28)`` -> patches of ``patch x patch`` pixels, linearly embedded by ``embed`` (a
    Conv2d with stride ``patch``) -> ``(B, N, dim)`` with ``N = (28 / patch)^2`` plus a learned
    position embedding ``pos_embed`` ``(N, dim)`` (initialized N(0, 0.02^2) cut at 2 std, as
    in ViT) -> ``depth`` ``nn.TransformerEncoderLayer`` (GELU, pre-norm, no dropout) ->
    LayerNorm -> mean over tokens -> ``head``.

    Args:
        patch: patch side, dividing the image side.
        dim: token width, divisible by ``heads``.
        depth: encoder layers, >= 1.
        heads: attention heads.
        mlp_ratio: feed-forward width / ``dim``.
        image_size: side of the square one-channel image.
        num_classes: number of output logits.

    Raises:
        TypeError: ``patch``, ``dim``, ``depth`` or ``heads`` is not an int.
        ArgumentError: one of them is below 1, ``patch`` does not divide ``image_size`` or
            ``heads`` does not divide ``dim`` (a ``ValueError``).

    Example:
        >>> PatchTransformer(dim=16, heads=2)(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        patch: int = 7,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 2,
        image_size: int = 28,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (("patch", patch), ("dim", dim), ("depth", depth), ("heads", heads)):
            positive(name, value)
        if image_size % patch:
            raise ArgumentError(
                "patch", f"patch must divide image_size={image_size}; got patch={patch}"
            )
        if dim % heads:
            raise ArgumentError("dim", f"dim must be divisible by heads={heads}; got dim={dim}")
        self.image_size = image_size
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.empty((image_size // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        layer = nn.TransformerEncoderLayer(
            dim, heads, mlp_ratio * dim, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.image_size, self.image_size)
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (B, dim, h, w) -> (B, N, dim)
        tokens = self.encoder(tokens + self.pos_embed)
        return self.head(self.norm(tokens).mean(1))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, ReLU.

    The shortcut is the identity, or a strided 1x1 conv + BN (``downsample``) when the shape
    changes. Implements the residual-branch protocol of :mod:`initlab.datadriven.fixup`.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                          nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )  # fmt: skip

    def residual_branch(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.conv2, self.bn2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class SmallResNet(nn.Module):
    """A small ResNet-style CNN with batch norm for 28x28 images.

    ``stem`` (conv3x3 -> BN -> ReLU, ``widths[0]`` channels) -> one :class:`BasicBlock` per
    width (``layers.0`` keeps the resolution, each later one halves it with stride 2) ->
    global average pool -> ``head``. Shapes with the defaults: (B, 1, 28, 28) -> (B, 16, 28, 28)
    -> (B, 32, 14, 14) -> (B, 64, 7, 7) -> (B, 64) -> (B, 10).

    Args:
        widths: channels per stage, one or more, each >= 1.
        image_size: side of the square one-channel image.
        num_classes: number of output logits.

    Raises:
        ArgumentError: ``widths`` is not a list or tuple of integers >= 1 (a ``ValueError``).

    Example:
        >>> SmallResNet(widths=(4, 8))(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, widths: tuple[int, ...] = (16, 32, 64), image_size: int = 28, num_classes: int = 10
    ) -> None:
        super().__init__()
        widths = positive_ints("widths", widths, None, "[16,32,64]")
        self.image_size = image_size
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks = [BasicBlock(widths[0], widths[0])]
        blocks += [BasicBlock(a, b, stride=2) for a, b in zip(widths, widths[1:], strict=False)]
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.image_size, self.image_size)
        x = self.layers(self.stem(x))  # (B, widths[-1], H', W')
        return self.head(x.mean((2, 3)))
