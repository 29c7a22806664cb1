"""The model zoo: every network the command line can train, by name.

Modules: ``models`` (the registry :data:`MODELS` with its old names :data:`MODEL_ALIASES`,
:func:`build_model`, the MLPs and the CNN), ``residual`` (residual MLP), ``extra`` (LSTM,
transformer, ResNet on images), ``transformer`` (``char-gpt`` and ``vit``: explicit attention,
pre/post-LN or no LN, residual gates), ``recurrent`` (``char-rnn`` and ``seq-rnn``: LSTM/GRU/RNN
forwards written out so that runs stack), ``factory`` (your own ``MODULE:FUNCTION``),
``_common`` (activation and norm tables, argument checks).
"""

from initlab.zoo.models import MODEL_ALIASES, MODELS, build_model, resolve_model

__all__ = ["MODELS", "MODEL_ALIASES", "build_model", "resolve_model"]
