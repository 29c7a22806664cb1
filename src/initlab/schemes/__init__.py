"""Initialization schemes for whole models, by name, as ``initlab compare`` runs them.

Modules: ``registry`` (the scheme table :data:`SCHEMES`, parsing and :func:`initialize`),
``auto`` (the policy's plan as a scheme), ``datadriven`` (LSUV and Fixup as schemes).
"""

from initlab.schemes.registry import SCHEMES, Scheme, initialize, parse_scheme

__all__ = ["SCHEMES", "Scheme", "initialize", "parse_scheme"]
