"""Composing a policy with data-driven steps: ``initlab.init_model(model, lsuv=batch)``.

The policy (:mod:`initlab.policy`) plans and writes weights from a model's structure; LSUV
(:mod:`initlab.datadriven`) rescales them on data. The two packages sit side by side and do not
import each other: running one after the other is a scheme's job, done here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import nn

from initlab.datadriven.lsuv import lsuv_
from initlab.policy import InitPlan, Rule
from initlab.policy import init_model as plan_and_apply

__all__ = ["init_model"]


def init_model(
    model: nn.Module,
    policy: str | Sequence[Rule] = "auto",
    *,
    example_input=None,
    seed: int | None = None,
    lsuv=None,
    **options,
) -> InitPlan:
    """Plan and apply in one step, then optionally calibrate by LSUV; return the applied plan.

    Same arguments as :func:`initlab.plan` (``rules=``, ``only=`` and options pass through)
    plus ``seed`` for :meth:`~initlab.InitPlan.apply`: without ``lsuv`` this is
    :func:`initlab.policy.init_model`.

    With ``lsuv=batch`` the planned weights are the starting point of LSUV (Mishkin and Matas,
    "All you need is a good init", 2016, Alg. 1): :func:`initlab.lsuv_` runs on ``batch`` with
    ``orthogonal_preinit=False`` (the plan already wrote the weights) and rescales every Linear
    and Conv weight and bias until its output has unit std. The rows of calibrated layers say
    so in their ``reason`` (their ``std``/``bound`` stay the planned draw, before rescaling),
    and the :class:`~initlab.datadriven.LSUVReport` is the plan's ``lsuv`` attribute; re-applying
    the plan (or one rebuilt by :meth:`~initlab.InitPlan.from_dict`) writes the draw without
    LSUV.

    Args:
        lsuv: an input batch ``(B, ...)`` or ``(input, target, ...)`` (a few hundred examples),
            or ``None`` (no calibration).

    Raises:
        As :func:`initlab.plan` and :func:`initlab.lsuv_` (for ``lsuv``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> init_model(net, seed=0).rows[0].rule
        'tanh/sigmoid family: Xavier'
        >>> init_model(net, seed=0, lsuv=torch.randn(256, 4)).lsuv.layers[0].status
        'converged'
    """
    result = plan_and_apply(model, policy, example_input=example_input, seed=seed, **options)
    if lsuv is not None:
        _calibrate(result, lsuv)
    return result


def _calibrate(result: InitPlan, data) -> None:
    """Run LSUV from the applied plan's weights and note it in the rows of calibrated layers."""
    report = lsuv_(result.model, data, orthogonal_preinit=False)
    done = {layer.name: layer for layer in report.layers}
    for i, row in enumerate(result.rows):
        layer = done.get(row.module)
        if layer is not None:
            note = (
                f"; then LSUV on data (Mishkin and Matas 2016) rescaled weight and bias to output "
                f"std {layer.std:.3g} ({layer.status}, {layer.iterations} rescaling(s))"
                + (f", bias shifted to output mean {layer.mean:.2g}" if report.correct_mean else "")
            )
            result.rows[i] = dataclasses.replace(row, reason=row.reason + note)
    result.lsuv = report
