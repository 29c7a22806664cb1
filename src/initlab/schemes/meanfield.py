"""The mean-field Gaussian scheme: weights N(0, sw2 / fan_in), biases N(0, sb2), free variances.

This is the initialization of the mean-field theory of signal propagation (Poole et al. 2016,
"Exponential expressivity in deep neural networks through transient chaos", Sec. 2; Schoenholz
et al. 2017, "Deep Information Propagation", Sec. 2): every weight of a layer with fan-in
``N`` is drawn from ``N(0, sigma_w^2 / N)`` and every bias from ``N(0, sigma_b^2)``, with
``sigma_w^2`` (``sw2``) and ``sigma_b^2`` (``sb2``) chosen freely. Its phase (ordered, critical,
chaotic), ``chi_1`` and depth scale ``xi_c`` are computed by
:func:`initlab.diagnostics.meanfield.mean_field` from the same two numbers.

By name: ``meanfield:sw2=1.76:sb2=0.05`` (:func:`meanfield_name` writes it) once
:data:`MEANFIELD` is an entry of :data:`initlab.schemes.registry.SCHEMES`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab._checks import non_negative
from initlab.fans import layer_fans
from initlab.initializers import normal_, per_block_
from initlab.introspect.kinds import is_norm
from initlab.schemes.scheme import Scheme
from initlab.schemes.weights import weight_parameters

__all__ = ["MEANFIELD", "MeanFieldGaussian", "meanfield_name"]


class MeanFieldGaussian:
    """The weight-and-bias policy of :data:`MEANFIELD` (a :class:`Scheme` policy).

    Called as ``policy(model, *, generator, batch=None, sw2, sb2)``: every weight (``ndim >= 2``
    outside norm layers, :func:`~initlab.schemes.weights.weight_parameters`) is drawn from
    ``N(0, sw2 / fan_in)``, with ``fan_in`` per block as :func:`initlab.fans.layer_fans` reads
    it (an LSTM's gates each have their own), then every bias (``ndim < 2``, ``bias`` in its
    name, outside norm layers) from ``N(0, sb2)``. The biases are drawn here whatever the
    scheme's bias rule: ``sb2`` is part of the scheme (use ``sb2=0`` for zero biases).

    Units: ``sw2`` and ``sb2`` are variances (``sw2 = 1`` is LeCun's normal, ``sw2 = 2`` He's).
    Source: Poole et al. 2016, Sec. 2; Schoenholz et al. 2017, eq. 1 and Sec. 2.

    Raises:
        ValueError: ``sw2`` or ``sb2`` is negative or not finite (the message names it).
    """

    def __call__(
        self, model: nn.Module, *, generator: torch.Generator, batch=None, sw2: float, sb2: float
    ) -> None:
        sw2, sb2 = non_negative("sw2", sw2), non_negative("sb2", sb2)
        for module, name, param in weight_parameters(model):
            fans = layer_fans(module, name)
            per_block_(
                param, fans.blocks, _weight_rule, generator=generator, fan_in=fans.fans[0], sw2=sw2
            )
        for module in model.modules():
            if is_norm(module):
                continue
            for name, param in module.named_parameters(recurse=False):
                if param.ndim < 2 and "bias" in name:
                    with torch.no_grad():
                        normal_(param, mean=0.0, std=math.sqrt(sb2), generator=generator)

    def __repr__(self) -> str:
        return "MeanFieldGaussian()"


def _weight_rule(
    block: torch.Tensor, *, generator: torch.Generator, fan_in: int, sw2: float
) -> None:
    """N(0, sw2 / fan_in) on one block, ``fan_in`` read by the layer's kind (per block)."""
    with torch.no_grad():
        normal_(block, mean=0.0, std=math.sqrt(sw2 / fan_in), generator=generator)


#: The scheme: ``meanfield:sw2=...:sb2=...`` (defaults sw2=1, sb2=0: LeCun normal, zero bias).
MEANFIELD = Scheme(
    "meanfield",
    "weights N(0, sw2/fan_in), biases N(0, sb2), sw2=1, sb2=0 (options sw2, sb2: the "
    "mean-field variances of Poole et al. 2016 and Schoenholz et al. 2017)",
    MeanFieldGaussian(),
    options={"sw2": 1.0, "sb2": 0.0},
)


def meanfield_name(sw2: float, sb2: float) -> str:
    """Return the scheme name of the mean-field Gaussian with these variances.

    The numbers are written as ``repr`` writes floats, so distinct values give distinct names.

    Raises:
        ValueError: a negative or non-finite variance (the message names ``sw2`` or ``sb2``).

    Example:
        >>> meanfield_name(1.76, 0.05)
        'meanfield:sw2=1.76:sb2=0.05'
    """
    sw2, sb2 = non_negative("sw2", sw2), non_negative("sb2", sb2)
    return f"meanfield:sw2={float(sw2)!r}:sb2={float(sb2)!r}"
