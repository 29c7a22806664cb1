"""Run one comparison across processes with torch.distributed: split the runs, gather on rank 0.

Under ``torchrun --nproc-per-node N -m initlab compare ...`` (or several machines), every
process joins the gloo process group from torchrun's environment (``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``). Rank 0 decides what to run (new sweep or resume)
and tells the others; rank ``r`` trains the runs ``r::world`` of the scheme x seed grid; rank 0
gathers every rank's ``results.jsonl`` lines and writes the one report. Without torchrun
(``WORLD_SIZE`` unset or 1) the same code is a single process and nothing is communicated.

Object collectives (``broadcast_object_list``, ``gather_object``) pickle their payload: the
peers are this job's own processes, never an outside source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch.distributed as dist

__all__ = ["Ranks", "is_main_process", "session"]

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` in ``[0, world)``; ``world`` processes in all."""

    rank: int = 0
    world: int = 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """Return this rank's share of ``items``: every ``world``-th item from index ``rank``."""
        return list(items[self.rank :: self.world])

    def from_main(self, compute: Callable[[], T]) -> T:
        """Run ``compute`` on rank 0 and return its value on every rank.

        An exception raised on rank 0 is sent along and raised on every rank, so that no rank
        waits for a value that never comes.
        """
        if self.world == 1:
            return compute()
        box: list = [None]
        if self.rank == 0:
            try:
                box[0] = (True, compute())
            except Exception as error:
                box[0] = (False, error)
        dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def gather(self, value: T) -> list[T] | None:
        """Return every rank's ``value`` in rank order on rank 0, ``None`` on the others."""
        if self.world == 1:
            return [value]
        out: list | None = [None] * self.world if self.rank == 0 else None
        dist.gather_object(value, out, dst=0)
        return out


@contextmanager
def session() -> Iterator[Ranks]:
    """Join the torchrun process group (gloo) for the duration, or stand alone.

    Uses a process group the caller already initialized (and leaves it open); otherwise
    initializes one from the environment when ``WORLD_SIZE`` > 1 and destroys it on exit.

    Yields:
        This process's :class:`Ranks`.
    """
    if dist.is_available() and dist.is_initialized():
        yield Ranks(dist.get_rank(), dist.get_world_size())
        return
    if _env_world() <= 1:
        yield Ranks()
        return
    # gloo: CPU tensors and object collectives, on any machine (NCCL needs one GPU per rank).
    dist.init_process_group("gloo")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Say whether this process is rank 0 (always true outside torchrun); the CLI prints there."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))
