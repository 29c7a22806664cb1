r"""The numbers a diagnosis records, from tensors, weights and the model's input-output map.

Per output (:func:`output_stats`): mean, std and the dead or saturated fraction of an
activation. Per weight layer (:func:`variance_ratio`): the observed output variance over the one
the weights predict for independent inputs, ``fan_in * E[W^2] * E[x^2] + E[b^2]`` (He et al.
2015, eq. 7). Per parameter (:func:`param_stats`): gradient norm and std and, for weights, the
extreme singular values per block and the fraction of units identical to another unit. Per
example (:func:`jacobian_singular_values`): the singular values of the input-output Jacobian
(dynamical isometry: Saxe, McClelland, Ganguli 2014; Pennington, Schoenholz, Ganguli 2017).

Everything is computed in float64 from detached tensors and changes nothing in the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from initlab.diagnostics.records import ParamStats
from initlab.fans import is_hf_conv1d, layer_fans
from initlab.introspect.kinds import BATCH_NORM_TYPES, CONV_TRANSPOSE_TYPES, WEIGHT_TYPES
from initlab.introspect.trace import tensors_in

__all__ = [
    "AVG_POOL_TYPES",
    "DEAD_ACTIVATIONS",
    "TANH_ACTIVATIONS",
    "batch_dim",
    "is_signal",
    "is_weight_layer",
    "example_norm",
    "jacobian_singular_values",
    "non_finite_tensors",
    "out_in",
    "output_stats",
    "param_stats",
    "per_example",
    "rms",
    "std",
    "variance_ratio",
]

#: Activations with a dead fraction, by the tracer's activation names.
DEAD_ACTIVATIONS = frozenset({"relu", "relu6"})
#: Activations saturated at ``|y| > 0.99`` (sigmoid, at ``y < 0.01`` or ``y > 0.99``, apart).
TANH_ACTIVATIONS = frozenset({"tanh", "hardtanh"})


def output_stats(y: torch.Tensor, activation: str | None) -> tuple[dict, float]:
    """Return ``({shape, mean, std, dead or saturated fraction}, Var(y))`` of an output.

    Args:
        y: the output, ``(B, ...)``, detached.
        activation: the activation that produced ``y`` (tracer names: ``"relu"``, ``"tanh"``
            ...), or None. For ReLU/ReLU6 ``dead_fraction`` is the fraction of units (elements
            of one example) that are 0 for every example; for tanh/hardtanh
            ``saturated_fraction`` is the fraction of outputs with ``|y| > 0.99``, for sigmoid
            of those below 0.01 or above 0.99.

    The mean and the population variance are over all elements.
    """
    var, mean = torch.var_mean(y.double(), correction=0)
    row = {"shape": tuple(y.shape), "mean": float(mean), "std": math.sqrt(float(var))}
    if activation in DEAD_ACTIVATIONS:
        row["dead_fraction"] = float((y.flatten(1) == 0).all(dim=0).double().mean())
    elif activation in TANH_ACTIVATIONS:
        row["saturated_fraction"] = float((y.abs() > 0.99).double().mean())
    elif activation == "sigmoid":
        row["saturated_fraction"] = float(((y < 0.01) | (y > 0.99)).double().mean())
    return row, float(var)


def variance_ratio(module: nn.Module, x: torch.Tensor, observed: float) -> float:
    """Return ``observed / (fan_in * E[W^2] * E[x^2] + E[b^2])`` for weight layer ``module``.

    For independent zero-mean weights and inputs ``Var(y_i) = sum_j W_ij^2 E[x_j^2] + b_i^2``,
    averaged over units as in the denominator (He et al. 2015, eq. 7); ``fan_in`` is
    ``(in / groups) * prod(kernel)`` for a convolution and the first axis of a Hugging Face
    ``Conv1D``'s ``(in, out)`` weight (:func:`initlab.fans.layer_fans`). NaN when the prediction
    is 0.
    """
    w = module.weight.detach().double()
    fan_in = layer_fans(module, "weight").fan_in
    predicted = fan_in * float(w.pow(2).mean()) * float(x.double().pow(2).mean())
    if getattr(module, "bias", None) is not None:
        predicted += float(module.bias.detach().double().pow(2).mean())
    return observed / predicted if predicted > 0 else math.nan


def rms(t: torch.Tensor) -> float:
    """Root mean square of the elements of ``t`` (per element, so widths do not bias it)."""
    return math.sqrt(float(t.detach().double().pow(2).mean()))


#: Average pools: the gradient verdict undoes their ``1 / sqrt(k)`` (see :func:`example_norm`).
AVG_POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


def batch_dim(module: nn.Module | None, y: torch.Tensor) -> int:
    """The batch dim of ``module``'s output ``y``: 0, or 1 for a ``(T, B, ...)`` output of a
    module with ``batch_first=False`` (``nn.LSTM``, ``nn.MultiheadAttention``,
    ``nn.Transformer*`` by default)."""
    return 1 if getattr(module, "batch_first", True) is False and y.ndim >= 3 else 0


def example_norm(g: torch.Tensor, batch: int) -> float:
    r"""RMS over examples of the per-example norm of ``g``: ``sqrt(mean_b |g[b]|^2)``, where
    ``g[b]`` is everything of example ``b`` (dim ``batch``: :func:`batch_dim`) as one vector.

    The unit of the gradient verdict (:mod:`initlab.diagnostics.verdicts`). Back-propagation
    through a layer ``y = W x`` gives ``dx = W^T dy``; with i.i.d. zero-mean weights of
    variance ``Var[w]`` and ``n_out`` outputs reading each input (``k^2 d / s^2`` for a ``k x k``
    convolution of stride ``s`` with ``d`` output channels), ``Var[dx] = n_out Var[w] Var[dy]``
    per element (Glorot and Bengio 2010, eq. 6; He et al. 2015, eq. 13). Multiplying by the
    element counts, ``E|dx|^2 / E|dy|^2 = fan_in Var[w] * (gain of the activation)``: a
    fan-in-scaled layer keeps the per-example norm whatever its widths and stride, where the
    per-element RMS changes by ``n_out / fan_in`` (the ratio of channel counts, and ``1 / s^2``
    per stride). Max pooling and picking positions (a CLS token, the last time step) keep it
    too; an average over ``k`` positions divides it by ``sqrt(k)`` exactly (``dy / k`` on each
    of ``k`` positions), which the verdict undoes for the pooling modules it sees.
    """
    x = g.detach().double()
    if x.ndim == 0:
        return abs(float(x))
    x = x.movedim(batch, 0).reshape(x.shape[batch], -1)
    return math.sqrt(float(x.pow(2).sum(1).mean()))


def per_example(t: torch.Tensor, batch: int) -> int:
    """Number of elements of one example of ``t`` (dim ``batch`` is the batch)."""
    return t.numel() // max(t.shape[batch], 1) if t.ndim else 1


def std(t: torch.Tensor) -> float:
    """Population standard deviation of the elements of ``t``; NaN when it has none."""
    return float(t.double().std(correction=0)) if t.numel() else math.nan


def is_signal(t: torch.Tensor) -> bool:
    """A floating-point tensor with a batch dimension (not a loss scalar, ids or a mask)."""
    return t.dtype.is_floating_point and t.ndim > 0


def is_weight_layer(module: nn.Module) -> bool:
    """A Linear or convolution (:data:`initlab.introspect.kinds.WEIGHT_TYPES`), or Hugging
    Face's Conv1D (GPT-2), a Linear stored ``(in, out)``."""
    return isinstance(module, WEIGHT_TYPES) or is_hf_conv1d(module)


