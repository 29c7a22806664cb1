r"""Diagnose a model at initialization: per-layer signal statistics, verdicts and hints.

One forward pass (and one backward pass when a loss is given) with hooks on every leaf module
records, in execution order, each layer's output mean and std, dead and saturated fractions,
the ratio of the observed output variance to the variance the weights predict, and the gradient
with respect to each layer's output. Weight gradients alone can look flat while the
back-propagated signal vanishes (Glorot and Bengio 2010, Sec. 4.2.2: the activation and the
back-propagated gradient shrink in opposite directions, so their product, the weight gradient,
stays level), which is why the gradient verdict reads the output gradients.

Activations called as functions in ``forward`` (``torch.relu``, ``F.gelu``, ``x.sigmoid()``,
in place or not, a hand-written ``x * torch.sigmoid(x)``) get rows too, with the same
statistics, seen by the policy's tracer (:class:`initlab.introspect.trace.ActivationWatch`). Such
a row has type ``functional`` and is named ``<layer>.<activation>`` after the first-called
layer whose output its input still is (a norm passes its input's layer on, so
``relu(bn1(conv1(x)))`` is ``conv1.relu``), or ``<activation>`` when its input comes from no
layer. As for an activation module, its gradient is the one with respect to the activation's
output; the pre-activation gradient is on the row of the layer before it. A hand-written GELU
(``erf`` or ``tanh`` form) gets no row: the tracer sees its inner terms, not its output.

Verdicts and their thresholds (module constants below):

- ``non_finite``: a NaN or inf anywhere the diagnosis looks, named where it first appears in
  the order the values are computed: the input batch, a parameter or floating-point buffer
  (a NaN weight), a layer's output in the forward pass (the first such layer: from finite
  weights and input, an overflow or an undefined operation such as ``0 / 0`` or the log of a
  negative number), the model's output, the loss, the output gradients in the backward pass (the
  first such layer in backward order, i.e. the last in execution order: an operation whose
  derivative is undefined where it is evaluated, such as ``sqrt`` at 0 or a ``torch.where``
  that masks a NaN in the forward but not its gradient), a parameter's gradient, and the
  input-output Jacobian. The message names the origin and the later places it reached; the
  hint depends on the origin. No other verdict reads a non-finite number: the ratio verdicts
  compare finite values only, and ``large_output`` is for a finite output.
- ``vanishing_activations`` / ``exploding_activations``: the std of the last hidden signal is
  below ``1 / SIGNAL_RATIO`` (0.1) or above ``SIGNAL_RATIO`` (10) times that of the first, i.e.
  it moved by more than an order of magnitude through depth. Only finite stds are compared:
  a NaN or inf is ``non_finite``'s.
  Hidden signals are the outputs of activations (modules or functional calls), or of every
  weight layer but the last when the model has no recognized activation.
- ``vanishing_gradients`` / ``exploding_gradients``: the back-propagated signal through the
  hidden layers, as in Glorot and Bengio (2010, Sec. 4.2.2, Fig. 7): the RMS gradient with
  respect to the first comparable layer's output (a pre-activation) is below
  ``1 / SIGNAL_RATIO`` or above ``SIGNAL_RATIO`` times that of the last one (needs ``loss_fn``).
  Comparable layers, so that the ratio compares like with like:

  * plain networks (no residual add in the forward): every weight layer but the last. The head
    is excluded: its output gradient is the loss's, set by the number of classes and not by
    depth, and a narrow head against wide hidden layers would bias the ratio.
  * residual networks (the forward adds a deeper branch to a shallower stream, as the policy's
    tracer finds it): only the layer whose output each add's deeper summand is, the last-called
    of the branch's ends (``linear2`` of every transformer block, ``fc2`` of every residual MLP
    block, ``bn2`` of a ResNet block, not the ``conv2`` before it). The gradient of a sum
    reaches each summand unchanged, so each such layer's output gradient is the residual
    stream's gradient at its add, up to a per-block multiplier that is equal across blocks at
    init (Fixup's ``1 + s``); the ratio follows the stream from the last block back to the
    first. The layer before a norm that ends the branch is not compared: the norm's backward
    scales its gradient by the norm's weight, all zero under ``zero_init_residual`` (Goyal et
    al. 2017), where the stream's gradient is not. Layers
    off the stream (a stem or patch embedding ahead of a normalization, a layer inside a
    branch) are not compared with layers on it: a pre-norm block divides the stream by its
    std, so the gradient before the first norm scales with 1 / (embedding std) and says
    nothing about depth.

  RMS is per element, so layer widths do not bias the ratio. A factor 10 over the whole network
  is the same order-of-magnitude rule as for activations: variance-preserving schemes stay
  within it at any depth (ReLU 3 layers with Xavier: about 0.5), a per-layer factor off by
  sqrt(2) crosses it after 7 layers. Needs at least two comparable layers. Not judged when the
  last weight layer is all zero: a zero output layer (Fixup, zero init) blocks every
  back-propagated signal at step zero by design and unblocks after the first update. Nor when
  the last comparable layer's gradient is exactly zero (e.g. behind a zero-initialized norm in
  a plain network): a ratio to zero has no scale, and 0 to 0 is not a vanishing signal.
- ``dead_layers``: a ReLU/ReLU6 layer with more than ``DEAD_FRACTION`` (0.5) of its units zero for
  every example of the batch.
- ``saturated_layers``: a tanh/hardtanh (``|y| > 0.99``) or sigmoid (``y < 0.01`` or
  ``y > 0.99``) layer with more than ``SATURATED_FRACTION`` (0.5) of its outputs saturated.
- ``unbroken_symmetry``: a weight layer other than the last with more than ``SYMMETRIC_FRACTION``
  (0.5) of its units identical to another unit: same incoming weights and bias and, when the
  next weight layer reads them directly, same outgoing weights. Such units receive identical
  gradients forever (zero or constant initialization). The "next layer" is the next weight
  layer in registration order, a heuristic outside plain chains; the last layer of a residual
  branch declared by ``residual_branch()`` (:mod:`initlab.datadriven.fixup`) adds into the
  residual stream and is never counted as symmetric.
- ``large_output``: the std of the model's output (its first floating-point output tensor
  that is not a scalar: the logits, also after a Hugging Face output's ``loss``) is above
  ``OUTPUT_STD`` (10). The other verdicts compare layers with each other and
  miss a network that is uniformly too large (a non-finite output is ``non_finite``'s).
  Efficient BackProp
  (LeCun, Bottou, Orr, Mueller 1998, Sec. 4.3-4.6) keeps inputs, targets and every unit's
  output at unit scale; 10 is an order of magnitude above it, the factor of ``SIGNAL_RATIO``.
  For a classifier, logits of std 10 (10 classes, independent N(0, 100) logits) start at an
  expected cross-entropy of 15.5 instead of ln 10 = 2.30, with a mean top softmax probability
  of 0.89 on an arbitrary class: a confidently wrong start. A small output (a zero-initialized
  head) is by design and not flagged.
- ``healthy``: none of the above. Its message says what was compared: without ``loss_fn`` no
  backward pass runs and it claims nothing about gradients.

Inputs: ``batch`` is the model's input as a plan's ``example_input`` takes it (a tensor,
floating point or integer token ids, for ``model(x)``; a dict for ``model(**x)``), or a
sequence ``(input, target, ...)`` whose first element is such an input (a tuple there for
``model(*x)``). Statistics are taken of floating-point outputs only. A layer returning several
tensors (a tuple, list or dict) is measured on its first floating-point tensor: for
``nn.RNN``/``nn.GRU``/``nn.LSTM`` the output sequence ``(B, T, D * H)`` (the packed data of a
``PackedSequence``), not the final states. A layer whose output holds no floating-point tensor
(token ids, masks, ``None``) gets no row; :attr:`Diagnosis.unrecorded` names it, and so do the
table and the healthy verdict.

Compiled and meta-device models: a model compiled by ``torch.compile(model)``
is diagnosed as its original module (``_orig_mod``), with the same names and results as the
uncompiled model, and compiled submodules or ``model.compile()`` run eagerly during the passes
(``torch.compiler.set_stance("force_eager")``, torch >= 2.6), so that hooks see every layer. A
model with a parameter or buffer on the meta device holds no values: :func:`diagnose` raises,
naming it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from initlab.fans import is_hf_conv1d, layer_fans

# policy and diagnostics are one tier (see initlab/__init__.py); the tracer lives in policy
# because plans were its first user.
from initlab.introspect.activations import from_module
from initlab.introspect.hooks import (
    flush_denormal,
    forward_hooks,
    leaf_modules,
    preserved_modes,
    preserved_rng,
)
from initlab.introspect.trace import ActivationCall, ActivationWatch, call_args, tensors_in

__all__ = ["Diagnosis", "LayerStats", "ParamStats", "Verdict", "diagnose"]

SIGNAL_RATIO = 10.0
DEAD_FRACTION = 0.5
SATURATED_FRACTION = 0.5
SYMMETRIC_FRACTION = 0.5
OUTPUT_STD = 10.0
_WEIGHT_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
# Activations with a dead or saturated fraction, by the policy's activation names.
_DEAD = frozenset({"relu", "relu6"})
_TANH = frozenset({"tanh", "hardtanh"})

# Every hint names a scheme that clears its verdict on the cases of tests/test_diagnose_hints.py
# (large_output: tests/test_diagnose_output.py).
# For tanh the hint is gain 1 with fan_in scaling: at sigma_b = 0 the order-to-chaos transition
# is at sigma_w^2 = 1 (Poole et al. 2016; Schoenholz et al. 2017), so gain 5/3 (sigma_w^2 = 2.8)
# is chaotic and explodes the back-propagated signal in deep tanh networks.
_TANH_HINT = "lecun_normal or orthogonal with gain 1 for tanh, the edge of chaos"
HINTS = {
    "vanishing_activations": (
        "weights too small for this depth: use a variance-preserving scheme for the activation "
        f"(kaiming_normal for ReLU; {_TANH_HINT})"
    ),
    "exploding_activations": (
        "weights too large for this depth: use fan_in variance scaling with the activation's "
        f"gain (kaiming_normal for ReLU; {_TANH_HINT}); in residual networks without "
        "normalization, fixup"
    ),
    "vanishing_gradients": (
        "the back-propagated signal shrinks toward the input: keep each layer's gain at the "
        f"variance-preserving value (kaiming_normal for ReLU; {_TANH_HINT})"
    ),
    "exploding_gradients": (
        "the back-propagated signal grows toward the input: lower the weight variance to the "
        f"variance-preserving value (kaiming_normal for ReLU; {_TANH_HINT}; see "
        "initlab.critical_weight_variance); in residual networks without normalization, fixup"
    ),
    "dead_layers": (
        "units that output 0 for every example get no gradient: use kaiming (fan_in, ReLU gain) "
        "with zero biases, avoid large negative biases, or use leaky_relu"
    ),
    "saturated_layers": (
        "tanh/sigmoid units stuck at their bounds have near-zero derivative: scale the weights "
        f"down ({_TANH_HINT}; xavier_normal for sigmoid)"
    ),
    "unbroken_symmetry": (
        "identical units receive identical gradients and never differentiate: initialize the "
        "weights randomly (any scheme but zeros/constant); constant init is only for biases, "
        "norm layers and the last layer of residual branches (fixup)"
    ),
    "large_output": (
        "the output is far above unit scale, so a classifier starts confidently wrong: give the "
        "last layer a variance-preserving scale with gain 1 (xavier_normal or lecun_normal) or "
        "start it at zero (as Fixup does, Zhang et al. 2019), and keep regression targets at "
        "unit variance (LeCun et al. 1998, Efficient BackProp, Sec. 4.5)"
    ),
}

# The non_finite hint, by where the first NaN or inf appeared (see _non_finite_verdict).
NON_FINITE_HINTS = {
    "input": "the batch itself holds NaN or inf: clean or impute the data; the model is not at "
    "fault",
    "tensor": "the model holds NaN or inf before any step: re-initialize or reload the named "
    "tensors (a failed load, a division by a zero std, an overflowing scale)",
    "forward": "finite weights and input gave a non-finite output: an overflow, when the signal "
    "grows through depth (lower the weight variance to the variance-preserving value: "
    f"kaiming_normal for ReLU; {_TANH_HINT}), or an undefined operation at that layer "
    "(0 / 0, log or sqrt of a negative number)",
    "loss": "loss_fn returned NaN or inf on a finite output: check it (log of 0, a division by "
    "0, a target outside the output's range, a mean over an empty selection)",
    "backward": "a finite forward pass and loss gave non-finite gradients: an operation whose "
    "derivative is undefined where it is evaluated (sqrt or pow at 0, the norm of a zero "
    "vector, a torch.where that hides a NaN in the forward but not in its gradient) in what "
    "follows the first named layer, or an overflow of the back-propagated signal",
}


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one leaf-module call or functional activation call, in execution order.

    Attributes:
        name: qualified module name (``name#2`` for its second call); for a functional
            activation ``<layer>.<activation>`` (``fc1.relu``) or ``<activation>``, see the
            module docstring.
        module_type: the module's class name; ``"functional"`` for a functional activation.
        kind: ``"weight"`` (Linear, Conv), ``"activation"`` (also every functional
            activation) or ``"other"``.
        shape: output shape (of the first floating-point output tensor, see the module
            docstring: a recurrent layer's output sequence).
        mean: mean of the output over all its elements.
        std: standard deviation of the output (population, over all elements).
        dead_fraction: ReLU/ReLU6 only: fraction of units (output elements of one example)
            that are 0 for every example; else None.
        saturated_fraction: tanh/hardtanh/sigmoid only: fraction of outputs in saturation.
        variance_ratio: weight layers only: ``Var(y) / (fan_in * E[W^2] * E[x^2] + E[b^2])``,
            observed output variance over the variance independent inputs would give with
            these weights (1 for uncorrelated centred inputs; > 1 when inputs are correlated or
            not centred).
        grad_rms: RMS of the loss gradient with respect to this output (None without loss).
    """

    name: str
    module_type: str
    kind: str
    shape: tuple[int, ...]
    mean: float
    std: float
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    variance_ratio: float | None = None
    grad_rms: float | None = None


