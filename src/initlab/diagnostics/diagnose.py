r"""Diagnose a model at initialization: per-layer signal statistics, verdicts and hints.

:func:`diagnose` is the entry. It checks the batch, has :func:`~initlab.diagnostics.recorder.
record` run one forward pass (and one backward pass when a loss is given) with hooks on every
layer, and :func:`~initlab.diagnostics.verdicts.judge` turn what was measured into verdicts,
returned together as a :class:`~initlab.diagnostics.records.Diagnosis`. The package's modules:

- :mod:`~initlab.diagnostics.records`: the result dataclasses (:class:`Diagnosis`,
  :class:`LayerStats`, :class:`ParamStats`, :class:`Verdict`);
- :mod:`~initlab.diagnostics.statistics`: the numbers (moments, variance ratios, spectra,
  symmetry, Jacobians);
- :mod:`~initlab.diagnostics.recorder`: the passes and the hooks that record them (which rows a
  model gets: layers, functional activations, recurrent outputs);
- :mod:`~initlab.diagnostics.verdicts`: the rules, thresholds and hints.

Inputs: ``batch`` is the model's input as a plan's ``example_input`` takes it (a tensor,
floating point or integer token ids, for ``model(x)``; a dict for ``model(**x)``), or a
sequence ``(input, target, ...)`` whose first element is such an input (a tuple there for
``model(*x)``).

Compiled and meta-device models: a model compiled by ``torch.compile(model)`` is diagnosed as
its original module (``_orig_mod``), with the same names and results as the uncompiled model,
and compiled submodules or ``model.compile()`` run eagerly during the passes, so that hooks see
every layer. A model with a parameter or buffer on the meta device holds no values:
:func:`diagnose` raises, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from initlab._checks import non_negative_int
from initlab.diagnostics.recorder import record
from initlab.diagnostics.records import Diagnosis, LayerStats, ParamStats, Verdict
from initlab.diagnostics.verdicts import judge
from initlab.introspect.trace import tensors_in

# LayerStats, ParamStats and Verdict are re-exported: initlab.diagnostics.diagnose was their home.
__all__ = ["Diagnosis", "LayerStats", "ParamStats", "Verdict", "diagnose"]


def diagnose(
    model: nn.Module,
    batch: torch.Tensor | Mapping[str, torch.Tensor] | Sequence,
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    jacobian: int = 0,
) -> Diagnosis:
    r"""Measure how ``model`` propagates signal at its current weights, without changing it.

    Runs one forward pass, and one backward pass when ``loss_fn`` is given, with hooks on every
    leaf module and a ``TorchFunctionMode`` that sees functional activations, all removed on
    exit even if the model raises; see :mod:`initlab.diagnostics.recorder` for what is
    recorded and :mod:`initlab.diagnostics.verdicts` for the verdicts and their thresholds.
    The model's parameters, buffers (e.g. BatchNorm running statistics), ``.grad`` tensors,
    train/eval flags and the global random state are all restored; denormals are flushed during
    the passes (:func:`~initlab.introspect.hooks.flush_denormal`). The pass runs in the model's
    current mode.

    Sources: activation and back-propagated gradient statistics per layer, Glorot and Bengio,
    "Understanding the difficulty of training deep feedforward neural networks" (2010), Sec. 4;
    input-output Jacobian spectrum (dynamical isometry), Saxe, McClelland, Ganguli (2014) and
    Pennington, Schoenholz, Ganguli, "Resurrecting the sigmoid in deep learning through
    dynamical isometry" (2017).

    Args:
        model: any module.
        batch: the model's input, or ``(input, target, ...)``. The input is a tensor
            ``(B, ...)``, floating point or integer (token ids), for ``model(input)``; a dict
            of tensors for ``model(**input)`` (a Hugging Face batch); inside the sequence also
            a tuple for ``model(*input)``. Its first tensor has ``B >= 2`` examples.
        loss_fn: ``loss_fn(output, target)`` when ``batch`` is a sequence, ``loss_fn(output)``
            otherwise; returns a scalar. ``None`` skips the backward pass, and no gradient is
            measured or judged.
        jacobian: number of examples whose input-output Jacobian singular values to compute
            (0: none). Each costs one backward pass per output element; needs a single
            floating-point input tensor. Example ``i``'s Jacobian is that of the model's
            output for it, ``model(x)[i]`` (the first floating-point output tensor), with
            respect to its input ``x[i]``, in the model's current mode. A batch-normalization
            layer that normalizes by batch statistics (``BatchNorm*``, ``SyncBatchNorm`` in
            train mode, or without running statistics) couples the examples, so there the
            Jacobian is taken inside the diagnosis batch: the block ``d model(x)[i] / d x[i]``
            of the batch's Jacobian, batch statistics depending on ``x[i]`` as in training
            (how ``x[i]`` moves the other examples' outputs is not included). Call
            ``model.eval()`` first for the Jacobian of the inference map, with running
            statistics. Other models run each example alone, ``model(x[i:i+1])``.

    Returns:
        A :class:`Diagnosis`. NaN or inf in the model, the batch or any measured value gives
        the ``non_finite`` verdict (:mod:`initlab.diagnostics.verdicts`), never an error.

    Raises:
        TypeError: ``batch``'s input holds no tensor; ``jacobian`` is not an int (or is a bool).
        ValueError: fewer than 2 examples, a non-scalar loss, a loss with no gradient path, a
            negative ``jacobian``, ``jacobian > 0`` without a floating-point input tensor, a
            model whose output for the batch-coupled Jacobian has no batch dimension, or a
            parameter, buffer or input tensor on the meta device (no values to measure:
            materialize the model with ``model.to_empty(device=...)`` and initialize it).

    A model compiled by ``torch.compile`` is diagnosed as its original module
    ``model._orig_mod``, with the same result as the uncompiled model; compiled submodules run
    eagerly for the passes.

    Example:
        >>> net = nn.Sequential(nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 2))
        >>> d = diagnose(net, torch.randn(32, 10))
        >>> [v.code for v in d.verdicts]
        ['healthy']
    """
    model = _uncompiled(model)
    inputs, rest = _split(batch)
    _check_materialized(model, inputs, rest)
    _check_jacobian(jacobian, inputs)
    recording = record(model, inputs, rest, loss_fn=loss_fn, jacobian=jacobian)
    return Diagnosis(
        layers=recording.layers,
        params=recording.params,
        verdicts=tuple(judge(recording)),
        loss=recording.loss,
        jacobian_singular_values=recording.jacobian,
        output_std=recording.output[0] if recording.output else None,
        residual_ends=recording.residual_ends,
        unrecorded=recording.unrecorded,
    )


def _uncompiled(model: nn.Module) -> nn.Module:
    """The original module of a model compiled by ``torch.compile`` (its ``_orig_mod``), so
    that hooks see its layers and its names carry no ``_orig_mod.`` prefix."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


