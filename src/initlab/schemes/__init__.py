"""Initialization schemes for whole models: a weight policy plus steps after it, by name.

Modules: ``scheme`` (the :class:`Scheme` concept and the order it initializes a model in),
``weights`` (the classic schemes' policies: a tensor rule for every weight), ``auto`` (a policy
preset as a scheme's policy), ``recurrent`` (orthogonal per gate with the forget bias, IRNN),
``transformer`` (GPT-2, small_init, wang_init, llama_depth, zero_proj, DeepNorm, ReZero,
LayerScale, mimetic), ``heads`` (scaled embedding, zero head, class-prior head bias),
``steps`` (LSUV, Fixup, a pretrained load), ``registry`` (the
built-in schemes by name, with their aliases; :func:`initialize`, :func:`parse_scheme`).
"""

from initlab.schemes.registry import (
    SCHEME_ALIASES,
    SCHEMES,
    check_fits,
    initialize,
    parse_scheme,
    scheme_names,
)
from initlab.schemes.scheme import Scheme
from initlab.schemes.steps import LSUV, Fixup, LoadPretrained, Source, Step

__all__ = [
    "LSUV",
    "SCHEMES",
    "SCHEME_ALIASES",
    "Fixup",
    "LoadPretrained",
    "Scheme",
    "Source",
    "Step",
    "check_fits",
    "initialize",
    "parse_scheme",
    "scheme_names",
]
