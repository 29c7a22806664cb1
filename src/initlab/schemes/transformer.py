"""Weight policies for transformers, written against the zoo's structure contract.

The contract (:mod:`initlab.zoo.transformer` builds it; any model with these names works):
``model.blocks`` (``nn.ModuleList``); ``block.attn.{q, k, v, proj}`` ``nn.Linear(d, d)`` and
``block.attn.n_head``; ``block.mlp.fc`` ``Linear(d, 4d)``, ``block.mlp.proj``
``Linear(4d, d)``; ``block.ln1``, ``block.ln2`` (``nn.Identity`` without LayerNorm); optional
gates ``block.gate_attn``, ``block.gate_mlp``; ``model.residual_scale`` (0-dim buffer,
DeepNorm's alpha); ``model.norm_position`` (``"pre"``/``"post"``/``"none"``); ``model.tok_emb``
(``nn.Embedding``) or ``model.patch_emb`` (``nn.Linear``); ``model.pos_emb`` ``(T, d)``;
``model.head`` (``nn.Linear``).

:class:`TransformerPolicy` reads those parts (:func:`transformer_parts`) and fills each one by
its role: ``tok_emb``, ``patch_emb``, ``pos_emb``, ``q``, ``k``, ``v``, ``attn_proj``,
``mlp_fc``, ``mlp_proj`` (the two residual projections are ``attn_proj`` and ``mlp_proj``),
``head``, and ``other`` (any further weight). What the scheme does before the policy
(:class:`~initlab.schemes.scheme.Scheme`): LayerNorms 1 and 0, biases 0. Gates keep their
constructed value unless the scheme sets them (``rezero``, ``layerscale``); the
``residual_scale`` buffer is set to 1 (to DeepNorm's alpha by ``deepnorm``). A head tied to the
token embedding takes the embedding's draw; an embedding's ``padding_idx`` row is set to 0
after the draw, as ``nn.Embedding`` promises.

Every transformer scheme takes two options (numbers, 0 or 1), reusable embedding and head
rules: ``scaled_embedding=1`` draws the token embedding from N(0, 1/d)
(:func:`initlab.schemes.heads.scaled_embedding_`), ``zero_head=1`` sets the head weight to 0.
The class-prior head bias needs training labels: it is the step
:class:`initlab.schemes.heads.ClassPriorBias`.

The schemes' rules are the ``_gpt2`` ... ``_mimetic`` functions below; each docstring gives the
formula and its source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from initlab._checks import ArgumentError, finite, non_negative
from initlab.initializers import (
    normal_,
    trunc_normal_,
    uniform_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from initlab.schemes.heads import scaled_embedding_
from initlab.schemes.weights import weight_parameters

__all__ = [
    "POLICIES",
    "MimeticTargets",
    "Rules",
    "TransformerParts",
    "TransformerPolicy",
    "deepnorm_constants",
    "layerscale_eps",
    "mimetic_attention_",
    "tfixup_scale",
    "transformer_parts",
]

Fill = Callable[[torch.Tensor, int], None]  # fill(tensor, block index) in place
_CONTRACT = (
    "a transformer with blocks[i].attn.{q,k,v,proj} and .n_head, blocks[i].mlp.{fc,proj}, "
    "tok_emb or patch_emb, and head (zoo: char-gpt, vit)"
)


@dataclass(frozen=True)
class TransformerParts:
    """The parts of a contract transformer that the policies fill (see the module docstring).

    Attributes:
        blocks: ``model.blocks`` as a tuple.
        d_model: the token width ``d`` (``q.in_features``).
        n_head: heads per attention (``blocks[0].attn.n_head``).
        embedding: ``("tok_emb", module)`` or ``("patch_emb", module)``.
        pos_emb: the position table ``(T, d)`` or ``None``.
        head: the output ``nn.Linear``.
        tied: whether ``head.weight`` is the token embedding's weight.
    """

    model: nn.Module
    blocks: tuple[nn.Module, ...]
    d_model: int
    n_head: int
    embedding: tuple[str, nn.Module]
    pos_emb: nn.Parameter | None
    head: nn.Linear
    tied: bool

    @property
    def n_layer(self) -> int:
        """The number of blocks ``L``."""
        return len(self.blocks)

    def slots(self) -> list[tuple[str, int, torch.Tensor]]:
        """``(role, block index, tensor)`` of every weight, in the order they are drawn.

        Embedding, positions, then per block q, k, v, attn_proj, mlp_fc, mlp_proj, then the
        head (left out when tied), then every other weight (role ``other``, index 0).
        """
        role, module = self.embedding
        slots = [(role, 0, module.weight)]
        if self.pos_emb is not None:
            slots.append(("pos_emb", 0, self.pos_emb))
        for i, block in enumerate(self.blocks):
            a, m = block.attn, block.mlp
            slots += [("q", i, a.q.weight), ("k", i, a.k.weight), ("v", i, a.v.weight)]
            slots += [("attn_proj", i, a.proj.weight), ("mlp_fc", i, m.fc.weight)]
            slots.append(("mlp_proj", i, m.proj.weight))
        if not self.tied:
            slots.append(("head", 0, self.head.weight))
        seen = {id(t) for _, _, t in slots} | {id(self.head.weight)}
        for _, _, param in weight_parameters(self.model):
            if id(param) not in seen:
                seen.add(id(param))
                slots.append(("other", 0, param))
        return slots


def transformer_parts(model: nn.Module, scheme: str) -> TransformerParts:
    """Read the contract's parts of ``model``; ``scheme`` names the caller in errors.

    Raises:
        ValueError: a part is missing or of the wrong type; the message names it, the
            contract and the zoo models that follow it.
    """

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"scheme {scheme!r} needs {_CONTRACT}; {type(model).__name__} {what}")

    blocks = getattr(model, "blocks", None)
    need(isinstance(blocks, nn.ModuleList) and len(blocks) > 0, "has no model.blocks ModuleList")
    for i, block in enumerate(blocks):
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        for owner, names, where in ((attn, "q k v proj", "attn"), (mlp, "fc proj", "mlp")):
            for name in names.split():
                need(
                    isinstance(getattr(owner, name, None), nn.Linear),
                    f"has no nn.Linear blocks[{i}].{where}.{name}",
                )
        need(isinstance(getattr(attn, "n_head", None), int), f"has no blocks[{i}].attn.n_head")
    tok, patch = getattr(model, "tok_emb", None), getattr(model, "patch_emb", None)
    if isinstance(tok, nn.Embedding):
        embedding = ("tok_emb", tok)
    else:
        need(isinstance(patch, nn.Linear), "has neither tok_emb (nn.Embedding) nor patch_emb")
        embedding = ("patch_emb", patch)
    head = getattr(model, "head", None)
    need(isinstance(head, nn.Linear), "has no model.head nn.Linear")
    pos = getattr(model, "pos_emb", None)
    return TransformerParts(
        model=model,
        blocks=tuple(blocks),
        d_model=blocks[0].attn.q.in_features,
        n_head=blocks[0].attn.n_head,
        embedding=embedding,
        pos_emb=pos if isinstance(pos, torch.Tensor) else None,
        head=head,
        tied=head.weight is embedding[1].weight,
    )


@dataclass(frozen=True)
class Rules:
    """What one scheme writes: a fill per role, and optionally gates and ``residual_scale``.

    ``fills`` maps roles (see :meth:`TransformerParts.slots`) to ``fill(tensor, i)``; a role
    without a fill keeps its tensor. ``after(parts)`` runs once the fills are done.
    """

    fills: dict[str, Fill]
    gates: float | None = None
    residual_scale: float = 1.0
    after: Callable[[TransformerParts], None] | None = None


@dataclass(frozen=True)
class TransformerPolicy:
    """A transformer scheme's weight policy: its rules by role, plus the two head/embedding
    options (see the module docstring).

    ``rules(parts, generator, **options)`` returns the :class:`Rules`; ``needs`` lists extra
    requirements checked first: ``"post_ln"`` (``model.norm_position == "post"`` and a
    ``residual_scale`` buffer) or ``"gates"`` (every block has ``gate_attn`` and ``gate_mlp``).

    Raises (when called):
        ValueError: the model does not follow the contract or a need (the message says what
            it needs and which zoo model has it); an option out of range (an ``ArgumentError``
            naming ``scheme``); ``zero_head=1`` on a head tied to the embedding;
            ``scaled_embedding=1`` without a token embedding.
    """

    name: str
    rules: Callable[..., Rules]
    needs: tuple[str, ...] = ()
    #: options of every transformer scheme, with their defaults
    COMMON: ClassVar[dict[str, float]] = {"scaled_embedding": 0.0, "zero_head": 0.0}

    def __call__(
        self,
        model: nn.Module,
        *,
        generator: torch.Generator,
        batch=None,
        scaled_embedding: float = 0.0,
        zero_head: float = 0.0,
        **options,
    ) -> None:
        parts = transformer_parts(model, self.name)
        self._check_needs(parts)
        scaled = _flag("scaled_embedding", scaled_embedding)
        zero = _flag("zero_head", zero_head)
        if zero and parts.tied:
            raise ValueError(
                f"scheme {self.name!r} with zero_head=1 would zero the token embedding: "
                "model.head.weight is tied to model.tok_emb.weight; untie them or drop zero_head"
            )
        if scaled and parts.embedding[0] != "tok_emb":
            raise ValueError(
                f"scheme {self.name!r} with scaled_embedding=1 needs a token embedding "
                f"(model.tok_emb, nn.Embedding); {type(model).__name__} has patch_emb"
            )
        rules = self.rules(parts, generator, **options)
        fills = dict(rules.fills)
        if scaled:
            fills["tok_emb"] = lambda t, i: scaled_embedding_(t, generator=generator)
        if zero:
            fills["head"] = lambda t, i: zeros_(t)
        with torch.no_grad():
            for role, i, tensor in parts.slots():
                if role in fills:
                    fills[role](tensor, i)
            if rules.after is not None:
                rules.after(parts)
            embedding = parts.embedding[1]
            if isinstance(embedding, nn.Embedding) and embedding.padding_idx is not None:
                embedding.weight[embedding.padding_idx] = 0  # as nn.Embedding promises
            if rules.gates is not None:
                for block in parts.blocks:
                    block.gate_attn.fill_(rules.gates)
                    block.gate_mlp.fill_(rules.gates)
            scale = getattr(model, "residual_scale", None)
            if isinstance(scale, torch.Tensor):
                scale.fill_(rules.residual_scale)

    def _check_needs(self, parts: TransformerParts) -> None:
        model = parts.model
        if "post_ln" in self.needs:
            position = getattr(model, "norm_position", None)
            buffer = getattr(model, "residual_scale", None)
            if position != "post" or not isinstance(buffer, torch.Tensor):
                raise ValueError(
                    f"scheme {self.name!r} needs a post-LN transformer (x = LN(alpha x + f(x)), "
                    "model.norm_position 'post' and a model.residual_scale buffer) with "
                    "blocks[i].attn.{q,k,v,proj} (zoo: char-gpt norm=post); got "
                    f"norm_position={position!r}"
                )
        if "gates" in self.needs:
            for i, block in enumerate(parts.blocks):
                for gate in ("gate_attn", "gate_mlp"):
                    if not isinstance(getattr(block, gate, None), torch.Tensor):
                        raise ValueError(
                            f"scheme {self.name!r} needs residual gates blocks[i].gate_attn "
                            f"and .gate_mlp (zoo: char-gpt or vit with gate=rezero or "
                            f"gate=layerscale); blocks[{i}] has no {gate}"
                        )


# --- tensor fills --------------------------------------------------------------------------


def _normal(g: torch.Generator, std: float) -> Fill:
    return lambda t, i: normal_(t, std=std, generator=g)


def _trunc(g: torch.Generator, std: float, cut: float) -> Fill:
    """N(0, std^2) truncated to [-cut std, cut std]."""
    return lambda t, i: trunc_normal_(t, std=std, a=-cut, b=cut, bounds="std", generator=g)


def _xavier_normal(g: torch.Generator, gain: float) -> Fill:
    return lambda t, i: xavier_normal_(t, gain=gain, generator=g)


def _xavier_uniform(g: torch.Generator) -> Fill:
    return lambda t, i: xavier_uniform_(t, generator=g)


def _torch_linear(g: torch.Generator) -> Fill:
    """nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = weight.shape[1]."""

    def fill(t: torch.Tensor, i: int) -> None:
        bound = t.shape[1] ** -0.5
        uniform_(t, a=-bound, b=bound, generator=g)

    return fill


def _zeros(t: torch.Tensor, i: int) -> None:
    zeros_(t)


_WEIGHT_ROLES = ("tok_emb", "patch_emb", "pos_emb", "q", "k", "v", "attn_proj", "mlp_fc")
_ALL_ROLES = (*_WEIGHT_ROLES, "mlp_proj", "head", "other")


def _every(fill: Fill, **overrides: Fill) -> dict[str, Fill]:
    return {role: overrides.get(role, fill) for role in _ALL_ROLES}


# --- the schemes' rules --------------------------------------------------------------------


def _gpt2(parts: TransformerParts, g: torch.Generator, *, std: float = 0.02) -> Rules:
    """GPT-2: every weight N(0, std^2), std = 0.02; the residual projections (attn.proj,
    mlp.proj) N(0, (std / sqrt(2 L))^2), two residual branches per layer. Radford et al. 2019,
    "Language Models are Unsupervised Multitask Learners", Sec. 2.3 ("scale the weights of
    residual layers at initialization by a factor of 1/sqrt(N)", N the number of residual
    layers); Hugging Face ``GPT2PreTrainedModel._init_weights`` (embeddings and positions
    N(0, 0.02^2) too)."""
    std = _option(non_negative, "std", std)
    scaled = _normal(g, std / math.sqrt(2 * parts.n_layer))
    return Rules(_every(_normal(g, std), attn_proj=scaled, mlp_proj=scaled))


def _small_init_std(d: int) -> float:
    # Nguyen & Salazar 2019: Xavier-normal's 2/(fan_in + fan_out) on a d x 4d MLP matrix.
    return math.sqrt(2 / (5 * d))


def _small_init(parts: TransformerParts, g: torch.Generator) -> Rules:
    """SmallInit: every weight N(0, 2/(5 d)), std sqrt(2/(5d)): Xavier normal's
    2 / (fan_in + fan_out) for a d x 4d MLP matrix, used for every weight. Nguyen and Salazar,
    "Transformers without Tears: Improving the Normalization of Self-Attention" (2019), as
    GPT-NeoX's ``small_init_init_method`` (``megatron/model/init_functions.py``) implements it:
    std = sqrt(2 / (5 dim))."""
    return Rules(_every(_normal(g, _small_init_std(parts.d_model))))


def _wang_init(parts: TransformerParts, g: torch.Generator) -> Rules:
    """Residual projections N(0, (2 / (L sqrt(d)))^2), every other weight SmallInit. Wang and
    Komatsuzaki 2021, GPT-J (mesh-transformer-jax); GPT-NeoX's ``wang_init_method``
    (std = 2 / n_layers / sqrt(dim))."""
    residual = _normal(g, 2 / (parts.n_layer * math.sqrt(parts.d_model)))
    small = _normal(g, _small_init_std(parts.d_model))
    return Rules(_every(small, attn_proj=residual, mlp_proj=residual))


def _llama_depth(parts: TransformerParts, g: torch.Generator) -> Rules:
    """OLMo-core ``InitMethod.llama_depth`` (allenai/OLMo-core,
    ``src/olmo_core/nn/transformer/init.py`` and ``nn/attention/__init__.py``): linear weights
    N(0, 0.02^2) truncated at +-3 std; the residual projections of block i (0-based)
    std 0.02 / sqrt(2 (i + 1)) (OLMo's attention ``w_out`` and feed-forward ``w2``; its SwiGLU
    ``w3`` has no counterpart here); token embedding N(0, 1) untruncated; head std d^(-1/2)
    truncated at +-3 std. OLMo has rotary positions: a learned ``pos_emb`` (and ViT's
    ``patch_emb``) take the linear layers' 0.02."""
    base = _trunc(g, 0.02, 3.0)

    def residual(t: torch.Tensor, i: int) -> None:
        trunc_normal_(t, std=0.02 / math.sqrt(2 * (i + 1)), a=-3.0, b=3.0, generator=g)

    fills = _every(
        base,
        tok_emb=_normal(g, 1.0),
        attn_proj=residual,
        mlp_proj=residual,
        head=_trunc(g, parts.d_model**-0.5, 3.0),
    )
    return Rules(fills)


