"""Weight policies for recurrent networks: orthogonal recurrence and the identity-RNN (IRNN).

Each policy finds every recurrent layer of a model (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and
their ``*Cell`` forms: :func:`recurrent_layers`) and writes its weights and biases; the rest of
the model (embeddings, heads) keeps what the scheme's ``torch_reset`` drew, PyTorch's defaults,
so that two recurrent schemes run with one seed differ only in the recurrent layers.

Parameter layout, as PyTorch stores it: ``weight_ih_l{k}`` ``(gates*H, I_k)``,
``weight_hh_l{k}`` ``(gates*H, H)`` (``_reverse`` for the backward direction), biases
``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(gates*H,)``; gates i, f, g, o (LSTM), r, z, n (GRU), one
block (RNN). A gate block is its own matrix (:func:`initlab.fans.layer_fans` gives its fans and
the number of blocks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from initlab._checks import ArgumentError, finite, non_negative
from initlab.initializers import identity_, normal_
from initlab.schemes import weights as w
from initlab.schemes.weights import fill_weight

__all__ = ["IdentityRNN", "RecurrentOrthogonal", "recurrent_layers"]

_RECURRENT_TYPES = (nn.RNNBase, nn.RNNCellBase)
_WEIGHT = re.compile(r"weight_(ih|hh|hr)(_l\d+(_reverse)?)?")
_BIAS = re.compile(r"bias_(ih|hh)(_l\d+(_reverse)?)?")
_ZOO_HINT = "(zoo: char-rnn, seq-rnn, lstm)"


def recurrent_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return ``(name, module)`` for every recurrent layer of ``model``, in registration order.

    A recurrent layer is an ``nn.RNNBase`` (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) or an
    ``nn.RNNCellBase`` (``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``).
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _RECURRENT_TYPES)]


def _mode(module: nn.Module) -> str:
    """PyTorch's mode name: ``LSTM``, ``GRU``, ``RNN_TANH`` or ``RNN_RELU``."""
    if isinstance(module, nn.RNNBase):
        return module.mode
    if isinstance(module, nn.LSTMCell):
        return "LSTM"
    if isinstance(module, nn.GRUCell):
        return "GRU"
    return "RNN_RELU" if getattr(module, "nonlinearity", "tanh") == "relu" else "RNN_TANH"


def _parameters(module: nn.Module, pattern: re.Pattern) -> Iterator[tuple[str, nn.Parameter, str]]:
    """Yield ``(name, parameter, kind)`` of the module's own parameters matching ``pattern``."""
    for name, param in module.named_parameters(recurse=False):
        match = pattern.fullmatch(name)
        if match is not None:
            yield name, param, match.group(1)


def _layers_or_raise(model: nn.Module, scheme: str) -> list[tuple[str, nn.Module]]:
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(
            f"scheme {scheme!r} needs a recurrent layer (nn.LSTM, nn.GRU, nn.RNN or a *Cell) "
            f"in the model; {type(model).__name__} has none {_ZOO_HINT}"
        )
    return layers


