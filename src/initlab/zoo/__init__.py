"""The model zoo: every network the command line can train, by name.

Modules: ``models`` (the registry :data:`MODELS`, :func:`build_model`, MLPs and CNNs),
``residual`` (residual MLP), ``extra`` (ResNet and the other zoo networks).
"""

from initlab.zoo.models import MODELS, build_model

__all__ = ["MODELS", "build_model"]
