"""The ``pretrained`` scheme of ``initlab compare``: pretrain on one dataset, fine-tune on another.

This measures the seed's advice "small datasets: prefer pretrained". For each run seed:

1. train the zoo model on the source dataset (by default the full embedded MNIST), initialized
   by the ``seed`` scheme, for :attr:`PretrainConfig.epochs` epochs with the comparison's
   optimizer settings, and save its weights as ``pretrained/<dataset>-seed<k>.safetensors`` in
   the run directory (with ``.json`` metrics beside it); an existing checkpoint is reused, so a
   resumed sweep does not pretrain again;
2. build a fresh model for the target dataset and :func:`initlab.load_pretrained` that
   checkpoint with ``new_head="auto"``: every tensor but the classifier (the last
   ``nn.Linear``) is copied, the classifier is initialized afresh by the ``auto`` policy (its
   classes mean something else on the target dataset), and the load report is saved as
   ``pretrained/load-seed<k>.json``;
3. fine-tune it like every other scheme, on the same (small) training subset and batch order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from initlab.datasets.families import load_dataset
from initlab.experiments.report import count
from initlab.experiments.trainer import (
    TensorData,
    TrainConfig,
    build_initialized,
    resolve_device,
    run_seeds,
    train,
)
from initlab.pretrained import load_pretrained
from initlab.zoo.models import build_model

__all__ = [
    "PRETRAINED",
    "PRETRAIN_SCHEME",
    "PretrainConfig",
    "build_for_run",
    "build_pretrained",
    "pretrain",
]

log = logging.getLogger(__name__)

#: The scheme name that ``initlab compare`` routes here.
PRETRAINED = "pretrained"
#: The initialization of the network that is pretrained: the seed's own scheme, the baseline.
PRETRAIN_SCHEME = "seed"


@dataclass(frozen=True)
class PretrainConfig:
    """Where the ``pretrained`` scheme's weights come from; saved inside ``config.json``.

    Attributes:
        dataset: source dataset name for :func:`~initlab.datasets.families.load_dataset`.
        data_dir: directory to read it from (``None``: embedded MNIST or the system paths).
        subset: train on a seeded random subset of this size (``None``: the whole training set).
        epochs: pretraining epochs, >= 1.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    subset: int | None = None
    epochs: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"pretrain epochs must be an int >= 1; got epochs={self.epochs!r}")


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
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"dataset": config.dataset, "seed": str(seed)})
    tmp.replace(path)  # atomic: an interrupted run never leaves half a checkpoint to reuse
    (folder / f"{config.dataset}-seed{seed}.json").write_text(json.dumps(metrics, indent=2))
    return path


def build_pretrained(
    model: str, checkpoint: str | Path, *, seed: int, model_params: dict | None = None
) -> tuple[nn.Module, dict]:
    """Build zoo ``model``, load ``checkpoint`` with a new head; return it and the load report.

    The classifier (last ``nn.Linear``) is initialized by the ``auto`` policy from the run's
    init stream; every other tensor is the checkpoint's, bit for bit.

    Returns:
        ``(model, report.to_dict())``.
    """
    init_seed = run_seeds(seed)[0]
    # Construction draws PyTorch's default init from the global RNG: fork it, as
    # build_initialized does, so the global stream is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        net = build_model(model, **(model_params or {}))
    report = load_pretrained(net, checkpoint, new_head="auto", on_mismatch="error", seed=init_seed)
    return net, report.to_dict()


def build_for_run(config, seed: int, out_dir: str | Path) -> nn.Module:
    """Return the model of one ``pretrained`` run of a comparison, ready to fine-tune.

    Args:
        config: the comparison's :class:`~initlab.experiments.sweep.CompareConfig` (its
            ``pretrain``, ``model``, ``model_params`` and ``train`` are read; ``bias_init`` does
            not apply: loaded biases stay loaded, the new head's bias follows the policy).
        seed: the run seed.
        out_dir: the comparison's output directory; the checkpoint and the load report go to
            its ``pretrained/`` folder.
    """
    path = pretrain(
        config.pretrain,
        config.model,
        seed=seed,
        train_config=config.train,
        out_dir=out_dir,
        model_params=config.model_params,
    )
    net, report = build_pretrained(config.model, path, seed=seed, model_params=config.model_params)
    (Path(out_dir) / "pretrained" / f"load-seed{seed}.json").write_text(
        json.dumps(report, indent=2)
    )
    return net
