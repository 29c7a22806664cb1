"""flush_denormal reaches PyTorch's intra-op workers, not only the calling thread.

The probe: a batched product whose every entry is 256 * (1e-22)^2 = 2.56e-42, a float32
subnormal. On two threads each worker computes part of the batch; an entry comes out 0 exactly
when the thread that computed it flushes. With the flag on the calling thread alone, one of two
threads flushes (half the entries are 0); any nonzero entry inside the block is a worker left out.
"""

import pytest
import torch

from initlab.introspect import hooks
from initlab.introspect.hooks import _denormals_flushed, flush_denormal

_SUPPORTED = torch.set_flush_denormal(True)  # False where the CPU cannot flush (not x86 SSE3)
torch.set_flush_denormal(False)
pytestmark = pytest.mark.skipif(
    not (_SUPPORTED and torch.backends.openmp.is_available()),
    reason="the CPU cannot flush denormals, or PyTorch is built without OpenMP",
)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.bmm(torch.randn(18, 64, 64), torch.randn(18, 64, 64))  # the team exists before
    yield
    torch.set_num_threads(before)


def _flushed_share() -> float:
    """Share of the probe product's entries flushed to zero (see the module docstring)."""
    a = torch.full((18, 256, 256), 1e-22)
    return float((torch.bmm(a, a) == 0).float().mean())


def _elementwise_flushed_share() -> float:
    x = torch.full((1 << 20,), 1e-20)  # 1e-40 squared: subnormal, elementwise in parallel
    return float((x * x == 0).float().mean())


def test_every_worker_flushes_inside_and_none_after(two_threads):
    if hooks._libgomp() is None:
        pytest.skip("PyTorch does not run on GNU libgomp here")
    assert _flushed_share() == 0.0 and _elementwise_flushed_share() == 0.0
    with flush_denormal():
        assert _flushed_share() == 1.0
        assert _elementwise_flushed_share() == 1.0
        assert _denormals_flushed()
    assert _flushed_share() == 0.0 and _elementwise_flushed_share() == 0.0
    assert not _denormals_flushed()


def test_restores_on_exception_and_keeps_an_outer_setting(two_threads):
    if hooks._libgomp() is None:
        pytest.skip("PyTorch does not run on GNU libgomp here")
    with pytest.raises(RuntimeError, match="boom"), flush_denormal():
        raise RuntimeError("boom")
    assert _flushed_share() == 0.0
    with flush_denormal():
        with flush_denormal():
            pass
        assert _flushed_share() == 1.0  # the inner block restored the outer block's setting
    assert _flushed_share() == 0.0


def test_workers_are_restored_when_the_block_lowered_the_thread_count(two_threads):
    if hooks._libgomp() is None:
        pytest.skip("PyTorch does not run on GNU libgomp here")
    with flush_denormal():
        torch.set_num_threads(1)  # the worker sits idle at exit, still flushing unless reset
    torch.set_num_threads(2)
    assert _flushed_share() == 0.0


def test_one_thread_calling_thread_only():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with flush_denormal():
            assert _flushed_share() == 1.0
        assert _flushed_share() == 0.0
    finally:
        torch.set_num_threads(before)
