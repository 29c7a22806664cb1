r"""Record a model's signal: one forward pass (and one backward pass) with hooks on every layer.

:func:`record` runs the model once with a forward hook on every leaf module and the tracer's
:class:`~initlab.introspect.trace.ActivationWatch`, and once backward when a loss is given. It
records, in execution order, each layer's output mean and std, dead and saturated fractions,
the ratio of the observed output variance to the variance the weights predict, and the gradient
with respect to each layer's output (:mod:`initlab.diagnostics.statistics`). Weight gradients
alone can look flat while the back-propagated signal vanishes (Glorot and Bengio 2010, Sec.
4.2.2: the activation and the back-propagated gradient shrink in opposite directions, so their
product, the weight gradient, stays level), which is why the output gradients are recorded.

Rows: statistics are taken of floating-point outputs only. A layer returning several tensors (a
tuple, list or dict) is measured on its first floating-point tensor: for
``nn.RNN``/``nn.GRU``/``nn.LSTM`` the output sequence ``(B, T, D * H)`` (the packed data of a
``PackedSequence``), not the final states. A layer whose output holds no floating-point tensor
(token ids, masks, ``None``) gets no row and is named in ``unrecorded``.

Activations called as functions in ``forward`` (``torch.relu``, ``F.gelu``, ``x.sigmoid()``,
in place or not, a hand-written ``x * torch.sigmoid(x)``) get rows too, with the same
statistics, seen by the tracer. Such a row has type ``functional`` and is named
``<layer>.<activation>`` after the first-called layer whose output its input still is (a norm
passes its input's layer on, so ``relu(bn1(conv1(x)))`` is ``conv1.relu``), or
``<activation>`` when its input comes from no layer. As for an activation module, its gradient
is the one with respect to the activation's output; the pre-activation gradient is on the row of
the layer before it. A hand-written GELU (``erf`` or ``tanh`` form) gets no row: the tracer sees
its inner terms, not its output.

The model is left as it was: parameters, buffers (BatchNorm running statistics), ``.grad``
tensors, train/eval flags and the global random state are restored, hooks removed, even if the
model raises; denormals are flushed during the passes
(:func:`~initlab.introspect.hooks.flush_denormal`), and compiled submodules run eagerly
(``torch.compiler.set_stance("force_eager")``, torch >= 2.6) so that hooks see every layer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from initlab.diagnostics.records import LayerStats, Recording
from initlab.diagnostics.statistics import (
    AVG_POOL_TYPES,
    batch_dim,
    example_norm,
    is_signal,
    is_weight_layer,
    jacobian_singular_values,
    non_finite_tensors,
    output_stats,
    param_stats,
    per_example,
    rms,
    std,
    variance_ratio,
)
from initlab.introspect.activations import from_module
from initlab.introspect.hooks import (
    flush_denormal,
    forward_hooks,
    leaf_modules,
    preserved_modes,
    preserved_rng,
)
from initlab.introspect.kinds import is_norm
from initlab.introspect.trace import ActivationCall, ActivationWatch, call_args, tensors_in

__all__ = ["record"]


def record(
    model: nn.Module,
    inputs,
    rest: list,
    *,
    loss_fn: Callable[..., torch.Tensor] | None,
    jacobian: int,
) -> Recording:
    """Run the passes on ``model`` and return what they measured (see the module docstring).

    Args:
        model: an uncompiled, materialized module.
        inputs: the model's input (a tensor, a dict for ``model(**inputs)``, a tuple for
            ``model(*inputs)``), already checked by the caller.
        rest: the targets; ``loss_fn(output, rest[0])`` when there is one, else
            ``loss_fn(output)``.
        loss_fn: returns a scalar loss, or None for no backward pass.
        jacobian: number of examples whose Jacobian singular values to compute (0: none).

    Raises:
        ValueError: ``loss_fn`` returned no scalar tensor, or one with no gradient path; the
            batch-coupled Jacobian found no batch dimension in the output.
    """
    args, kwargs = call_args(inputs)
    params = dict(model.named_parameters())
    bad_tensors = non_finite_tensors(model, inputs)
    with ExitStack() as stack:
        for context in (preserved_modes(model), preserved_rng(), flush_denormal(), _eager()):
            stack.enter_context(context)
        stack.enter_context(_preserved_buffers_and_grads(model))
        recorder = _Recorder(model, want_grads=loss_fn is not None)
        with forward_hooks(leaf_modules(model), recorder):
            with torch.set_grad_enabled(loss_fn is not None), recorder.watch.watching(inputs):
                output = model(*args, **kwargs)
            out = next((t for t in tensors_in(output) if is_signal(t)), None)
            output_summary = None if out is None else (std(out.detach()), tuple(out.shape))
            loss = _backward(loss_fn, output, rest) if loss_fn is not None else None
        grads = {n: p.grad for n, p in params.items()}
        spectrum = jacobian_singular_values(model, inputs, jacobian)
    return Recording(
        layers=tuple(recorder.layers()),
        params=tuple(param_stats(model, params, grads)),
        output=output_summary,
        loss=loss,
        jacobian=spectrum,
        non_finite_tensors=tuple(bad_tensors),
        residual_ends=tuple(sorted(recorder.watch.residual_ends)),
        summands=frozenset(recorder.watch.summand_layers),
        unrecorded=tuple(dict.fromkeys(recorder.unrecorded)),  # once per module, in call order
        sources=frozenset(recorder.sources),
    )


@contextmanager
def _eager() -> Iterator[None]:
    """Run compiled code eagerly inside the block (a compiled submodule, ``model.compile()``):
    hooks and the activation tracer then see every call. ``torch.compiler.set_stance`` exists
    from torch 2.6; before it, compiled submodules run as they are. Nothing is compiled before
    torch's compiler (``torch._dynamo``) is imported, and importing it costs seconds: until
    then this does nothing."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None or "torch._dynamo" not in sys.modules:
        yield
        return
    with set_stance("force_eager"):
        yield