def out_in(module: nn.Module) -> torch.Tensor:
    """The weight of a weight layer in PyTorch's ``(out, in / groups, *kernel)`` layout, detached.

    Hugging Face's Conv1D stores ``(in, out)``; a transposed convolution ``(in, out / groups,
    *kernel)``, regrouped here so that each output unit is one row.
    """
    weight = module.weight.detach()
    if is_hf_conv1d(module):
        return weight.transpose(0, 1)
    if isinstance(module, CONV_TRANSPOSE_TYPES):  # (g, in/g, out/g) -> (out, in/g)
        return weight.unflatten(0, (module.groups, -1)).transpose(1, 2).flatten(0, 1)
    return weight


def param_stats(
    model: nn.Module,
    params: Mapping[str, nn.Parameter],
    grads: Mapping[str, torch.Tensor | None],
) -> list[ParamStats]:
    """One :class:`ParamStats` per parameter of ``params``, in order.

    ``grads`` maps names to the gradients of the backward pass (None where none reached).
    Weights (>= 2-D) also get their blocks, their extreme singular values when finite (a NaN
    weight is the ``non_finite`` verdict's), and the fraction of units identical to another
    (incoming weights, bias and the next weight layer's outgoing weights; 0 for the last layer
    of a declared residual branch, which adds into the stream).
    """
    weights = [m for _, m in model.named_modules() if is_weight_layer(m)]
    successor = {id(a.weight): b for a, b in zip(weights, weights[1:], strict=False)}
    branch_ends = _residual_branch_ends(model)
    stats = []
    for name, p in params.items():
        g = grads.get(name)
        entry = {"name": name, "shape": tuple(p.shape)}
        if g is not None:
            entry |= {"grad_norm": float(g.double().norm()), "grad_std": std(g)}
        if p.ndim >= 2 and p.numel() > 0:
            entry["blocks"] = _blocks(model, name)
            if bool(torch.isfinite(p.detach()).all()):  # no spectrum of NaN (non_finite's)
                entry |= _spectrum(p.detach(), entry["blocks"])
            entry["symmetric_fraction"] = (
                0.0 if id(p) in branch_ends else _symmetric_fraction(model, p, successor.get(id(p)))
            )
        stats.append(ParamStats(**entry))
    return stats


