"""The spectral audit: do each layer's weights and updates have the norm feature learning needs?

Yang, Simon & Bernstein (2023), "A Spectral Condition for Feature Learning" (arXiv:2310.17813),
Condition 1 (spectral scaling): for every layer l with fan-in n_{l-1} and fan-out n_l,

    ||W_l||_*  = Theta(sqrt(n_l / n_{l-1}))   and   ||Delta W_l||_* = Theta(sqrt(n_l / n_{l-1})),

with ||.||_* the spectral (operator) norm and Delta W_l the change of the weights in training.
Then each layer's features h_l and their change Delta h_l have entries of order 1 (a norm of
order sqrt(n_l)) at every width: features are learned. The audit trains a few steps at several
widths, measures per linear layer ||W||_2 / sqrt(fan_out/fan_in) at step 0, ||Delta W||_2 /
sqrt(fan_out/fan_in) after ``steps`` steps, the relative update ||Delta W||_2 / ||W||_2 and the
relative feature change ||Delta h|| / ||h|| of the layer's output on a probe batch, and fits each
one's width exponent (the slope of its log against log width; 0 is what the condition asks).

The weight a layer applies is read from what the module computes, ``W = (module(I) -
module(0))^T`` on the identity batch, so forward multipliers attached to the module (hooks or
``torch.nn.utils.parametrize``, as :mod:`initlab.parameterize` attaches them) are part of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from initlab._checks import ArgumentError, finite
from initlab.introspect.hooks import preserved_modes
from initlab.parameterize.coord_check import (
    Batch,
    call_build,
    check_run_args,
    geometric_mean,
    loglog_slope,
    probe_outputs,
    resolve_layers,
    shape_role,
    train_step,
    weight_shape,
)

__all__ = ["Scaling", "SpectralAudit", "SpectralRow", "effective_weight", "spectral_audit"]

# Identity rows fed to a layer at once by effective_weight (bounds its memory to 1024 x fan_in).
_CHUNK = 1024

#: Per-layer verdicts of the audit (see :func:`spectral_audit`).
VERDICTS = ("ok", "lazy", "update too large", "readout too large", "undetermined")


@dataclass(frozen=True)
class Scaling:
    """One measured quantity against width.

    Attributes:
        values: per width (ascending), the geometric mean over seeds.
        exponent: least-squares slope of its log against log width
            (:func:`~initlab.parameterize.coord_check.loglog_slope`).
        stderr: the slope's standard error.
    """

    values: tuple[float, ...]
    exponent: float
    stderr: float


@dataclass(frozen=True)
class SpectralRow:
    """One linear layer's audit.

    Attributes:
        layer: the module's qualified name.
        role: ``"input"``, ``"hidden"``, ``"output"`` (the readout) or ``"fixed"``, from which
            of its dimensions grow with width
            (:func:`~initlab.parameterize.coord_check.shape_role`).
        norm: ``||W||_2 / sqrt(fan_out / fan_in)`` at step 0 (condition: exponent 0).
        update: ``||W_k - W_0||_2 / sqrt(fan_out / fan_in)`` after ``k`` steps (exponent 0).
        relative_update: ``||W_k - W_0||_2 / ||W_0||_2`` (exponent 0).
        feature_change: ``||h_k - h_0|| / ||h_0||`` of the layer's output on the probe batch
            (Frobenius norms; exponent 0 for a hidden layer that learns features).
        verdict: see :func:`spectral_audit`.
    """

    layer: str
    role: str
    norm: Scaling
    update: Scaling
    relative_update: Scaling
    feature_change: Scaling
    verdict: str


@dataclass(frozen=True)
class SpectralAudit:
    """The result of :func:`spectral_audit`.

    Attributes:
        rows: one :class:`SpectralRow` per audited layer, in model order.
        widths, seeds: what was run; steps: optimizer steps before the update is measured.
        tolerance: the exponent beyond which a quantity counts as growing or shrinking.
    """

    rows: tuple[SpectralRow, ...]
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    tolerance: float

    def verdicts(self) -> dict[str, str]:
        """``{layer: verdict}`` in model order."""
        return {r.layer: r.verdict for r in self.rows}

    def table(self) -> str:
        """A plain-text table: per layer, each quantity's width exponent and the verdict."""
        head = ["layer", "role", "||W||/target", "||dW||/target", "||dW||/||W||", "dh/h", "verdict"]
        lines = [head]
        for r in self.rows:
            cells = [r.layer or "(model)", r.role]
            for s in (r.norm, r.update, r.relative_update, r.feature_change):
                cells.append(f"{s.values[-1]:.3g} (w^{s.exponent:+.2f}±{s.stderr:.2f})")
            lines.append(cells + [r.verdict])
        sizes = [max(len(line[i]) for line in lines) for i in range(len(head))]
        note = (
            f"target = sqrt(fan_out/fan_in); values at width {self.widths[-1]}, exponent "
            f"fitted over widths {list(self.widths)}; after {self.steps} step(s)"
        )
        body = "\n".join(
            "  ".join(c.ljust(n) for c, n in zip(line, sizes, strict=True)).rstrip()
            for line in lines
        )
        return body + "\n" + note

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN stays a float)."""
        return asdict(self)


def effective_weight(module: nn.Module) -> torch.Tensor:
    """Return the ``(out, in)`` matrix a linear module applies, multipliers included.

    Computed as ``(module(I) - module(0))^T`` with ``I`` the identity batch of ``in`` rows (fed
    1024 rows at a time), in the module's dtype and device, under ``no_grad``; the bias
    cancels, and a forward hook or parametrization that scales the input, the output or the
    weight is part of the result. For a plain ``nn.Linear`` this is ``module.weight`` up to
    rounding.

    Raises:
        TypeError: ``module`` is not an ``nn.Linear``.
    """
    if not isinstance(module, nn.Linear):
        raise TypeError(f"effective_weight reads linear layers only; got {type(module).__name__}")
    weight = module.weight
    n = module.in_features
    columns = []
    with torch.no_grad():
        zero = module(torch.zeros(1, n, dtype=weight.dtype, device=weight.device))
        for start in range(0, n, _CHUNK):  # identity rows in blocks: memory _CHUNK x n
            rows = torch.arange(start, min(start + _CHUNK, n), device=weight.device)
            basis = torch.zeros(len(rows), n, dtype=weight.dtype, device=weight.device)
            basis[torch.arange(len(rows), device=weight.device), rows] = 1.0
            columns.append(module(basis) - zero)
    return torch.cat(columns).T.contiguous()


def spectral_audit(
    build: Callable,
    widths: Sequence[int],
    batches: Sequence[Batch] | Batch,
    *,
    steps: int = 1,
    seeds: Sequence[int] = (0, 1, 2),
    layers: Iterable[str] | None = None,
    tolerance: float = 0.25,
) -> SpectralAudit:
    r"""Audit every linear layer against the spectral condition of Yang, Simon & Bernstein 2023.

    For each width and seed, ``build`` gives a fresh model, optimizer and loss; the audit reads
    each layer's applied weight (:func:`effective_weight`) and its output on the probe batch
    (the inputs of ``batches[0]``) at step 0 and after ``steps`` training steps (step ``t`` on
    ``batches[(t - 1) % len(batches)]``), and fits the width exponent of each quantity of
    :class:`SpectralRow`. Condition 1 of Yang, Simon & Bernstein (2023), "A Spectral Condition
    for Feature Learning", asks ``||W_l||_2`` and ``||Delta W_l||_2`` to be
    Theta(sqrt(fan_out/fan_in)): every normalized quantity's exponent 0.

    Verdicts, with ``tau = tolerance``:

    - the readout (role ``"output"``): ``"readout too large"`` if the exponent of its norm or
      of its update exceeds tau; ``"lazy"`` if its update's is below -tau; else ``"ok"``. A
      readout whose initial norm is below the condition is not flagged: the condition's
      initial norm is an upper bound there (a zero-initialized readout, as muP allows, learns
      features), and its relative output change then grows without harm.
    - every other layer: ``"update too large"`` if the exponent of its update or of its
      relative feature change exceeds tau; ``"lazy"`` if either is below -tau (features stop
      moving as width grows, the kernel regime); else ``"ok"``.
    - ``"undetermined"`` where an exponent is NaN (a non-finite value, e.g. a diverged run).

    Expected labels (derivations in ``docs/parameterize_checks.md``): standard
    parameterization with Adam, hidden ``"update too large"`` and readout ``"readout too
    large"``; NTK parameterization with SGD, hidden and input ``"lazy"`` and readout
    ``"readout too large"`` (its readout norm is sqrt(fan_in) above the condition); muP,
    ``"ok"`` everywhere; muP with the readout multiplier missing, readout ``"readout too
    large"``.

    Args:
        build: ``build(width, seed)`` returning ``(model, optimizer, loss_fn)``.
        widths: at least 2 distinct positive ints.
        batches: ``(inputs, targets)`` pairs, or one pair.
        steps: optimizer steps before the update and feature change are measured (>= 1).
        seeds: seeds per width; the fits pool them.
        layers: qualified names of ``nn.Linear`` modules; default every ``nn.Linear`` that
            :func:`~initlab.parameterize.coord_check.default_layers` records.
        tolerance: exponent threshold of the verdicts (> 0). The default 0.25 is half the
            smallest violation the four setups above produce (exponent +-0.5).

    Returns:
        A :class:`SpectralAudit`.

    Raises:
        ArgumentError: as :func:`~initlab.parameterize.coord_check.coord_check` for widths,
            batches and seeds; ``steps`` < 1; ``tolerance`` <= 0; ``layers`` naming a module
            that is not an ``nn.Linear`` (or the model has none).
        TypeError: ``build`` is not callable or returns something else.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError("steps", f"steps must be an int >= 1; got steps={steps!r}")
    spec = check_run_args(build, widths, batches, (steps,), seeds, None, what="spectral_audit")
    tolerance = finite("tolerance", tolerance)
    if tolerance <= 0:
        raise ArgumentError("tolerance", f"tolerance must be > 0; got tolerance={tolerance!r}")
    wanted = None if layers is None else [layers] if isinstance(layers, str) else list(layers)
    probe = spec.batches[0][0]
    measured: dict = {}  # (layer, quantity) -> {width: [value per seed]}
    shapes: dict = {}
    order: list[str] | None = None
    for width in spec.widths:
        for seed in spec.seeds:
            model, optimizer, loss_fn = call_build(build, width, None, seed, what="spectral_audit")
            names = _linear_layers(model, wanted)
            start = probe_outputs(model, probe, names, strict=wanted is not None)
            names = [name for name in names if name in start]
            if order is None:
                order = names
            elif names != order:
                raise ArgumentError(
                    "layers",
                    f"the model built at width {width} has other linear layers than at the "
                    f"first width: {sorted(set(names) ^ set(order))}",
                )
            modules = dict(model.named_modules())
            for name in names:
                shapes.setdefault(name, {})[width] = weight_shape(modules[name])
            before = _weights(model, names)
            for t in range(1, steps + 1):
                train_step(model, optimizer, loss_fn, spec.batches[(t - 1) % len(spec.batches)])
            after = _weights(model, names)
            end = probe_outputs(model, probe, names)
            for name in names:
                w0, w1 = before[name], after[name]
                target = math.sqrt(w0.shape[0] / w0.shape[1])
                norm = _op_norm(w0)
                update = _op_norm(w1 - w0)
                values = {
                    "norm": norm / target,
                    "update": update / target,
                    "relative_update": update / norm if norm > 0 else math.nan,
                    "feature_change": _ratio(end[name] - start[name], start[name]),
                }
                for quantity, value in values.items():
                    measured.setdefault((name, quantity), {}).setdefault(width, []).append(value)
    rows = []
    for name in order or []:
        fits = {}
        for quantity in ("norm", "update", "relative_update", "feature_change"):
            per_width = [measured[(name, quantity)][w] for w in spec.widths]
            exponent, stderr = loglog_slope(spec.widths, per_width)
            fits[quantity] = Scaling(tuple(geometric_mean(v) for v in per_width), exponent, stderr)
        role = shape_role([shapes[name][w] for w in spec.widths])
        rows.append(
            SpectralRow(layer=name, role=role, **fits, verdict=_verdict(role, fits, tolerance))
        )
    return SpectralAudit(
        rows=tuple(rows), widths=spec.widths, seeds=spec.seeds, steps=steps, tolerance=tolerance
    )


