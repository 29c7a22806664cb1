"""The runner's part of schemes that load a source checkpoint (``pretrained``): pretraining.

This measures the advice "small datasets: prefer pretrained". A scheme whose steps need a
source (:attr:`initlab.schemes.Scheme.needs_source`) gets, for each run seed:

1. the zoo model trained on the source dataset (by default the full embedded MNIST),
   initialized by the ``xavier-then-he`` scheme, for :attr:`PretrainConfig.epochs` epochs with
   the comparison's optimizer settings, its weights saved as
   ``pretrained/<dataset>-seed<k>.safetensors`` in the run directory (with ``.json`` metrics
   beside it); an existing checkpoint is reused, so a resumed sweep does not pretrain again
   (:func:`pretrain`);
2. that checkpoint as the scheme's :class:`~initlab.schemes.steps.Source`, with its load report
   going to ``pretrained/load-seed<k>.json`` (:func:`source_for_run`). The scheme's own step
   (:class:`~initlab.schemes.steps.LoadPretrained`) loads it into a fresh model for the target
   dataset with ``new_head="auto"``: every tensor but the classifier (the last ``nn.Linear``)
   is copied, the classifier is initialized afresh by the ``auto`` policy (its classes mean
   something else on the target dataset);
3. the run fine-tunes it like every other scheme, on the same (small) training subset and batch
   order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from safetensors.torch import save
from torch import nn

from initlab._files import atomic_write
from initlab.datasets.families import load_dataset
from initlab.experiments.config import PretrainConfig
from initlab.experiments.trainer import (
    TensorData,
    TrainConfig,
    build_initialized,
    resolve_device,
    train,
)
from initlab.reports.compare import count
from initlab.schemes import Source

__all__ = [
    "PRETRAIN_SCHEME",
    "PretrainConfig",
    "build_for_run",
    "pretrain",
    "source_for_run",
]

log = logging.getLogger(__name__)

#: The initialization of the network that is pretrained: the reference example's, the baseline.
PRETRAIN_SCHEME = "xavier-then-he"


def pretrain(
    config: PretrainConfig,
    model: str,
    *,
    seed: int,
    train_config: TrainConfig,
    out_dir: str | Path,
    model_params: dict | None = None,
) -> Path:
    """Pretrain zoo ``model`` on ``config.dataset`` and save it; return the safetensors path.

    Reuses ``out_dir/pretrained/<dataset>-seed<seed>.safetensors`` if it exists.

    Args:
        config: the source dataset and epochs.
        model: zoo model name; ``model_params`` its keyword arguments.
        seed: run seed (initialization and batch order of the pretraining run).
        train_config: optimizer settings; its ``epochs`` and ``seed`` are replaced.
        out_dir: the comparison's output directory.

    Returns:
        The checkpoint's path.

    Raises:
        RuntimeError: the pretraining run diverged (there is nothing sensible to transfer).
    """
    folder = Path(out_dir) / "pretrained"
    path = folder / f"{config.dataset}-seed{seed}.safetensors"
    if path.exists():
        log.info("reusing pretrained checkpoint %s", path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    if config.subset is not None:
        dataset = dataset.subset(config.subset, None, seed=seed)
    data = TensorData.from_dataset(dataset, resolve_device(train_config.device))
    net = build_initialized(model, PRETRAIN_SCHEME, seed=seed, model_params=model_params)
    settings = dataclasses.replace(train_config, epochs=config.epochs, seed=seed)
    epochs = count(config.epochs, "epoch")
    log.info("pretraining %s on %s (seed %d, %s)", model, config.dataset, seed, epochs)
    result = train(net, data, settings)
    if result.status != "finished":
        raise RuntimeError(f"pretraining {model} on {config.dataset} with seed {seed} diverged")
    metrics = {
        "dataset": config.dataset,
        "train_size": len(dataset.train_labels),
        "seed": seed,
        "scheme": PRETRAIN_SCHEME,
        "epochs": [dataclasses.asdict(e) for e in result.epochs],
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    # atomic: an interrupted run never leaves half a checkpoint to reuse
    atomic_write(path, save(state, metadata={"dataset": config.dataset, "seed": str(seed)}))
    atomic_write(folder / f"{config.dataset}-seed{seed}.json", json.dumps(metrics, indent=2))
    return path


def source_for_run(config, seed: int, out_dir: str | Path) -> Source:
    """Return the source checkpoint of one run of a comparison, pretraining it if needed.

    Args:
        config: the comparison's :class:`~initlab.experiments.config.CompareConfig` (its
            ``pretrain``, ``model``, ``model_params`` and ``train`` are read).
        seed: the run seed.
        out_dir: the comparison's output directory; the checkpoint and, once the scheme's step
            has loaded it, the load report go to its ``pretrained/`` folder.

    Returns:
        A :class:`~initlab.schemes.steps.Source` for the scheme's load step.
    """
    path = pretrain(
        config.pretrain,
        config.model,
        seed=seed,
        train_config=config.train,
        out_dir=out_dir,
        model_params=config.model_params,
    )
    return Source(path, report=Path(out_dir) / "pretrained" / f"load-seed{seed}.json")


def build_for_run(config, seed: int, out_dir: str | Path, scheme: str = "pretrained") -> nn.Module:
    """Return the model of one run of ``scheme`` (one that loads a source), ready to fine-tune.

    The source is :func:`source_for_run`'s; the model is built and initialized as every run is
    (:func:`~initlab.experiments.trainer.build_initialized`). ``bias_init`` does not apply:
    loaded biases stay loaded, the new head's bias follows the policy.
    """
    return build_initialized(
        config.model,
        scheme,
        seed=seed,
        model_params=config.model_params,
        source=source_for_run(config, seed, out_dir),
    )