def _zero_proj(parts: TransformerParts, g: torch.Generator) -> Rules:
    """modded-nanogpt: residual projections and head 0 (KellerJordan/modded-nanogpt,
    ``records/track_2_medium/2024-12-31_Target350M/train_gpt.py``: ``attn.c_proj``,
    ``mlp.c_proj`` and ``lm_head`` ``weight.data.zero_()``, "zero init suggested by
    @Grad62304977"); the rest as it builds them, PyTorch's defaults: q, k, v, mlp.fc (and
    patch_emb) U(-1/sqrt(fan_in), 1/sqrt(fan_in)), token embedding N(0, 1). It has rotary
    positions: a learned ``pos_emb`` takes GPT's N(0, 0.02^2). A head tied to the token
    embedding is refused (modded-nanogpt unties them to zero the head)."""
    if parts.tied:
        raise ValueError(
            "scheme 'zero_proj' zeroes the head, but model.head.weight is tied to "
            "model.tok_emb.weight (it would zero the embedding); untie them"
        )
    fills = _every(
        _torch_linear(g),
        tok_emb=_normal(g, 1.0),
        pos_emb=_normal(g, 0.02),
        attn_proj=_zeros,
        mlp_proj=_zeros,
        head=_zeros,
    )
    return Rules(fills)


