"""Jacobian singular-value spectra of a zoo model under several schemes and seeds.

For every scheme and seed the model is built (construction under the seed, as
:func:`~initlab.experiments.diagnosis.diagnose_schemes` builds it), initialized by the scheme
from a generator seeded with the seed, and its input-output Jacobian spectrum taken on one
batch (:func:`initlab.diagnostics.jacobian.jacobian_spectrum`): the spread in decades and the
fraction within 3x of the median, with their mean and ``[min, max]`` over seeds
(:func:`format_spectra`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

from initlab._checks import ArgumentError
from initlab.diagnostics.jacobian import JacobianSpectrum, jacobian_spectrum
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

__all__ = ["format_spectra", "gaussian_inputs", "scheme_spectra"]


def gaussian_inputs(shape: Sequence[int], *, seed: int = 0) -> torch.Tensor:
    """Standard normal inputs of ``shape`` ``(E, ...)``, float32, from a generator seeded
    with ``seed`` (the isotropic inputs of the deep-linear analyses, Saxe et al. 2014)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def scheme_spectra(
    model: str,
    schemes: Sequence[str],
    inputs: torch.Tensor,
    *,
    model_params: dict | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    dtype: torch.dtype | None = None,
) -> dict[str, list[JacobianSpectrum]]:
    """Return each scheme's Jacobian spectra, one per seed, in ``schemes`` order.

    Args:
        model: a zoo model name or factory spec (:func:`~initlab.zoo.models.build_model`).
        schemes: scheme names with options (``"orthogonal:gain=1.4142"``).
        inputs: the batch ``(E, ...)``, float, that the model takes (every example is used).
        model_params: the model's keyword arguments.
        seeds: construction and initialization seeds, at least one.
        dtype: as in :func:`~initlab.diagnostics.jacobian.jacobian_spectrum`.

    Raises:
        ArgumentError: no scheme or no seed (naming it), an unknown scheme or model, or
            inputs the Jacobian refuses.
    """
    if not schemes:
        raise ArgumentError("schemes", "schemes must name at least one scheme; got none")
    if not seeds:
        raise ArgumentError("seeds", "seeds must hold at least one seed; got none")
    spectra: dict[str, list[JacobianSpectrum]] = {}
    for scheme in schemes:
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = build_model(model, **(model_params or {}))
            initialize(net, scheme, generator=torch.Generator().manual_seed(seed), batch=inputs)
            spectrum = jacobian_spectrum(net, inputs, max_examples=None, dtype=dtype)
            spectra.setdefault(scheme, []).append(spectrum)
    return spectra


def _band(values: list[float], fmt: str) -> str:
    mean = statistics.fmean(values)
    return f"{fmt.format(mean)} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


def format_spectra(spectra: dict[str, list[JacobianSpectrum]]) -> str:
    """Return a table: per scheme the spread in decades and the fraction within 3x of the
    median, each as mean ``[min, max]`` over the seeds, and the median singular value."""
    width = max([len("scheme"), *map(len, spectra)])
    header = f"{'scheme':<{width}}  {'spread (decades)':<24}  {'within 3x of median':<24}  median"
    lines = [header]
    for scheme, runs in spectra.items():
        spreads = [s.spread_decades for s in runs]
        spread = "inf" if any(v == float("inf") for v in spreads) else _band(spreads, "{:.2f}")
        within = _band([s.within_3x_median for s in runs], "{:.0%}")
        median = statistics.fmean(s.summary()["median"] for s in runs)
        lines.append(f"{scheme:<{width}}  {spread:<24}  {within:<24}  {median:.3g}")
    return "\n".join(lines)
