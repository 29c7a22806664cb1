"""What a diagnosis records: per-layer and per-parameter statistics, verdicts, and the diagnosis.

Plain frozen dataclasses: :mod:`initlab.diagnostics.recorder` measures a :class:`Recording`
(rows of :class:`LayerStats` and :class:`ParamStats`), :mod:`initlab.diagnostics.verdicts` turns
it into :class:`Verdict` objects, and :func:`initlab.diagnostics.diagnose.diagnose` returns both
as a :class:`Diagnosis`. :func:`hidden_signal` is the one definition of
the hidden signal through depth that both the activation verdict and the depth-profile figure
read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "Diagnosis",
    "LayerStats",
    "ParamStats",
    "Recording",
    "Verdict",
    "hidden_signal",
]


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one leaf-module call or functional activation call, in execution order.

    Attributes:
        name: qualified module name (``name#2`` for its second call); for a functional
            activation ``<layer>.<activation>`` (``fc1.relu``) or ``<activation>``, see
            :mod:`initlab.diagnostics.recorder`.
        module_type: the module's class name; ``"functional"`` for a functional activation.
        kind: ``"weight"`` (Linear, Conv), ``"activation"`` (also every functional
            activation) or ``"other"``.
        shape: output shape (of the first floating-point output tensor: a recurrent layer's
            output sequence, see :mod:`initlab.diagnostics.recorder`).
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
        grad_norm: the back-propagated signal the gradient verdict compares: RMS over
            examples of the per-example norm of the loss gradient with respect to this whole
            output (:func:`initlab.diagnostics.statistics.example_norm`; None without loss).
        pooled: average pools only: input elements per output element (the ``k`` whose
            ``1 / sqrt(k)`` the gradient verdict undoes); else None.
        reduced: weight layers only: how many times fewer elements per example their input has
            than the output of the row recorded before them (a mean or a selection in the
            forward that no module did: ``x.mean((2, 3))``, ``F.max_pool2d``, ``x[:, 0]``);
            None when not fewer.
        in_rms: normalization layers only: the per-element RMS of their input, the scale they
            divide out (of the residual stream, for a pre-norm block's norm).
        grad_in_norm: weight layers with ``reduced`` only: the per-example gradient norm at
            their input, after the reduction (None without loss).
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
    grad_norm: float | None = None
    pooled: float | None = None
    reduced: float | None = None
    grad_in_norm: float | None = None
    in_rms: float | None = None


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
    """A finding: ``code`` (see :mod:`initlab.diagnostics.verdicts`), a message with the
    numbers, a hint, and the layers or parameters concerned."""

    code: str
    message: str
    hint: str = ""
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`~initlab.diagnostics.diagnose.diagnose` found: per-layer and per-parameter
    statistics, and verdicts.

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
        return hidden_signal(self.layers)

    def table(self) -> str:
        """Return the layer table, the parameter table, the output std and the verdicts as text.

        The name columns are as wide as the longest name, so every row's later columns start
        at the same offset. ``grad rms`` is the output gradient's per-element RMS, ``grad
        norm`` its per-example norm, the gradient verdict's unit.
        """
        width = max([len("layer"), *(len(r.name) for r in self.layers)])
        rows = [
            f"{'layer':<{width}} {'type':<10} {'mean':>10} {'std':>10} {'dead':>6} {'sat':>6} "
            f"{'var/pred':>9} {'grad rms':>10} {'grad norm':>10}"
        ]
        for r in self.layers:
            rows.append(
                f"{r.name:<{width}} {r.module_type[:10]:<10} {r.mean:>10.3g} {r.std:>10.3g} "
                f"{_fmt(r.dead_fraction, '.2f'):>6} {_fmt(r.saturated_fraction, '.2f'):>6} "
                f"{_fmt(r.variance_ratio, '.3g'):>9} {_fmt(r.grad_rms, '.3g'):>10} "
                f"{_fmt(r.grad_norm, '.3g'):>10}"
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
        # on use: matplotlib loads only for a figure (plots imports nothing of initlab)
        from initlab.diagnostics.plots import plot_depth_profiles

        return plot_depth_profiles({label: self, **(others or {})}, path, title=title)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (``inf``/``nan`` stay floats; use ``allow_nan`` JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class Recording:
    """What the passes of :func:`initlab.diagnostics.recorder.record` measured, before any
    verdict.

    Attributes:
        layers: one row per recorded call, in execution order (``name#2`` for a second call).
        params: one row per parameter, in ``named_parameters`` order.
        output: ``(std, shape)`` of the model's first non-scalar floating-point output tensor,
            or None when it has none.
        loss: the loss (None without ``loss_fn``).
        jacobian: singular values of the input-output Jacobians (empty unless asked for).
        non_finite_tensors: ``(kind, name, count, numel)`` of the inputs, parameters and
            buffers holding NaN or inf before the passes.
        residual_ends: layers ending a residual branch in the forward pass, sorted.
        summands: layers whose output is the deeper summand of a residual add (the tracer's
            ``summand_layers``); empty for a plain network.
        unrecorded: leaf modules that ran but returned no floating-point tensor, once each in
            call order.
        sources: recorded layers whose input held no floating-point tensor (an embedding's
            lookup of token ids): their output gradient goes back through no layer.
    """

    layers: tuple[LayerStats, ...]
    params: tuple[ParamStats, ...]
    output: tuple[float, tuple[int, ...]] | None
    loss: float | None
    jacobian: tuple[float, ...]
    non_finite_tensors: tuple[tuple[str, str, int, int], ...]
    residual_ends: tuple[str, ...]
    summands: frozenset[str]
    unrecorded: tuple[str, ...]
    sources: frozenset[str] = frozenset()


def hidden_signal(layers: Sequence[LayerStats]) -> list[LayerStats]:
    """The hidden signal through depth, in execution order: the outputs of activations (modules
    or functional calls), or of every weight layer but the last when ``layers`` holds no
    recognized activation."""
    activations = [r for r in layers if r.kind == "activation"]
    return activations or [r for r in layers if r.kind == "weight"][:-1]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