def deepnorm_constants(n_layer: int) -> tuple[float, float]:
    """DeepNet's decoder-only ``(alpha, beta) = ((2N)^(1/4), (8N)^(-1/4))`` for N layers.

    Source: Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers" (2022), Sec. 3 and
    Figure 2 (the table of alpha and beta per architecture).
    """
    return (2 * n_layer) ** 0.25, (8 * n_layer) ** -0.25


def _deepnorm(parts: TransformerParts, g: torch.Generator) -> Rules:
    """DeepNorm (Wang et al. 2022, "DeepNet", Sec. 3, Figure 2's pseudo-code), decoder-only
    with N layers: residual_scale alpha = (2N)^(1/4); xavier_normal gain beta = (8N)^(-1/4)
    for v, attn.proj, mlp.fc, mlp.proj; gain 1 for q, k. Embeddings, positions and head, which
    the pseudo-code leaves to the base initialization: xavier_normal gain 1."""
    alpha, beta = deepnorm_constants(parts.n_layer)
    small = _xavier_normal(g, beta)
    fills = _every(_xavier_normal(g, 1.0), v=small, attn_proj=small, mlp_fc=small, mlp_proj=small)
    return Rules(fills, residual_scale=alpha)


def tfixup_scale(n_layer: int) -> float:
    """T-Fixup's decoder factor ``(9 N)^(-1/4)`` for N decoder layers.

    Source: Huang, Perez, Ba and Volkovs, "Improving Transformer Optimization Through Better
    Initialization" (ICML 2020), Sec. 3 (the T-Fixup procedure, decoder scaling).
    """
    return (9 * n_layer) ** -0.25


