r"""Singular values of a model's input-output Jacobian at initialization, and their spread.

For an example ``x`` the input-output Jacobian is ``J = d f(x) / d x``, a matrix of
``out_features x in_features`` (the output and the input flattened). Its singular values say how
the network stretches small input perturbations: all of them near 1 is *dynamical isometry*,
which makes very deep networks trainable (Saxe, McClelland and Ganguli, "Exact solutions to the
nonlinear dynamics of learning in deep linear neural networks", ICLR 2014, Sec. 3-4; Pennington,
Schoenholz and Ganguli, "Resurrecting the sigmoid in deep learning through dynamical isometry",
NIPS 2017, Sec. 2, whose Fig. 1 and 3 plot these spectra). An orthogonal deep linear network
is exactly isometric (every singular value 1); a Gaussian one spreads them over decades that
grow with depth.

Summary statistics, over the singular values of every example pooled (:class:`JacobianSpectrum`):

* ``spread_decades = log10(s_max / s_min)``: 0 for an isometry, ``inf`` if a value is 0;
* ``within_3x_median``: the fraction of the values in ``[median / 3, 3 * median]``.

The model is evaluated in eval mode (BatchNorm with its running statistics, no dropout), so
every example's Jacobian is its own; the mode is restored afterwards and nothing in the model
changes. Cost: one backward pass per output element, over the whole batch at once.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from initlab._checks import ArgumentError

__all__ = [
    "JacobianSpectrum",
    "input_output_jacobian",
    "jacobian_spectrum",
    "plot_jacobian_spectra",
    "spread_decades",
    "within_factor_of_median",
]


def input_output_jacobian(
    model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Return each example's input-output Jacobian, ``(E, out, in)``.

    ``out`` is the product of the model's output shape per example (``(E, 10)`` logits: 10;
    ``(E, T, V)``: ``T * V``) and ``in`` that of the input's (``(E, 1, 28, 28)``: 784). Row ``k``
    of example ``e`` is the gradient of output element ``k`` with respect to the input, taken
    in eval mode (see the module docstring).

    Args:
        model: any module mapping a float batch ``(E, ...)`` to ``(E, ...)``; not changed.
        inputs: float tensor ``(E, ...)`` on the model's device, ``E >= 1``.
        dtype: compute in this dtype on a deep copy of the model (``torch.float64`` for
            singular values free of float32 rounding); ``None``: the model as it is.

    Returns:
        A tensor ``(E, out, in)`` of ``inputs``' dtype (``dtype`` if given).

    Raises:
        ArgumentError: ``inputs`` is not a floating-point tensor with a batch axis of at least
            one example (token ids have no Jacobian), or the model's output does not keep the
            batch axis (argument ``inputs``).
    """
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        what = f"a {inputs.dtype} tensor" if isinstance(inputs, torch.Tensor) else repr(inputs)
        raise ArgumentError(
            "inputs",
            f"inputs must be a floating-point tensor (E, ...) (token ids have no Jacobian); "
            f"got {what}",
        )
    if inputs.ndim == 0 or inputs.shape[0] < 1:
        raise ArgumentError(
            "inputs", f"inputs must hold at least one example; got shape {tuple(inputs.shape)}"
        )
    if dtype is not None:
        model, inputs = copy.deepcopy(model).to(dtype), inputs.to(dtype)
    was_training = model.training
    model.eval()
    try:
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = model(x)
            if y.ndim < 1 or y.shape[0] != x.shape[0]:
                raise ArgumentError(
                    "inputs",
                    f"the model's output must keep the batch axis of {x.shape[0]} examples; got "
                    f"output shape {tuple(y.shape)}",
                )
            y = y.reshape(x.shape[0], -1)  # (E, out)
            rows = []
            for k in range(y.shape[1]):
                (grad,) = torch.autograd.grad(y[:, k].sum(), x, retain_graph=k + 1 < y.shape[1])
                rows.append(grad.reshape(x.shape[0], -1))  # (E, in)
    finally:
        model.train(was_training)
    return torch.stack(rows, dim=1)  # (E, out, in)


def spread_decades(values: torch.Tensor) -> float:
    """Return ``log10(max / min)`` of non-negative ``values``: 0 if all equal, ``inf`` if a 0.

    Raises:
        ArgumentError: ``values`` is empty (argument ``values``).
    """
    values = _flat(values)
    low, high = float(values.min()), float(values.max())
    if high == 0:
        return 0.0
    return math.inf if low == 0 else math.log10(high / low)


def within_factor_of_median(values: torch.Tensor, factor: float = 3.0) -> float:
    """Return the fraction of ``values`` in ``[median / factor, median * factor]``.

    The median is the middle value (the mean of the two middle ones for an even count).

    Raises:
        ArgumentError: ``values`` is empty, or ``factor`` is not a number >= 1.
    """
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor >= 1:
        raise ArgumentError("factor", f"factor must be a number >= 1; got factor={factor!r}")
    values = _flat(values)
    median = float(values.quantile(0.5))
    inside = (values >= median / factor) & (values <= median * factor)
    return float(inside.double().mean())


