"""TensorBoard logging of training runs: each run's epoch records as scalars, one run per folder.

TensorBoard is where practitioners look at training curves; this module writes there what
``results.jsonl`` holds, and nothing that would change training: it only reads each
:class:`~initlab.experiments.core.EpochRecord` after its epoch has been recorded.

Layout: one TensorBoard run directory per initlab run id, ``DIR/<run id>`` (``DIR/seed/0``,
``DIR/normal:std=0.1/2``, ``DIR/seed@0.001/0`` in a learning-rate grid), each read by TensorBoard
as the run ``<run id>``.

Scalars, each at the optimizer step of its measurement, counted from the start of training (the
step that :attr:`EpochRecord.loss_curve` counts in; an epoch ends at step ``epoch * steps``, as
every epoch of a run takes the same number of steps):

- per epoch, at the epoch's last step: ``loss/train`` (mean batch loss of the epoch),
  ``loss/test``, ``accuracy/test`` (a fraction, as in ``results.jsonl``), with a validation
  split ``loss/val`` and ``accuracy/val``, ``grad_norm/<parameter name>`` (the epoch's mean L2
  norm of that parameter's gradient) and ``epoch`` (the epoch's number, to read the step axis in
  epochs);
- per loss window, at the window's last step: ``loss/train_window`` (the mean batch loss of the
  window; none when ``log_every=0``).

TensorBoard stores scalars as 32-bit floats: the values are ``results.jsonl``'s rounded to
float32.

A run's writer is opened with ``purge_step`` at the first step of the first epoch it logs, so a
resumed run (``--resume``), which retrains the epoch it stopped in, and a new run into a
directory that already holds the same run id replace what is there from that step on instead of
drawing it twice (TensorBoard hides the older events at those steps; see
``torch.utils.tensorboard.SummaryWriter``'s ``purge_step``).

Writing uses ``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard`` package,
an optional dependency: ``pip install 'initlab[tensorboard]'``. It is imported only when a
:class:`TensorBoardLog` is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from initlab._checks import ArgumentError
from initlab.experiments.core import EpochRecord

__all__ = ["INSTALL", "TensorBoardLog", "tensorboard_available"]

#: How to install the optional dependency.
INSTALL = "pip install 'initlab[tensorboard]'"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` imports, i.e. the ``tensorboard`` package is installed.

    Importing it takes a second or so; it is done once, when asked.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardLog:
    """Write runs' epoch records as TensorBoard scalars under ``log_dir/<run id>``.

    Call it as ``log(run_id, record)`` after each epoch (the signature of
    :func:`~initlab.experiments.sweep.run_sweep`'s ``on_epoch``); every call is flushed to disk,
    so TensorBoard shows an epoch as soon as it ends. Close it (or use it as a context manager)
    when training ends. See the module docstring for the tags, steps and purging.

    Args:
        log_dir: the TensorBoard log directory (``tensorboard --logdir log_dir``); created,
            with a run's folder, when that run logs its first epoch.
        argument: the name an error gives ``log_dir`` (``run_sweep`` calls it ``tensorboard``).

    Raises:
        ArgumentError: (argument ``argument``) the ``tensorboard`` package is not installed;
            raised by the constructor, before anything is written.

    Example:
        >>> with TensorBoardLog("runs/tb") as log:  # doctest: +SKIP
        ...     train(net, data, config, on_epoch=lambda record: log("seed/0", record))
    """

    def __init__(self, log_dir: str | os.PathLike, *, argument: str = "log_dir"):
        if not tensorboard_available():
            raise ArgumentError(
                argument,
                f"TensorBoard logging needs the tensorboard package, which is not installed: "
                f"{INSTALL}; got {argument}={os.fspath(log_dir)!r}",
            )
        self.log_dir = Path(log_dir)
        self._writers: dict = {}  # run id -> SummaryWriter

    def __call__(self, run: str, record: EpochRecord) -> None:
        """Write ``record``, an epoch of run ``run``, and flush it."""
        end = record.epoch * record.steps  # the epoch's last step, counted from the start
        writer = self._writers.get(run)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            first = end - record.steps + 1  # the epoch's first step
            writer = SummaryWriter(str(self.log_dir / run), purge_step=first)
            self._writers[run] = writer
        scalars = {
            "loss/train": record.train_loss,
            "loss/test": record.test_loss,
            "accuracy/test": record.test_accuracy,
        }
        if record.val_accuracy is not None:
            scalars["loss/val"] = record.val_loss
            scalars["accuracy/val"] = record.val_accuracy
        scalars.update({f"grad_norm/{name}": norm for name, norm in record.grad_norms.items()})
        scalars["epoch"] = record.epoch
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, end)
        for step, loss in record.loss_curve:
            writer.add_scalar("loss/train_window", loss, step)
        writer.flush()

    def then(
        self, on_epoch: Callable[[str, EpochRecord], None] | None
    ) -> Callable[[str, EpochRecord], None]:
        """A callback that logs an epoch, then calls ``on_epoch`` (if any) with it."""
        if on_epoch is None:
            return self

        def both(run: str, record: EpochRecord) -> None:
            self(run, record)
            on_epoch(run, record)

        return both

    def close(self) -> None:
        """Flush and close every run's writer."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
