"""Width dimensions by comparison with a base model, parameter roles, and residual blocks.

A dimension of a parameter is a width ("infinite" in Tensor Programs V, sec. 4 and App. J on
base shapes) when its size in the model differs from its size in the base model (or, with a
``delta`` model, when the base and the delta differ there: a width that happens to be equal
in model and base is still found). The role of a parameter follows from which of its
dimensions are widths, as in ``mup``'s ``InfShape.ninf()``: two widths -> hidden; the fan-out
only -> input; the fan-in only -> output (a readout: a Linear or convolution whose input is a
width); an embedding table or raw tensor whose last dim only is a width -> embedding;
a 1-D tensor with a width -> norm (a norm layer's gain or bias), bias (a layer's bias) or
vector (any other); none -> fixed.

Parameters of blocks at another depth are matched by their name with the block index replaced
(``blocks.7.attn.q.weight`` -> the base's ``blocks.*.attn.q.weight``), so a base model may
also differ in depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.introspect.kinds import is_norm

__all__ = ["WidthInfo", "block_of", "count_blocks", "template", "widths"]

_INDEX = re.compile(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)")
_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)


@dataclass(frozen=True)
class WidthInfo:
    """The width dimensions of one parameter.

    Attributes:
        shape, base_shape: sizes in the model and in the base model.
        infinite: per dimension, whether it is a width.
        m_in, m_out: width multipliers (model size / base size) of dims 1 and 0; 1 where the
            dimension is not a width or does not exist.
        m: multiplier of the last width dimension (1 if none); ``width``: its size in the model.
        role: ``input``, ``embedding``, ``hidden``, ``output``, ``bias``, ``norm``, ``vector``
            or ``fixed``.
    """

    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    infinite: tuple[bool, ...]
    m_in: float
    m_out: float
    m: float
    width: int
    role: str

    @property
    def ninf(self) -> int:
        """Number of width dimensions."""
        return sum(self.infinite)

    def dims_text(self) -> str:
        """The width dims as text: ``out,in`` / ``out`` / ``in`` for layer weights, else the
        dim indices (``0``, ``1``); ``-`` when none."""
        if not self.ninf:
            return "-"
        weight = self.role in ("input", "hidden", "output")
        names = {0: "out", 1: "in"} if weight else {}
        return ",".join(names.get(i, str(i)) for i, inf in enumerate(self.infinite) if inf)


def template(name: str) -> str:
    """Return ``name`` with every index into a container replaced by ``*``: ``blocks.*.q``."""
    return _INDEX.sub("*", name)


def _shape_table(params: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    exact = {n: tuple(p.shape) for n, p in params.items()}
    by_template: dict[str, tuple[set, int]] = {}
    for n, shape in exact.items():
        shapes, count = by_template.get(template(n), (set(), 0))
        by_template[template(n)] = (shapes | {shape}, count + 1)
    return exact, by_template


def _lookup(name, exact, by_template, what, model_shape):
    if name in exact:
        return exact[name]
    # a repeated block at another depth: its name with indices as *, matched only when the
    # base repeats it (two names or more) with one shape, never a one-off layer
    shapes, count = by_template.get(template(name), (set(), 0))
    if len(shapes) == 1 and count >= 2:
        return next(iter(shapes))
    found = "no parameter of that name" if not shapes else f"shapes {sorted(shapes)}"
    raise ArgumentError(
        what,
        f"parameter {name!r} (shape {model_shape}) cannot be matched in the {what} model: "
        f"{found} (also not as {template(name)!r}); build {what} from the same code at "
        "another width",
    )


def widths(
    model: nn.Module, base: nn.Module, delta: nn.Module | None, owners: dict[str, nn.Module]
) -> dict[str, WidthInfo]:
    """Return name -> :class:`WidthInfo` for every parameter of ``model``.

    Args:
        model: the model to parameterize.
        base: the same architecture at the base width (any device, meta too).
        delta: optional, the architecture at a third width: dims where ``base`` and ``delta``
            differ are widths even where ``model`` equals ``base``.
        owners: parameter name -> the module that holds it.

    Raises:
        ArgumentError (``base`` or ``delta``): a parameter with no counterpart, or one whose
            number of dimensions differs, or whose kernel dimensions (index >= 2 of a weight
            layer) differ, or with more than two width dimensions; the message names the
            parameter and both shapes.
    """
    base_exact, base_templates = _shape_table(dict(base.named_parameters()))
    if delta is not None:
        delta_exact, delta_templates = _shape_table(dict(delta.named_parameters()))
    out = {}
    for name, param in model.named_parameters():
        shape = tuple(param.shape)
        base_shape = _lookup(name, base_exact, base_templates, "base", shape)
        other = base_shape
        if delta is not None:
            other = _lookup(name, delta_exact, delta_templates, "delta", shape)
        if len(base_shape) != len(shape) or len(other) != len(shape):
            raise ArgumentError(
                "base",
                f"parameter {name!r} has shape {shape} in the model and {base_shape} in the "
                "base: a different number of dimensions, which no width explains",
            )
        infinite = tuple(s != b or o != b for s, b, o in zip(shape, base_shape, other, strict=True))
        owner = owners[name]
        if isinstance(owner, _WEIGHT_LAYERS) and any(infinite[2:]):
            raise ArgumentError(
                "base",
                f"parameter {name!r} has shape {shape} in the model and {base_shape} in the "
                "base: its kernel dimensions differ, which no width explains",
            )
        if sum(infinite) > 2:
            raise ArgumentError(
                "base",
                f"parameter {name!r} has shape {shape} in the model and {base_shape} in the "
                "base: more than two dimensions are widths (no parameterization covers it)",
            )
        pairs = zip(shape, base_shape, infinite, strict=True)
        ratio = [s / b if inf else 1.0 for s, b, inf in pairs]
        last = max((i for i, inf in enumerate(infinite) if inf), default=None)
        out[name] = WidthInfo(
            shape=shape,
            base_shape=base_shape,
            infinite=infinite,
            m_in=ratio[1] if len(shape) >= 2 else 1.0,
            m_out=ratio[0] if shape else 1.0,
            m=1.0 if last is None else ratio[last],
            width=1 if last is None else shape[last],
            role=_role(infinite, owner, name.rpartition(".")[2]),
        )
    return out


def _role(infinite: tuple[bool, ...], owner: nn.Module, leaf: str) -> str:
    n = sum(infinite)
    if n == 0:
        return "fixed"
    if n == 2:
        return "hidden"
    if len(infinite) < 2:
        if is_norm(owner):
            return "norm"
        return "bias" if leaf == "bias" else "vector"
    if isinstance(owner, _WEIGHT_LAYERS):
        return "output" if infinite[1] else "input"
    return "embedding"


def block_of(module_name: str, model: nn.Module) -> str | None:
    """Return the residual block holding ``module_name``: the prefix up to the first index
    into an ``nn.ModuleList`` or ``nn.Sequential`` (``"blocks.3"`` of ``"blocks.3.mlp.proj"``),
    or None when the module sits in no indexed container."""
    parts = module_name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            container = model.get_submodule(".".join(parts[:i]))
            if isinstance(container, (nn.ModuleList, nn.Sequential)):
                return ".".join(parts[: i + 1])
    return None


def count_blocks(model: nn.Module, containers: set[str]) -> int:
    """Number of children of the named containers (ModuleList/Sequential) of ``model``."""
    total = 0
    for name in containers:
        try:
            total += len(model.get_submodule(name))
        except AttributeError as error:
            raise ArgumentError(
                "base_depth",
                f"the base model has no block container {name!r}; pass base_depth=",
            ) from error
    return total
