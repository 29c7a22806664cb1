"""Steps a scheme runs after its policy: LSUV, Fixup and a pretrained load.

A step is a callable ``step(model, *, generator, batch=None, source=None)`` that changes
``model`` in place and returns its report (or ``None``). It declares what it needs, so that a
runner asks the scheme instead of comparing names:

* ``needs_batch``: a training batch (``batch``, a tensor or ``(inputs, ...)``);
* ``needs_source``: a checkpoint to load (``source``: a path, or a :class:`Source`);
* ``misfit_hint``: a sentence added when the step refuses a model (``""`` if none).

:class:`Step` is the base class; :class:`LSUV`, :class:`Fixup` and :class:`LoadPretrained` are
the built-in steps. A step that needs neither a batch nor a source runs in
:func:`~initlab.schemes.registry.check_fits`, so a model it refuses is refused before training.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from initlab._files import atomic_write
from initlab.datadriven.fixup import FixupReport, fixup_
from initlab.datadriven.lsuv import LSUVReport, lsuv_
from initlab.pretrained import LoadReport, load_pretrained

__all__ = ["LSUV", "Fixup", "LoadPretrained", "Source", "Step"]


@dataclass(frozen=True)
class Step:
    """A step after a scheme's policy (see the module docstring); subclasses define ``__call__``.

    Attributes:
        name: the step's name in reports and messages.
        needs_batch: the step reads a training batch.
        needs_source: the step loads a checkpoint.
        misfit_hint: added to the error when the step refuses a model.
    """

    name: ClassVar[str] = "step"
    needs_batch: ClassVar[bool] = False
    needs_source: ClassVar[bool] = False
    misfit_hint: ClassVar[str] = ""

    def __call__(self, model: nn.Module, *, generator: torch.Generator, batch=None, source=None):
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")


@dataclass(frozen=True)
class LSUV(Step):
    """Layer-sequential unit variance (Mishkin & Matas 2016, Alg. 1) on a training batch.

    Runs :func:`initlab.datadriven.lsuv_` with its defaults: orthogonal pre-initialization of
    every calibrated weight (Linear, Conv) from ``generator`` (the paper's step 1), then each
    layer rescaled until its output variance is 1 within 0.1.
    """

    name: ClassVar[str] = "lsuv"
    needs_batch: ClassVar[bool] = True

    def __call__(self, model, *, generator, batch=None, source=None) -> LSUVReport:
        return lsuv_(model, batch, generator=generator)


@dataclass(frozen=True)
class Fixup(Step):
    """Fixup's rules for residual blocks (Zhang et al. 2019, Sec. 3), after a He initialization.

    Runs :func:`initlab.datadriven.fixup_`: the branch layers but the last are redrawn He-normal
    and scaled by ``L^(-1/(2m-2))``, the last layer of each branch and the classifier are zero.
    """

    name: ClassVar[str] = "fixup"
    misfit_hint: ClassVar[str] = "fixup needs residual blocks: use model 'resmlp' or 'resnet'"

    def __call__(self, model, *, generator, batch=None, source=None) -> FixupReport:
        return fixup_(model, generator=generator)


@dataclass(frozen=True)
class Source:
    """A checkpoint for :class:`LoadPretrained`, prepared by the caller (e.g. by pretraining).

    Attributes:
        checkpoint: the file to load (safetensors or a PyTorch pickle of tensors).
        report: where to write the load report as JSON (:meth:`LoadReport.to_dict`); ``None``
            writes none.
    """

    checkpoint: str | os.PathLike
    report: str | os.PathLike | None = None


@dataclass(frozen=True)
class LoadPretrained(Step):
    """Load a source checkpoint with :func:`initlab.load_pretrained`; a new head by the policy.

    Every tensor of the checkpoint is copied but the layers ``new_head`` names (``"auto"``: the
    classifier, the last ``nn.Linear``), which the ``auto`` policy initializes afresh, as it does
    anything else the checkpoint lacks. Their random streams are seeded by the generator's seed
    (``generator.initial_seed()``, the ``seed`` of ``load_pretrained``), so a run's new head
    depends on its seed only, not on what was drawn before this step.

    Attributes:
        new_head: ``load_pretrained``'s ``new_head``.
        on_mismatch: ``load_pretrained``'s ``on_mismatch`` (``"error"``: any other shape
            mismatch refuses the load).
    """

    name: ClassVar[str] = "load_pretrained"
    needs_source: ClassVar[bool] = True

    new_head: str | None = "auto"
    on_mismatch: str = "error"

    def __call__(self, model, *, generator, batch=None, source=None) -> LoadReport:
        if not isinstance(source, Source):
            source = Source(source)
        report = load_pretrained(
            model,
            source.checkpoint,
            new_head=self.new_head,
            on_mismatch=self.on_mismatch,
            seed=generator.initial_seed(),
        )
        if source.report is not None:
            atomic_write(source.report, json.dumps(report.to_dict(), indent=2), fsync=False)
        return report
