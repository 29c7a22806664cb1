"""Context managers that observe a model and leave it exactly as they found it.

Every hook registered here is removed on exit, also when the body raises; modes, the global
random state and the denormal setting are restored the same way. Pattern from fastai's
``callback/hook.py`` (hooks as context managers that always remove themselves).
"""

from __future__ import annotations

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


def _denormals_flushed() -> bool:
    # torch has no getter: a subnormal float32 doubled stays nonzero unless flushing is on.
    return (torch.tensor([1e-39], dtype=torch.float32) * 2).item() == 0.0


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush subnormal floats to zero inside the block, then restore the previous setting.

    Vanishing signals produce subnormal numbers, which x86 CPUs process an order of magnitude
    slower; flushing them changes values below 1.2e-38 (float32) to zero and nothing else.
    Uses :func:`torch.set_flush_denormal` (a no-op on CPUs without SSE3 flush support).
    """
    previous = _denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(previous)


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
