"""Fans of weight tensors: pure math, no randomness.

``fan_in`` is the number of inputs that feed one output unit, ``fan_out`` the number of outputs
one input unit feeds. For a weight laid out as PyTorch's ``(out, in, *kernel)`` both are the
channel count times the receptive field (the product of the kernel dimensions).
Source: Glorot and Bengio, "Understanding the difficulty of training deep feedforward neural
networks" (2010), Sec. 4.2; He et al., "Delving Deep into Rectifiers" (2015), Sec. 2.2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from initlab._checks import one_of

__all__ = ["LayerFans", "compute_fans", "is_hf_conv1d", "layer_fans"]


def compute_fans(
    tensor_or_shape: torch.Tensor | Sequence[int],
    *,
    in_axis: int | Sequence[int] = 1,
    out_axis: int | Sequence[int] = 0,
    batch_axis: int | Sequence[int] = (),
) -> tuple[int, int]:
    r"""Return ``(fan_in, fan_out)`` of a weight from its shape and declared axes.

    With ``receptive_field = prod(shape[a] for a not in in_axis, out_axis or batch_axis)``:
    ``fan_in = prod(shape[in_axis]) * receptive_field`` and
    ``fan_out = prod(shape[out_axis]) * receptive_field``. Batch axes (for example a stack of
    independent matrices) count in neither. The default axes read PyTorch's ``(out, in, *kernel)``
    layout; JAX/Flax kernels ``(*kernel, in, out)`` use ``in_axis=-2, out_axis=-1``.

    Source: the JAX ``variance_scaling`` convention (``jax.nn.initializers``), which generalizes
    Glorot and Bengio (2010) and He et al. (2015) to any layout.

    Args:
        tensor_or_shape: a tensor (only its shape is read; meta tensors work) or a shape.
        in_axis: axis or axes of input units; negative axes count from the end.
        out_axis: axis or axes of output units.
        batch_axis: axes of independent copies, excluded from both fans.

    Returns:
        ``(fan_in, fan_out)`` as Python ints.

    Raises:
        ValueError: if the shape has fewer than 2 dimensions (a bias has no fans: give it a bias
            rule), if an axis is out of range or repeated, or if the axes overlap.

    Example:
        >>> compute_fans((64, 3, 7, 7))
        (147, 3136)
    """
    shape = tuple(
        tensor_or_shape.shape if isinstance(tensor_or_shape, torch.Tensor) else tensor_or_shape
    )
    if len(shape) < 2:
        raise ValueError(
            f"fans need a weight with at least 2 dimensions; got shape={shape}. "
            "A 1-D tensor such as a bias has no fans: initialize it with a bias rule "
            "(zeros_, constant_) or pass fans=(fan_in, fan_out) explicitly"
        )
    ins, outs, batch = (
        _axes(a, len(shape), n)
        for a, n in ((in_axis, "in_axis"), (out_axis, "out_axis"), (batch_axis, "batch_axis"))
    )
    if len(set(ins)) + len(set(outs)) + len(set(batch)) != len(ins) + len(outs) + len(batch):
        raise ValueError(
            f"an axis is repeated; got in_axis={in_axis}, out_axis={out_axis}, "
            f"batch_axis={batch_axis} for shape={shape}"
        )
    if set(ins) & set(outs) or (set(ins) | set(outs)) & set(batch):
        raise ValueError(
            f"in_axis, out_axis and batch_axis must not overlap; got in_axis={in_axis}, "
            f"out_axis={out_axis}, batch_axis={batch_axis} for shape={shape}"
        )
    used = set(ins) | set(outs) | set(batch)
    receptive_field = math.prod(d for i, d in enumerate(shape) if i not in used)
    fan_in = math.prod(shape[i] for i in ins) * receptive_field
    fan_out = math.prod(shape[i] for i in outs) * receptive_field
    return fan_in, fan_out


def _axes(axis: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}]; got {name}={axis}")
    return tuple(a % ndim for a in axes)


@dataclass(frozen=True)
class LayerFans:
    """Fans of one block of a layer's parameter, as read by :func:`layer_fans`.

    Attributes:
        fan_in: inputs that feed one output unit of one block.
        fan_out: outputs that one input unit of one block feeds.
        blocks: equal blocks stacked along dim 0, each to be initialized as its own matrix
            (LSTM gates, packed q/k/v, convolution groups); 1 for plain layers.
        note: a short human explanation of how the fans were read, for plans and reports.
    """

    fan_in: int
    fan_out: int
    blocks: int = 1
    note: str = ""

    @property
    def fans(self) -> tuple[int, int]:
        """``(fan_in, fan_out)``, ready for ``variance_scaling_(..., fans=...)``."""
        return self.fan_in, self.fan_out


def layer_fans(module: nn.Module, param_name: str) -> LayerFans:
    r"""Return the fans of one block of ``module``'s parameter ``param_name``, read per layer kind.

    ``param_name`` is a name from ``module.named_parameters()``; a dotted name such as
    ``"encoder.0.weight"`` or ``"out_proj.weight"`` is read by the submodule that owns it.
    Rules, with ``K = prod(kernel_size)`` and ``g = groups``:

    ========================= ===================== ================ ================ ======
    layer, parameter          stored shape          fan_in           fan_out          blocks
    ========================= ===================== ================ ================ ======
    Linear weight             (out, in)             in               out              1
    Hugging Face Conv1D       (in, out)             in               out              1
    Bilinear weight           (out, in1, in2)       in1 * in2        out * in2        1
    Conv{1,2,3}d weight       (out, in/g, *kernel)  (in/g) * K       (out/g) * K      g
    ConvTranspose{1,2,3}d     (in, out/g, *kernel)  (in/g) * K       (out/g) * K      g
    RNN/GRU/LSTM weight_ih_lk (gates*H, I_k)        I_k              H                gates
    RNN/GRU/LSTM weight_hh_lk (gates*H, H or P)     H or P           H                gates
    LSTM weight_hr_lk         (P, H)                H                P                1
    *Cell weight_ih/_hh       (gates*H, I or H)     I or H           H                gates
    MHA in_proj_weight        (3E, E)               E                E                3
    MHA q/k/v_proj_weight     (E, E or kdim/vdim)   E, kdim or vdim  E                1
    Embedding(Bag) weight     (num, dim)            num              dim              1
    any other >= 2-D tensor   (out, in, *rest)      :func:`compute_fans` defaults      1
    ========================= ===================== ================ ================ ======

    Gates: RNN 1, GRU 3 (r, z, n), LSTM 4 (i, f, g, o), in PyTorch's storage order. ``I_k`` is
    the input size of layer k (``input_size`` for k = 0, else ``num_directions * (P or H)``).

    Derivations. Fans count connections per unit (Glorot and Bengio 2010, Sec. 4.2; He et al.
    2015, Sec. 2.2). In a convolution with ``g`` groups each output channel reads the ``in/g``
    channels of its group at ``K`` taps, so ``fan_in = (in/g) * K``; each input channel feeds
    only the ``out/g`` output channels of its group, so ``fan_out = (out/g) * K``. PyTorch's
    ``_calculate_fan_in_and_fan_out`` reads ``out * K``, ``g`` times too large for grouped and
    depthwise convolutions. A transposed convolution is the adjoint (gradient) of a convolution
    from ``out`` to ``in`` channels and stores its weight as ``(in, out/g, *kernel)``: each input
    unit scatters into the ``out/g`` output channels of its group at ``K`` taps, so
    ``fan_out = (out/g) * K``; each output unit gathers from the ``in/g`` input channels of its
    group at up to ``K`` taps, so ``fan_in = (in/g) * K``. Reading the stored shape as
    ``(out, in, ...)`` swaps the two. Stride caveat: with stride ``s > 1`` a transposed
    convolution's output unit receives only about ``K / prod(s)`` taps (and a strided
    convolution's input unit feeds only about ``K / prod(s)`` output positions); like PyTorch,
    JAX and Keras we follow He et al. and ignore the stride, so the rules above are the
    stride-1 counts. An embedding is a linear layer on one-hot inputs stored ``(in, out)``, so
    ``fan_in = num_embeddings``; only one input is active, which is why embeddings are usually
    drawn from N(0, 1) rather than scaled by ``fan_in`` (the policy decides that, not this
    function). Each of ``blocks`` blocks of dim 0 is an independent matrix (a gate, a
    projection, a group) whose fans are the ones returned.

    Args:
        module: the module that owns (directly or in a submodule) the parameter.
        param_name: the parameter's name in ``module.named_parameters()``.

    Returns:
        :class:`LayerFans` of one block, with the number of blocks and a note.

    Raises:
        TypeError: if ``module`` is not an ``nn.Module``.
        ValueError: if ``param_name`` is not one of the module's parameters (the message lists
            them), if the parameter has fewer than 2 dimensions or is an attention ``bias_k`` /
            ``bias_v`` (a bias has no fans: give it a bias rule), if it is an uninitialized
            lazy parameter, or if a recurrent layer's weight does not have the expected shape.

    Example:
        >>> layer_fans(nn.Conv2d(32, 64, 3, groups=32), "weight")
        LayerFans(fan_in=9, fan_out=18, blocks=32, note='Conv2d weight (out, in/groups, *kernel) = (64, 1, 3, 3), groups=32: fan_in = (in/groups)*K, fan_out = (out/groups)*K')
    """  # noqa: E501
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    params = dict(module.named_parameters(remove_duplicate=False))
    one_of("param_name", param_name, params)
    param = params[param_name]
    owner_path, _, leaf = param_name.rpartition(".")
    owner = module.get_submodule(owner_path) if owner_path else module
    if isinstance(param, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"param_name={param_name!r} is an uninitialized lazy parameter: run one forward "
            "pass (or the policy's example_input) to materialize it before reading its fans"
        )
    if param.ndim < 2:
        raise _bias_error(param_name, owner, tuple(param.shape))
    shape = tuple(param.shape)
    if is_hf_conv1d(owner) and leaf == "weight":
        note = f"Conv1D weight (in, out) = {shape}: y = x @ W + b, the transpose of nn.Linear"
        return LayerFans(shape[0], shape[1], 1, note)
    for types, rule in _RULES:
        if isinstance(owner, types):
            return rule(owner, leaf, shape)
    return _generic(owner, leaf, shape)


def is_hf_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is Hugging Face's ``transformers.pytorch_utils.Conv1D`` (GPT-2).

    Its weight is stored ``(in, out)``, the transpose of ``nn.Linear``'s. Recognized by class
    name and its ``nf`` (output size) attribute, which every transformers version sets, so that
    transformers is never imported here.
    """
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _bias_error(param_name: str, owner: nn.Module, shape: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"param_name={param_name!r} of {type(owner).__name__} has shape {shape}: a bias (or any "
        "tensor under 2-D) has no fans; initialize it with a bias rule (zeros_, constant_) "
        "or pass fans=(fan_in, fan_out) explicitly"
    )


