"""An optimizer over stacked runs whose hyperparameters differ per run and per parameter.

``torch.optim`` shares a parameter's hyperparameters across every element, so runs stacked into
one tensor ``(R, *shape)`` (:mod:`initlab.experiments.stacked`) step at one learning rate. Runs
at several rates (``initlab compare --lr-grid``, the rate grid of ``initlab transfer``) still
form one stack here: :class:`StackedOptimizer` steps each run's slice ``p[r]`` with its own rate,
epsilon and weight decay through PyTorch's own fused functional optimizers, so every run steps
as ``torch.optim`` steps it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.adam import adam as functional_adam
from torch.optim.sgd import sgd as functional_sgd

from initlab._checks import ArgumentError, one_of

__all__ = ["ADAM_BETAS", "OPTIMIZERS", "StackedOptimizer"]

#: The optimizers :class:`StackedOptimizer` implements.
OPTIMIZERS = ("adam", "adamw", "sgd")
#: PyTorch's default Adam betas (Kingma & Ba 2015, Algorithm 1).
ADAM_BETAS = (0.9, 0.999)


class StackedOptimizer:
    """Adam, AdamW or SGD with momentum over stacked parameters, hyperparameters per run.

    Each parameter ``(R, *shape)`` holds ``R`` runs; its learning rate, epsilon and weight
    decay are ``R`` numbers (a run's rate times the parameterization's multiplier for that
    parameter). Each step calls PyTorch's own functional optimizers with their fused kernels
    (``torch.optim.adam.adam``, ``torch.optim.sgd.sgd``, ``fused=True``), once per distinct
    ``(lr, eps, weight_decay)``, on the runs' slices ``p[r]`` (contiguous views: the kernel
    updates the stack in place). So every run steps exactly as ``torch.optim.Adam(fused=True)``
    (AdamW: ``decoupled_weight_decay``; SGD: ``torch.optim.SGD(fused=True)``) would step it
    alone (tests/test_transfer.py compares them bit for bit); one pass over memory, where an
    element-wise rewrite with per-run rate tensors took twice the forward and backward pass
    (0.8 s against 0.4 s per step for 27 runs of the 784-1024-1024-10 MLP, 1 thread).
    Adam: Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1, with
    PyTorch's L2 decay added to the gradient; AdamW: Loshchilov & Hutter 2019, "Decoupled
    Weight Decay Regularization", Algorithm 2; SGD with momentum ``b = mu * b + g``,
    ``p -= lr * b`` (dampening 0).

    A run's state has ``torch.optim``'s entries and layout (Adam/AdamW: ``step``, ``exp_avg``,
    ``exp_avg_sq``; SGD: ``momentum_buffer``), so :meth:`run_state` and
    :meth:`load_run_state` exchange it with a ``torch.optim`` optimizer of that run alone (a
    checkpoint of the stacked or the sequential trainer).

    Args:
        params: ``{name: stacked tensor (R, *shape)}``, leaves requiring grad, float.
        lr: ``{name: R rates}``.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        eps, weight_decay: ``{name: R values}``; ``None`` or a missing name: 1e-8 and 0.
        momentum: SGD momentum.

    Raises:
        ArgumentError: an unknown optimizer (the supported ones named).
    """

    def __init__(self, params, lr, optimizer="adam", *, eps=None, weight_decay=None, momentum=0.9):
        try:
            self.kind = one_of("optimizer", optimizer, OPTIMIZERS)
        except ValueError as error:
            raise ArgumentError("optimizer", str(error)) from None
        self.params = dict(params)
        self.momentum = momentum
        R = next(iter(self.params.values())).shape[0]
        # per (name, run): (lr, eps, weight decay), and the run's optimizer state
        self.hyper = {
            (n, r): (
                float(lr[n][r]),
                float((eps or {}).get(n, [1e-8] * R)[r]),
                float((weight_decay or {}).get(n, [0.0] * R)[r]),
            )
            for n in self.params
            for r in range(R)
        }
        self.state: dict[tuple[str, int], list] = {}
        self._regroup()

    def _regroup(self) -> None:
        """Index the runs by hyperparameters once (not per step) and slice the stack once."""
        self._groups: dict[tuple[float, float, float], list[tuple[str, int]]] = {}
        for key, hyper in self.hyper.items():
            self._groups.setdefault(hyper, []).append(key)
        # p.unbind(0): all R slices of a parameter in one call (views into the stack)
        self._slices = {n: p.detach().unbind(0) for n, p in self.params.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``set_to_none=False``: zero them in place, as torch.optim)."""
        for p in self.params.values():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """Step every run that has a gradient once, each with its own hyperparameters."""
        grads = {n: p.grad.unbind(0) for n, p in self.params.items() if p.grad is not None}
        for (lr, eps, wd), all_keys in self._groups.items():
            keys = [k for k in all_keys if k[0] in grads]
            if not keys:
                continue
            params = [self._slices[n][r] for n, r in keys]
            grad_list = [grads[n][r] for n, r in keys]
            if self.kind == "sgd":
                buffers = [self.state.get(k, [None])[0] for k in keys]
                functional_sgd(
                    params, grad_list, buffers, fused=True, weight_decay=wd,
                    momentum=self.momentum, lr=lr, dampening=0.0, nesterov=False,
                    maximize=False,
                )  # fmt: skip
                for k, buffer in zip(keys, buffers, strict=True):
                    self.state[k] = [buffer]
                continue
            for k, p in zip(keys, params, strict=True):
                if k not in self.state:
                    zero = torch.zeros((), dtype=torch.float32, device=p.device)
                    self.state[k] = [torch.zeros_like(p), torch.zeros_like(p), zero]
            states = [self.state[k] for k in keys]
            functional_adam(
                params, grad_list, [s[0] for s in states], [s[1] for s in states], [],
                [s[2] for s in states], fused=True,
                decoupled_weight_decay=self.kind == "adamw", amsgrad=False,
                beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=lr, weight_decay=wd, eps=eps,
                maximize=False,
            )  # fmt: skip

    def keep(self, rows: Sequence[int], params: dict[str, torch.Tensor]) -> None:
        """Keep only the runs ``rows`` (diverged runs leave); step ``params`` from now on.

        The kept runs' states are copied into the new row order (their slices of the old
        stack would keep the old stack alive and point into it).
        """
        self.params = dict(params)
        self.hyper = {
            (n, new): self.hyper[(n, old)] for n in params for new, old in enumerate(rows)
        }
        # a run's state tensors are its own (not views of the stack): they move with it
        self.state = {
            (n, new): self.state[(n, old)]
            for n in params
            for new, old in enumerate(rows)
            if (n, old) in self.state
        }
        self._regroup()

    def run_state(self, row: int) -> dict[str, dict[str, torch.Tensor]]:
        """Run ``row``'s state as ``torch.optim`` keeps it for that run alone.

        Returns:
            ``{parameter name: {entry: tensor}}``, the tensors this optimizer's own (not
            copies); Adam/AdamW: ``step`` (0-dim float32), ``exp_avg``, ``exp_avg_sq``; SGD:
            ``momentum_buffer``. A parameter not stepped yet has no entry.
        """
        out: dict[str, dict[str, torch.Tensor]] = {}
        for n in self.params:
            state = self.state.get((n, row))
            if state is None:
                continue
            if self.kind == "sgd":
                if state[0] is not None:  # momentum 0 keeps no buffer (as torch.optim.SGD)
                    out[n] = {"momentum_buffer": state[0]}
            else:
                out[n] = {"step": state[2], "exp_avg": state[0], "exp_avg_sq": state[1]}
        return out

    def load_run_state(self, row: int, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Continue run ``row`` from ``state`` (:meth:`run_state`'s or ``torch.optim``'s layout).

        The tensors are copied to the parameter's device and dtype (``step`` stays float32),
        so ``state`` stays what was saved.

        Raises:
            ValueError: ``state`` names a parameter this optimizer lacks, or lacks an entry of
                this optimizer (``exp_avg``, ``exp_avg_sq``, ``step`` or ``momentum_buffer``).
        """
        unknown = sorted(set(state) - set(self.params))
        if unknown:
            raise ValueError(f"the optimizer state names parameters the model lacks: {unknown}")
        needed = ("momentum_buffer",) if self.kind == "sgd" else ("exp_avg", "exp_avg_sq", "step")
        for n, entries in state.items():
            missing = [k for k in needed if k not in entries]
            if missing:
                raise ValueError(f"the optimizer state of {n!r} lacks {missing}")
            p = self.params[n]

            def copy(t: torch.Tensor, p=p) -> torch.Tensor:
                return t.detach().to(device=p.device, dtype=p.dtype, copy=True)

            if self.kind == "sgd":
                self.state[(n, row)] = [copy(entries["momentum_buffer"])]
            else:
                step = entries["step"].detach().to(p.device, torch.float32, copy=True)
                self.state[(n, row)] = [copy(entries["exp_avg"]), copy(entries["exp_avg_sq"]), step]