@dataclass(frozen=True)
class ParamStats:
    """One parameter: gradient statistics and, for weights, spectrum and symmetry.

    Attributes:
        name: qualified parameter name.
        shape: parameter shape.
        grad_norm: Frobenius norm of the gradient (None without loss or without gradient).
        grad_std: standard deviation of the gradient's elements.
        blocks: independent matrices stacked along dim 0, as
            :func:`initlab.fans.layer_fans` reads them: the gates of a recurrent weight
            (LSTM 4, GRU 3), the q/k/v blocks of an attention ``in_proj_weight``, the groups of
            a convolution; 1 otherwise.
        sigma_max: largest singular value of the weight as ``(out, -1)`` (>= 2-D only), per
            block: the largest over the blocks (a per-gate orthogonal LSTM ``weight_hh`` has
            1, not the fused ``(4H, H)`` matrix's 2).
        sigma_min: smallest singular value, per block: the smallest over the blocks.
        condition: ``sigma_max / sigma_min`` (``inf`` when singular); for a block-diagonal
            operator (a grouped convolution) its exact condition number.
        symmetric_fraction: fraction of the layer's units identical to another unit.
    """

    name: str
    shape: tuple[int, ...]
    grad_norm: float | None = None
    grad_std: float | None = None
    blocks: int = 1
    sigma_max: float | None = None
    sigma_min: float | None = None
    condition: float | None = None
    symmetric_fraction: float | None = None


