r"""Verdicts: the rules that turn a diagnosis's records into findings with hints.

:func:`judge` reads a :class:`~initlab.diagnostics.records.Recording` and returns its
:class:`~initlab.diagnostics.records.Verdict` list: ``non_finite`` first when a NaN or inf
appeared, then every threshold verdict that fired, or ``healthy`` alone.

Verdicts and their thresholds (module constants below), in the order :func:`judge` lists them:

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
  weight layer but the last when the model has no recognized activation. In a residual
  network, those from the first residual block on (``_on_stream``): norm-ended branches add
  their own variance to the stream whatever the stem's scale, so a small stem is no growth
  through depth.
- ``vanishing_gradients`` / ``exploding_gradients``: the back-propagated signal through the
  hidden layers, as in Glorot and Bengio (2010, Sec. 4.2.2, Fig. 7): the gradient with respect
  to the first comparable layer's output (a pre-activation) is below ``1 / SIGNAL_RATIO`` or
  above ``SIGNAL_RATIO`` times that of the last one (needs ``loss_fn``).

  Units: the per-example norm of the gradient with respect to the layer's whole output
  (``LayerStats.grad_norm``, RMS over the examples), not the per-element RMS. Backward through
  ``y = W x``, ``Var[dx] = n_out Var[w] Var[dy]`` per element, ``n_out`` the outputs reading
  each input (Glorot and Bengio 2010, eq. 6; He et al. 2015, eq. 13: ``k^2 d`` for a
  ``k x k`` convolution with ``d`` output channels, ``/ s^2`` at stride ``s``). Times the
  element counts, a fan-in-scaled layer (He, LeCun, PyTorch's default) multiplies the squared
  norm by ``fan_in Var[w]`` times the activation's gain, whatever its widths and stride: the
  norm changes by the init, the per-element RMS also by ``n_out / fan_in`` (the ratio of the
  channel counts and ``1 / s^2`` per stride, which He et al. telescope to the ratio of the end
  widths). Parameter-free reductions of positions are the architecture's, not the init's, and
  are divided out between the two compared layers: an average pool module of ``k`` positions
  divides the norm by ``sqrt(k)`` exactly (``dy / k`` on ``k`` positions; a global average
  pool over 64 x 64 by 64, where the per-element RMS falls by 4096); in a plain network, a
  reduction no module did (``x.mean((2, 3))``, ``F.max_pool2d``, ``x[:, 0]``) before a weight
  layer by its measured factor, the gradient norm of the row before it over that of the
  layer's input (``LayerStats.reduced``, ``grad_in_norm``). A max pool or a pick keeps the
  norm.

  Comparable layers, so that the ratio compares like with like:

  * plain networks (no residual add in the forward): every weight layer but the last. The head
    is excluded: its output gradient is the loss's, set by the number of classes and not by
    depth.
  * residual networks (the forward adds a deeper branch to a shallower stream, as
    :mod:`initlab.introspect.trace` finds it): only the layer whose output each add's deeper summand
    is, the last-called of the branch's ends (``linear2`` of every transformer block, ``fc2`` of
    every residual MLP block, ``bn2`` of a ResNet block, not the ``conv2`` before it). The gradient
    of a sum reaches each summand unchanged, so each such layer's output gradient is the residual
    stream's gradient at its add, up to a per-block multiplier that is equal across blocks at init
    (Fixup's ``1 + s``); the ratio follows the stream from the last block back to the first. The
    layer before a norm that ends the branch is not compared: the norm's backward scales its
    gradient by the norm's weight, all zero under ``zero_init_residual`` (Goyal et al. 2017), where
    the stream's gradient is not. Layers off the stream (a stem or patch embedding ahead of a
    normalization, a layer inside a branch) are not compared with layers on it.
    When a normalization reads the stream right after both compared adds (pre-norm blocks'
    ``ln_1``/``ln_2`` and the final norm; a post-norm block's norm of the sum), each stream
    gradient is multiplied by the stream's RMS there (``LayerStats.in_rms`` of that norm):
    a norm's Jacobian is ``(1 / rms(x))`` times a projection, so every reader of a normalized
    stream back-propagates ``1 / rms`` of its scale, and the stream gradient of a pre-norm
    transformer grows toward the input exactly as the stream's scale falls (Xiong et al. 2020,
    "On Layer Normalization in the Transformer Architecture", Sec. 3.3: gradients of pre-LN
    scale with ``1 / ||x_l||``). A small embedding (a tied one at ``N(0, 1/d)``) under large
    branches is such a stream, not an exploding gradient. Without a norm reading the stream
    (a residual MLP without normalization, a ResNet whose next reader is a convolution) the
    stream's scale is what the next layers see, and it is compared as it is.
  * embedding lookups (a layer whose input holds token ids, no floating-point tensor:
    ``Recording.sources``) are never compared: no layer lies behind them for the gradient to
    cross, and a pre-norm stream's first norm divides by their std.

  A factor 10 over the whole network is the same order-of-magnitude rule as for activations:
  variance-preserving schemes stay within it at any depth (ReLU 3 layers with Xavier: about
  0.5), a per-layer factor off by sqrt(2) crosses it after 7 layers. In the chaotic phase of
  a tanh network (``chi_1 > 1``: He init, LSUV) the squared gradient grows by ``chi_1`` per
  layer toward the input (Schoenholz et al. 2017, Sec. 4), the norm by ``1.105^(49/2) = 12``
  for He init over 50 layers (measured on MNIST: 21): the verdict fires there although the
  mean-field depth scale ``6 xi_c`` (about 130 layers) is larger; ``6 xi_c`` bounds how deep
  the correlations between inputs survive, not how much the gradient grows. Needs at least
  two comparable layers. Not judged when the last weight layer is all zero: a zero output
  layer (Fixup, zero init) blocks every back-propagated signal at step zero by design and
  unblocks after the first update. Nor when the last comparable layer's gradient is exactly
  zero (e.g. behind a zero-initialized norm in a plain network): a ratio to zero has no
  scale, and 0 to 0 is not a vanishing signal.
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
"""

