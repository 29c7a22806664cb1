"""Recurrent zoo models whose forward is written out from an ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``.

The parameters live in a real PyTorch recurrent module, ``model.rnn``, so that its own
``reset_parameters`` is the PyTorch-default initialization and initlab's gate-aware fans
(:func:`initlab.fans.layer_fans`) apply to ``rnn.weight_ih_l{k}``, ``rnn.weight_hh_l{k}``,
``rnn.bias_ih_l{k}``, ``rnn.bias_hh_l{k}``. The forward does not call that module (whose fused
kernel keeps flat weights that ``torch.func`` cannot stack): :func:`recurrent_forward` computes
PyTorch's documented equations from the same tensors, the input projection of all time steps in
one matrix product and a Python loop over time for the hidden part. The result equals
``model.rnn(x)`` within float rounding, and the forward is a pure function of parameters,
buffers and input, so stacked copies train under ``torch.func.vmap(functional_call(...))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from initlab._checks import ArgumentError
from initlab.zoo._common import choice, positive

__all__ = ["CELLS", "ORDERS", "CharRNN", "SeqRNN", "recurrent_forward"]

#: Cell names, each mapped to the PyTorch module holding its parameters and its keyword options.
CELLS: dict[str, tuple[type[nn.RNNBase], dict]] = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
}
#: How :class:`SeqRNN` reads an image: rows, pooled pixels, or pooled pixels permuted.
ORDERS = ("rows", "pixels", "permuted")
# Seed of SeqRNN's fixed pixel permutation: the same permutation in every build and process.
_PERMUTATION_SEED = 0


def _cell_step(
    rnn: nn.RNNBase, x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One time step of layer ``k``: ``x_proj = W_ih x_t + b_ih`` given, returns ``(h, c)``."""
    h_proj = F.linear(h, getattr(rnn, f"weight_hh_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
    if isinstance(rnn, nn.LSTM):  # gates i, f, g, o (torch.nn.LSTM's equations)
        i, f, g, o = (x_proj + h_proj).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if isinstance(rnn, nn.GRU):  # gates r, z, n (torch.nn.GRU's equations)
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = h_proj.chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h, None
    if rnn.nonlinearity == "tanh":  # torch.nn.RNN: h = act(W_ih x + b_ih + W_hh h + b_hh)
        return torch.tanh(x_proj + h_proj), None
    return torch.relu(x_proj + h_proj), None


def recurrent_forward(rnn: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """Run ``rnn`` on ``x`` from zero initial states, written out from its parameters.

    Computes, layer by layer, PyTorch's equations for ``nn.LSTM`` (gates i, f, g, o:
    ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``), ``nn.GRU`` (gates r, z, n:
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``) and
    ``nn.RNN`` (``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``), as the torch.nn
    documentation of each class states them (Hochreiter & Schmidhuber 1997 with the forget gate
    of Gers et al. 2000; Cho et al. 2014). Each layer's input projection ``W_ih x + b_ih`` is
    one matrix product over all time steps; the hidden part loops over time.

    Args:
        rnn: an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` built with ``batch_first=True``,
            unidirectional, with biases and no projection (``proj_size=0``).
        x: input ``(B, T, input_size)`` float, ``T >= 1``.

    Returns:
        The top layer's hidden states ``(B, T, hidden_size)``, equal to ``rnn(x)[0]`` within
        float rounding (dropout between layers is not applied: build ``rnn`` without it).

    Raises:
        ArgumentError: ``rnn`` is not batch-first, is bidirectional, has no bias, or projects
            (argument ``rnn``).
    """
    if not rnn.batch_first or rnn.bidirectional or not rnn.bias or rnn.proj_size:
        raise ArgumentError(
            "rnn",
            f"rnn must be batch_first, unidirectional, with bias and proj_size=0; got {rnn!r}",
        )
    B = x.shape[0]
    for k in range(rnn.num_layers):
        x_proj = F.linear(x, getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"bias_ih_l{k}"))
        h = x.new_zeros(B, rnn.hidden_size)
        c = x.new_zeros(B, rnn.hidden_size) if isinstance(rnn, nn.LSTM) else None
        outputs = []
        # unbind, not x_proj[:, t]: the backward of T selects would each fill a zero tensor of
        # x_proj's full size (quadratic in T); unbind's backward is one stack.
        for x_t in x_proj.unbind(1):
            h, c = _cell_step(rnn, x_t, h, c, k)
            outputs.append(h)
        x = torch.stack(outputs, dim=1)  # (B, T, hidden)
    return x


def _build_rnn(cell: str, input_size: int, hidden: int, num_layers: int) -> nn.RNNBase:
    module, options = CELLS[cell]
    return module(input_size, hidden, num_layers=num_layers, batch_first=True, **options)


class CharRNN(nn.Module):
    """A character-level recurrent language model: embedding, LSTM or GRU, Linear head.

    ``(B, T)`` int64 token ids -> ``emb`` ``(B, T, embed)`` -> ``rnn`` (from zero states,
    written out by :func:`recurrent_forward`) ``(B, T, hidden)`` -> ``head`` -> logits
    ``(B, T, vocab_size)`` float32, the logits at ``t`` predicting token ``t + 1``. The
    character-level RNN language model of Graves 2013 ("Generating Sequences With Recurrent
    Neural Networks", §2-3) and Karpathy's char-rnn, with a learned input embedding.

    Built with PyTorch's default initialization (``emb`` N(0, 1); ``rnn`` and ``head``
    U(-1/sqrt(hidden), 1/sqrt(hidden)) from their own ``reset_parameters``).

    Args:
        vocab_size: number of token ids, >= 1.
        cell: ``"lstm"`` or ``"gru"``.
        embed: embedding width, >= 1.
        hidden: recurrent hidden size, >= 1.
        num_layers: stacked recurrent layers, >= 1.

    Raises:
        TypeError: a size is not an int.
        ArgumentError: a size below 1 or an unknown ``cell`` (a ``ValueError`` naming it).

    Example:
        >>> CharRNN(vocab_size=10, embed=4, hidden=8)(torch.zeros(2, 5, dtype=torch.int64)).shape
        torch.Size([2, 5, 10])
    """

    input_kind = "tokens"

    def __init__(
        self,
        vocab_size: int = 96,
        cell: str = "lstm",
        embed: int = 64,
        hidden: int = 256,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        positive("vocab_size", vocab_size)
        choice("cell", cell, ("lstm", "gru"))
        positive("embed", embed)
        positive("hidden", hidden)
        positive("num_layers", num_layers)
        self.vocab_size, self.cell = vocab_size, cell
        self.emb = nn.Embedding(vocab_size, embed)
        self.rnn = _build_rnn(cell, embed, hidden, num_layers)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(recurrent_forward(self.rnn, self.emb(tokens)))  # (B, T, vocab_size)


class SeqRNN(nn.Module):
    """A recurrent classifier reading an image as a sequence (rows, pixels or permuted pixels).

    ``order="rows"``: ``image_size`` steps of ``image_size`` pixels (28 x 28 for MNIST).
    ``order="pixels"``: the image average-pooled by ``pool`` (non-overlapping ``pool x pool``
    windows), then one pixel per step in row-major order (196 steps at ``pool=2``): sequential
    MNIST, Le et al. 2015 ("A Simple Way to Initialize Recurrent Networks of Rectified Linear
    Units", §4.2), here shortened by pooling. ``order="permuted"``: as ``pixels`` but in one
    fixed random order, the persistent int64 buffer ``permutation`` drawn from
    ``torch.Generator().manual_seed(0)`` (the same in every build): permuted MNIST, Le et al.
    2015 §4.2. The ``rnn`` runs from zero states (:func:`recurrent_forward`); ``head`` reads
    the top layer's last step. Input ``(B, 1, S, S)``, ``(B, S, S)`` or ``(B, S*S)`` float,
    output logits ``(B, num_classes)``.

    Built with PyTorch's default initialization.

    Args:
        cell: ``"lstm"``, ``"gru"``, ``"rnn_tanh"`` or ``"rnn_relu"`` (an ``nn.RNN`` with that
            nonlinearity; ``rnn_relu`` is the IRNN's network).
        hidden: recurrent hidden size, >= 1.
        num_layers: stacked recurrent layers, >= 1.
        order: ``"rows"``, ``"pixels"`` or ``"permuted"``.
        pool: side of the average-pooling window of the pixel orders, >= 1, dividing
            ``image_size`` (not used by ``rows``).
        num_classes: number of output logits, >= 1.
        image_size: side of the square one-channel image, >= 1.

    Raises:
        TypeError: a size is not an int.
        ArgumentError: a size below 1, an unknown ``cell`` or ``order``, or ``pool`` not
            dividing ``image_size`` (a ``ValueError`` naming the argument).

    Example:
        >>> SeqRNN(hidden=8, order="pixels", pool=4)(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    input_kind = "image"

    def __init__(
        self,
        cell: str = "lstm",
        hidden: int = 128,
        num_layers: int = 1,
        order: str = "rows",
        pool: int = 2,
        num_classes: int = 10,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        choice("cell", cell, CELLS)
        positive("hidden", hidden)
        positive("num_layers", num_layers)
        choice("order", order, ORDERS)
        positive("pool", pool)
        positive("num_classes", num_classes)
        positive("image_size", image_size)
        if order != "rows" and image_size % pool:
            raise ArgumentError(
                "pool", f"pool must divide image_size={image_size}; got pool={pool!r}"
            )
        self.cell, self.order, self.pool, self.image_size = cell, order, pool, image_size
        input_size = image_size if order == "rows" else 1
        self.rnn = _build_rnn(cell, input_size, hidden, num_layers)
        self.head = nn.Linear(hidden, num_classes)
        if order == "permuted":
            steps = (image_size // pool) ** 2
            generator = torch.Generator().manual_seed(_PERMUTATION_SEED)
            self.register_buffer("permutation", torch.randperm(steps, generator=generator))

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Return the sequence ``(B, T, features)`` that the ``rnn`` reads from images ``x``."""
        S = self.image_size
        x = x.reshape(x.shape[0], S, S)
        if self.order == "rows":
            return x  # (B, T=S rows, S pixels)
        x = F.avg_pool2d(x.unsqueeze(1), self.pool).flatten(1)  # (B, (S/pool)^2)
        if self.order == "permuted":
            x = x[:, self.permutation]
        return x.unsqueeze(-1)  # (B, T, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = recurrent_forward(self.rnn, self.sequence(x))  # (B, T, hidden)
        return self.head(out[:, -1])