@dataclass(frozen=True)
class Verdict:
    """A finding: ``code`` (see the module docstring), a message with the numbers, a hint."""

    code: str
    message: str
    hint: str = ""
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found: per-layer and per-parameter statistics, and verdicts.

    ``output_std`` is the std of the model's first non-scalar floating-point output tensor
    (None when it has none); ``residual_ends`` names the layers that end a residual branch in
    the forward pass (empty for a plain network; a norm ending a branch and the layer before
    it both end it); when present, the gradient verdict compares the last-called of each
    branch's ends. ``unrecorded`` names the leaf modules that ran but returned no
    floating-point tensor, so they have no row.
    """

    layers: tuple[LayerStats, ...]
    params: tuple[ParamStats, ...]
    verdicts: tuple[Verdict, ...]
    loss: float | None = None
    jacobian_singular_values: tuple[float, ...] = field(default=())
    output_std: float | None = None
    residual_ends: tuple[str, ...] = ()
    unrecorded: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """True if the only verdict is ``healthy``."""
        return [v.code for v in self.verdicts] == ["healthy"]

    def signal(self) -> list[LayerStats]:
        """The hidden signal through depth: activation outputs, else weight outputs but the last."""
        return _signal(self.layers)

    def table(self) -> str:
        """Return the layer table, the parameter table, the output std and the verdicts as text.

        The name columns are as wide as the longest name, so every row's later columns start
        at the same offset.
        """
        width = max([len("layer"), *(len(r.name) for r in self.layers)])
        rows = [
            f"{'layer':<{width}} {'type':<10} {'mean':>10} {'std':>10} {'dead':>6} {'sat':>6} "
            f"{'var/pred':>9} {'grad rms':>10}"
        ]
        for r in self.layers:
            rows.append(
                f"{r.name:<{width}} {r.module_type[:10]:<10} {r.mean:>10.3g} {r.std:>10.3g} "
                f"{_fmt(r.dead_fraction, '.2f'):>6} {_fmt(r.saturated_fraction, '.2f'):>6} "
                f"{_fmt(r.variance_ratio, '.3g'):>9} {_fmt(r.grad_rms, '.3g'):>10}"
            )
        rows.append("")
        width = max([len("parameter"), *(len(p.name) for p in self.params)])
        rows.append(
            f"{'parameter':<{width}} {'grad norm':>10} {'grad std':>10} {'blocks':>6} "
            f"{'s_max':>9} {'s_min':>9} {'cond':>9} {'sym':>5}"
        )
        for p in self.params:
            blocks = p.blocks if p.sigma_max is not None else None
            rows.append(
                f"{p.name:<{width}} {_fmt(p.grad_norm, '.3g'):>10} {_fmt(p.grad_std, '.3g'):>10} "
                f"{_fmt(blocks, 'd'):>6} {_fmt(p.sigma_max, '.3g'):>9} "
                f"{_fmt(p.sigma_min, '.3g'):>9} {_fmt(p.condition, '.3g'):>9} "
                f"{_fmt(p.symmetric_fraction, '.2f'):>5}"
            )
        if any(p.blocks > 1 for p in self.params):
            rows.append(
                "blocks > 1 (gates, q/k/v, groups): s_max and s_min are the largest and the "
                "smallest singular value over the blocks, each block its own matrix"
            )
        rows.append("")
        if self.output_std is not None:
            rows.append(f"output std: {self.output_std:.3g}")
        if self.unrecorded:
            rows.append(f"no row (no floating-point output): {', '.join(self.unrecorded)}")
        for v in self.verdicts:
            rows.append(f"{v.code}: {v.message}" + (f"\n  hint: {v.hint}" if v.hint else ""))
        return "\n".join(rows)

    def plot(
        self,
        path: str | os.PathLike,
        *,
        label: str = "model",
        others: Mapping[str, Diagnosis] | None = None,
        title: str | None = None,
    ) -> Path:
        """Write the depth profiles (activation std, gradient RMS) of this diagnosis to ``path``.

        Delegates to :func:`initlab.diagnostics.plots.plot_depth_profiles`; the format
        follows the suffix (``.png``, ``.pdf``, ``.svg``).

        Args:
            path: output file; parent directories are created.
            label: this diagnosis's legend entry.
            others: more ``{label: Diagnosis}`` curves drawn on the same axes, e.g. other
                schemes of the same model.
            title: figure title.

        Returns:
            ``path`` as a :class:`~pathlib.Path`.

        Example:
            >>> d.plot("profiles.png", label="xavier")  # doctest: +SKIP
        """
        from initlab.diagnostics.plots import plot_depth_profiles  # plots imports this module

        return plot_depth_profiles({label: self, **(others or {})}, path, title=title)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (``inf``/``nan`` stay floats; use ``allow_nan`` JSON)."""
        return asdict(self)


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
    exit even if the model raises; see the module docstring for what is recorded and the
    verdict thresholds. The model's parameters, buffers (e.g. BatchNorm running statistics),
    ``.grad`` tensors, train/eval flags and the global random state are all restored;
    denormals are flushed during the passes (:func:`~initlab.introspect.hooks.flush_denormal`).
    The pass runs in the model's current mode.

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
        the ``non_finite`` verdict (module docstring), never an error.

    Raises:
        TypeError: ``batch``'s input holds no tensor.
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
    if isinstance(jacobian, bool) or not isinstance(jacobian, int) or jacobian < 0:
        raise ValueError(f"jacobian must be an integer >= 0; got jacobian={jacobian!r}")
    if jacobian and not (isinstance(inputs, torch.Tensor) and inputs.dtype.is_floating_point):
        raise ValueError(
            "jacobian > 0 needs a single floating-point input tensor (the Jacobian is taken "
            f"with respect to it); got jacobian={jacobian} with a {_describe(inputs)} input"
        )
    args, kwargs = call_args(inputs)
    params = dict(model.named_parameters())
    bad_tensors = _non_finite_tensors(model, inputs)
    with ExitStack() as stack:
        for context in (preserved_modes(model), preserved_rng(), flush_denormal(), _eager()):
            stack.enter_context(context)
        stack.enter_context(_preserved_buffers_and_grads(model))
        recorder = _Recorder(model, want_grads=loss_fn is not None)
        with forward_hooks(leaf_modules(model), recorder):
            with torch.set_grad_enabled(loss_fn is not None), recorder.watch.watching(inputs):
                output = model(*args, **kwargs)
            out = next((t for t in tensors_in(output) if _is_signal(t)), None)
            output_stats = None if out is None else (_std(out.detach()), tuple(out.shape))
            loss = _backward(loss_fn, output, rest) if loss_fn is not None else None
        grads = {n: p.grad for n, p in params.items()}
        spectrum = _jacobian_singular_values(model, inputs, jacobian)
    layers = recorder.layers()
    param_stats = _param_stats(model, params, grads)
    ends = tuple(sorted(recorder.watch.residual_ends))
    summands = recorder.watch.summand_layers
    unrecorded = tuple(dict.fromkeys(recorder.unrecorded))  # once per module, in call order
    non_finite = _non_finite_verdict(bad_tensors, layers, param_stats, output_stats, loss, spectrum)
    verdicts = non_finite + _verdicts(
        layers, param_stats, summands, output_stats, loss, unrecorded, healthy=not non_finite
    )
    output_std = output_stats[0] if output_stats else None
    return Diagnosis(
        tuple(layers),
        tuple(param_stats),
        tuple(verdicts),
        loss,
        spectrum,
        output_std,
        ends,
        unrecorded,
    )