@contextmanager
def _preserved_buffers_and_grads(model: nn.Module) -> Iterator[None]:
    """Snapshot buffers and set ``.grad`` aside; put both back on exit."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad) for p in model.parameters()]
    for p, _ in grads:
        p.grad = None
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for p, grad in grads:
            p.grad = grad


def _backward(loss_fn, output, rest) -> float:
    loss = loss_fn(output, *rest[:1])
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor; got {loss!r:.80}")
    if not loss.requires_grad:
        raise ValueError("the loss has no gradient path to any parameter (requires_grad=False)")
    loss.backward()
    return float(loss.detach())


class _Recorder:
    """Statistics of every leaf-module output (the forward hook) and of every functional
    activation output (the watch's listener), each with a gradient hook on it."""

    def __init__(self, model: nn.Module, want_grads: bool):
        self.want_grads = want_grads
        self.rows: list[dict] = []
        self.unrecorded: list[str] = []
        self.watch = ActivationWatch(model, self.functional)
        self.by_call: dict[int, dict] = {}
        self.sources: list[str] = []
        self._model = model
        self._last_size: int | None = None  # elements per example of the last row's output

    def __call__(self, name, module, args, output):
        # A recurrent layer returns (output, h_n) or (output, (h_n, c_n)): its first tensor is
        # the output sequence, the layer's signal to the next one.
        y = next((t for t in tensors_in(output) if t.dtype.is_floating_point), None)
        if y is None:
            self.unrecorded.append(name)
            return None
        given = [t.dtype.is_floating_point for t in tensors_in(args)]
        if given and not any(given):  # token ids in: an embedding's lookup starts the signal
            self.sources.append(name)
        with self.watch.paused():  # our statistics are not the model's calls
            row = _module_stats(name, module, args, y.detach())
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if x is not None and x.dtype.is_floating_point and is_norm(module):
                row["in_rms"] = rms(x)  # the scale a normalization divides out
            if x is not None and (isinstance(module, AVG_POOL_TYPES) or row["kind"] == "weight"):
                inside = per_example(x, batch_dim(module, x))
                if isinstance(module, AVG_POOL_TYPES):  # input elements per output element
                    row["pooled"] = inside / max(per_example(y, batch_dim(module, y)), 1)
                elif self._last_size is not None and inside < self._last_size:
                    row["reduced"] = self._last_size / inside
                    if self.want_grads and x.requires_grad:  # what the reduction did backward
                        b = batch_dim(module, x)
                        x.register_hook(
                            lambda g, _row=row, _b=b: _row.__setitem__(
                                "grad_in_norm", example_norm(g, _b)
                            )
                        )
            self._add(row, y, batch_dim(module, y))
        return None

    def functional(self, call: ActivationCall) -> None:
        if not call.output.dtype.is_floating_point:
            return
        act = call.activation.name
        name = f"{call.layers[0]}.{act}" if call.layers else act
        row = {"name": name, "module_type": "functional", "kind": "activation"}
        row |= output_stats(call.output.detach(), act)[0]
        replaced = {id(self.by_call.pop(i)) for i in call.replaces}  # sigmoid of x * sigmoid(x)
        self.rows = [r for r in self.rows if id(r) not in replaced]
        self.by_call[call.index] = row
        # laid out as the output of the layer it follows (relu(conv(x)) is channels-first)
        source = _submodule(self._model, call.layers[0]) if call.layers else None
        self._add(row, call.output, batch_dim(source, call.output))

    def _add(self, row: dict, output: torch.Tensor, batch: int) -> None:
        self.rows.append(row)
        self._last_size = per_example(output, batch)
        if self.want_grads and output.requires_grad:
            output.register_hook(lambda g, _row=row, _b=batch: _row.update(_grad_stats(g, _b)))

    def layers(self) -> list[LayerStats]:
        """The rows in execution order, a repeated name numbered ``name#2``, ``name#3`` ..."""
        counts: dict[str, int] = {}
        stats = []
        for row in self.rows:
            n = counts[row["name"]] = counts.get(row["name"], 0) + 1
            stats.append(LayerStats(**(row | ({"name": f"{row['name']}#{n}"} if n > 1 else {}))))
        return stats


def _grad_stats(g: torch.Tensor, batch: int) -> dict:
    return {"grad_rms": rms(g), "grad_norm": example_norm(g, batch)}


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name.split("#")[0])
    except AttributeError:
        return None


def _module_stats(name, module, args, y) -> dict:
    act = from_module(module)
    stats, var = output_stats(y, act.name if act is not None else None)
    row = {"name": name, "module_type": type(module).__name__, "kind": _kind(module), **stats}
    if row["kind"] == "weight" and args and isinstance(args[0], torch.Tensor):
        row["variance_ratio"] = variance_ratio(module, args[0].detach(), var)
    return row


def _kind(module: nn.Module) -> str:
    if is_weight_layer(module):
        return "weight"
    # from_module also knows third-party activation modules (HF's GELUActivation) by name.
    return "activation" if from_module(module) is not None else "other"