def _tfixup(parts: TransformerParts, g: torch.Generator) -> Rules:
    """T-Fixup for a decoder-only transformer of N layers (Huang et al. 2020, Sec. 3): every
    weight xavier_uniform (U(-b, b), b = sqrt(6 / (fan_in + fan_out)), as fairseq, which the
    paper's code builds on, draws it); the token embedding N(0, d^(-1/2)) in the paper's
    N(mean, std) notation (std d^(-1/2), fairseq's embedding init); then the decoder's v, the
    attention output projection, both MLP weights and the input embedding multiplied by
    (9N)^(-1/4). A learned position table is part of the input embedding x = token + position:
    it is drawn and scaled as the token embedding. q, k and the head stay unscaled Xavier.

    Where it applies: the derivation is for a transformer without LayerNorm and trained without
    learning-rate warm-up (its point is to remove both): the zoo's ``char-gpt`` with
    ``norm="none"`` is that decoder. On a model with LayerNorm (``char-gpt`` ``norm="pre"`` or
    ``"post"``) it is a depth-scaled initialization whose bound no longer holds. The encoder's
    own factor 0.67 N^(-1/4) is for the encoder of an encoder-decoder pair whose input
    embeddings take the decoder's factor, so a bidirectional (encoder-only) model is refused.

    Raises:
        ValueError: the model has no token embedding or its attention is not causal.
    """
    causal = all(getattr(block.attn, "causal", False) for block in parts.blocks)
    if parts.embedding[0] != "tok_emb" or not causal:
        raise ValueError(
            "scheme 'tfixup' is T-Fixup's decoder rule (Huang et al. 2020): it needs a "
            "decoder-only transformer, causal attention (blocks[i].attn.causal) and a token "
            f"embedding model.tok_emb (zoo: char-gpt); {type(parts.model).__name__} has "
            f"{parts.embedding[0]} and causal={causal}"
        )
    scale = tfixup_scale(parts.n_layer)

    def scaled_xavier(t: torch.Tensor, i: int) -> None:
        xavier_uniform_(t, gain=scale, generator=g)

    embedding = _normal(g, scale * parts.d_model**-0.5)
    fills = _every(
        _xavier_uniform(g),
        tok_emb=embedding,
        pos_emb=embedding,
        v=scaled_xavier,
        attn_proj=scaled_xavier,
        mlp_fc=scaled_xavier,
        mlp_proj=scaled_xavier,
    )
    return Rules(fills)