def _uncompiled(model: nn.Module) -> nn.Module:
    """The original module of a model compiled by ``torch.compile`` (its ``_orig_mod``), so
    that hooks see its layers and its names carry no ``_orig_mod.`` prefix."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


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


def _non_finite_tensors(model: nn.Module, inputs) -> list[tuple[str, str, int, int]]:
    """``(kind, name, non-finite count, numel)`` for the input tensors, parameters and
    floating-point buffers holding NaN or inf, in that order."""
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


def _non_finite_verdict(tensors, layers, params, output_stats, loss, spectrum) -> list[Verdict]:
    """The ``non_finite`` verdict: where NaN or inf first appears, in the order values are
    computed (module docstring), and where else it reached; [] when every value is finite."""
    places: list[tuple[str, str]] = []  # (origin kind, description), in computation order
    names: list[str] = []

    inputs = [t for t in tensors if t[0] == "input"]
    if inputs:
        bad, numel = sum(t[2] for t in inputs), sum(t[3] for t in inputs)
        places.append(("input", f"the input batch ({bad} of {numel} elements)"))
    for kind, name, bad, numel in (t for t in tensors if t[0] != "input"):
        places.append(("tensor", f"{kind} {name!r} ({bad} of {numel} elements)"))
        names.append(name)
    forward = [r for r in layers if not (math.isfinite(r.mean) and math.isfinite(r.std))]
    if forward:
        what = f"the output of layer {forward[0].name!r}" + _count(forward, "layer", "forward")
        places.append(("forward", what + _growth_before(layers, forward[0])))
        names += [r.name for r in forward]
    if output_stats is not None and not math.isfinite(output_stats[0]):
        places.append(("forward", "the model's output"))
    if loss is not None and not math.isfinite(loss):
        places.append(("loss", f"the loss ({loss})"))
    backward = [r for r in reversed(layers) if r.grad_rms is not None]
    backward = [r for r in backward if not math.isfinite(r.grad_rms)]
    if backward:
        what = f"the gradient with respect to the output of layer {backward[0].name!r}"
        what += _count(backward, "layer", "backward")
        later = layers[layers.index(backward[0]) + 1 :]
        after = next((r for r in later if r.grad_rms is not None), None)
        if after is not None and math.isfinite(after.grad_rms):  # where backward came from
            what += (
                f", back-propagated from a finite one at the next layer's output, {after.name!r}"
            )
        places.append(("backward", what))
        names += [r.name for r in backward if r.name not in names]
    grads = [p for p in params if p.grad_norm is not None and not math.isfinite(p.grad_norm)]
    if grads:
        what = f"the gradient of parameter {grads[0].name!r}"
        places.append(("backward", what + (f" and {len(grads) - 1} more" if grads[1:] else "")))
    if any(not math.isfinite(v) for v in spectrum):
        places.append(("forward", "the input-output Jacobian"))
    if not places:
        return []
    (origin, first), rest = places[0], [p for _, p in places[1:]]
    message = f"NaN or inf first in {first}" + (f"; then in {'; '.join(rest)}" if rest else "")
    return [Verdict("non_finite", message, NON_FINITE_HINTS[origin], tuple(names))]


def _count(rows, what: str, direction: str) -> str:
    """How many ``rows`` there are, after the first: '' for one."""
    if len(rows) == 1:
        return ""
    return f" (the first in the {direction} pass; {len(rows)} {what}s in all)"


def _growth_before(layers, first_bad) -> str:
    """Say how the hidden std grew over the finite signal before ``first_bad``, when it grew by
    more than ``SIGNAL_RATIO``: an overflow, not an undefined operation."""
    before = [r for r in _signal(layers[: layers.index(first_bad)]) if math.isfinite(r.std)]
    if len(before) < 2 or before[0].std <= 0 or before[-1].std / before[0].std <= SIGNAL_RATIO:
        return ""
    a, b = before[0], before[-1]
    return (
        f", after the hidden std grew from {a.std:.3g} at {a.name!r} to {b.std:.3g} at {b.name!r}"
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


def _is_signal(t: torch.Tensor) -> bool:
    """A floating-point tensor with a batch dimension (not a loss scalar, ids or a mask)."""
    return t.dtype.is_floating_point and t.ndim > 0


def _describe(inputs) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"{inputs.dtype} tensor"
    return type(inputs).__name__


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

    def __call__(self, name, module, args, output):
        # A recurrent layer returns (output, h_n) or (output, (h_n, c_n)): its first tensor is
        # the output sequence, the layer's signal to the next one.
        y = next((t for t in tensors_in(output) if t.dtype.is_floating_point), None)
        if y is None:
            self.unrecorded.append(name)
            return None
        with self.watch.paused():  # our statistics are not the model's calls
            self._add(_module_stats(name, module, args, y.detach()), y)
        return None

    def functional(self, call: ActivationCall) -> None:
        if not call.output.dtype.is_floating_point:
            return
        act = call.activation.name
        name = f"{call.layers[0]}.{act}" if call.layers else act
        row = {"name": name, "module_type": "functional", "kind": "activation"}
        row |= _output_stats(call.output.detach(), act)[0]
        replaced = {id(self.by_call.pop(i)) for i in call.replaces}  # sigmoid of x * sigmoid(x)
        self.rows = [r for r in self.rows if id(r) not in replaced]
        self.by_call[call.index] = row
        self._add(row, call.output)

    def _add(self, row: dict, output: torch.Tensor) -> None:
        self.rows.append(row)
        if self.want_grads and output.requires_grad:
            output.register_hook(lambda g, _row=row: _row.__setitem__("grad_rms", _rms(g)))

    def layers(self) -> list[LayerStats]:
        """The rows in execution order, a repeated name numbered ``name#2``, ``name#3`` ..."""
        counts: dict[str, int] = {}
        stats = []
        for row in self.rows:
            n = counts[row["name"]] = counts.get(row["name"], 0) + 1
            stats.append(LayerStats(**(row | ({"name": f"{row['name']}#{n}"} if n > 1 else {}))))
        return stats


