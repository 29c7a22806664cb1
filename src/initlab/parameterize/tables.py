"""The parameterization tables: per role, how init scale, multiplier, learning rate, weight decay
and Adam epsilon scale with width (and, for the depth parameterizations, depth). Data only.

Each entry of a :class:`Scaling` is a monomial in the width quantities of one parameter,
written as a tuple of ``(symbol, exponent)`` pairs (``()`` is 1):

``m_in``, ``m_out``
    width multipliers of the fan-in (dim 1) and fan-out (dim 0) dimension: the size in the
    model over the size in the base model; 1 for a dimension that is not a width.
``m``
    the width multiplier of the parameter's last width dimension (``mup``'s ``width_mult()``;
    ``m_out`` of an input weight, ``m_in`` of an output weight, the size ratio of a vector).
``fan_in``, ``width``
    absolute sizes (u-muP, which has no base model): the layer's fan-in, and the size of the
    parameter's last width dimension.

``init`` scales a reference standard deviation named by ``init_from``: ``"model"`` (the
policy's std at the model's own width: standard parameterization), ``"base"`` (the policy's
std of the same parameter in the base model: the muP convention that at the base width every
parameterization is standard parameterization) or ``"unit"`` (1: u-muP).

Roles (:mod:`initlab.parameterize.shapes`): ``input`` (weights whose fan-out only is a width:
first layers), ``embedding`` (lookup tables and raw tensors whose last dim only is a width),
``hidden`` (two width dims), ``output`` (fan-in only is a width: readout), ``bias``, ``norm``
(a norm layer's gain and bias) and ``vector`` (other 1-D tensors with a width: all three
scale alike, as ``mup``'s vector-like tensors), ``fixed`` (no width dim).

Sources:
    * SP, NTK, muP: Yang and Hu 2021, "Tensor Programs IV: Feature Learning in Infinite-Width
      Neural Networks", the abc-parametrization (sec. 3, Table 1: SP a=0, b=1/2; NTK
      a=1/2, b=0, c=0); Yang et al. 2022, "Tensor Programs V: Tuning Large Neural Networks via
      Zero-Shot Hyperparameter Transfer", Table 3 (muP for SGD and Adam) in its Table 8 form
      (the ``MuReadout`` form of the ``mup`` package: output multiplier 1/m, output init
      constant, hidden Adam lr 1/m_in; SGD lr m for vector-like and m_out/m_in for
      matrix-like tensors), with ``mup``'s weight decay (multiplied by the inverse of the
      width lr factor, so that AdamW's decoupled decay lr * wd is width-independent).
    * u-muP: Blake et al. 2024, "u-muP: The Unit-Scaled Maximal Update Parametrization",
      Table 2 (the abc form of u-muP: every weight N(0, 1); multipliers 1 for embeddings,
      1/sqrt(fan_in) hidden, 1/fan_in output; Adam lr 1/sqrt(fan_out) for embeddings,
      1/sqrt(fan_in) hidden, 1 output). A Linear input layer (not an embedding) takes the unit-
      scaled 1/sqrt(fan_in) multiplier of Blake et al. 2023 ("Unit Scaling"), constant in width.
    * depth-muP: Yang et al. 2023, "Tensor Programs VI: Feature Learning in Infinite-Depth
      Neural Networks", and Bordelon et al. 2023, "Depthwise Hyperparameter Transfer in
      Residual Networks": residual branch multiplier (L/L_base)^(-1/2); Adam lr of the
      parameters inside residual blocks (L/L_base)^(-1/2) (the alpha = 1/2 column below);
      SGD lr unchanged in depth (Yang et al. 2023: the SGD learning rate of depth-muP is
      constant in L), width as muP for both.
    * CompleteP: Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep
      transformers", Table 1 for general alpha, alpha = 1: branch multiplier (L/L_base)^-alpha,
      block Adam lr (L/L_base)^(alpha-1), AdamW epsilon of hidden weights m_in^-1
      (L/L_base)^-alpha and of block vectors (L/L_base)^-alpha; width as muP.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATTENTION",
    "DEPTH",
    "OPTIMIZERS",
    "ROLES",
    "TABLES",
    "DepthScaling",
    "Scaling",
    "describe",
    "evaluate",
]

Monomial = tuple[tuple[str, float], ...]

ROLES = ("input", "embedding", "hidden", "output", "bias", "norm", "vector", "fixed")
#: Roles that every table scales as ``vector`` (tensors with one width dim).
_AS_VECTOR = ("bias", "norm")
#: Optimizer families a table may cover: entry-wise normalized updates (Adam, AdamW) and SGD.
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class Scaling:
    """One role's row of a table: each field a monomial (see the module docstring)."""

    init_from: str = "base"
    init: Monomial = ()
    multiplier: Monomial = ()
    adam_lr: Monomial = ()
    sgd_lr: Monomial | None = ()  # None: the table does not cover SGD
    adam_wd: Monomial = ()
    sgd_wd: Monomial = ()
    eps: Monomial = ()