def _rezero(parts: TransformerParts, g: torch.Generator) -> Rules:
    """ReZero: gates 0, every weight xavier_uniform. Bachlechner et al., "ReZero is All You
    Need: Fast Convergence at Large Depth" (2020), Sec. 3 (alpha_i = 0 at initialization); the
    weights U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio 2010). SkipInit (De
    and Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in Deep
    Networks", NeurIPS 2020) is the same zero-gated residual branch."""
    return Rules(_every(_xavier_uniform(g)), gates=0.0)


def layerscale_eps(depth: int) -> float:
    """CaiT's LayerScale initial value for a network of ``depth`` blocks.

    0.1 for depth <= 18, 1e-5 for depth <= 24, 1e-6 beyond. Source: Touvron et al., "Going
    deeper with Image Transformers" (ICCV 2021), Sec. 3 (LayerScale).
    """
    return 0.1 if depth <= 18 else 1e-5 if depth <= 24 else 1e-6


def _layerscale(parts: TransformerParts, g: torch.Generator, *, eps: float = 0.0) -> Rules:
    """LayerScale: gates eps (0 picks it by depth, :func:`layerscale_eps`), weights
    N(0, 0.02^2) truncated at +-2 std (the ViT/timm draw CaiT uses). Touvron et al. 2021, CaiT,
    Sec. 3."""
    eps = _option(non_negative, "eps", eps)
    return Rules(_every(_trunc(g, 0.02, 2.0)), gates=eps or layerscale_eps(parts.n_layer))