def _module_stats(name, module, args, y) -> dict:
    act = from_module(module)
    stats, var = _output_stats(y, act.name if act is not None else None)
    row = {"name": name, "module_type": type(module).__name__, "kind": _kind(module), **stats}
    if row["kind"] == "weight" and args and isinstance(args[0], torch.Tensor):
        row["variance_ratio"] = _variance_ratio(module, args[0].detach(), var)
    return row


def _output_stats(y: torch.Tensor, activation: str | None) -> tuple[dict, float]:
    """Shape, mean, std and the dead or saturated fraction of ``activation``; and Var(y)."""
    var, mean = torch.var_mean(y.double(), correction=0)
    row = {"shape": tuple(y.shape), "mean": float(mean), "std": math.sqrt(float(var))}
    if activation in _DEAD:
        row["dead_fraction"] = float((y.flatten(1) == 0).all(dim=0).double().mean())
    elif activation in _TANH:
        row["saturated_fraction"] = float((y.abs() > 0.99).double().mean())
    elif activation == "sigmoid":
        row["saturated_fraction"] = float(((y < 0.01) | (y > 0.99)).double().mean())
    return row, float(var)


def _kind(module: nn.Module) -> str:
    if _is_weight_layer(module):
        return "weight"
    # from_module also knows third-party activation modules (HF's GELUActivation) by name.
    return "activation" if from_module(module) is not None else "other"