def _verdict(role: str, fits: dict[str, Scaling], tau: float) -> str:
    norm, update, feature = (fits[q].exponent for q in ("norm", "update", "feature_change"))
    if role == "output":
        if math.isnan(norm) or math.isnan(update):
            return "undetermined"
        if norm > tau or update > tau:
            return "readout too large"
        return "lazy" if update < -tau else "ok"
    if math.isnan(update) or math.isnan(feature):
        return "undetermined"
    if update > tau or feature > tau:
        return "update too large"
    return "lazy" if update < -tau or feature < -tau else "ok"


def _linear_layers(model: nn.Module, wanted: list[str] | None) -> list[str]:
    modules = dict(model.named_modules())
    if wanted is None:
        names = [
            n
            for n in resolve_layers(model, None, what="spectral_audit")
            if isinstance(modules[n], nn.Linear)
        ]
        if not names:
            raise ArgumentError(
                "layers", "spectral_audit reads nn.Linear layers; the model has none"
            )
        return names
    names = resolve_layers(model, wanted, what="spectral_audit")
    other = [n for n in names if not isinstance(modules[n], nn.Linear)]
    if other:
        raise ArgumentError(
            "layers",
            f"spectral_audit reads nn.Linear layers only; got "
            f"layers {other} of types "
            f"{[type(modules[n]).__name__ for n in other]}",
        )
    return names


def _weights(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    with preserved_modes(model):
        model.eval()
        return {n: effective_weight(modules[n]).to(torch.float64) for n in names}


def _op_norm(matrix: torch.Tensor) -> float:
    """The spectral norm (largest singular value) of a 2-D tensor, computed in float32 (half
    the time of float64 on CPU; single precision is far finer than the exponents need)."""
    return float(torch.linalg.matrix_norm(matrix.to(torch.float32), ord=2))


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    bottom = float(denominator.norm())
    return float(numerator.norm()) / bottom if bottom > 0 else math.nan
