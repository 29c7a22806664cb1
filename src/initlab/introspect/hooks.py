"""Context managers that observe a model and leave it exactly as they found it.

Every hook registered here is removed on exit, also when the body raises; modes, the global
random state and the denormal setting are restored the same way. Pattern from fastai's
``callback/hook.py`` (hooks as context managers that always remove themselves).

Denormals (:func:`flush_denormal`). Adam's moments of weights whose gradient stays zero for a
while (the always-black pixels of MNIST at the first layer), softmax gradients of confident
predictions and vanishing signals decay into the subnormal range (below 1.2e-38 in float32),
where x86 arithmetic takes a slow microcode path: on the default comparison the later epochs
ran 1.5 times slower than the first. Flushing changes only values below 1.2e-38 (to zero).
TensorFlow flushes denormals on its CPU threads by default
(``tensorflow/core/platform/denormal.h``, ``ScopedFlushDenormal``).

:func:`torch.set_flush_denormal` sets the flush-to-zero and denormals-are-zero bits (FTZ/DAZ,
in x86's MXCSR register) of the calling thread only. PyTorch's intra-op workers, the OpenMP
team that ATen's ``parallel_for`` and MKL's products share, are created by the first parallel
operation of the process and keep the setting they had then. So a flag set later covers only
the calling thread's share of each parallel operation: measured here, a batched product of 18
``256 x 256`` matrices with subnormal products came out exactly half flushed on two threads,
and which elements were flushed depended on the thread that computed them. :func:`flush_denormal`
also sets the flag on each worker of the calling thread's team, by running
:func:`torch.set_flush_denormal` on every thread of one OpenMP parallel region:
``GOMP_parallel``, the entry point GCC compiles ``#pragma omp parallel`` to (GNU libgomp
manual, "The libgomp ABI", "Implementing PARALLEL construct"), called with ``ctypes`` on the
libgomp that PyTorch loaded. Where PyTorch runs on no libgomp (the macOS and Windows builds),
only the calling thread is set. A new thread inherits its creator's floating-point environment
(``pthread_create(3)``), so workers that PyTorch starts inside the block inherit it too.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

__all__ = ["flush_denormal", "forward_hooks", "preserved_modes", "preserved_rng", "leaf_modules"]


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return ``(qualified_name, module)`` for every module without children (the root if none)."""
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    return leaves or [("", model)]


@contextmanager
def forward_hooks(
    modules: Iterable[tuple[str, nn.Module]],
    hook: Callable,
    *,
    with_kwargs: bool = False,
) -> Iterator[None]:
    """Register ``hook(name, module, args, [kwargs,] output)`` on each module for the block.

    The hook's return value replaces the module's output, as in
    :meth:`torch.nn.Module.register_forward_hook`. All handles are removed on exit, also when
    registration or the body raises.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> seen = []
        >>> with forward_hooks(leaf_modules(model), lambda n, m, a, o: seen.append(n)):
        ...     _ = model(torch.zeros(1, 2))
        >>> seen, len(model[0]._forward_hooks)
        (['0'], 0)
    """
    with ExitStack() as stack:
        for name, module in modules:
            handle = module.register_forward_hook(
                lambda m, *rest, _n=name: hook(_n, m, *rest), with_kwargs=with_kwargs
            )
            stack.callback(handle.remove)
        yield


_TEAM_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_gomp: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not loaded


def _denormals_flushed() -> bool:
    """Whether the calling thread flushes denormals now (torch has no getter).

    A subnormal float32 doubled stays nonzero unless flushing is on.
    """
    return (torch.tensor([1e-39], dtype=torch.float32) * 2).item() == 0.0


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero inside the block, on the calling thread and on PyTorch's
    intra-op worker threads; restore the calling thread's previous setting on all of them on
    exit, also when the body raises.

    Flushing changes values below 1.2e-38 (float32; 2.2e-308 in float64) to zero and nothing
    else. Uses :func:`torch.set_flush_denormal` (a no-op on CPUs without SSE3's
    flush-to-zero); see the module docstring for how the workers are reached.

    Example:
        >>> with flush_denormal():
        ...     inside = float(torch.tensor([1e-20]) ** 2)
        >>> inside, float(torch.tensor([1e-20]) ** 2) > 0
        (0.0, True)
    """
    previous = _denormals_flushed()
    threads = torch.get_num_threads()
    _set_everywhere(True, threads)
    try:
        yield
    finally:
        # every worker the block may have used: the team at entry, or a larger one made inside
        _set_everywhere(previous, max(threads, torch.get_num_threads()))


def _set_everywhere(on: bool, threads: int) -> None:
    """``torch.set_flush_denormal(on)`` on the calling thread and on the first ``threads``
    threads of its OpenMP team (the calling thread is its thread 0).

    Not on the team while the interpreter shuts down: the workers' callbacks would wait for a
    GIL that is never handed out again.
    """
    gomp = _libgomp()
    torch.set_flush_denormal(on)
    if gomp is None or threads < 2 or sys.is_finalizing():
        return

    def each_thread(_data) -> None:
        torch.set_flush_denormal(on)

    callback = _TEAM_FUNCTION(each_thread)  # kept alive until GOMP_parallel returns
    gomp.GOMP_parallel(callback, None, threads, 0)


def _libgomp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime already loaded into this process by PyTorch, or ``None``.

    PyTorch's own copy (the wheels ship one in ``torch/lib``) when loaded, else the one
    libgomp of the process; ``None`` when there is none, or several and none is PyTorch's
    (another package's runtime has other threads).
    """
    global _gomp
    if _gomp is False:
        _gomp = None
        if torch.backends.openmp.is_available() and os.path.exists("/proc/self/maps"):
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                paths = {line.split()[-1] for line in maps if "libgomp" in line}
            home = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
            own = [path for path in paths if os.path.realpath(path).startswith(home)]
            for path in own or (list(paths) if len(paths) == 1 else []):
                try:  # RTLD_NOLOAD: only the copy already loaded, never a second one
                    library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
                    parallel = library.GOMP_parallel
                except (OSError, AttributeError):
                    continue
                parallel.argtypes = [_TEAM_FUNCTION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                parallel.restype = None
                _gomp = library
                break
    return _gomp


@contextmanager
def preserved_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's train/eval flag on exit (mixed modes survive)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global CPU (and, if initialized, CUDA) random state on exit."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