def _variance_ratio(module, x: torch.Tensor, observed: float) -> float:
    # Var(y_i) = sum_j W_ij^2 E[x_j^2] + b_i^2 for independent zero-mean weights and inputs;
    # averaged over units: fan_in * E[W^2] * E[x^2] + E[b^2] (He et al. 2015, eq. 7).
    w = module.weight.detach().double()
    # (in / groups) * prod(kernel) for convs; the first axis of an HF Conv1D's (in, out) weight
    fan_in = layer_fans(module, "weight").fan_in
    predicted = fan_in * float(w.pow(2).mean()) * float(x.double().pow(2).mean())
    if getattr(module, "bias", None) is not None:
        predicted += float(module.bias.detach().double().pow(2).mean())
    return observed / predicted if predicted > 0 else math.nan


def _rms(t: torch.Tensor) -> float:
    return math.sqrt(float(t.detach().double().pow(2).mean()))


def _is_weight_layer(module: nn.Module) -> bool:
    """A Linear or convolution, or Hugging Face's Conv1D (GPT-2), a Linear stored (in, out)."""
    return isinstance(module, _WEIGHT_TYPES) or is_hf_conv1d(module)


def _out_in(module: nn.Module) -> torch.Tensor:
    """The weight of a weight layer in PyTorch's ``(out, in / groups, *kernel)`` layout, detached.

    Hugging Face's Conv1D stores ``(in, out)``; a transposed convolution ``(in, out / groups,
    *kernel)``, regrouped here so that each output unit is one row.
    """
    weight = module.weight.detach()
    if is_hf_conv1d(module):
        return weight.transpose(0, 1)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):  # (g, in/g, out/g) -> (out, in/g)
        return weight.unflatten(0, (module.groups, -1)).transpose(1, 2).flatten(0, 1)
    return weight