def _flat(values: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(values).detach().flatten().double()
    if values.numel() == 0:
        raise ArgumentError("values", "values must hold at least one singular value; got none")
    return values


@dataclass(frozen=True)
class JacobianSpectrum:
    """The singular values of a batch's input-output Jacobians and their summary.

    Attributes:
        singular_values: ``(E, min(out, in))`` float64, each example's in descending order.
    """

    singular_values: torch.Tensor

    @property
    def pooled(self) -> torch.Tensor:
        """Every example's singular values in one ascending 1-D tensor."""
        return self.singular_values.flatten().sort().values

    @property
    def spread_decades(self) -> float:
        """``log10(s_max / s_min)`` over the pooled values (:func:`spread_decades`)."""
        return spread_decades(self.singular_values)

    @property
    def within_3x_median(self) -> float:
        """The fraction of the pooled values within 3x of their median."""
        return within_factor_of_median(self.singular_values, 3.0)

    def summary(self) -> dict[str, float]:
        """``{examples, max, median, min, spread_decades, within_3x_median}`` as plain numbers."""
        pooled = self.pooled
        return {
            "examples": int(self.singular_values.shape[0]),
            "max": float(pooled[-1]),
            "median": float(pooled.quantile(0.5)),
            "min": float(pooled[0]),
            "spread_decades": self.spread_decades,
            "within_3x_median": self.within_3x_median,
        }


def jacobian_spectrum(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    max_examples: int | None = 16,
    dtype: torch.dtype | None = None,
) -> JacobianSpectrum:
    """Return the singular values of the input-output Jacobian at each of a batch's examples.

    Args:
        model: any module on float inputs (see :func:`input_output_jacobian`); not changed.
        inputs: float ``(E, ...)``; the first ``max_examples`` are used.
        max_examples: how many examples, >= 1; ``None``: all of them.
        dtype: as in :func:`input_output_jacobian` (``torch.float64`` for exact spectra).

    Returns:
        A :class:`JacobianSpectrum` (``torch.linalg.svdvals`` of each Jacobian, in float64).

    Raises:
        ArgumentError: bad ``inputs`` (see :func:`input_output_jacobian`), or ``max_examples``
            not an int >= 1.

    Example:
        >>> layer = nn.Linear(3, 3, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.diag(torch.tensor([4.0, 2.0, 0.4])))
        >>> s = jacobian_spectrum(layer, torch.zeros(2, 3))
        >>> round(s.spread_decades, 6), s.within_3x_median  # 4/0.4 = 10: one decade
        (1.0, 0.6666666666666666)
    """
    if max_examples is not None and (
        isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1
    ):
        raise ArgumentError(
            "max_examples",
            f"max_examples must be an int >= 1 or None; got max_examples={max_examples!r}",
        )
    if isinstance(inputs, torch.Tensor) and max_examples is not None:
        inputs = inputs[:max_examples]
    jacobians = input_output_jacobian(model, inputs, dtype=dtype)
    return JacobianSpectrum(torch.linalg.svdvals(jacobians.double()))


def plot_jacobian_spectra(
    spectra: Mapping[str, JacobianSpectrum],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Write a figure of each spectrum's singular values, largest first, on a log axis.

    One curve per entry: the pooled singular values in descending order against their rank
    as a fraction (0 = largest, 1 = smallest), so spectra of different sizes share an axis; a
    dotted line at 1 (isometry). The legend gives each spectrum's spread in decades and its
    fraction within 3x of the median. Zero values, which a log axis cannot show, are left out
    (their spread is ``inf``, in the legend). The format follows ``path``'s suffix.

    Args:
        spectra: ``{label: JacobianSpectrum}`` in legend order (e.g. one per scheme or depth).
        path: output file; parent directories are created.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ArgumentError: ``spectra`` is empty (argument ``spectra``).
    """
    if not spectra:
        raise ArgumentError(
            "spectra", "plot_jacobian_spectra needs at least one spectrum; got none"
        )
    from matplotlib.figure import Figure  # only for a figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label, spectrum in spectra.items():
        values = spectrum.pooled.flip(0)  # descending
        n = values.numel()
        ranks = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        shown = [(r, float(v)) for r, v in zip(ranks, values, strict=True) if v > 0]
        legend = (
            f"{label}: {spectrum.spread_decades:.2f} decades, "
            f"{spectrum.within_3x_median:.0%} within 3x of median"
        )
        if shown:
            ax.plot(*zip(*shown, strict=True), label=legend)
        else:
            ax.plot([], [], label=legend)
    ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set(xlabel="rank / (count - 1)  (largest first)", ylabel="singular value of d out / d in")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