def _check_materialized(model: nn.Module, inputs, rest) -> None:
    """Raise if a parameter, buffer or input tensor is on the meta device (it has no values)."""
    tensors = (("parameter", model.named_parameters()), ("buffer", model.named_buffers()))
    for kind, named in tensors:
        meta = [name for name, t in named if t.is_meta]
        if meta:
            more = f" (and {len(meta) - 1} more)" if len(meta) > 1 else ""
            raise ValueError(
                f"diagnose needs a materialized model: {kind} {meta[0]!r}{more} is on the meta "
                "device and holds no values; materialize the model with "
                "model.to_empty(device=...) and initialize it (e.g. initlab.plan(model, "
                "policy).apply(seed=...), which also restores buffers) before diagnosing it"
            )
    if any(t.is_meta for t in (*tensors_in(inputs), *tensors_in(rest))):
        raise ValueError(
            "diagnose needs values: batch holds a tensor on the meta device; pass real data"
        )


def _check_jacobian(jacobian, inputs) -> None:
    non_negative_int("jacobian", jacobian)
    if jacobian and not (isinstance(inputs, torch.Tensor) and inputs.dtype.is_floating_point):
        raise ValueError(
            "jacobian > 0 needs a single floating-point input tensor (the Jacobian is taken "
            f"with respect to it); got jacobian={jacobian} with a {_describe(inputs)} input"
        )


def _split(batch) -> tuple[object, list]:
    """Return the model input and the rest (targets) of ``batch``; see :func:`diagnose`."""
    inputs, rest = (batch[0], list(batch[1:])) if isinstance(batch, (tuple, list)) else (batch, [])
    first = next(tensors_in(inputs), None)
    if first is None:
        raise TypeError(
            "batch must be the model's input (a tensor, or a dict of tensors) or a sequence "
            f"(input, target, ...) whose first element is one; got a {_describe(inputs)} input"
        )
    if first.ndim == 0 or first.shape[0] < 2:
        raise ValueError(
            f"batch needs at least 2 examples for statistics; got input shape {tuple(first.shape)}"
        )
    return inputs, rest


def _describe(inputs) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"{inputs.dtype} tensor"
    return type(inputs).__name__