def _generic(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    fan_in, fan_out = compute_fans(shape)
    note = (
        f"{type(owner).__name__} {leaf} {shape}: no layer-specific rule, "
        "read as (out, in, *kernel) by compute_fans"
    )
    return LayerFans(fan_in, fan_out, 1, note)


def _linear(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    if leaf != "weight":
        return _generic(owner, leaf, shape)
    return LayerFans(shape[1], shape[0], 1, f"{type(owner).__name__} weight (out, in) = {shape}")


def _bilinear(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    if leaf != "weight":
        return _generic(owner, leaf, shape)
    # y_k = sum_ij x1_i W_kij x2_j: each output sums in1*in2 terms; one unit of input1 meets
    # out*in2 weights (compute_fans reads exactly that).
    fan_in, fan_out = compute_fans(shape)
    note = f"Bilinear weight (out, in1, in2) = {shape}: fan_in = in1*in2, fan_out = out*in2"
    return LayerFans(fan_in, fan_out, 1, note)


def _conv(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    if leaf != "weight":
        return _generic(owner, leaf, shape)
    groups, taps = owner.groups, math.prod(shape[2:])
    name = type(owner).__name__
    if owner.transposed:
        # stored (in, out/groups, *kernel): dim 0 holds input channels
        fan_in, fan_out = shape[0] // groups * taps, shape[1] * taps
        layout = "(in, out/groups, *kernel)"
    else:
        fan_in, fan_out = shape[1] * taps, shape[0] // groups * taps
        layout = "(out, in/groups, *kernel)"
    note = (
        f"{name} weight {layout} = {shape}, groups={groups}: "
        "fan_in = (in/groups)*K, fan_out = (out/groups)*K"
    )
    return LayerFans(fan_in, fan_out, groups, note)


# Gate blocks stacked along dim 0 of recurrent weights, in PyTorch's storage order.
_RNN_GATES: dict[str, tuple[str, ...]] = {
    "RNN_TANH": ("h",),
    "RNN_RELU": ("h",),
    "GRU": ("r", "z", "n"),
    "LSTM": ("i", "f", "g", "o"),
}
_CELL_MODES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.LSTMCell, "LSTM"),
    (nn.GRUCell, "GRU"),
    (nn.RNNCell, "RNN_TANH"),
)
_RNN_WEIGHT = re.compile(r"weight_(ih|hh|hr)(_l\d+(_reverse)?)?")


def _recurrent(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    match = _RNN_WEIGHT.fullmatch(leaf)
    if match is None:
        return _generic(owner, leaf, shape)
    name = type(owner).__name__
    if match.group(1) == "hr":
        note = f"{name} {leaf} projection (proj_size, hidden) = {shape}"
        return LayerFans(shape[1], shape[0], 1, note)
    gates = _RNN_GATES[_recurrent_mode(owner)]
    if shape[0] != len(gates) * owner.hidden_size:
        raise ValueError(
            f"{name} {leaf} has shape {shape}; expected dim 0 = {len(gates)} gates * "
            f"hidden_size {owner.hidden_size} = {len(gates) * owner.hidden_size}"
        )
    note = (
        f"{name} {leaf} {shape}: {len(gates)} gate block(s) ({', '.join(gates)}) of "
        f"(hidden, {_recurrent_input(owner, match.group(1))}) "
        f"= ({owner.hidden_size}, {shape[1]})"
    )
    return LayerFans(shape[1], owner.hidden_size, len(gates), note)


def _recurrent_input(owner: nn.Module, kind: str) -> str:
    if kind == "ih":
        return "input"
    return "proj" if getattr(owner, "proj_size", 0) else "hidden"


def _recurrent_mode(owner: nn.Module) -> str:
    if isinstance(owner, nn.RNNBase):
        return one_of(f"{type(owner).__name__}.mode", owner.mode, _RNN_GATES)
    for cell_type, mode in _CELL_MODES:
        if isinstance(owner, cell_type):
            return mode
    raise ValueError(
        f"no gate layout known for {type(owner).__name__}; layer_fans knows "
        f"{[t.__name__ for t, _ in _CELL_MODES]} and nn.RNNBase modes {sorted(_RNN_GATES)}"
    )


# Blocks of the attention input projections: the packed one holds q, k and v.
_MHA_BLOCKS: dict[str, tuple[str, ...]] = {
    "in_proj_weight": ("q", "k", "v"),
    "q_proj_weight": ("q",),
    "k_proj_weight": ("k",),
    "v_proj_weight": ("v",),
}


def _attention(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    if leaf in ("bias_k", "bias_v"):
        raise _bias_error(leaf, owner, shape)
    if leaf not in _MHA_BLOCKS:
        return _generic(owner, leaf, shape)
    blocks = _MHA_BLOCKS[leaf]
    note = (
        f"MultiheadAttention {leaf} {shape}: {len(blocks)} block(s) ({', '.join(blocks)}) "
        f"of (embed_dim, input dim) = ({shape[0] // len(blocks)}, {shape[1]})"
    )
    return LayerFans(shape[1], shape[0] // len(blocks), len(blocks), note)


def _embedding(owner: nn.Module, leaf: str, shape: tuple[int, ...]) -> LayerFans:
    if leaf != "weight":
        return _generic(owner, leaf, shape)
    note = (
        f"{type(owner).__name__} weight (num_embeddings, dim) = {shape}: a linear map of "
        "one-hot inputs, fan_in = num_embeddings; one input is active, so N(0, 1) is usual"
    )
    return LayerFans(shape[0], shape[1], 1, note)


# Ordered (module types, rule); the first match wins, anything else falls back to compute_fans.
_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_RULES = (
    (nn.Linear, _linear),
    (nn.Bilinear, _bilinear),
    (_CONVS, _conv),
    ((nn.RNNBase, nn.RNNCellBase), _recurrent),
    (nn.MultiheadAttention, _attention),
    ((nn.Embedding, nn.EmbeddingBag), _embedding),
)