def _param_stats(model, params, grads) -> list[ParamStats]:
    weights = [m for _, m in model.named_modules() if _is_weight_layer(m)]
    successor = {id(a.weight): b for a, b in zip(weights, weights[1:], strict=False)}
    branch_ends = _residual_branch_ends(model)
    stats = []
    for name, p in params.items():
        g = grads.get(name)
        entry = {"name": name, "shape": tuple(p.shape)}
        if g is not None:
            entry |= {"grad_norm": float(g.double().norm()), "grad_std": _std(g)}
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
            weights = [m for m in module.residual_branch() if _is_weight_layer(m)]
            if weights:
                ends.add(id(weights[-1].weight))
    return ends


def _std(t: torch.Tensor) -> float:
    return float(t.double().std(correction=0)) if t.numel() else math.nan


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
    rows = (_out_in(owner) if _is_weight_layer(owner) else weight.detach()).flatten(1)
    bias = getattr(owner, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.shape == rows.shape[:1]:
        rows = torch.cat([rows, bias.detach()[:, None]], dim=1)
    nxt = _out_in(successor) if successor is not None else None
    if nxt is not None and nxt.ndim >= 2 and nxt.shape[1] == rows.shape[0]:
        # Outgoing weights: the next layer's slices along its input axis, one per unit.
        rows = torch.cat([rows, nxt.transpose(0, 1).flatten(1)], dim=1)
    if rows.shape[0] < 2:
        return 0.0
    _, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).double().mean())


#: Normalization by batch statistics: the examples of a batch are coupled (public classes;
#: the lazy ones become their BatchNorm class at their first call).
_BATCH_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
)


def _batch_coupled(model: nn.Module) -> bool:
    """Whether a batch norm normalizes by the batch's statistics: in train mode, or without
    running statistics (``track_running_stats=False``), as ``_BatchNorm.forward`` decides."""
    return any(
        isinstance(m, _BATCH_NORMS) and (m.training or m.running_mean is None)
        for m in model.modules()
    )


def _jacobian_singular_values(model, x, n) -> tuple[float, ...]:
    """Singular values of ``d model(x)[i] / d x[i]`` for the first ``n`` examples (see
    :func:`diagnose`'s ``jacobian``); NaN for each when the Jacobian is not finite."""
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
        y = next((t for t in tensors_in(output) if _is_signal(t)), None)
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


def _verdicts(
    layers, params, summands, output_stats, loss, unrecorded, healthy=True
) -> list[Verdict]:
    """The verdicts other than ``non_finite``; ``healthy`` when none fired and ``healthy``."""
    signal = _signal(layers)
    pair = _gradient_pair(layers, params, summands)
    found = [
        *_signal_verdict(signal),
        *_gradient_verdict(pair, summands),
        *_fraction_verdict(layers, "dead_fraction", DEAD_FRACTION, "dead_layers", "dead"),
        *_fraction_verdict(
            layers, "saturated_fraction", SATURATED_FRACTION, "saturated_layers", "saturated"
        ),
        *_symmetry_verdict(params),
        *_output_verdict(output_stats, loss),
    ]
    if found or not healthy:
        return found
    measured = any(r.grad_rms is not None for r in layers)
    return [_healthy(signal, pair, measured, unrecorded)]


