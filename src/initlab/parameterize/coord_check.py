"""The quantitative coordinate check: does each layer's update keep its scale as width grows?

Train a few steps at several widths, record per layer the size of its output at step 0 and the
size of its change since step 0 (on one fixed probe batch), fit the log-log slope of each size
against width and give a verdict per layer.

Theory: Yang & Hu 2021, "Tensor Programs IV: Feature Learning in Infinite-Width Neural
Networks" (abc-parametrizations, muP); Yang et al. 2022, "Tensor Programs V: Tuning Large Neural
Networks via Zero-Shot Hyperparameter Transfer", and the coordinate check of its reference
implementation ``mup`` (its README shows it for SP and muP MLPs under Adam at lr 1e-3). Under
the standard parameterization (SP) with Adam at a fixed learning rate, a hidden layer's output
changes by an amount whose typical coordinate grows about linearly in width (slope about +1):
the update of a width x width matrix is correlated with the input it multiplies, so the width
terms of the matrix-vector product add up. Under muP the change stays constant (slope about 0).
At finite width a hidden layer's change also holds a width-independent term, its weights times
the change of its input; the slope nears +1 only once the first term dominates (for an MLP on
784 MNIST pixels under Adam the local slope passes 0.5 near width 1000 and 0.9 near 4000: see
``docs/parameterize_checks.md``).

The module also holds what :mod:`initlab.parameterize.spectral` shares with it: running a
builder at several widths and seeds, probing layer outputs, and the log-log fit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize as torch_parametrize

from initlab._checks import ArgumentError, finite, positive_int
from initlab.introspect.hooks import forward_hooks, preserved_modes
from initlab.introspect.kinds import is_norm
from initlab.parameterize.parametrize import parametrize

__all__ = ["CoordCheck", "CoordRow", "DepthRow", "coord_check", "loglog_slope", "mlp_builder"]

#: Verdicts of a slope (see :func:`verdict_of`).
VERDICTS = ("stable", "grows", "shrinks", "undetermined")

Batch = tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- the log-log fit


def loglog_slope(widths: Sequence[float], values: Sequence[Sequence[float]]) -> tuple[float, float]:
    r"""Fit ``log(value) = a + s * log(width)`` by least squares; return ``(s, stderr(s))``.

    Every (width, seed) point enters the fit. With the same number of seeds at every width the
    slope equals that of the line through the per-width means of ``log(value)`` (the geometric
    mean over seeds); pooling the points lets the standard error include the seeds' spread:
    ``stderr = sqrt(RSS / (n - 2) / Sxx)``, the ordinary least-squares standard error of a
    slope (any regression text, e.g. Draper & Smith, "Applied Regression Analysis"), with
    ``n`` points, ``RSS`` the residual sum of squares and ``Sxx = sum (log w - mean log w)^2``.

    Args:
        widths: one width (> 0) per entry of ``values``.
        values: per width, the measured sizes (one per seed), in any unit.

    Returns:
        ``(slope, stderr)``. All values exactly 0 (a layer that does not move at any width)
        give ``(0.0, 0.0)``. NaN slope when a value is non-finite, negative, or 0 among
        positive ones (a log cannot be taken), or fewer than 2 distinct widths; NaN stderr when
        there are fewer than 3 points.
    """
    if len(widths) != len(values):
        raise ValueError(
            f"loglog_slope needs one list of values per width; got {len(widths)} "
            f"widths and {len(values)} lists"
        )
    points = [(math.log(w), v) for w, vs in zip(widths, values, strict=True) for v in vs]
    if points and all(v == 0 for _, v in points):
        return 0.0, 0.0
    if not all(math.isfinite(v) and v > 0 for _, v in points):
        return math.nan, math.nan
    xs = [x for x, _ in points]
    ys = [math.log(v) for _, v in points]
    n = len(points)
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0:
        return math.nan, math.nan
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
    if n < 3:
        return slope, math.nan
    rss = sum((y - y_mean - slope * (x - x_mean)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(rss / (n - 2) / sxx)


def verdict_of(slope: float, grows_above: float, shrinks_below: float) -> str:
    """``"grows"`` if ``slope > grows_above``, ``"shrinks"`` if ``slope < shrinks_below``,
    ``"stable"`` in between, ``"undetermined"`` for a NaN slope."""
    if math.isnan(slope):
        return "undetermined"
    if slope > grows_above:
        return "grows"
    if slope < shrinks_below:
        return "shrinks"
    return "stable"


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive values (what a log-log plot averages); 0 if any is 0,
    NaN if any is negative or NaN."""
    if any(not v >= 0 for v in values):
        return math.nan
    if any(v == 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


# --------------------------------------------------------------------------- running builders


@dataclass(frozen=True)
class RunSpec:
    """The checked arguments shared by :func:`coord_check` and the spectral audit."""

    widths: tuple[int, ...]
    depths: tuple[int | None, ...]
    seeds: tuple[int, ...]
    steps: tuple[int, ...]
    batches: tuple[Batch, ...]


def check_run_args(build: Callable, widths, batches, steps, seeds, depths, *, what: str) -> RunSpec:
    """Validate the arguments of a width sweep; raise ArgumentError/TypeError naming them."""
    if not callable(build):
        raise TypeError(
            f"{what}: build must be a callable (width, seed) or (width, depth, seed) "
            f"returning (model, optimizer, loss_fn); got build={build!r}"
        )
    widths = _int_tuple("widths", widths)
    if len(set(widths)) < 2:
        raise ArgumentError(
            "widths",
            f"{what} fits a slope against width and needs at least 2 "
            f"distinct widths; got widths={list(widths)}",
        )
    steps = _int_tuple("steps", steps)
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ArgumentError(
            "seeds", f"seeds must be a non-empty sequence of ints; got seeds={seeds!r}"
        )
    depths = (None,) if depths is None else _int_tuple("depths", depths)
    return RunSpec(
        widths=tuple(sorted(set(widths))),
        depths=tuple(dict.fromkeys(depths)),
        seeds=tuple(dict.fromkeys(seeds)),
        steps=tuple(sorted(set(steps))),
        batches=_check_batches(batches),
    )


def _int_tuple(name: str, values) -> tuple[int, ...]:
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ArgumentError(
            name, f"{name} must be a sequence of positive ints; got {name}={values!r}"
        ) from None
    if not values:
        raise ArgumentError(name, f"{name} must not be empty; got {name}={values!r}")
    for value in values:
        try:
            positive_int(name, value)
        except (TypeError, ValueError):
            raise ArgumentError(
                name, f"{name} must hold positive ints; got {name}={list(values)!r}"
            ) from None
    return values


def _check_batches(batches) -> tuple[Batch, ...]:
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        batches = [batches]  # one (inputs, targets) pair
    try:
        batches = tuple(batches)
    except TypeError:
        raise ArgumentError(
            "batches",
            "batches must be a sequence of (inputs, targets) pairs; "
            f"got batches={type(batches).__name__}",
        ) from None
    if not batches:
        raise ArgumentError(
            "batches", "batches must hold at least one (inputs, targets) pair; got none"
        )
    for i, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ArgumentError(
                "batches",
                f"batches[{i}] must be an (inputs, targets) pair; got {type(batch).__name__}",
            )
    return tuple((x, y) for x, y in batches)


def call_build(build: Callable, width: int, depth: int | None, seed: int, *, what: str):
    """Call ``build(width, seed)`` or ``build(width, depth, seed)``; check what it returns."""
    result = build(width, seed) if depth is None else build(width, depth, seed)
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        raise TypeError(
            f"{what}: build({width}, {'' if depth is None else f'{depth}, '}{seed}) "
            "must return (model, optimizer, loss_fn); got "
            f"{type(result).__name__}"
        )
    model, optimizer, loss_fn = result
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: build must return an nn.Module first; got {type(model).__name__}")
    if not (hasattr(optimizer, "step") and hasattr(optimizer, "zero_grad")):
        raise TypeError(
            f"{what}: build must return a torch optimizer second; got {type(optimizer).__name__}"
        )
    if not callable(loss_fn):
        raise TypeError(
            f"{what}: build must return a callable loss_fn(output, target) third; "
            f"got {type(loss_fn).__name__}"
        )
    return model, optimizer, loss_fn


def default_layers(model: nn.Module) -> list[str]:
    """The modules whose outputs are recorded by default: every module that owns a parameter
    itself or holds a parametrized one (``torch.nn.utils.parametrize``), in definition order;
    the parametrization containers themselves are left out."""
    names = []
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        owns = any(True for _ in module.parameters(recurse=False))
        if owns or torch_parametrize.is_parametrized(module):
            names.append(name)
    return names


def resolve_layers(model: nn.Module, layers: Iterable[str] | None, *, what: str) -> list[str]:
    """``layers`` checked against ``model``'s module names, or :func:`default_layers`."""
    modules = dict(model.named_modules())
    if layers is None:
        found = default_layers(model)
        if not found:
            raise ArgumentError(
                "layers",
                f"{what}: the model has no module with parameters to "
                "record; name the modules in layers=[...]",
            )
        return found
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    missing = [name for name in layers if name not in modules]
    if missing or not layers:
        raise ArgumentError(
            "layers",
            f"{what}: layers must name modules of the model; "
            f"{missing or 'none'} not found (the model's modules: "
            f"{[n for n in modules if n][:20]})",
        )
    return layers


def shape_role(shapes: Sequence[tuple[int, ...] | None], kind: str | None = None) -> str:
    """A layer's role from the shape of its weight at the smallest and largest width.

    ``"hidden"``: both the output and input dimension grow with width; ``"input"``: only the
    output dimension does (``"embedding"`` for an ``nn.Embedding``); ``"output"``: only the
    input dimension (the readout); ``"vector"``: a 1-D weight that grows (``"norm"`` for a
    normalization layer's gain); ``"fixed"``: nothing grows; ``"-"``: no weight (e.g. a module
    holding only a positional embedding). The words are :func:`~initlab.parameterize.parametrize`'s
    roles. This is Tensor Programs V's base-shape rule (dims that differ between two widths are
    infinite), read from ``(out, in, *kernel)`` shapes as :func:`weight_shape` gives them;
    ``kind`` is :func:`layer_kind` of the module.
    """
    first, last = shapes[0], shapes[-1]
    if first is None or last is None:
        return "-"
    if len(first) != len(last):
        return "fixed"
    grows = [a != b for a, b in zip(first, last, strict=True)]
    if len(first) == 1:
        return ("norm" if kind == "norm" else "vector") if grows[0] else "fixed"
    out_grows, in_grows = grows[0], grows[1]
    if out_grows and in_grows:
        return "hidden"
    if out_grows:
        return "embedding" if kind == "embedding" else "input"
    return "output" if in_grows else "fixed"


def layer_kind(module: nn.Module) -> str | None:
    """``"embedding"`` for an ``nn.Embedding``, ``"norm"`` for a normalization layer, else None
    (what :func:`shape_role` names more precisely than the shapes alone can)."""
    if isinstance(module, nn.Embedding):
        return "embedding"
    return "norm" if is_norm(module) else None


def weight_shape(module: nn.Module) -> tuple[int, ...] | None:
    """The ``(out, in, *kernel)`` shape of ``module.weight`` (parametrized or not; an
    ``nn.Embedding``'s ``(num, dim)`` is read as ``(dim, num)``; ``nn.MultiheadAttention``'s
    ``in_proj_weight``), or None for a module without such a weight (its role is ``"-"``)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        weight = getattr(module, "in_proj_weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    shape = tuple(weight.shape)
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and len(shape) == 2:
        return shape[::-1]
    return shape


def probe_outputs(
    model: nn.Module, inputs: torch.Tensor, layers: Sequence[str], *, strict: bool = True
) -> dict:
    """Each named module's output on ``inputs`` (eval mode, no grad), flattened to 1-D float64.

    Eval mode: dropout is off and batch norm uses its running statistics. A module called
    several times in one forward contributes all its outputs, concatenated; a tuple output (an
    LSTM's) contributes its first tensor. The model's train/eval flags are restored afterwards.
    With ``strict=False`` a module that gives no tensor output (one the forward never calls,
    such as ``nn.MultiheadAttention.out_proj``, whose weight is read directly) is left out.

    Raises:
        ArgumentError: with ``strict``, a named module gives no tensor output (``layers``).
    """
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook(name, module, args, output):
        if isinstance(output, (tuple, list)):
            output = next((o for o in output if isinstance(o, torch.Tensor)), None)
        if isinstance(output, torch.Tensor):
            seen[name].append(output.detach().reshape(-1).to(torch.float64))

    with preserved_modes(model), torch.no_grad():
        model.eval()
        with forward_hooks([(name, modules[name]) for name in layers], hook):
            model(inputs)
    silent = [name for name, outs in seen.items() if not outs]
    if silent and strict:
        raise ArgumentError(
            "layers",
            f"modules {silent} gave no tensor output in the forward "
            "pass; record other layers (layers=[...])",
        )
    return {name: torch.cat(outs) for name, outs in seen.items() if outs}


def train_step(model: nn.Module, optimizer, loss_fn, batch: Batch) -> float:
    """One optimizer step on ``batch``; return the loss before the step."""
    inputs, targets = batch
    optimizer.zero_grad()
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def rms(t: torch.Tensor) -> float:
    """Root mean square of a tensor's entries (the size of a typical coordinate)."""
    return float(t.pow(2).mean().sqrt()) if t.numel() else math.nan


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class CoordRow:
    """One layer's size against width: at one step, one depth, one quantity.

    Attributes:
        layer: the module's qualified name.
        role: ``"input"``, ``"hidden"``, ``"output"``, ``"vector"``, ``"fixed"`` or ``"-"``
            (see :func:`shape_role`).
        quantity: ``"activation"`` (RMS of the layer's output at step 0; ``step`` is 0) or
            ``"change"`` (RMS of output at ``step`` minus output at step 0, same probe batch).
        step: optimizer steps taken.
        depth: the depth passed to the builder (None for width-only builders).
        widths: the widths, ascending.
        values: per width, the geometric mean over seeds of the RMS (the output's unit).
        slope: least-squares slope of log RMS against log width (see :func:`loglog_slope`).
        stderr: its standard error.
        verdict: ``"stable"``, ``"grows"``, ``"shrinks"`` or ``"undetermined"`` (NaN slope).
        samples: per width, the RMS of each seed (what the fit used).
    """

    layer: str
    role: str
    quantity: str
    step: int
    depth: int | None
    widths: tuple[int, ...]
    values: tuple[float, ...]
    slope: float
    stderr: float
    verdict: str
    samples: tuple[tuple[float, ...], ...] = ()


@dataclass(frozen=True)
class DepthRow:
    """One layer's size against depth at one width (:meth:`CoordCheck.against_depth`).

    Attributes:
        layer, role, quantity, step: as in :class:`CoordRow`.
        width: the width of the models compared.
        depths: the depths, in the order run.
        values: per depth, the geometric mean over seeds of the RMS.
        slope, stderr: least-squares slope of log RMS against log depth and its error.
        verdict: as in :class:`CoordRow`, with the same thresholds.
    """

    layer: str
    role: str
    quantity: str
    step: int
    width: int
    depths: tuple[int, ...]
    values: tuple[float, ...]
    slope: float
    stderr: float
    verdict: str


@dataclass(frozen=True)
class CoordCheck:
    """The result of :func:`coord_check`: one :class:`CoordRow` per layer, step and depth.

    Attributes:
        rows: activation rows (step 0) then change rows, per depth, in layer order.
        widths, depths, seeds, steps: what was run.
        grows_above, shrinks_below: the verdict thresholds on the slope.
        losses: ``{(width, depth, seed): [loss at each step taken]}``, the training losses.
    """

    rows: tuple[CoordRow, ...]
    widths: tuple[int, ...]
    depths: tuple[int | None, ...]
    seeds: tuple[int, ...]
    steps: tuple[int, ...]
    grows_above: float
    shrinks_below: float
    losses: dict

    def select(
        self,
        *,
        role: str | None = None,
        quantity: str | None = None,
        step: int | None = None,
        depth: int | None = None,
        layer: str | None = None,
    ) -> list[CoordRow]:
        """The rows matching every criterion given (None matches anything)."""
        wanted = {"role": role, "quantity": quantity, "step": step, "depth": depth, "layer": layer}
        return [
            r for r in self.rows if all(v is None or getattr(r, k) == v for k, v in wanted.items())
        ]

    def against_depth(self, width: int | None = None) -> list[DepthRow]:
        """Fit each layer's sizes against depth at one width, for the layers every depth has.

        The same fit as against width (:func:`loglog_slope` over every (depth, seed) point)
        with log depth as x: under a depth parameterization (depth-muP, CompleteP) the layers
        shared by all depths, such as the input layer, the final norm and the readout, should
        keep their change as the model gets deeper (slope about 0).

        Args:
            width: one of :attr:`widths`; default the largest.

        Returns:
            One :class:`DepthRow` per layer (named alike at every depth), quantity and step, in
            the order of the rows at the first depth.

        Raises:
            ArgumentError: fewer than 2 depths were run (``depths``), or ``width`` was not run.
        """
        if None in self.depths or len(self.depths) < 2:
            raise ArgumentError(
                "depths", f"a fit against depth needs at least 2 depths; got depths={self.depths}"
            )
        width = self.widths[-1] if width is None else width
        if width not in self.widths:
            raise ArgumentError(
                "width", f"width must be one of the widths run {list(self.widths)}; got {width!r}"
            )
        index = self.widths.index(width)
        rows = {(r.depth, r.layer, r.quantity, r.step): r for r in self.rows}
        out = []
        for first in self.select(depth=self.depths[0]):
            key = (first.layer, first.quantity, first.step)
            same = [rows.get((d, *key)) for d in self.depths]
            if any(r is None for r in same):
                continue
            samples = [r.samples[index] for r in same]
            slope, stderr = loglog_slope(self.depths, samples)
            out.append(
                DepthRow(
                    layer=first.layer,
                    role=first.role,
                    quantity=first.quantity,
                    step=first.step,
                    width=width,
                    depths=self.depths,
                    values=tuple(geometric_mean(v) for v in samples),
                    slope=slope,
                    stderr=stderr,
                    verdict=verdict_of(slope, self.grows_above, self.shrinks_below),
                )
            )
        return out

    def table(self) -> str:
        """A plain-text table: one line per row, with the value at each width and the slope."""
        head = ["layer", "role"] + (["depth"] if self.depths != (None,) else [])
        head += ["quantity", "step"] + [f"w={w}" for w in self.widths]
        head += ["slope", "stderr", "verdict"]
        lines = [head]
        for r in self.rows:
            cells = [r.layer or "(model)", r.role]
            cells += [str(r.depth)] if self.depths != (None,) else []
            cells += [r.quantity, str(r.step)] + [f"{v:.3g}" for v in r.values]
            cells += [f"{r.slope:+.2f}", f"{r.stderr:.2f}", r.verdict]
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        return "\n".join(
            "  ".join(c.ljust(n) for c, n in zip(line, widths, strict=True)).rstrip()
            for line in lines
        )

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN stays a float; losses keyed ``"w<width>-d<depth>-s<seed>"``)."""
        out = asdict(self)
        out["losses"] = {f"w{w}-d{d}-s{s}": v for (w, d, s), v in self.losses.items()}
        return out

    def plot(self, path: str | os.PathLike, *, title: str | None = None) -> Path:
        """Draw the output change against width per layer on log-log axes, one panel per step.

        One line per layer (and depth), at the geometric mean over seeds, labeled with its role
        and slope; a dotted grey line of slope 1 through the panel's first point shows what
        SP's hidden layers tend to under Adam (Tensor Programs V; ``mup``'s coord-check
        figures). Exact zeros are left out (a log axis cannot show them). The format follows
        ``path``'s suffix; parent directories are created.

        Returns:
            ``path`` as a :class:`~pathlib.Path`.
        """
        from matplotlib.figure import Figure  # on use: matplotlib loads only for a figure

        fig = Figure(figsize=(4 * len(self.steps) + 2, 3.6), layout="constrained")
        axes = fig.subplots(1, len(self.steps), squeeze=False)[0]
        for ax, step in zip(axes, self.steps, strict=True):
            rows = self.select(quantity="change", step=step)
            for r in rows:
                points = [
                    (w, v) for w, v in zip(r.widths, r.values, strict=True) if 0 < v < math.inf
                ]
                if not points:
                    continue
                label = f"{r.layer or '(model)'} ({r.role})"
                label += f" d={r.depth}" if r.depth is not None else ""
                label += f": slope {r.slope:+.2f}"
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
            start = next((r for r in rows if r.values and 0 < r.values[0] < math.inf), None)
            if start is not None:
                ax.plot(
                    self.widths,
                    [start.values[0] * w / self.widths[0] for w in self.widths],
                    ":",
                    color="grey",
                    label="slope +1",
                )
            ax.set(xscale="log", yscale="log", xlabel="width", title=f"step {step}")
            # ticks at the measured widths only: the default minor labels (3x10^2, ...) overlap
            ax.set_xticks(self.widths, [str(w) for w in self.widths])
            ax.set_xticks([], minor=True)
            ax.set_ylabel("RMS of output change since step 0")
            ax.legend(fontsize="x-small")
        if title:
            fig.suptitle(title)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        return path


def coord_check(
    build: Callable,
    widths: Sequence[int],
    batches: Sequence[Batch] | Batch,
    *,
    steps: Sequence[int] = (1, 2, 3),
    seeds: Sequence[int] = (0, 1, 2),
    depths: Sequence[int] | None = None,
    layers: Iterable[str] | None = None,
    grows_above: float = 0.15,
    shrinks_below: float = -0.15,
) -> CoordCheck:
    r"""Train a few steps at each width and fit how each layer's output and its change scale.

    For every width, depth and seed: ``build`` returns a fresh model, its optimizer and loss;
    the outputs of the recorded layers on the probe batch (the inputs of ``batches[0]``) are
    taken at step 0 and after each step in ``steps`` (eval mode, no grad; hooks removed after);
    step ``t`` trains on ``batches[(t - 1) % len(batches)]``. Per layer, step and depth it fits
    ``log RMS = a + s log width`` (:func:`loglog_slope`) for the output at step 0
    (``"activation"``) and for the change ``output(t) - output(0)`` (``"change"``).

    Theory (Yang et al. 2022, Tensor Programs V, and its ``mup`` coordinate check; Yang & Hu
    2021, Tensor Programs IV): under the standard parameterization with Adam the change of a hidden
    layer grows about linearly in width (slope about +1); under muP every layer's change is
    width-independent (slope about 0). An input layer (fixed fan-in) is stable under both.

    Args:
        build: ``build(width, seed)`` (or ``build(width, depth, seed)`` when ``depths`` is
            given) returning ``(model, optimizer, loss_fn)``; ``loss_fn(model(inputs),
            targets)`` is a scalar tensor. It must seed its own initialization from ``seed``.
        widths: at least 2 distinct positive ints.
        batches: ``(inputs, targets)`` pairs, or one pair; inputs as the model takes them.
        steps: the steps (>= 1) after which the change is measured; training runs to the last.
        seeds: the seeds per width; slopes pool them.
        depths: depths to build at; each gets its own fits against width, and
            :meth:`CoordCheck.against_depth` fits the layers they share against depth.
        layers: qualified module names to record; default :func:`default_layers` (each module
            owning or parametrizing a parameter, so forward multipliers attached to it by hooks
            or parametrizations are in its output), less those the forward never calls.
        grows_above, shrinks_below: verdict thresholds on the slope (defaults +-0.15, the
            expected tolerance for muP's slope 0).

    Returns:
        A :class:`CoordCheck`.

    Raises:
        ArgumentError: fewer than 2 distinct widths, a non-positive width/step/depth, empty
            seeds or batches, ``layers`` naming a module the model lacks or one that gives no
            tensor output, thresholds with ``shrinks_below > grows_above``, or a layer missing
            at some width.
        TypeError: ``build`` is not callable or returns something else than
            ``(nn.Module, optimizer, callable)``.

    Example:
        >>> result = coord_check(build, [64, 128, 256], [(x, y)])  # doctest: +SKIP
        >>> print(result.table())  # doctest: +SKIP
    """
    spec = check_run_args(build, widths, batches, steps, seeds, depths, what="coord_check")
    grows_above = finite("grows_above", grows_above)
    shrinks_below = finite("shrinks_below", shrinks_below)
    if shrinks_below > grows_above:
        raise ArgumentError(
            "grows_above",
            f"shrinks_below={shrinks_below} must not exceed grows_above={grows_above}",
        )
    layers = None if layers is None else list([layers] if isinstance(layers, str) else layers)
    probe = spec.batches[0][0]
    # act[(depth, layer)][width] -> [rms per seed]; change[(depth, layer, step)][width] -> [...]
    act: dict = {}
    change: dict = {}
    shapes: dict = {}
    kinds: dict = {}
    order: dict = {}
    losses: dict = {}
    for depth in spec.depths:
        for width in spec.widths:
            for seed in spec.seeds:
                model, optimizer, loss_fn = call_build(
                    build, width, depth, seed, what="coord_check"
                )
                names = resolve_layers(model, layers, what="coord_check")
                start = probe_outputs(model, probe, names, strict=layers is not None)
                names = [name for name in names if name in start]
                _check_same_layers(order, depth, width, names)
                modules = dict(model.named_modules())
                for name in names:
                    shapes.setdefault((depth, name), {})[width] = weight_shape(modules[name])
                    kinds[(depth, name)] = layer_kind(modules[name])
                for name in names:
                    act.setdefault((depth, name), {}).setdefault(width, []).append(rms(start[name]))
                run_losses = []
                for t in range(1, spec.steps[-1] + 1):
                    batch = spec.batches[(t - 1) % len(spec.batches)]
                    run_losses.append(train_step(model, optimizer, loss_fn, batch))
                    if t in spec.steps:
                        now = probe_outputs(model, probe, names)
                        for name in names:
                            change.setdefault((depth, name, t), {}).setdefault(width, []).append(
                                rms(now[name] - start[name])
                            )
                losses[(width, depth, seed)] = run_losses

    rows = []
    for depth in spec.depths:
        names = order[depth]
        for name in names:
            role = shape_role([shapes[(depth, name)][w] for w in spec.widths], kinds[(depth, name)])
            series = [("activation", 0, act[(depth, name)])]
            series += [("change", t, change[(depth, name, t)]) for t in spec.steps]
            for quantity, step, per_width in series:
                values = [per_width[w] for w in spec.widths]
                slope, stderr = loglog_slope(spec.widths, values)
                rows.append(
                    CoordRow(
                        layer=name,
                        role=role,
                        quantity=quantity,
                        step=step,
                        depth=depth,
                        widths=spec.widths,
                        values=tuple(geometric_mean(v) for v in values),
                        slope=slope,
                        stderr=stderr,
                        verdict=verdict_of(slope, grows_above, shrinks_below),
                        samples=tuple(tuple(v) for v in values),
                    )
                )
    rows.sort(
        key=lambda r: (
            spec.depths.index(r.depth),
            r.quantity != "activation",
            r.step,
            order[r.depth].index(r.layer),
        )
    )
    return CoordCheck(
        rows=tuple(rows),
        widths=spec.widths,
        depths=spec.depths,
        seeds=spec.seeds,
        steps=spec.steps,
        grows_above=grows_above,
        shrinks_below=shrinks_below,
        losses=losses,
    )


def _check_same_layers(order: dict, depth, width: int, names: list[str]) -> None:
    if depth not in order:
        order[depth] = names
    elif order[depth] != names:
        raise ArgumentError(
            "layers",
            f"the model built at width {width} has other layers than "
            f"at the first width: "
            f"{sorted(set(names) ^ set(order[depth]))}; record the "
            "same modules at every width (layers=[...])",
        )


_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def mlp_builder(
    parameterization: str,
    in_features: int,
    out_features: int,
    *,
    base_width: int = 64,
    hidden_layers: int = 2,
    lr: float = 1e-3,
    optimizer: str = "adam",
) -> Callable[[int, int], tuple]:
    """Return ``build(width, seed)`` for :func:`coord_check`: a ReLU MLP under a parameterization.

    The model is ``in_features -> width (-> width) x (hidden_layers - 1) -> out_features``
    (``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``), parameterized by
    :func:`~initlab.parameterize.parametrize` against the same MLP at ``base_width`` (built on
    the meta device), starting from PyTorch's default init (``policy="torch"``, what ``mup``
    assumes), initialized with ``seed``; the optimizer is built from the parameterization's
    groups at base rate ``lr``; the loss is cross-entropy (targets are class indices).

    The coordinate check of SP against muP on MNIST is
    ``coord_check(mlp_builder(name, 784, 10), [64, ..., 1024], mnist)`` for ``name`` in
    ``("sp", "mup")`` (see ``docs/parameterize_checks.md`` for the command).

    Args:
        parameterization: a name :func:`~initlab.parameterize.parametrize` accepts.
        in_features, out_features: the input and class dimensions (> 0).
        base_width: the width the parameterization is relative to (> 0).
        hidden_layers: hidden layers of width ``width`` (>= 1).
        lr: base learning rate (> 0).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.

    Raises:
        ArgumentError: ``optimizer`` unknown (lists the accepted ones), ``lr`` not > 0; the
            parameterization's own errors when the builder runs.
        TypeError, ValueError: a non-positive-int size (naming it).
    """
    from torch.nn import functional as F  # noqa: N812 (PyTorch's own spelling)

    for name, value in (
        ("in_features", in_features),
        ("out_features", out_features),
        ("base_width", base_width),
        ("hidden_layers", hidden_layers),
    ):
        positive_int(name, value)
    if optimizer not in _OPTIMIZERS:
        raise ArgumentError(
            "optimizer",
            f"optimizer must be one of {sorted(_OPTIMIZERS)}; got optimizer={optimizer!r}",
        )
    if not finite("lr", lr) > 0:
        raise ArgumentError("lr", f"lr must be > 0; got lr={lr!r}")

    def mlp(width: int) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Linear(in_features, width), nn.ReLU()]
        for _ in range(hidden_layers - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, out_features))

    def build(width: int, seed: int):
        model = mlp(width)
        with torch.device("meta"):
            base = mlp(base_width)
        scaled = parametrize(
            model, parameterization, base=base, optimizer=optimizer, policy="torch"
        ).apply_(seed=seed)
        return model, scaled.optimizer(_OPTIMIZERS[optimizer], lr=lr), F.cross_entropy

    return build
