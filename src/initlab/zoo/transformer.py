"""Transformers written out layer by layer: a character-level GPT and a ViT for 28x28 images.

Both share one :class:`Block` whose attention is explicit (``q k^T / sqrt(d_head)``, mask,
softmax, ``@ v``) so that an initialization scheme or a diagnostic can reach every piece by name
(the structure contract the sequence schemes are written against):

``model.blocks[i].attn.{q, k, v, proj}``
    ``nn.Linear(d, d)`` with bias; ``attn.n_head`` heads of width ``d / n_head``; ``attn.causal``.
``model.blocks[i].attn.score``
    an ``nn.Identity`` applied to the scaled pre-softmax scores ``(B, H, T, T)`` (after the
    ``1/sqrt(d_head)`` factor, before the causal mask): a forward hook on it reads the attention
    logits without changing the forward.
``model.blocks[i].mlp.{fc, act, proj}``
    ``Linear(d, 4d)`` -> exact (erf) GELU -> ``Linear(4d, d)``.
``model.blocks[i].{ln1, ln2}``
    ``nn.LayerNorm(d)`` (``nn.Identity`` when ``norm="none"``); optional gates ``gate_attn``,
    ``gate_mlp`` (see ``gate`` below).
``model.residual_scale``
    a persistent 0-dim float32 buffer ``alpha`` (1.0 at construction). Every residual update is

        pre-LN:   x = alpha * x + g * f(LN(x))
        post-LN:  x = LN(alpha * x + g * f(x))
        no LN:    x = alpha * x + g * f(x)

    with ``f`` the attention or the MLP and ``g`` its gate (1 without gates). Post-LN with
    ``alpha > 1`` is DeepNorm (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000
    Layers", §3, ``x_{l+1} = LN(alpha x_l + G(x_l))``); pre-LN multiplies the residual stream
    by the same ``alpha`` so that the buffer means one thing in both (at 1.0 both are the
    standard layers). Without LayerNorm (``norm="none"``) the block is the one T-Fixup is
    derived for (Huang et al. 2020, "Improving Transformer Optimization Through Better
    Initialization", §3: every LayerNorm removed).
``model.pos_emb``, ``model.ln_f``, ``model.head``
    learned positions ``(positions, d)``; the final LayerNorm (pre-LN) or ``nn.Identity``
    (post-LN, whose last block already ends in a LayerNorm, and no LN); the output Linear.
``model.n_layer``, ``model.d_model``, ``model.n_head``, ``model.norm_position``
    ints and ``"pre"`` / ``"post"`` / ``"none"``.

Every forward is a pure function of parameters, buffers and input (no dropout, no buffer
writes, no data-dependent control flow), so stacked copies train under
``torch.func.vmap(torch.func.functional_call(...))``. Models are built with PyTorch's default
initialization of each module, plus ``pos_emb`` ~ N(0, 0.02^2); a scheme overwrites it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.zoo._common import choice, positive

__all__ = ["GATES", "NORM_POSITIONS", "Attention", "Block", "CharTransformer", "FeedForward", "ViT"]

#: Where each block's LayerNorm sits: before each sublayer (GPT-2), after each residual sum
#: (Vaswani et al. 2017), or nowhere (T-Fixup's setting, Huang et al. 2020, §3).
NORM_POSITIONS = ("pre", "post", "none")
#: Residual gates and their value at construction: ReZero's scalar 0 (Bachlechner et al. 2020,
#: "ReZero is All You Need", §3) and CaiT's per-channel LayerScale 0.1 (Touvron et al. 2021,
#: "Going deeper with Image Transformers", §3, the value it uses for depth <= 18).
GATES = {"rezero": 0.0, "layerscale": 0.1}
# Standard deviation of the learned position embedding at construction: GPT's N(0, 0.02^2)
# (Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training", §4.1).
_POS_STD = 0.02


class Attention(nn.Module):
    """Multi-head self-attention written out: ``softmax(q k^T / sqrt(d_head) [+ mask]) v``.

    Source: Vaswani et al. 2017, "Attention Is All You Need", §3.2.1-3.2.2 (eq. 1).

    Input and output ``(B, T, d_model)`` float. ``q``, ``k``, ``v`` and ``proj`` are
    ``nn.Linear(d_model, d_model)`` with bias; heads are the consecutive ``d_model / n_head``
    slices of their outputs. With ``causal`` position ``t`` attends to positions ``<= t`` (the
    mask ``torch.ones(T, T).tril()`` is built in the forward, no buffer). ``score`` is an
    ``nn.Identity`` on the scaled scores ``(B, n_head, T, T)`` before the mask, for hooks.
    """

    def __init__(self, d_model: int, n_head: int, causal: bool) -> None:
        super().__init__()
        self.n_head = n_head
        self.causal = causal
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.score = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        d_head = C // self.n_head

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, H, T, d_head)
            return t.reshape(B, T, self.n_head, d_head).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = self.score(q @ k.transpose(-2, -1) / math.sqrt(d_head))  # (B, H, T, T)
        if self.causal:
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v  # (B, H, T, d_head)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    """The position-wise MLP ``proj(GELU(fc(x)))``: ``fc`` d -> 4d, exact GELU, ``proj`` 4d -> d.

    GELU is the exact one, ``x * Phi(x)`` (``nn.GELU()``, not the tanh approximation); source:
    Hendrycks & Gimpel 2016, "Gaussian Error Linear Units"; the 4x width is Vaswani et al. 2017
    §3.3. Input and output ``(B, T, d)``.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    """One transformer layer: attention then MLP, each a gated residual update.

    ``forward(x, residual_scale)`` with ``x`` ``(B, T, d_model)`` and ``residual_scale`` the
    0-dim ``alpha`` of the module docstring of :mod:`initlab.zoo.transformer`:
    pre-LN ``x = alpha x + g f(LN(x))``, post-LN ``x = LN(alpha x + g f(x))``, no LN
    ``x = alpha x + g f(x)`` (``ln1`` and ``ln2`` are then ``nn.Identity``).

    Args:
        d_model: token width.
        n_head: attention heads, dividing ``d_model``.
        causal: mask attention to earlier positions.
        norm: ``"pre"``, ``"post"`` or ``"none"``.
        gate: ``None`` (no gate attributes), ``"rezero"`` (``gate_attn``, ``gate_mlp``: 0-dim
            parameters, 0) or ``"layerscale"`` (shape ``(d_model,)``, 0.1).
    """

    def __init__(
        self, d_model: int, n_head: int, causal: bool, norm: str, gate: str | None
    ) -> None:
        super().__init__()
        self.norm_position = norm
        layer_norm = nn.Identity if norm == "none" else nn.LayerNorm
        self.ln1 = layer_norm(d_model)
        self.attn = Attention(d_model, n_head, causal)
        self.ln2 = layer_norm(d_model)
        self.mlp = FeedForward(d_model)
        self.gated = gate is not None
        if gate is not None:
            shape = () if gate == "rezero" else (d_model,)
            self.gate_attn = nn.Parameter(torch.full(shape, GATES[gate]))
            self.gate_mlp = nn.Parameter(torch.full(shape, GATES[gate]))

    def forward(self, x: torch.Tensor, residual_scale: torch.Tensor) -> torch.Tensor:
        for ln, sublayer, gate in (
            (self.ln1, self.attn, "gate_attn"),
            (self.ln2, self.mlp, "gate_mlp"),
        ):
            update = sublayer(x) if self.norm_position == "post" else sublayer(ln(x))
            if self.gated:
                update = getattr(self, gate) * update
            x = residual_scale * x + update
            if self.norm_position == "post":
                x = ln(x)
        return x