@dataclass(frozen=True)
class DepthScaling:
    """A depth parameterization: branch multiplier (L/L_base)^-alpha; for parameters inside
    residual blocks, Adam lr times (L/L_base)^(alpha - 1) and, where ``scale_eps``, epsilon
    times (L/L_base)^-alpha (Dey et al. 2025, Table 1)."""

    alpha: float
    scale_eps: bool


_SP = Scaling(init_from="model")
_MUP_VECTOR = Scaling(sgd_lr=(("m", 1),), sgd_wd=(("m", -1),))
_MUP = {
    "input": _MUP_VECTOR,
    "embedding": _MUP_VECTOR,
    "hidden": Scaling(
        init=(("m_in", -0.5),),
        adam_lr=(("m_in", -1),),
        sgd_lr=(("m_in", -1), ("m_out", 1)),
        adam_wd=(("m_in", 1),),
        sgd_wd=(("m_in", 1), ("m_out", -1)),
    ),
    "output": Scaling(multiplier=(("m_in", -1),), sgd_lr=(("m_in", 1),), sgd_wd=(("m_in", -1),)),
    "vector": _MUP_VECTOR,
    "fixed": Scaling(),
}
_COMPLETEP = {
    **_MUP,
    "hidden": Scaling(
        init=(("m_in", -0.5),),
        adam_lr=(("m_in", -1),),
        sgd_lr=None,
        adam_wd=(("m_in", 1),),
        eps=(("m_in", -1),),
    ),
}

#: name -> role -> Scaling. Adam-only tables set ``sgd_lr=None``.
TABLES: dict[str, dict[str, Scaling]] = {
    "sp": dict.fromkeys(ROLES, _SP),
    "ntk": {
        "input": Scaling(),
        "embedding": Scaling(),
        "hidden": Scaling(multiplier=(("m_in", -0.5),)),
        "output": Scaling(multiplier=(("m_in", -0.5),)),
        "vector": Scaling(),
        "fixed": Scaling(),
    },
    "mup": _MUP,
    "umup": {
        "input": Scaling(
            init_from="unit", multiplier=(("fan_in", -0.5),), adam_lr=(("width", -0.5),),
            sgd_lr=None,
        ),
        "embedding": Scaling(init_from="unit", adam_lr=(("width", -0.5),), sgd_lr=None),
        "hidden": Scaling(
            init_from="unit", multiplier=(("fan_in", -0.5),), adam_lr=(("fan_in", -0.5),),
            sgd_lr=None,
        ),
        "output": Scaling(init_from="unit", multiplier=(("fan_in", -1),), sgd_lr=None),
        "vector": Scaling(sgd_lr=None),
        "fixed": Scaling(sgd_lr=None),
    },
    "depth-mup": _MUP,  # SGD: lr unchanged in depth (Yang et al. 2023)
    "completep": {
        role: Scaling(**{**s.__dict__, "sgd_lr": None}) for role, s in _COMPLETEP.items()
    },
}  # fmt: skip

for _table in TABLES.values():
    for _role in _AS_VECTOR:
        _table.setdefault(_role, _table["vector"])

#: The depth part of the depth parameterizations.
DEPTH: dict[str, DepthScaling] = {
    "depth-mup": DepthScaling(alpha=0.5, scale_eps=False),
    "completep": DepthScaling(alpha=1.0, scale_eps=True),
}

#: Attention logits q.k / d_head instead of q.k / sqrt(d_head) (Yang et al. 2022, sec. 4 and
#: Table 3 footnote): relative to the base for the muP family, absolute for u-muP.
ATTENTION = {
    "mup": "relative",
    "depth-mup": "relative",
    "completep": "relative",
    "umup": "absolute",
}


def evaluate(monomial: Monomial, values: dict[str, float]) -> float:
    """Return the monomial's value at ``values`` (symbol -> number)."""
    out = 1.0
    for symbol, exponent in monomial:
        out *= values[symbol] ** exponent
    return out


def describe(monomial: Monomial) -> str:
    """Return the monomial as text, ``"1"`` when empty: ``m_in^-0.5``."""
    if not monomial:
        return "1"
    return " ".join(f"{s}^{e:g}" if e != 1 else s for s, e in monomial)