def _residual_branch_ends(model: nn.Module) -> set[int]:
    """ids of the last weight of every declared residual branch (``residual_branch()``).

    Such a layer adds into the residual stream, whose units differ, so its units are never
    interchangeable even when its weight is zero (as Fixup sets it).
    """
    ends = set()
    for module in model.modules():
        if callable(getattr(module, "residual_branch", None)):
            weights = [m for m in module.residual_branch() if is_weight_layer(m)]
            if weights:
                ends.add(id(weights[-1].weight))
    return ends


def _blocks(model: nn.Module, name: str) -> int:
    """The number of independent blocks along dim 0 of parameter ``name`` (gates, q/k/v
    projections, groups), from :func:`initlab.fans.layer_fans`."""
    owner, _, leaf = name.rpartition(".")
    try:
        return layer_fans(model.get_submodule(owner), leaf).blocks
    except ValueError:  # no fans to read (an attention bias_k/bias_v): one matrix
        return 1


def _spectrum(w: torch.Tensor, blocks: int) -> dict:
    """Extreme singular values of ``w`` as ``(out, -1)``: the largest and the smallest over its
    ``blocks`` equal blocks of rows, each an independent matrix (a gate, a q/k/v projection)."""
    s = torch.linalg.svdvals(w.double().flatten(1).unflatten(0, (blocks, -1)))  # (blocks, k)
    smax, smin = float(s[:, 0].max()), float(s[:, -1].min())
    return {
        "sigma_max": smax,
        "sigma_min": smin,
        "condition": smax / smin if smin > 0 else math.inf,
    }


def _symmetric_fraction(model, weight, successor) -> float:
    owner = next((m for m in model.modules() if getattr(m, "weight", None) is weight), None)
    # One row per output unit: its incoming weights.
    rows = (out_in(owner) if is_weight_layer(owner) else weight.detach()).flatten(1)
    bias = getattr(owner, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.shape == rows.shape[:1]:
        rows = torch.cat([rows, bias.detach()[:, None]], dim=1)
    nxt = out_in(successor) if successor is not None else None
    if nxt is not None and nxt.ndim >= 2 and nxt.shape[1] == rows.shape[0]:
        # Outgoing weights: the next layer's slices along its input axis, one per unit.
        rows = torch.cat([rows, nxt.transpose(0, 1).flatten(1)], dim=1)
    if rows.shape[0] < 2:
        return 0.0
    _, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).double().mean())