@dataclass(frozen=True)
class MimeticTargets:
    """The products :func:`mimetic_attention_` factored: per head ``W_q,h W_k,h^T`` ~ ``qk[h]``
    (``(d, d)`` each), and ``W_v W_proj`` ~ ``vo`` (``(d, d)``), in the paper's layout
    (``Q = X W_q``, weights ``(d, d_head)``; PyTorch's ``q.weight`` is ``W_q^T``)."""

    qk: tuple[torch.Tensor, ...]
    vo: torch.Tensor


def mimetic_attention_(
    attn: nn.Module,
    *,
    alpha1: float = 0.7,
    beta1: float = 0.7,
    alpha2: float = 0.4,
    beta2: float = 0.4,
    generator: torch.Generator | None = None,
) -> MimeticTargets:
    r"""Set one attention's q, k, v, proj weights in place by mimetic initialization.

    Per head h (width k = d / n_head): ``W_q,h W_k,h^T`` is the best rank-k approximation of
    ``alpha1 Z1 + beta1 I`` (Z1 entries N(0, 1/d), a fresh Z1 per head): with the SVD
    ``U S V^T`` of the target, ``W_q,h = U_k S_k^(1/2)``, ``W_k,h = V_k S_k^(1/2)``. Over all
    heads, ``W_v W_proj = alpha2 Z2 - beta2 I`` (full rank d): ``W_v = U S^(1/2)``,
    ``W_proj = S^(1/2) V^T``. Paper layout ``Q = X W_q``; PyTorch stores ``q.weight = W_q^T``.
    The factors are computed in float64 and cast to the weights' dtype.

    Source: Trockman and Kolter, "Mimetic Initialization of Self-Attention Layers" (ICML 2023),
    Sec. 3 (the product forms and their SVD factorization); defaults alpha1 = beta1 = 0.7,
    alpha2 = beta2 = 0.4, the paper's values for ViTs (in pretrained language models the paper
    sees both signs flipped: negative betas give that).

    Args:
        attn: a module with ``q``, ``k``, ``v``, ``proj`` ``nn.Linear(d, d)`` and ``n_head``.
        alpha1, beta1: noise and identity weights of the query-key product, finite.
        alpha2, beta2: noise and (negative) identity weights of the value-projection product.
        generator: random stream of Z1, Z2; ``None`` draws from the global generator.

    Returns:
        :class:`MimeticTargets`, the drawn targets.

    Raises:
        ValueError: a weight is not ``(d, d)``, ``n_head`` does not divide d, or an
            alpha/beta is not finite.
    """
    values = {"alpha1": alpha1, "beta1": beta1, "alpha2": alpha2, "beta2": beta2}
    alpha1, beta1, alpha2, beta2 = (finite(k, v) for k, v in values.items())
    d, heads = attn.q.in_features, attn.n_head
    for name in ("q", "k", "v", "proj"):
        shape = tuple(getattr(attn, name).weight.shape)
        if shape != (d, d):
            raise ValueError(
                f"mimetic init needs attn.{name}.weight of shape {(d, d)}; got {shape}"
            )
    if d % heads:
        raise ValueError(f"mimetic init needs n_head dividing d={d}; got n_head={heads}")
    k, eye = d // heads, torch.eye(d, dtype=torch.float64)

    def target(alpha: float, beta: float) -> torch.Tensor:
        z = normal_(torch.empty(d, d), std=d**-0.5, generator=generator).double()
        return alpha * z + beta * eye

    qk = []
    with torch.no_grad():
        for h in range(heads):
            t = target(alpha1, beta1)
            u, s, vh = torch.linalg.svd(t)
            root = s[:k].sqrt()
            rows = slice(h * k, (h + 1) * k)
            attn.q.weight[rows] = (u[:, :k] * root).T.to(attn.q.weight.dtype)
            attn.k.weight[rows] = (vh[:k].T * root).T.to(attn.k.weight.dtype)
            qk.append(t)
        t = target(alpha2, -beta2)
        u, s, vh = torch.linalg.svd(t)
        root = s.sqrt()
        attn.v.weight.copy_((u * root).T)  # W_v = U S^(1/2), stored transposed
        attn.proj.weight.copy_((root[:, None] * vh).T)  # W_proj = S^(1/2) V^T, transposed
    return MimeticTargets(tuple(qk), t)


def _mimetic(
    parts: TransformerParts,
    g: torch.Generator,
    *,
    alpha1: float = 0.7,
    beta1: float = 0.7,
    alpha2: float = 0.4,
    beta2: float = 0.4,
) -> Rules:
    """Mimetic attention (:func:`mimetic_attention_`) in every block; every other weight
    N(0, 0.02^2) truncated at +-2 std, the ViT/timm draw the paper's ViTs start from."""
    opts = {"alpha1": alpha1, "beta1": beta1, "alpha2": alpha2, "beta2": beta2}
    opts = {key: _option(finite, key, value) for key, value in opts.items()}

    def after(parts: TransformerParts) -> None:
        for block in parts.blocks:
            mimetic_attention_(block.attn, generator=g, **opts)

    skip = lambda t, i: None  # noqa: E731 - drawn by `after`
    fills = _every(_trunc(g, 0.02, 2.0), q=skip, k=skip, v=skip, attn_proj=skip)
    return Rules(fills, after=after)


def _flag(name: str, value: float) -> bool:
    if value not in (0, 1):
        raise ArgumentError("scheme", f"option {name} must be 0 or 1; got {name}={value!r}")
    return bool(value)


def _option(check, name: str, value: float) -> float:
    """Run a scalar check on a scheme option; re-raise its error naming the ``scheme`` flag."""
    try:
        return check(name, value)
    except (TypeError, ValueError) as error:
        raise ArgumentError("scheme", f"option {error}") from None


#: The transformer schemes' policies by name (their registry entries are in
#: :mod:`initlab.schemes.registry`).
POLICIES: dict[str, TransformerPolicy] = {
    p.name: p
    for p in (
        TransformerPolicy("gpt2", _gpt2),
        TransformerPolicy("small_init", _small_init),
        TransformerPolicy("wang_init", _wang_init),
        TransformerPolicy("llama_depth", _llama_depth),
        TransformerPolicy("zero_proj", _zero_proj),
        TransformerPolicy("deepnorm", _deepnorm, needs=("post_ln",)),
        TransformerPolicy("tfixup", _tfixup),
        TransformerPolicy("rezero", _rezero, needs=("gates",)),
        TransformerPolicy("layerscale", _layerscale, needs=("gates",)),
        TransformerPolicy("mimetic", _mimetic),
    )
}
