"""Steps of the classic experiments: zero-gamma for residual blocks, a forget bias for any scheme.

* :class:`ZeroGamma`: the weight (gamma) of the last normalization layer of every residual
  branch set to 0, so that each block starts as the identity (Goyal, Dollar, Girshick, Noordhuis,
  Wesolowski, Kyrola, Tulloch, Jia and He, "Accurate, Large Minibatch SGD: Training ImageNet in
  1 Hour", 2017, Sec. 5.1). It is :func:`initlab.datadriven.fixup_` with
  ``variant="zero_norm"``; the ``zero_gamma`` scheme runs it after He-normal weights.
* :class:`ForgetBias`: the forget-gate bias of every LSTM (and the update-gate bias of every GRU)
  set to a value, whatever scheme drew the rest (:func:`set_forget_bias_`). Any scheme takes it
  as the option ``forget_bias`` (``xavier_uniform:forget_bias=1``): :func:`with_forget_bias`
  appends the step to a copy of the scheme.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.datadriven.fixup import FixupReport, fixup_
from initlab.schemes.recurrent import recurrent_layers
from initlab.schemes.scheme import Scheme
from initlab.schemes.steps import Step

__all__ = ["ForgetBias", "ZeroGamma", "set_forget_bias_", "with_forget_bias"]

#: The option name every scheme accepts (:func:`with_forget_bias`).
FORGET_BIAS = "forget_bias"


@dataclass(frozen=True)
class ZeroGamma(Step):
    """Zero the gamma of each residual branch's last norm layer (Goyal et al. 2017, Sec. 5.1).

    Runs :func:`initlab.datadriven.fixup_` with ``variant="zero_norm"`` on the model's residual
    blocks (modules with ``residual_branch()``, :mod:`initlab.datadriven.fixup`): only those
    weights change; the norm biases, the other gammas (1) and every weight layer keep what the
    policy wrote. Refuses (``ValueError``) a model without residual blocks or a branch without
    an affine norm layer.
    """

    name: ClassVar[str] = "zero_gamma"
    misfit_hint: ClassVar[str] = (
        "zero_gamma needs residual blocks with a norm layer: use model 'resnet', or 'resmlp' "
        "with --model-arg norm=batch"
    )

    def __call__(self, model, *, generator, batch=None, source=None) -> FixupReport:
        return fixup_(model, variant="zero_norm")


def set_forget_bias_(model: nn.Module, value: float) -> list[str]:
    r"""Set the forget-gate bias of every LSTM and the update-gate bias of every GRU in place.

    PyTorch stores an LSTM's gates in the order i, f, g, o and a GRU's in the order r, z, n
    (``bias_ih`` and ``bias_hh`` of shape ``(gates * H,)``), and adds the two biases, so the
    gate's total bias is ``bias_ih + bias_hh``. This sets rows ``H .. 2H`` (f for an LSTM, z for
    a GRU) of ``bias_ih`` to ``value`` and of ``bias_hh`` to 0: the total is ``value``, as
    Jozefowicz, Zaremba and Sutskever, "An Empirical Exploration of Recurrent Network
    Architectures" (ICML 2015), Sec. 2.2, set it (a forget bias of 1 or more keeps the cell
    state at the start of training). In PyTorch's GRU, ``h' = (1 - z) * n + z * h`` (the
    ``nn.GRU`` equations), so z is the gate that keeps the state, the role of the LSTM's f.
    Every other row, the plain RNNs and layers built with ``bias=False`` are left as they are.

    Args:
        model: any module; its ``nn.LSTM``, ``nn.GRU``, ``nn.LSTMCell`` and ``nn.GRUCell``
            layers (every layer and direction) are set.
        value: the gate's total bias, a finite number (1.0 in Jozefowicz et al. 2015).

    Returns:
        The qualified names of the tensors written, in registration order.

    Raises:
        ArgumentError: ``value`` is not a finite number (argument ``forget_bias``).

    Example:
        >>> lstm = nn.LSTM(3, 4)
        >>> set_forget_bias_(lstm, 1.0)
        ['bias_ih_l0', 'bias_hh_l0']
        >>> lstm.bias_ih_l0[4:8].tolist(), float(lstm.bias_hh_l0[4:8].detach().abs().sum())
        ([1.0, 1.0, 1.0, 1.0], 0.0)
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ArgumentError(
            FORGET_BIAS, f"forget_bias must be a finite number; got forget_bias={value!r}"
        )
    written = []
    with torch.no_grad():
        for layer_name, module in recurrent_layers(model):
            if not isinstance(module, nn.LSTM | nn.GRU | nn.LSTMCell | nn.GRUCell):
                continue
            hidden = module.hidden_size
            for name, param in module.named_parameters(recurse=False):
                if not name.startswith(("bias_ih", "bias_hh")):
                    continue
                param[hidden : 2 * hidden] = value if name.startswith("bias_ih") else 0.0
                written.append(f"{layer_name}.{name}" if layer_name else name)
    return written


@dataclass(frozen=True)
class ForgetBias(Step):
    """Set the LSTM forget-gate (GRU update-gate) bias to ``value`` (:func:`set_forget_bias_`).

    A model without an LSTM or GRU layer with biases is refused (``ValueError``): the option
    would do nothing, so it is more likely a mistake than a choice.

    Attributes:
        value: the gate's total bias (``bias_ih`` rows ``H .. 2H``; ``bias_hh``'s are 0).
    """

    name: ClassVar[str] = "forget_bias"
    misfit_hint: ClassVar[str] = (
        "forget_bias needs an LSTM or GRU layer: use model 'seq-rnn', 'char-rnn' or 'lstm'"
    )

    value: float = 1.0

    def __call__(self, model, *, generator, batch=None, source=None) -> list[str]:
        written = set_forget_bias_(model, self.value)
        if not written:
            raise ValueError(
                f"forget_bias={self.value:g} sets the forget-gate bias of LSTM and GRU layers; "
                f"{type(model).__name__} has no LSTM or GRU layer with biases"
            )
        return written


def with_forget_bias(scheme: Scheme, value: float) -> Scheme:
    """Return a copy of ``scheme`` that sets the forget bias to ``value`` after everything else.

    The copy keeps the scheme's name, policy, options and steps and appends
    :class:`ForgetBias`, so the draws of every other tensor are those of ``scheme`` itself
    (the step draws nothing). A scheme whose policy owns a ``forget_bias`` option
    (``rnn_orthogonal``) is returned unchanged: its option already is the gate's total bias.

    Raises:
        ArgumentError: ``value`` is not a finite number (argument ``forget_bias``).

    Example:
        >>> from initlab.schemes.registry import SCHEMES
        >>> with_forget_bias(SCHEMES["xavier_uniform"], 1.0).steps
        (ForgetBias(value=1.0),)
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ArgumentError(
            FORGET_BIAS, f"forget_bias must be a finite number; got forget_bias={value!r}"
        )
    if FORGET_BIAS in scheme.options:
        return scheme
    return dataclasses.replace(scheme, steps=(*scheme.steps, ForgetBias(float(value))))
