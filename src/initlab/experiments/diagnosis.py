"""Diagnose zoo models at initialization under several schemes, on a batch of real data.

What ``initlab diagnose`` and the ``compare`` sweep run: build the model, initialize it by each
scheme (data-dependent schemes such as ``lsuv`` get the same batch), and diagnose one forward and
backward pass of cross-entropy on that batch. For plain MLPs the mean-field depth scale of the
resulting weight and bias variances says how deep such an initialization can train.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from initlab._files import atomic_write
from initlab.datasets.families import load_dataset
from initlab.diagnostics import Diagnosis, MeanField, diagnose, mean_field
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

__all__ = [
    "SchemeDiagnosis",
    "diagnose_schemes",
    "format_mean_field",
    "init_record",
    "load_batch",
    "mlp_mean_field",
]


@dataclass(frozen=True)
class SchemeDiagnosis:
    """One scheme's diagnosis, with the mean-field prediction where it applies (else None)."""

    scheme: str
    diagnosis: Diagnosis
    mean_field: MeanField | None


def load_batch(
    dataset: str = "mnist", *, size: int = 256, data_dir: str | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the first ``size`` training images as ``(B, 1, H, W)`` floats in [0, 1], and labels.

    The scaling (pixel / 255) is the trainer's, so the diagnosis sees what training sees.
    ``dataset``, ``data_dir`` and ``download`` are those of
    :func:`~initlab.datasets.families.load_dataset`, which raises on missing files.
    """
    data = load_dataset(dataset, data_dir=data_dir, download=download)
    x = data.train_images[:size].unsqueeze(1).float().div_(255.0)
    return x, data.train_labels[:size]


def diagnose_schemes(
    model: str,
    schemes: Sequence[str],
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    model_params: dict | None = None,
    seed: int = 0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[SchemeDiagnosis]:
    """Build zoo ``model`` once per scheme (same construction seed), initialize, diagnose.

    Args:
        model: zoo model name (``mlp``, ``resmlp``, ``cnn``, ...).
        schemes: scheme names with options, e.g. ``["normal", "xavier_normal", "lsuv"]``.
        batch: ``(inputs, labels)``.
        model_params: the model's keyword arguments.
        seed: seeds both the model's construction and the scheme's generator.
        loss_fn: the loss of ``(output, labels)`` whose backward pass is diagnosed; ``None``:
            cross-entropy of ``(B, classes)`` logits (a language model's ``(B, T, V)`` needs
            :func:`~initlab.experiments.core.sequence_cross_entropy`).

    Returns:
        One :class:`SchemeDiagnosis` per scheme, in order.

    Raises:
        ValueError: unknown model or scheme (close matches suggested).
    """
    results = []
    for scheme in schemes:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_model(model, **(model_params or {}))
        initialize(net, scheme, generator=torch.Generator().manual_seed(seed), batch=batch)
        d = diagnose(net, batch, loss_fn=loss_fn or nn.functional.cross_entropy)
        activation = (model_params or {}).get("activation", "relu")
        mf = mlp_mean_field(net, activation) if model == "mlp" else None
        results.append(SchemeDiagnosis(scheme, d, mf))
    return results


def mlp_mean_field(model: nn.Module, activation: str) -> MeanField | None:
    """Mean-field quantities of an MLP's square hidden layers at their current weights.

    ``weight_var`` is the average over square ``nn.Linear`` layers of ``fan_in * E[W^2]`` and
    ``bias_var`` the average ``E[b^2]``; see :func:`initlab.mean_field`. Returns None when the
    model has no square Linear layer.
    """
    square = [
        m for m in model.modules() if isinstance(m, nn.Linear) and m.in_features == m.out_features
    ]
    if not square:
        return None
    weight_var = sum(
        m.in_features * float(m.weight.detach().double().pow(2).mean()) for m in square
    )
    bias_var = sum(
        float(m.bias.detach().double().pow(2).mean()) if m.bias is not None else 0.0 for m in square
    )
    n = len(square)
    return mean_field(activation, weight_var / n, bias_var / n)


def format_mean_field(mf: MeanField) -> str:
    """One line: variances, chi_1, phase, xi_c and the trainable depth 6 xi_c."""
    depth = "any depth" if math.isinf(mf.xi_c) else f"about {mf.trainable_depth:.0f} layers"
    return (
        f"mean field ({mf.activation}): sigma_w^2={mf.weight_var:.4g} sigma_b^2={mf.bias_var:.3g} "
        f"chi_1={mf.chi_1:.4f} ({mf.phase}) xi_c={mf.xi_c:.3g}: trainable up to {depth} "
        "(6 xi_c, Schoenholz et al. 2017)"
    )


def init_record(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    path: str | os.PathLike,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Diagnose ``model`` at init on ``batch``, write the full diagnosis to ``path`` (JSON).

    ``loss_fn``: the loss of ``(output, target)`` whose backward pass the diagnosis measures;
    ``None``: cross-entropy of ``(B, classes)`` logits (a language model's ``(B, T, V)`` needs
    :func:`~initlab.experiments.core.sequence_cross_entropy`).

    What ``initlab compare`` stores for every run before training. The pass runs in the
    model's mode (train: what the first step sees) with the random state seeded to 0 inside it,
    so dropout masks are the same for every run and every rerun.

    Returns:
        The compact record for the run's ``init`` line: ``activation_std`` (std of every weight
        layer's output, by name, for the report's figure), ``verdicts`` (codes) and
        ``diagnosis`` (the file name).
    """
    device = batch[0].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        d = diagnose(model, batch, loss_fn=loss_fn or nn.functional.cross_entropy)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(d.to_dict()), fsync=False)  # a resume does not read it
    return {
        "activation_std": {r.name: r.std for r in d.layers if r.kind == "weight"},
        "verdicts": [v.code for v in d.verdicts],
        "diagnosis": path.name,
    }