def _check_transformer(d_model: int, n_layer: int, n_head: int, norm: str, gate) -> None:
    positive("d_model", d_model)
    positive("n_layer", n_layer)
    positive("n_head", n_head)
    if d_model % n_head:
        raise ArgumentError(
            "n_head", f"n_head must divide d_model={d_model}; got n_head={n_head!r}"
        )
    choice("norm", norm, NORM_POSITIONS)
    if gate is not None and gate not in GATES:
        raise ArgumentError(
            "gate", f"gate must be one of {sorted(GATES)} or None; got gate={gate!r}"
        )


class _Transformer(nn.Module):
    """The shared trunk: blocks, ``residual_scale``, ``ln_f``, and the contract's attributes."""

    def __init__(
        self,
        d_model: int,
        n_layer: int,
        n_head: int,
        positions: int,
        causal: bool,
        norm: str,
        gate: str | None,
    ) -> None:
        super().__init__()
        self.n_layer, self.d_model, self.n_head = n_layer, d_model, n_head
        self.norm_position = norm
        self.pos_emb = nn.Parameter(torch.empty(positions, d_model))
        nn.init.normal_(self.pos_emb, std=_POS_STD)
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, causal, norm, gate) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.register_buffer("residual_scale", torch.ones(()))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        for block in self.blocks:
            x = block(x, self.residual_scale)
        return self.ln_f(x)


