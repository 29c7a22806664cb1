"""Diagnostics at initialization: per-layer statistics, verdicts, mean-field theory, plots."""

from initlab.diagnostics.meanfield import MeanField, critical_weight_variance, mean_field

__all__ = ["MeanField", "critical_weight_variance", "mean_field"]
