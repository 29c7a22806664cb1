"""Diagnostics at initialization: per-layer statistics, verdicts, mean-field theory, plots.

``diagnose`` (:mod:`~initlab.diagnostics.diagnose`) composes the recorder
(:mod:`~initlab.diagnostics.recorder`, with :mod:`~initlab.diagnostics.statistics`) and the
verdicts (:mod:`~initlab.diagnostics.verdicts`) into the records of
:mod:`~initlab.diagnostics.records`; :mod:`~initlab.diagnostics.plots` draws them and
:mod:`~initlab.diagnostics.meanfield` predicts them for wide networks.
"""

from initlab.diagnostics.diagnose import diagnose
from initlab.diagnostics.meanfield import MeanField, critical_weight_variance, mean_field
from initlab.diagnostics.records import Diagnosis, LayerStats, ParamStats, Verdict
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