class CharTransformer(_Transformer):
    """A character-level GPT: token and position embeddings, causal blocks, a Linear head.

    ``(B, T)`` int64 token ids, ``T <= seq_len`` -> ``tok_emb`` ``(B, T, d)`` + ``pos_emb[:T]``
    -> ``n_layer`` causal :class:`Block` s -> ``ln_f`` -> ``head`` (no bias) -> logits
    ``(B, T, vocab_size)`` float32, the logits at ``t`` predicting token ``t + 1``. The
    decoder-only layout of GPT (Radford et al. 2018, §3.1) with GPT-2's pre-LN and final
    LayerNorm (Radford et al. 2019, §2.3) for ``norm="pre"``, the original post-LN layer
    (Vaswani et al. 2017, §3.1) for ``norm="post"``, and no LayerNorm anywhere for
    ``norm="none"`` (``ln1``, ``ln2``, ``ln_f`` are ``nn.Identity``: the decoder T-Fixup is
    derived for, Huang et al. 2020, §3). Attribute names: module docstring of
    :mod:`initlab.zoo.transformer`; plus ``tok_emb`` (``nn.Embedding``), ``vocab_size``,
    ``seq_len``.

    Initialization at construction: PyTorch's default of each module (the ``torch_default``
    scheme: ``nn.Embedding`` N(0, 1), ``nn.Linear`` Kaiming-uniform with a = sqrt(5),
    LayerNorm 1/0), gates as ``gate`` says, ``pos_emb`` ~ N(0, 0.02^2) (GPT, Radford et al.
    2018, §4.1).

    Args:
        vocab_size: number of token ids, >= 1.
        seq_len: the longest input sequence (rows of ``pos_emb``), >= 1.
        d_model: token width, >= 1, divisible by ``n_head``.
        n_layer: blocks, >= 1.
        n_head: attention heads, >= 1.
        norm: ``"pre"`` or ``"post"`` LayerNorm placement, or ``"none"`` (no LayerNorm).
        gate: ``None``, ``"rezero"`` (scalar gates, 0) or ``"layerscale"`` (per-channel, 0.1).

    Raises:
        TypeError: a size is not an int.
        ArgumentError: a size below 1, ``n_head`` not dividing ``d_model``, an unknown ``norm``
            or ``gate`` (a ``ValueError`` naming the argument); from the forward, an input
            longer than ``seq_len`` (argument ``tokens``).

    Example:
        >>> model = CharTransformer(vocab_size=10, seq_len=8, d_model=16, n_layer=1, n_head=2)
        >>> model(torch.zeros(3, 5, dtype=torch.int64)).shape
        torch.Size([3, 5, 10])
    """

    input_kind = "tokens"

    def __init__(
        self,
        vocab_size: int = 96,
        seq_len: int = 128,
        d_model: int = 128,
        n_layer: int = 4,
        n_head: int = 4,
        norm: str = "pre",
        gate: str | None = None,
    ) -> None:
        positive("vocab_size", vocab_size)
        positive("seq_len", seq_len)
        _check_transformer(d_model, n_layer, n_head, norm, gate)
        super().__init__(d_model, n_layer, n_head, seq_len, True, norm, gate)
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[-1]
        if self.seq_len < T:
            raise ArgumentError(
                "tokens",
                f"tokens must have at most seq_len={self.seq_len} positions; "
                f"got shape {tuple(tokens.shape)}",
            )
        x = self.tok_emb(tokens) + self.pos_emb[:T]  # (B, T, d)
        return self.head(self._trunk(x))  # (B, T, vocab_size)