@dataclass(frozen=True)
class RecurrentOrthogonal:
    r"""Orthogonal recurrent weights per gate, Xavier input weights per gate, forget bias.

    For every recurrent layer of the model (:func:`recurrent_layers`):

    * ``weight_hh`` (and an LSTM's projection ``weight_hr``, also on the recurrent path): each
      gate block a Haar-random orthogonal matrix, :math:`Q^T Q = I` per block (Saxe, McClelland
      and Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear neural
      networks", ICLR 2014; per gate as in Jozefowicz, Zaremba and Sutskever, "An empirical
      exploration of recurrent network architectures", ICML 2015, and Keras'
      ``recurrent_initializer="orthogonal"``);
    * ``weight_ih``: each gate block U(-b, b) with b = sqrt(6 / (I + H)) (Glorot and Bengio
      2010 on the block's fans, input size I, hidden size H);
    * biases 0, except an LSTM's forget gate: ``bias_ih``'s f block (rows H..2H) =
      ``forget_bias`` and ``bias_hh``'s 0, so the gate's total bias is ``forget_bias``
      (Jozefowicz et al. 2015, Sec. 2.2: a forget bias of 1 closes the gap between LSTM and
      GRU). A layer built with ``bias=False`` has no bias to set.

    Options (numbers, ``rnn_orthogonal:forget_bias=2``):
        forget_bias: the LSTM forget-gate bias, finite (default 1.0; GRU and RNN ignore it).

    Raises:
        ValueError: the model has no recurrent layer (the message names the zoo models that
            have one), or ``forget_bias`` is not finite (an ``ArgumentError`` naming
            ``scheme``).
    """

    name: str = "rnn_orthogonal"

    def __call__(
        self,
        model: nn.Module,
        *,
        generator: torch.Generator,
        batch=None,
        forget_bias: float = 1.0,
    ) -> None:
        forget_bias = _option(finite, "forget_bias", forget_bias)
        for _, module in _layers_or_raise(model, self.name):
            with torch.no_grad():
                for name, param, kind in _parameters(module, _WEIGHT):
                    rule = w.xavier_uniform if kind == "ih" else w.orthogonal  # per gate block
                    fill_weight(module, name, param, rule, generator, {"gain": 1.0})
                lstm = _mode(module) == "LSTM"
                for _, param, kind in _parameters(module, _BIAS):
                    param.zero_()
                    if lstm and kind == "ih":
                        hidden = module.hidden_size
                        param[hidden : 2 * hidden] = forget_bias  # gates i, f, g, o


@dataclass(frozen=True)
class IdentityRNN:
    r"""The IRNN: identity recurrent weights, small normal input weights, zero biases.

    For every recurrent layer of the model, which must be plain RNNs (``nn.RNN``,
    ``nn.RNNCell``; ReLU in the paper, tanh accepted):

    * ``weight_hh`` = ``scale`` times the identity (H x H);
    * ``weight_ih`` from N(0, std^2), std = 0.001;
    * every bias 0.

    Source: Le, Jaitly and Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified
    Linear Units" (2015), Sec. 3: the recurrent matrix the identity (or a scaled identity, their
    iRNN variants), biases zero, input weights drawn from N(0, 0.001^2) (0.001 is the std, as in
    the reproduction ``RandomNormal(stddev=0.001)`` of their sequential-MNIST experiment).

    Options (numbers, ``irnn:scale=0.9``):
        scale: the identity's diagonal, finite (default 1.0).
        std: the input weights' standard deviation, >= 0 (default 0.001).

    Raises:
        ValueError: the model has no recurrent layer, or has an LSTM or GRU (their gates have
            no identity recurrence), or an option is out of range (an ``ArgumentError`` naming
            ``scheme``).
    """

    name: str = "irnn"

    def __call__(
        self,
        model: nn.Module,
        *,
        generator: torch.Generator,
        batch=None,
        scale: float = 1.0,
        std: float = 0.001,
    ) -> None:
        scale = _option(finite, "scale", scale)
        std = _option(non_negative, "std", std)
        layers = _layers_or_raise(model, self.name)
        for name, module in layers:
            mode = _mode(module)
            if mode not in ("RNN_TANH", "RNN_RELU"):
                raise ValueError(
                    f"scheme {self.name!r} needs plain RNN layers (nn.RNN, nn.RNNCell): the "
                    f"identity recurrence of Le et al. 2015 has no gates; layer {name!r} is "
                    f"{type(module).__name__} (for gated layers use rnn_orthogonal)"
                )
        with torch.no_grad():
            for _, module in layers:
                for _, param, kind in _parameters(module, _WEIGHT):
                    if kind == "hh":
                        identity_(param, gain=scale)
                    else:
                        normal_(param, std=std, generator=generator)
                for _, param, _ in _parameters(module, _BIAS):
                    param.zero_()


def _option(check, name: str, value: float) -> float:
    """Run a scalar check on a scheme option; re-raise its error naming the ``scheme`` flag."""
    try:
        return check(name, value)
    except (TypeError, ValueError) as error:
        raise ArgumentError("scheme", f"option {error}") from None
