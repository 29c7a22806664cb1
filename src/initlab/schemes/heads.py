"""Embedding and head rules shared by the schemes, and the class-prior head bias.

:func:`scaled_embedding_` (token embedding N(0, 1/d)) is the transformer schemes' option
``scaled_embedding=1``; a zero head weight is their option ``zero_head=1``. The class-prior bias
``b_c = log p_c`` needs the training labels, so it is a step, :class:`ClassPriorBias`, over
:func:`class_prior_bias_`, on the model's :func:`output_layer`; every scheme runs it after its
own initialization with the option ``class_prior=1`` (:func:`with_class_prior`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from initlab._checks import ArgumentError, non_negative
from initlab.initializers import normal_
from initlab.schemes.scheme import Scheme
from initlab.schemes.steps import Step

__all__ = [
    "CLASS_PRIOR",
    "ClassPriorBias",
    "class_prior_bias_",
    "output_layer",
    "scaled_embedding_",
    "with_class_prior",
]

#: The option name every scheme (but one that loads a source checkpoint) accepts
#: (:func:`with_class_prior`).
CLASS_PRIOR = "class_prior"


def scaled_embedding_(
    weight: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Fill a token embedding ``(num_embeddings, d)`` in place from N(0, 1/d): std d^(-1/2).

    Why 1/d: each token vector then has expected squared norm 1, and the embedding has the
    variance a d-input output layer needs under LeCun's rule (1/fan_in, fan_in = d), so the
    same matrix serves as embedding and as tied output layer (Press and Wolf, "Using the Output
    Embedding to Improve Language Models", EACL 2017; Vaswani et al. 2017, "Attention Is All You
    Need", Sec. 3.4, share it and multiply the embedding by sqrt(d) in the forward, which with
    this std gives unit-variance entries). Standard normal embeddings (PyTorch's default) give
    a tied head logits of std sqrt(d) instead of 1.

    Args:
        weight: a 2-D floating-point tensor ``(num_embeddings, d)``.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``weight`` itself.

    Raises:
        ValueError: ``weight`` is not 2-D.
    """
    if weight.ndim != 2:
        raise ValueError(
            f"weight must be a 2-D embedding (num_embeddings, d); got shape {tuple(weight.shape)}"
        )
    return normal_(weight, std=weight.shape[1] ** -0.5, generator=generator)


def class_prior_bias_(
    bias: torch.Tensor, labels: torch.Tensor, *, smoothing: float = 1.0
) -> torch.Tensor:
    r"""Set a classifier's bias in place to the log class prior, ``b_c = log p_c``.

    ``p_c = (n_c + s) / (N + C s)``: ``n_c`` counts label ``c`` among the ``N`` labels, ``C =
    bias.numel()`` classes, ``s = smoothing`` (Laplace's add-s rule, so that a class absent
    from the labels gets a finite bias). ``C`` balanced classes give ``-log C`` exactly. With
    these biases and a zero (or small) head weight, the initial softmax predicts the class
    frequencies and the initial loss is the labels' entropy instead of a random-logit loss.

    Source: Karpathy, "A Recipe for Training Neural Networks" (2019), "init well" (set the
    final bias so the network starts by predicting the base rates); Lin et al., "Focal Loss
    for Dense Object Detection" (ICCV 2017), Sec. 4.1 "Initialization", the prior bias
    ``-log((1 - pi) / pi)`` for a sigmoid output.

    Args:
        bias: the head's bias ``(C,)``, floating point.
        labels: integer class labels of any shape (a batch ``(B,)``, next tokens ``(B, T)``),
            each in ``[0, C)``.
        smoothing: ``s >= 0``; 0 gives the raw frequencies and refuses an absent class.

    Returns:
        ``bias`` itself.

    Raises:
        ValueError: ``bias`` is not 1-D, ``labels`` are not integers in ``[0, C)`` or are
            empty, ``smoothing`` is negative, or ``smoothing=0`` with a class absent.
    """
    smoothing = non_negative("smoothing", smoothing)
    if bias.ndim != 1:
        raise ValueError(f"bias must be 1-D (C,); got shape {tuple(bias.shape)}")
    classes = bias.numel()
    if labels.is_floating_point() or labels.is_complex() or labels.numel() == 0:
        raise ValueError(
            f"labels must be a non-empty integer tensor of classes; got dtype {labels.dtype}, "
            f"{labels.numel()} elements"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise ValueError(
            f"labels must lie in [0, {classes}) for a bias of {classes} classes; "
            f"got labels in [{low}, {high}]"
        )
    counts = torch.bincount(labels.reshape(-1).long(), minlength=classes).double()
    if smoothing == 0 and bool((counts == 0).any()):
        absent = (counts == 0).nonzero().flatten().tolist()[:5]
        raise ValueError(
            f"with smoothing=0 every class needs a label: classes {absent} are absent; "
            "give smoothing > 0"
        )
    prior = (counts + smoothing) / (counts.sum() + classes * smoothing)
    with torch.no_grad():
        bias.copy_(prior.log().to(bias.dtype))
    return bias


def output_layer(model: nn.Module) -> nn.Linear:
    """Return the classifier layer whose bias the class prior sets.

    ``model.head`` when it is an ``nn.Linear`` (the zoo's transformers, recurrent models and
    ViT), else the last ``nn.Linear`` in ``model.modules()`` order (``fc2`` of
    ``mlp-784-128-10``, an ``nn.Sequential``'s last layer).

    Raises:
        ValueError: no such layer, or it has no bias (the message names the layer).
    """
    head = getattr(model, "head", None)
    name = "head"
    if not isinstance(head, nn.Linear):
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                f"the class prior needs an output nn.Linear with a bias (model.head, else the "
                f"last nn.Linear); {type(model).__name__} has none"
            )
        name, head = linears[-1]
    if head.bias is None:
        raise ValueError(
            f"the class prior needs an output nn.Linear with a bias; {type(model).__name__}'s "
            f"{name} (Linear({head.in_features}, {head.out_features})) has bias=False"
        )
    return head