class ViT(_Transformer):
    """A small Vision Transformer: linear patch embedding, pre-LN blocks, mean-pool, Linear head.

    ``(B, 1, S, S)``, ``(B, S, S)`` or ``(B, S*S)`` float -> non-overlapping ``patch x patch``
    patches in row-major order, each flattened row-major to ``patch**2`` pixels ->
    ``patch_emb`` (``nn.Linear(patch**2, d_model)``, the same map as a Conv2d of stride
    ``patch``) + ``pos_emb`` ``((S / patch)**2, d_model)`` -> ``depth`` bidirectional pre-LN
    :class:`Block` s -> ``ln_f`` -> mean over tokens -> ``head`` -> logits ``(B, num_classes)``.
    Source: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", §3.1 (eq. 1-4), with
    global average pooling in place of the class token (their §3.1 and appendix D.3 compare
    the two; Beyer et al. 2022, "Better plain ViT baselines for ImageNet-1k", use pooling).
    Attribute names: module docstring of :mod:`initlab.zoo.transformer` (``n_layer`` is
    ``depth``; ``norm_position`` is ``"pre"``); plus ``patch``, ``image_size``.

    Initialization at construction: PyTorch's default of each module, gates as ``gate`` says,
    ``pos_emb`` ~ N(0, 0.02^2) (the ViT reference code's position-embedding init).

    Args:
        patch: patch side, >= 1, dividing ``image_size``.
        d_model: token width, >= 1, divisible by ``n_head``.
        depth: blocks, >= 1.
        n_head: attention heads, >= 1.
        num_classes: number of output logits, >= 1.
        image_size: side of the square one-channel image, >= 1.
        gate: ``None``, ``"rezero"`` or ``"layerscale"``.

    Raises:
        TypeError: a size is not an int.
        ArgumentError: a size below 1, ``patch`` not dividing ``image_size``, ``n_head`` not
            dividing ``d_model``, an unknown ``gate`` (a ``ValueError`` naming the argument).

    Example:
        >>> ViT(d_model=16, depth=1, n_head=2)(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    input_kind = "image"

    def __init__(
        self,
        patch: int = 7,
        d_model: int = 64,
        depth: int = 4,
        n_head: int = 4,
        num_classes: int = 10,
        image_size: int = 28,
        gate: str | None = None,
    ) -> None:
        positive("patch", patch)
        positive("num_classes", num_classes)
        positive("image_size", image_size)
        if image_size % patch:
            raise ArgumentError(
                "patch", f"patch must divide image_size={image_size}; got patch={patch!r}"
            )
        _check_transformer(d_model, depth, n_head, "pre", gate)
        super().__init__(d_model, depth, n_head, (image_size // patch) ** 2, False, "pre", gate)
        self.patch, self.image_size = patch, image_size
        self.patch_emb = nn.Linear(patch * patch, d_model)
        self.head = nn.Linear(d_model, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Return the flattened patches ``(B, (S/patch)**2, patch**2)`` of images ``x``."""
        p, n = self.patch, self.image_size // self.patch
        x = x.reshape(x.shape[0], n, p, n, p)  # (B, row block, row in patch, col block, col)
        return x.permute(0, 1, 3, 2, 4).reshape(x.shape[0], n * n, p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_emb(self.patches(x)) + self.pos_emb  # (B, N, d)
        return self.head(self._trunk(tokens).mean(1))  # (B, num_classes)
