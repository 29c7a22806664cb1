"""Parameterizations: initial scale, forward multipliers and optimizer groups as functions of width
and depth (standard, NTK, muP and its depth and unit-scaled successors), and the checks that show
hyperparameters transfer across widths (coordinate check, spectral audit).

Builds on :mod:`initlab.policy` (every parameter's role comes from its traced plan).
"""

from initlab.parameterize.parametrize import (
    PARAMETERIZATIONS,
    Parameterization,
    ParamRow,
    parametrize,
)
from initlab.parameterize.tables import TABLES

__all__ = ["PARAMETERIZATIONS", "TABLES", "ParamRow", "Parameterization", "parametrize"]