@dataclass(frozen=True)
class ClassPriorBias(Step):
    """A step: set the output layer's bias to the log class prior of a training batch's labels.

    Runs :func:`class_prior_bias_` on ``batch[1]`` (the labels; next tokens for a language
    model) with add-one smoothing, on :func:`output_layer` (``model.head``, else the last
    ``nn.Linear``). Returns ``{"classes": C, "labels": N}``.

    Why only from labels: a bias of ``-log C`` on every class, the balanced prior, adds one
    constant to every logit, which a softmax ignores; the prior matters when the classes are
    imbalanced (next characters are: a space is some 15% of English text).

    Raises:
        ArgumentError: ``batch`` has no labels (argument ``batch``).
        ValueError: the model has no output ``nn.Linear`` with a bias, or bad labels.
    """

    name: ClassVar[str] = "class_prior_bias"
    needs_batch: ClassVar[bool] = True
    misfit_hint: ClassVar[str] = "the class prior needs an output nn.Linear with a bias"

    def check_model(self, model: nn.Module) -> None:
        """Raise ValueError unless ``model`` has an output layer with a bias (before any data)."""
        output_layer(model)

    def __call__(self, model, *, generator, batch=None, source=None) -> dict[str, int]:
        head = output_layer(model)
        labels = self.labels(batch)
        class_prior_bias_(head.bias, labels)
        return {"classes": head.bias.numel(), "labels": labels.numel()}

    def labels(self, batch) -> torch.Tensor:
        """``batch[1]`` as a tensor.

        Raises:
            ArgumentError: ``batch`` is not ``(inputs, labels, ...)`` (argument ``batch``).
        """
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ArgumentError(
                "batch", f"step {self.name!r} needs labels: pass batch=(inputs, labels, ...)"
            )
        return torch.as_tensor(batch[1])


def with_class_prior(scheme: Scheme, value: float) -> Scheme:
    """Return ``scheme`` with a :class:`ClassPriorBias` step appended (``value`` 1), or itself (0).

    The copy keeps the scheme's name, policy, options and steps, so the draws of every other
    tensor are those of ``scheme`` (the step draws nothing); it then needs a training batch
    ``(inputs, labels, ...)``.

    Raises:
        ArgumentError: ``value`` is not 0 or 1 (argument ``class_prior``).

    Example:
        >>> from initlab.schemes.registry import SCHEMES
        >>> with_class_prior(SCHEMES["xavier_uniform"], 1).steps
        (ClassPriorBias(),)
    """
    if isinstance(value, bool) or value not in (0, 1):
        raise ArgumentError(CLASS_PRIOR, f"class_prior must be 0 or 1; got class_prior={value!r}")
    if not value:
        return scheme
    return dataclasses.replace(scheme, steps=(*scheme.steps, ClassPriorBias()))
