"""Diagnostics at initialization: per-layer statistics, verdicts, mean-field theory, plots."""

from initlab.diagnostics.diagnose import Diagnosis, LayerStats, ParamStats, Verdict, diagnose
from initlab.diagnostics.meanfield import MeanField, critical_weight_variance, mean_field
from initlab.introspect.hooks import flush_denormal

__all__ = [
    "Diagnosis",
    "LayerStats",
    "MeanField",
    "ParamStats",
    "Verdict",
    "critical_weight_variance",
    "diagnose",
    "flush_denormal",
    "mean_field",
]
