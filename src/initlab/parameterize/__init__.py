"""Parameterizations: initial scale, forward multipliers and optimizer groups as functions of width
and depth (standard, NTK, muP and its depth and unit-scaled successors), and the checks that show
hyperparameters transfer across widths (coordinate check, spectral audit).

Builds on :mod:`initlab.policy` (every parameter's role comes from its traced plan).
"""
