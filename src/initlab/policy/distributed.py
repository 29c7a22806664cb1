"""Sharded parameters: each process initializes only the shard it holds.

``InitPlan.apply(seed=s)`` writes a ``torch.distributed.tensor.DTensor`` parameter (from
``distribute_tensor``, ``distribute_module`` or FSDP2's ``fully_shard``) shard by shard: every
rank fills its local tensor with exactly the entries the single-process ``apply(seed=s)`` gives
there, drawing only the random chunks that overlap its shard (see :mod:`initlab.policy.streams`
for the chunked streams and their cost). Nothing is communicated: the shards agree because each
entry's value depends only on the seed, the parameter's name and the entry's position.

Typical use, with the model built on the meta device so that no rank ever allocates a whole
parameter::

    with torch.device("meta"):
        model = build_model()
    init_plan = initlab.plan(model)              # plans from shapes; writes nothing
    fully_shard(model)                           # or distribute_module / distribute_tensor
    model.to_empty(device="cpu")                 # allocates the local shards only
    init_plan.apply(seed=0)                      # each rank fills its shards

``apply`` also recomputes the tensors ``to_empty`` left uninitialized that the plan does not
draw (buffers such as BatchNorm running statistics, frozen parameters) with their modules' own
init, or raises naming them (:mod:`initlab.policy.own_init`).
"""

from __future__ import annotations

import torch

__all__ = ["local_box"]


def local_box(
    param: torch.Tensor, name: str = "param"
) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """Return the tensor this process stores for ``param`` and its offset in the whole one.

    For a DTensor: its local shard (an alias: writing into it writes the parameter) and the
    global index of the shard's first entry, for any mesh and any ``Shard``/``Replicate``
    placements (uneven shards included, by DTensor's own rule, read through its public
    ``__create_chunk_list__``, the protocol of ``torch.distributed.checkpoint``). For a plain
    tensor: the tensor itself and ``None`` (the whole parameter).

    ``name`` only labels error messages.

    Raises:
        ValueError: for any other placement (``Partial``, ``_StridedShard``): its local tensor
            is not one box of the parameter; or if this rank holds more than one box.

    Example:
        >>> local, offset = local_box(torch.zeros(3, 4))
        >>> offset is None
        True
    """
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(param, dtensor):
        return param, None
    from torch.distributed.tensor import Replicate, Shard

    # exact types: a subclass such as _StridedShard (FSDP2 + tensor parallel) interleaves,
    # so its local tensor is not one box of the whole and an offset cannot describe it
    odd = [p for p in param.placements if type(p) not in (Shard, Replicate)]
    if odd:
        raise ValueError(
            f"sharded parameter {name!r} of shape {tuple(param.shape)} has placements "
            f"{list(param.placements)}; initlab fills Shard(dim) and Replicate() shards, "
            f"not {odd}"
        )
    # DTensor's public distributed-checkpoint protocol: one ChunkStorageMetadata (offsets,
    # sizes) per local shard, computed by DTensor's own sharding rule (the private
    # torch.distributed.tensor._utils.compute_local_shape_and_global_offset, which this uses)
    chunks = param.__create_chunk_list__()
    if len(chunks) != 1:
        raise ValueError(
            f"sharded parameter {name!r} of shape {tuple(param.shape)} has {len(chunks)} local "
            "shards on this rank; initlab fills one box per rank"
        )
    return param.to_local(), tuple(chunks[0].offsets)


def _dtensor_type():
    """DTensor's class, or None where torch.distributed is not built in."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor
