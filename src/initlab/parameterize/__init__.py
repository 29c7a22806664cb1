"""Parameterizations: initial scale, forward multipliers and optimizer groups as functions of width
and depth (standard, NTK, muP and its depth and unit-scaled successors), and the checks that show
hyperparameters transfer across widths (coordinate check, spectral audit).

Builds on :mod:`initlab.policy` (every parameter's role comes from its traced plan).
"""

from initlab.parameterize.coord_check import (
    CoordCheck,
    CoordRow,
    DepthRow,
    coord_check,
    loglog_slope,
    mlp_builder,
)
from initlab.parameterize.parametrize import (
    PARAMETERIZATIONS,
    Parameterization,
    ParamRow,
    parametrize,
)
from initlab.parameterize.spectral import (
    Scaling,
    SpectralAudit,
    SpectralRow,
    effective_weight,
    spectral_audit,
)
from initlab.parameterize.tables import TABLES

__all__ = [
    "PARAMETERIZATIONS",
    "TABLES",
    "ParamRow",
    "Parameterization",
    "parametrize",
    "CoordCheck",
    "CoordRow",
    "DepthRow",
    "coord_check",
    "loglog_slope",
    "mlp_builder",
    "Scaling",
    "SpectralAudit",
    "SpectralRow",
    "effective_weight",
    "spectral_audit",
]
