"""Sharded initialization: every shard of every partition equals the single-process apply.

Two layers of proof. In process, :func:`fill_box_` fills the boxes of a partition of each
parameter (1 to 5 parts along every dimension, PyTorch's ``torch.chunk`` rule, as DTensor's
``Shard``; and 2-D grids) and the assembled tensor must equal ``apply(seed)`` bit for bit. Under
``torchrun`` (2 processes, gloo, 127.0.0.1), real DTensor and FSDP2 parameters are built on the
meta device, allocated shard by shard with ``to_empty`` and filled by ``InitPlan.apply``; the
gathered tensors must equal the single-process result bit for bit, and each rank must have
drawn only the chunks its shard overlaps. This file is also the torchrun worker
(``python -m torch.distributed.run ... tests/test_distributed.py``).
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import initlab
from initlab.policy import streams
from initlab.policy.distributed import local_box
from initlab.policy.streams import CHUNK, fill_box_

SEED = 1234


class Net(nn.Module):
    """Every drawable distribution, with parameters of 1 to 3 chunks and odd sizes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1100, 300, padding_idx=0)  # 330000 entries: 2 chunks, pad row
        self.lstm = nn.LSTM(300, 40)  # orthogonal per gate, forget bias 1 (constant per block)
        self.conv = nn.Conv1d(40, 70, 5)  # 3-D weight
        self.head = nn.Linear(70, 9)  # odd sizes: uneven shards


def _applied(policy: str = "auto") -> tuple[Net, initlab.InitPlan]:
    torch.manual_seed(0)
    net = Net()
    return net, initlab.plan(net, policy).apply(seed=SEED)


def _recording(drawn: list, original):
    """Wrap ``streams._draw_chunk`` to record (parameter name, chunk index) of every draw."""

    def draw(buf, row, seed, k, generator):
        drawn.append((row.name, k))
        return original(buf, row, seed, k, generator)

    return draw