from __future__ import annotations

import math

from initlab.diagnostics.records import Recording, Verdict, hidden_signal

__all__ = [
    "DEAD_FRACTION",
    "HINTS",
    "NON_FINITE_HINTS",
    "OUTPUT_STD",
    "SATURATED_FRACTION",
    "SIGNAL_RATIO",
    "SYMMETRIC_FRACTION",
    "judge",
]

SIGNAL_RATIO = 10.0
DEAD_FRACTION = 0.5
SATURATED_FRACTION = 0.5
SYMMETRIC_FRACTION = 0.5
OUTPUT_STD = 10.0

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


def judge(recording: Recording) -> list[Verdict]:
    """Return the verdicts of ``recording`` (module docstring): ``non_finite`` when a NaN or inf
    appeared, then the threshold verdicts that fired; ``healthy`` alone when none did."""
    r = recording
    non_finite = _non_finite_verdict(
        r.non_finite_tensors, r.layers, r.params, r.output, r.loss, r.jacobian
    )
    comparable = [row for row in r.layers if row.name.split("#")[0] not in r.sources]
    return non_finite + _verdicts(
        r.layers,
        r.params,
        r.summands,
        r.output,
        r.loss,
        r.unrecorded,
        healthy=not non_finite,
        comparable=comparable,
    )


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
    before = [r for r in hidden_signal(layers[: layers.index(first_bad)]) if math.isfinite(r.std)]
    if len(before) < 2 or before[0].std <= 0 or before[-1].std / before[0].std <= SIGNAL_RATIO:
        return ""
    a, b = before[0], before[-1]
    return (
        f", after the hidden std grew from {a.std:.3g} at {a.name!r} to {b.std:.3g} at {b.name!r}"
    )


def _verdicts(
    layers, params, summands, output_stats, loss, unrecorded, healthy=True, comparable=None
) -> list[Verdict]:
    """The verdicts other than ``non_finite``; ``healthy`` when none fired and ``healthy``.
    ``comparable``: the rows the gradient verdict may compare (``layers`` without the
    embeddings' lookups)."""
    signal = _on_stream(hidden_signal(layers), layers, summands)
    pair = _gradient_pair(layers if comparable is None else comparable, params, summands, layers)
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


def _on_stream(signal, layers, summands):
    """In a residual network, the hidden signals from the first residual block on (the first
    row inside the module that holds the first summand: ``blocks.0``, ``encoder.layers.0``,
    ``layer1.0``). The stem's output before it only starts the stream, and norm-ended branches
    add their own variance (the norms' ``gamma^2``) to it whatever the stem's scale, so a
    small stem against them is not a growth through depth. The signal that explodes by the
    init (a residual MLP without norms under He init, whose variance doubles per block) still
    does from the first block on."""
    if not summands:
        return signal
    first = next((r for r in layers if r.name.split("#")[0] in summands), None)
    if first is None or "." not in first.name:
        return signal
    block = first.name.split("#")[0].rsplit(".", 1)[0] + "."
    start = next(i for i, r in enumerate(layers) if r.name.startswith(block))
    inside = {id(r) for r in layers[start:]}
    return [r for r in signal if id(r) in inside]