def _healthy(signal, pair, grads_measured: bool, unrecorded) -> Verdict:
    """The healthy verdict, claiming only what was compared and naming what was not recorded."""
    skipped = (
        f"; no statistics for {', '.join(unrecorded)} (no floating-point output)"
        if unrecorded
        else ""
    )
    if len(signal) >= 2 and pair is not None:
        return Verdict("healthy", f"activations and gradients keep their scale{skipped}")
    activations = (
        "activations keep their scale"
        if len(signal) >= 2
        else "activations not compared (fewer than 2 hidden signals)"
    )
    if pair is not None:
        gradients = "gradients keep their scale"
    elif grads_measured:
        gradients = (
            "gradients not compared (fewer than 2 comparable layers, a zero output layer, or "
            "no gradient reaching them)"
        )
    else:
        gradients = "gradients not measured (no loss_fn: no backward pass ran)"
    return Verdict("healthy", f"{activations}; {gradients}{skipped}")


def _ratio_verdict(first, last, what, code_stem) -> list[Verdict]:
    if not (math.isfinite(first) and math.isfinite(last)):
        return []  # no ratio of NaN or inf: the non_finite verdict says where it came from
    ratio = last / first if first > 0 else (math.inf if last > 0 else 0.0)  # 0 -> 0 vanished
    if ratio > SIGNAL_RATIO:
        code = f"exploding_{code_stem}"
    elif ratio < 1 / SIGNAL_RATIO:
        code = f"vanishing_{code_stem}"
    else:
        return []
    message = f"{what} goes from {first:.3g} to {last:.3g} (ratio {ratio:.3g})"
    return [Verdict(code, message, HINTS[code])]


def _signal(layers) -> list[LayerStats]:
    activations = [r for r in layers if r.kind == "activation"]
    return activations or [r for r in layers if r.kind == "weight"][:-1]


def _signal_verdict(signal) -> list[Verdict]:
    if len(signal) < 2:
        return []
    what = f"hidden activation std from {signal[0].name} to {signal[-1].name}"
    return _ratio_verdict(signal[0].std, signal[-1].std, what, "activations")


def _gradient_pair(layers, params, summands) -> tuple[LayerStats, LayerStats] | None:
    """The (last, first) comparable rows of the gradient verdict (module docstring), or None
    when it is not judged."""
    measured = [r for r in layers if r.grad_rms is not None]
    weights = [r for r in measured if r.kind == "weight"]
    if not weights or _all_zero(weights[-1].name, params):
        return None
    if summands:  # each summand's gradient is the stream's at its add
        comparable = [r for r in measured if r.name.split("#")[0] in summands]
    else:  # the head's gradient is the loss's, not a back-propagated signal
        comparable = weights[:-1]
    if len(comparable) < 2 or comparable[-1].grad_rms == 0:
        return None  # a zero gradient where back-propagation starts leaves no scale to compare
    return comparable[-1], comparable[0]


def _gradient_verdict(pair, summands) -> list[Verdict]:
    if pair is None:
        return []
    # Back-propagation runs from the last layer to the first. RMS is per element, so layers
    # of different widths compare fairly.
    last, first = pair
    what = (
        "residual-stream gradient RMS at the outputs of"
        if summands
        else ("pre-activation gradient RMS from")
    )
    what += f" {last.name} back to {first.name}"
    return _ratio_verdict(last.grad_rms, first.grad_rms, what, "gradients")


def _all_zero(layer: str, params) -> bool:
    """True if the layer's weight is all zero (its largest singular value is 0)."""
    base = layer.split("#")[0]
    name = f"{base}.weight" if base else "weight"
    return any(p.name == name and p.sigma_max == 0.0 for p in params)


def _output_verdict(output_stats, loss) -> list[Verdict]:
    if output_stats is None:
        return []
    std, shape = output_stats
    if not math.isfinite(std) or std <= OUTPUT_STD:  # a non-finite output is non_finite's
        return []
    message = f"output std {std:.3g} is above {OUTPUT_STD:g}, an order of magnitude over unit scale"
    if loss is not None and len(shape) == 2 and shape[1] >= 2:
        message += (
            f"; initial loss {loss:.3g} (cross-entropy with near-zero logits starts at "
            f"ln {shape[1]} = {math.log(shape[1]):.3g})"
        )
    return [Verdict("large_output", message, HINTS["large_output"])]


def _fraction_verdict(layers, attr, threshold, code, word) -> list[Verdict]:
    bad = [r for r in layers if (getattr(r, attr) or 0.0) > threshold]
    if not bad:
        return []
    worst = max(bad, key=lambda r: getattr(r, attr))
    message = (
        f"{len(bad)} layer(s) with more than {threshold:.0%} {word} units; worst "
        f"{worst.name}: {getattr(worst, attr):.0%}"
    )
    return [Verdict(code, message, HINTS[code], tuple(r.name for r in bad))]


def _symmetry_verdict(params) -> list[Verdict]:
    weights = [p for p in params if p.symmetric_fraction is not None]
    bad = [p for p in weights[:-1] if p.symmetric_fraction > SYMMETRIC_FRACTION]
    if not bad:
        return []
    message = (
        f"{len(bad)} weight(s) with more than {SYMMETRIC_FRACTION:.0%} of units identical to "
        f"another unit, e.g. {bad[0].name} ({bad[0].symmetric_fraction:.0%})"
    )
    code = "unbroken_symmetry"
    return [Verdict(code, message, HINTS[code], tuple(p.name for p in bad))]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