def _batch_coupled(model: nn.Module) -> bool:
    """Whether a batch norm normalizes by the batch's statistics: in train mode, or without
    running statistics (``track_running_stats=False``), as ``nn.BatchNorm*.forward`` decides."""
    return any(
        isinstance(m, BATCH_NORM_TYPES) and (m.training or m.running_mean is None)
        for m in model.modules()
    )


def jacobian_singular_values(model: nn.Module, x: torch.Tensor, n: int) -> tuple[float, ...]:
    """Singular values of ``d model(x)[i] / d x[i]`` for the first ``n`` examples, concatenated.

    Each example runs alone (``model(x[i:i+1])``), unless a batch norm couples the examples by
    batch statistics: then the block of the batch's Jacobian, from one forward pass of ``x``
    (see :func:`initlab.diagnostics.diagnose.diagnose`'s ``jacobian``). A Jacobian holding NaN
    or inf gives as many NaN as it has singular values (the ``non_finite`` verdict names it).

    Raises:
        ValueError: with batch statistics, the model's first floating-point output has no batch
            dimension of ``x``'s size.
    """
    count = min(n, x.shape[0]) if n else 0  # n > 0: x is a floating tensor
    if not count:
        return ()
    if _batch_coupled(model):
        jacobians = _in_batch_jacobians(model, x, count)
    else:
        jacobians = (
            torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x[i])
            for i in range(count)
        )
    values: list[float] = []
    with torch.enable_grad():
        for jac in jacobians:
            matrix = jac.detach().double().reshape(jac.shape[0], -1)
            if bool(torch.isfinite(matrix).all()):
                values += torch.linalg.svdvals(matrix).tolist()
            else:  # no SVD of NaN: as many NaN as singular values (non_finite names it)
                values += [math.nan] * min(matrix.shape)
    return tuple(values)


def _in_batch_jacobians(model, x, count) -> Iterator[torch.Tensor]:
    """``d model(x)[i] / d x[i]`` (output elements by input elements) for ``i < count``, from
    one forward pass of the whole batch: the examples are coupled by batch statistics."""
    with torch.enable_grad():
        xs = x.detach().clone().requires_grad_(True)
        output = model(xs)
        y = next((t for t in tensors_in(output) if is_signal(t)), None)
        if y is None or y.shape[0] != x.shape[0]:
            shape = None if y is None else tuple(y.shape)
            raise ValueError(
                "jacobian > 0 with batch statistics (batch norm in train mode) takes example i's "
                f"output as model(x)[i]: the output needs the batch dimension {x.shape[0]} "
                f"first; got output shape {shape}"
            )
        flat = y.flatten(1)
        for i in range(count):
            rows = [
                torch.autograd.grad(flat[i, k], xs, retain_graph=True)[0][i].flatten()
                for k in range(flat.shape[1])
            ]
            yield torch.stack(rows)


def non_finite_tensors(model: nn.Module, inputs) -> list[tuple[str, str, int, int]]:
    """``(kind, name, non-finite count, numel)`` for the input tensors, parameters and
    floating-point buffers holding NaN or inf, in that order (``kind``: ``"input"``,
    ``"parameter"`` or ``"buffer"``)."""
    found = []
    named = [
        *(("input", f"input {i}", t) for i, t in enumerate(tensors_in(inputs))),
        *(("parameter", n, p) for n, p in model.named_parameters()),
        *(("buffer", n, b) for n, b in model.named_buffers()),
    ]
    for kind, name, t in named:
        if t.dtype.is_floating_point or t.dtype.is_complex:
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                found.append((kind, name, bad, t.numel()))
    return found