def _boxes(shape, parts: int, dim: int):
    """(offset, size) of each part along ``dim``, by torch.chunk's rule (DTensor's Shard)."""
    step = -(-shape[dim] // parts)
    for start in range(0, shape[dim], step):
        size = min(step, shape[dim] - start)
        offset = tuple(start if d == dim else 0 for d in range(len(shape)))
        yield offset, tuple(size if d == dim else n for d, n in enumerate(shape))


@pytest.mark.parametrize("policy", ["auto", "keras"])  # keras: truncated normals
def test_any_partition_along_any_dim_assembles_to_apply(policy):
    net, p = _applied(policy)
    params = dict(net.named_parameters())
    assert {r.distribution for r in p.rows} >= {"orthogonal", "constant"}
    for row in p.rows:
        whole = params[row.name].detach()
        for dim, parts in itertools.product(range(whole.ndim), range(1, 6)):
            pieces = []
            for offset, size in _boxes(whole.shape, parts, dim):
                piece = torch.empty(size)
                fill_box_(piece, row, SEED, offset)
                pieces.append(piece)
            assert torch.equal(torch.cat(pieces, dim), whole), (row.name, dim, parts)


def test_rows_longer_than_a_chunk():
    # (3, 2, 150001): a row along dim 1 spans 300002 entries, more than a chunk, so chunks
    # start and end inside rows and a shard's runs straddle chunk boundaries
    net = nn.Module()
    net.big = nn.Parameter(torch.empty(3, 2, 150001))
    p = initlab.plan(net, [initlab.Rule(name="big", init="normal", param="big", std=1.0)])
    p.apply(seed=SEED)
    row, whole = p["big"], net.big.detach()
    for dim, parts in itertools.product(range(3), range(2, 5)):
        pieces = []
        for offset, size in _boxes(whole.shape, parts, dim):
            piece = torch.empty(size)
            fill_box_(piece, row, SEED, offset)
            pieces.append(piece)
        assert torch.equal(torch.cat(pieces, dim), whole), (dim, parts)
    corner = torch.empty(2, 1, 70000)  # a box cut on all three dims
    fill_box_(corner, row, SEED, (1, 1, 80000))
    assert torch.equal(corner, whole[1:3, 1:2, 80000:150000])


def test_grid_partition_on_two_dims_and_other_dtypes():
    net, p = _applied()
    row, whole = p["embed.weight"], net.embed.weight.detach()
    for (o0, s0), (o1, s1) in itertools.product(
        [(0, 700), (700, 400)], [(0, 1), (1, 150), (151, 149)]
    ):
        piece = torch.empty(s0, s1, dtype=torch.float64)
        fill_box_(piece, row, SEED, (o0, o1))
        assert torch.equal(piece, whole[o0 : o0 + s0, o1 : o1 + s1].double())
    assert not whole[0].any()  # the padding row is zero in every box that holds it
    bf16 = torch.empty(whole.shape, dtype=torch.bfloat16)
    fill_box_(bf16, row, SEED)
    assert torch.equal(bf16, whole.bfloat16())


def test_a_shard_along_dim_0_draws_only_the_chunks_it_overlaps(monkeypatch):
    net, p = _applied()
    row = p["embed.weight"]  # 330000 entries: chunks 0 and 1
    drawn = []
    monkeypatch.setattr(streams, "_draw_chunk", _recording(drawn, streams._draw_chunk))
    fill_box_(torch.empty(500, 300), row, SEED, (0, 0))  # entries [0, 150000): chunk 0 only
    assert drawn == [(row.name, 0)]
    drawn.clear()
    fill_box_(torch.empty(200, 300), row, SEED, (900, 0))  # [270000, 330000): chunk 1 only
    assert drawn == [(row.name, 1)] and 270000 // CHUNK == 1


def test_box_outside_the_parameter_and_undrawable_rows_raise():
    _, p = _applied()
    row = p["head.weight"]
    with pytest.raises(ValueError, match=r"box at offset=\(5, 0\) of size \(5, 70\) does not lie"):
        fill_box_(torch.empty(5, 70), row, SEED, (5, 0))
    keep = initlab.PlanRow(**{**row.__dict__, "distribution": "keep"})
    with pytest.raises(ValueError, match="distribution 'keep'; fill_box_ draws"):
        fill_box_(torch.empty(9, 70), keep, SEED)


def test_chunk_k_comes_from_its_documented_stream():
    net, p = _applied()
    row, flat = p["embed.weight"], net.embed.weight.detach().flatten()
    assert row.distribution == "normal" and flat.numel() == 330000 and CHUNK == 2**18
    g = torch.Generator().manual_seed(streams.stream_seed(SEED, "embed.weight", "1"))
    chunk_1 = torch.empty(330000 - CHUNK).normal_(0.0, row.std, generator=g)
    assert torch.equal(flat[CHUNK:], chunk_1)  # rows past the padding row 0: untouched by it


def test_scalar_parameters_are_drawn_and_set():
    net = nn.Module()
    net.temperature, net.shift = nn.Parameter(torch.tensor(9.0)), nn.Parameter(torch.tensor(9.0))
    rules = [
        initlab.Rule(name="temperature", init="constant", param="temperature", value=0.5),
        initlab.Rule(name="shift", init="normal", param="shift", std=0.1),
    ]
    p = initlab.plan(net, rules)
    p.apply(seed=SEED)
    assert net.temperature.item() == 0.5
    g = torch.Generator().manual_seed(streams.stream_seed(SEED, "shift", "0"))
    assert net.shift.item() == torch.empty(1).normal_(0, 0.1, generator=g).item()


def test_local_box_of_a_plain_tensor_is_the_whole_tensor():
    t = torch.zeros(3, 4)
    local, offset = local_box(t)
    assert local is t and offset is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_ranks_dtensor_and_fsdp2_equal_single_process():
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(Path(__file__)),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("rank ok") == 2, done.stdout


# ---- the torchrun worker -------------------------------------------------------------------


def _worker() -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    reference, ref_plan = _applied()
    expected = {n: t.detach() for n, t in reference.named_parameters()}

    for placement in (Shard(0), Shard(1), Replicate()):
        drawn = []
        original = streams._draw_chunk
        streams._draw_chunk = _recording(drawn, original)
        with torch.device("meta"):
            net = Net()
        p = initlab.InitPlan.from_dict(ref_plan.to_dict(), net)
        for module in net.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                fits = not isinstance(placement, Shard) or param.ndim > placement.dim
                sharded = distribute_tensor(param, mesh, [placement if fits else Replicate()])
                module.register_parameter(name, nn.Parameter(sharded))
        net.to_empty(device="cpu")  # allocates each rank's shards only
        p.apply(seed=SEED)
        streams._draw_chunk = original
        for name, param in net.named_parameters():
            local, _ = local_box(param)
            if isinstance(placement, Shard) and param.shape[0] > 1 and param.ndim > placement.dim:
                assert local.numel() < param.numel(), (name, placement)
            assert torch.equal(param.full_tensor(), expected[name]), (rank, name, placement)
        embed_chunks = sorted(k for n, k in drawn if n == "embed.weight")
        if isinstance(placement, Shard) and placement.dim == 0:
            # rows [0, 550) are entries [0, 165000): chunk 0; rows [550, 1100): chunks 0 and 1
            assert embed_chunks == ([0] if rank == 0 else [0, 1]), embed_chunks

    with torch.device("meta"):
        net = Net()
    p = initlab.InitPlan.from_dict(ref_plan.to_dict(), net)
    for layer in (net.embed, net.lstm, net.conv, net.head):
        fully_shard(layer, mesh=mesh)
    fully_shard(net, mesh=mesh)
    net.to_empty(device="cpu")
    p.apply(seed=SEED)
    for name, param in net.named_parameters():
        assert torch.equal(param.full_tensor(), expected[name]), (rank, name, "fsdp2")
    # uneven shards, by DTensor's own rule (torch.chunk: 5 rows on 2 ranks are 3 and 2)
    for placement, offsets in ((Shard(0), [(0, 0), (3, 0)]), (Shard(1), [(0, 0), (0, 2)])):
        uneven = distribute_tensor(torch.arange(15.0).view(5, 3), mesh, [placement])
        local, offset = local_box(uneven, "uneven")
        assert offset == offsets[rank], (rank, placement, offset)
        rows, cols = local.shape
        whole = torch.arange(15.0).view(5, 3)
        assert torch.equal(local, whole[offset[0] : offset[0] + rows, offset[1] : offset[1] + cols])
    _, offset = local_box(distribute_tensor(torch.zeros(5, 3), mesh, [Replicate()]), "replica")
    assert offset == (0, 0), offset
    partial = DTensor.from_local(torch.zeros(2), mesh, [Partial()])
    try:
        local_box(partial, "bias")
        raise AssertionError("a Partial placement must be refused")
    except ValueError as error:
        assert "sharded parameter 'bias' of shape (2,) has placements" in str(error), error
    print(f"rank ok {rank}/{world}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker()
    # Every check has passed and been printed. Leave without the interpreter's teardown: a
    # background thread of the gloo/FSDP2 runtime can still be joinable then, and its C++
    # destructor aborts the process ("terminate called without an active exception", exit -6)
    # about once in a few runs on a loaded 2-core machine, after "rank ok" was printed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
