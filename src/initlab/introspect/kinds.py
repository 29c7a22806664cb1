"""Classify modules and parameters: layer kind, parameter role, fans and blocks.

The kind is what a rule matches on (``"linear"``, ``"conv"``, ``"lstm"`` ...); the role is the
parameter's short name without the layer index (``weight_ih_l1_reverse`` -> ``weight_ih``).

The one definition, by public PyTorch classes, of what every package calls a norm layer
(:data:`NORM_TYPES`, :func:`is_norm`, which also recognizes third-party norms by name; the
subsets :data:`RUNNING_STATS_NORM_TYPES`, :data:`BATCH_NORM_TYPES`) and a weight layer
(:data:`WEIGHT_TYPES`: Linear and every convolution; :data:`CONV_TYPES`,
:data:`CONV_TRANSPOSE_TYPES`), instead of PyTorch's private ``_NormBase`` and ``_ConvNd``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from initlab.fans import is_hf_conv1d, layer_fans

__all__ = [
    "BATCH_NORM_TYPES",
    "CONV_TRANSPOSE_TYPES",
    "CONV_TYPES",
    "KINDS",
    "LAZY_NORM_TYPES",
    "NORM_TYPES",
    "ParamFans",
    "RUNNING_STATS_NORM_TYPES",
    "WEIGHT_TYPES",
    "can_be_output",
    "config_value",
    "is_norm",
    "is_opaque",
    "is_weight_layer",
    "layer_kind",
    "rescaled_tied_head",
    "role_of",
    "unscaled_attention",
]

#: The norms that can keep running statistics (BatchNorm, InstanceNorm): the public eager
#: subclasses of PyTorch's private ``nn.modules.batchnorm._NormBase``. Their lazy versions
#: (:data:`LAZY_NORM_TYPES`) become one of these at their first call; a policy never sees one
#: before (planning an uninitialized lazy parameter needs ``example_input``, whose forward
#: materializes it).
RUNNING_STATS_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
#: The lazy BatchNorm and InstanceNorm classes (``_NormBase`` subclasses too, not eager ones).
LAZY_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d,
    nn.LazyInstanceNorm3d,
)
#: Normalization by batch statistics, which couples the examples of a batch (lazy ones too).
BATCH_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
)
#: The one definition of a normalization layer among PyTorch's modules: BatchNorm and
#: InstanceNorm (eager and lazy: every ``_NormBase``), LayerNorm, GroupNorm, RMSNorm and
#: LocalResponseNorm (no parameters; it divides by a neighbourhood's activity).
#: :func:`is_norm` adds third-party norms by class name.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    *RUNNING_STATS_NORM_TYPES,
    *LAZY_NORM_TYPES,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)
#: Convolutions (lazy ones subclass these) and transposed convolutions.
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
#: Linear and convolution layers, transposed ones included (``nn.LazyLinear`` and the lazy
#: convolutions subclass these): the public classes of ``nn.Linear`` and the private
#: ``nn.modules.conv._ConvNd``, the layers LSUV and Fixup rescale and diagnostics report on.
WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, *CONV_TYPES, *CONV_TRANSPOSE_TYPES)

#: Layer kinds the rules match on.
KINDS = (
    "attention",
    "attention_out",
    "bilinear",
    "conv",
    "conv_transpose",
    "embedding",
    "gru",
    "linear",
    "lstm",
    "norm",
    "other",
    "prelu",
    "rnn",
)


def is_norm(module: nn.Module) -> bool:
    """Return whether ``module`` is a normalization layer (BatchNorm, LayerNorm, GroupNorm ...).

    PyTorch's norms are the classes of :data:`NORM_TYPES` (and their subclasses); third-party
    norms (``LlamaRMSNorm``, ``T5LayerNorm``) are recognized by a class name ending
    in ``Norm`` or containing ``LayerNorm``.
    """
    name = type(module).__name__
    return isinstance(module, NORM_TYPES) or name.endswith("Norm") or "LayerNorm" in name


def layer_kind(module: nn.Module, parent: nn.Module | None = None) -> str:
    """Return the kind of the module that owns a parameter (one of :data:`KINDS`)."""
    if isinstance(parent, nn.MultiheadAttention) and module is parent.out_proj:
        return "attention_out"
    for types, kind in (
        (nn.MultiheadAttention, "attention"),
        (nn.Bilinear, "bilinear"),
        (nn.Linear, "linear"),
        (CONV_TYPES, "conv"),
        (CONV_TRANSPOSE_TYPES, "conv_transpose"),
        ((nn.Embedding, nn.EmbeddingBag), "embedding"),
        ((nn.LSTM, nn.LSTMCell), "lstm"),
        ((nn.GRU, nn.GRUCell), "gru"),
        ((nn.RNN, nn.RNNCell), "rnn"),
        (nn.PReLU, "prelu"),
    ):
        if isinstance(module, types):
            return kind
    if is_hf_conv1d(module):
        return "linear"
    return "norm" if is_norm(module) else "other"


def is_opaque(module: nn.Module) -> bool:
    """Return whether ``module`` is traced as one call (its insides are not recorded).

    True for modules that own parameters and have no parametrized children (a Linear, a Conv,
    an LSTM, a norm) and for ``nn.MultiheadAttention`` (its ``out_proj`` is read, not called).
    """
    if isinstance(module, nn.MultiheadAttention):
        return True
    if not any(True for _ in module.parameters(recurse=False)):
        return False
    return not any(any(True for _ in c.parameters()) for c in module.children())


def is_weight_layer(module: nn.Module) -> bool:
    """Return whether ``module`` is a weight layer (mixes features), not a norm or activation.

    Known kinds (linear, conv, recurrent, attention, embedding) are; an unknown module is when
    it is traced whole and owns a parameter of 2 or more dimensions.
    """
    kind = layer_kind(module)
    if kind != "other":
        return kind not in {"norm", "prelu"}
    return is_opaque(module) and any(p.ndim >= 2 for p in module.parameters(recurse=False))


def can_be_output(module: nn.Module) -> bool:
    """Return whether ``module`` can be the output layer: a linear, bilinear or conv layer (or
    an unknown weight layer); recurrent, attention, embedding and norm layers have own rules."""
    kind = layer_kind(module)
    return kind in {"linear", "bilinear", "conv", "conv_transpose"} or (
        kind == "other" and is_weight_layer(module)
    )


_INDEX = re.compile(r"_l\d+(_reverse)?$")


def role_of(leaf: str) -> str:
    """Return the parameter role: its leaf name without an RNN layer suffix (``_l0_reverse``)."""
    return _INDEX.sub("", leaf)


@dataclass(frozen=True)
class ParamFans:
    """Fans of one block of a parameter, as a plan row stores them.

    ``blocks`` equal blocks lie along ``block_dim`` (0, except the fused q/k/v of a Hugging Face
    ``Conv1D``, stored ``(in, out)`` with the blocks along the output dim 1); fans are ``None``
    for parameters with no weight to read them from.
    """

    fan_in: int | None
    fan_out: int | None
    blocks: int = 1
    note: str = ""
    block_dim: int = 0


def fans_of(owner: nn.Module, leaf: str, kind: str, parent: nn.Module | None = None) -> ParamFans:
    """Return the :class:`ParamFans` of parameter ``leaf`` of ``owner`` (``parent`` contains it).

    Weights use :func:`initlab.fans.layer_fans` (per block for fused gates and q/k/v); a Hugging
    Face ``Conv1D`` weight is read in its ``(in, out)`` layout, per q/k/v block when it is a
    fused attention input projection (:func:`_conv1d_fans`); a bias or other 1-D parameter
    takes the fans of its layer's ``weight`` (or ``in_proj_weight``, ``weight_ih``) so that
    rules such as PyTorch's ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` bias can be expressed;
    parameters without a weight to refer to have no fans (``None``).
    """
    param = getattr(owner, leaf)
    if param.ndim >= 2 and leaf not in {"bias_k", "bias_v"}:
        if is_hf_conv1d(owner):
            return _conv1d_fans(owner, param, parent)
        lf = layer_fans(owner, leaf)
        return ParamFans(lf.fan_in, lf.fan_out, lf.blocks, lf.note)
    partner = _partner(owner, leaf, kind)
    if partner is None or getattr(owner, partner, None) is None:
        return ParamFans(None, None, _bias_blocks(owner, leaf, kind))
    weight = fans_of(owner, partner, kind, parent)
    # a bias is 1-D: its blocks (gates, q/k/v) lie along its only dim, whatever the weight's
    blocks = weight.blocks if is_hf_conv1d(owner) else _bias_blocks(owner, leaf, kind)
    return ParamFans(weight.fan_in, weight.fan_out, blocks, f"fans of {partner}")


def _conv1d_fans(owner: nn.Module, param, parent: nn.Module | None) -> ParamFans:
    """Fans of a Hugging Face ``Conv1D`` weight, stored ``(in, out)`` (``y = x @ W + b``).

    The ``c_attn`` of GPT-2 / OpenAI GPT attention fuses q, k and v (k and v in cross
    attention) along the output dim; the attention splits its output into blocks of
    ``split_size`` (``c_attn(x).split(split_size, dim=2)``), so each block is its own
    ``(in, split_size)`` matrix with fans ``(in, split_size)``, as for ``nn.MultiheadAttention``'s
    ``in_proj_weight``.
    """
    shape = tuple(param.shape)
    plain = layer_fans(owner, "weight")  # (in, out): fan_in = in, fan_out = out
    split = getattr(parent, "split_size", None)
    fused = (
        parent is not None
        and getattr(parent, "c_attn", None) is owner
        and isinstance(split, int)
        and 0 < split < shape[1]
        and shape[1] % split == 0
    )
    if not fused:
        return ParamFans(plain.fan_in, plain.fan_out, 1, plain.note)
    blocks = shape[1] // split
    names = ", ".join(("q", "k", "v")[-blocks:]) if blocks <= 3 else f"{blocks} parts"
    note = (
        f"Conv1D c_attn weight (in, out) = {shape}: {blocks} blocks ({names}) along the output "
        f"dim 1, each (in, split_size) = ({shape[0]}, {split})"
    )
    return ParamFans(plain.fan_in, split, blocks, note, block_dim=1)


def _partner(owner: nn.Module, leaf: str, kind: str) -> str | None:
    if kind in {"lstm", "gru", "rnn"} and leaf.startswith("bias_"):
        return "weight_" + leaf.removeprefix("bias_")
    if kind == "attention" and leaf == "in_proj_bias":
        return "in_proj_weight"
    weight = getattr(owner, "weight", None)
    if weight is not None and weight.ndim >= 2 and kind != "norm":
        return "weight"
    return None


def _bias_blocks(owner: nn.Module, leaf: str, kind: str) -> int:
    gates = {"lstm": 4, "gru": 3, "rnn": 1}.get(kind)
    if gates is not None and leaf.startswith("bias_"):
        return gates
    return 3 if kind == "attention" and leaf == "in_proj_bias" else 1


def config_value(modules: Iterable[nn.Module], attr: str):
    """Return ``config.<attr>`` of the first module in ``modules`` whose ``config`` has it.

    ``modules`` go from the innermost outward (a parameter's own module, then its parents), so
    a model nested in another (a GPT-2 decoder inside an encoder-decoder) reads its own config.
    Hugging Face models keep their ``PretrainedConfig`` as ``config`` (and so does nanoGPT's
    ``GPT``); returns ``None`` when no module has one with ``attr``.
    """
    for module in modules:
        value = getattr(getattr(module, "config", None), attr, None)
        if value is not None:
            return value
    return None


def unscaled_attention(module: nn.Module | None) -> tuple[int, int] | None:
    """Return ``(head_dim, model_dim)`` of an attention that does not divide its scores by
    sqrt(head_dim), else ``None``.

    Recognized by the layout of Hugging Face's ``T5Attention`` (and its copies in mT5, UMT5,
    LongT5, Switch Transformers, UDOP, Pop2Piano): Linear children ``q``, ``k``, ``v``, ``o``,
    the head width as ``key_value_proj_dim`` and no ``scaling`` other than 1. Its scores are
    ``q @ k^T`` unscaled (Raffel et al. 2020, Mesh TensorFlow: the 1/sqrt(d_kv) is folded into
    the initialization of ``q``, Hugging Face ``T5PreTrainedModel._init_weights``). ``model_dim``
    is the input width of ``q`` (T5's ``d_model``).
    """
    if module is None:
        return None
    head = getattr(module, "key_value_proj_dim", None)
    layers = [getattr(module, name, None) for name in ("q", "k", "v", "o")]
    if (
        isinstance(head, int)
        and head > 0
        and all(isinstance(layer, nn.Linear) for layer in layers)
        and getattr(module, "scaling", 1.0) == 1.0
    ):
        return head, layers[0].in_features
    return None


def rescaled_tied_head(modules: Iterable[nn.Module]) -> bool:
    """Return whether the model multiplies the input of its tied output layer by dim^-1/2.

    ``modules`` go from a parameter's module outward; the first with a ``config`` decides.
    Hugging Face's T5 family does it, before an ``lm_head`` tied to the input embedding
    (``sequence_output * model_dim**-0.5`` under ``config.scale_decoder_outputs``; before
    transformers 5, whenever ``config.tie_word_embeddings`` and the model has ``model_dim``), so
    that an N(0, 1) embedding gives unit-variance logits (Raffel et al. 2020).
    """
    for module in modules:
        config = getattr(module, "config", None)
        if config is None:
            continue
        flag = getattr(config, "scale_decoder_outputs", None)
        if flag is not None:
            return bool(flag)
        if hasattr(module, "model_dim"):
            return bool(getattr(config, "tie_word_embeddings", False))
    return False