def _signal_verdict(signal) -> list[Verdict]:
    if len(signal) < 2:
        return []
    what = f"hidden activation std from {signal[0].name} to {signal[-1].name}"
    return _ratio_verdict(signal[0].std, signal[-1].std, what, "activations")


def _gradient_pair(layers, params, summands, everything=None):
    """The ``((last row, its value), (first row, its value))`` of the gradient verdict (module
    docstring): per-example gradient norms, the first one divided by what the parameter-free
    reductions between the two did to the back-propagated norm (:func:`_reductions`); None
    when it is not judged. ``layers`` are the rows that may be compared, ``everything`` all
    rows in execution order."""
    everything = layers if everything is None else everything
    measured = [r for r in layers if r.grad_norm is not None]
    weights = [r for r in measured if r.kind == "weight"]
    if not weights or _all_zero(weights[-1].name, params):
        return None
    if summands:  # each summand's gradient is the stream's at its add
        comparable = [r for r in measured if r.name.split("#")[0] in summands]
    else:  # the head's gradient is the loss's, not a back-propagated signal
        comparable = weights[:-1]
    if len(comparable) < 2 or comparable[-1].grad_norm == 0:
        return None  # a zero gradient where back-propagation starts leaves no scale to compare
    first, last = comparable[0], comparable[-1]
    ids = [id(r) for r in everything]
    start, end = ids.index(id(first)), ids.index(id(last))
    factor = _reductions(everything, start, end, measured_too=not summands)
    if summands:
        scales = (_stream_scale(everything, start), _stream_scale(everything, end))
        if all(scales):  # the stream is read through normalizations: undo its scale
            factor *= scales[1] / scales[0]
    return (last, last.grad_norm), (first, first.grad_norm / factor)


def _stream_scale(rows, i: int) -> float | None:
    """The per-element RMS of the residual stream after the add of summand ``rows[i]``: the
    input RMS of the normalization that reads it next (a pre-norm block's ``ln_1``/``ln_2``,
    the final norm; a post-norm block's norm of the sum), when only parameter-free rows
    (dropout, an activation) lie between; None when a weight layer reads the stream first
    (ResNet's next ``conv1``, a head) or no norm follows."""
    for r in rows[i + 1 :]:
        if r.in_rms is not None:
            return r.in_rms if r.in_rms > 0 and math.isfinite(r.in_rms) else None
        if r.kind == "weight":
            return None
    return None


def _reductions(rows, start: int, end: int, measured_too: bool) -> float:
    """The factor by which the reductions of positions between ``rows[start]`` and
    ``rows[end]`` (exclusive, inclusive) multiply the per-example gradient norm backward: an
    average pool module of ``k`` positions ``1 / sqrt(k)`` exactly; with ``measured_too`` (a
    plain network, where each row reads the one before it), a reduction no module did (a
    functional mean, max pool or pick before a weight layer) as measured, the gradient norm
    before it over after it. These are fixed by the architecture, not by the init. In a
    residual network the row before a layer need not be its input (``c_proj`` after GPT-2's
    fused ``c_attn``, read through the attention), so only pooling modules count there."""
    factor = 1.0
    for i in range(start + 1, end + 1):
        r = rows[i]
        if r.pooled:
            factor /= math.sqrt(r.pooled)
        elif measured_too and r.reduced and r.grad_in_norm and rows[i - 1].grad_norm is not None:
            before = rows[i - 1].grad_norm
            if before > 0 and math.isfinite(before) and math.isfinite(r.grad_in_norm):
                factor *= before / r.grad_in_norm
    return factor


def _gradient_verdict(pair, summands) -> list[Verdict]:
    if pair is None:
        return []
    # Back-propagation runs from the last layer to the first, in units that fan-in-scaled
    # layers of any width or stride keep (module docstring).
    (last, end), (first, start) = pair
    unit = "gradient norm per example"
    what = (
        f"residual-stream {unit} at the outputs of" if summands else f"pre-activation {unit} from"
    )
    what += f" {last.name} back to {first.name}"
    if first.grad_norm != start:
        what += f" (times {start / first.grad_norm:.3g}, undoing the pooling between them)"
    return _ratio_verdict(end, start, what, "gradients")


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
