"""Importing the module a user names in a ``MODULE:FUNCTION`` spec (model or dataset factory)."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["import_user_module"]


def import_user_module(module_name: str) -> ModuleType:
    """Import ``module_name``; if it is not found, once more with the working directory on the path.

    The ``initlab`` console script does not put the working directory on ``sys.path`` (as
    ``python -m`` does), so ``mymodels:build_net`` in a user's own folder would not import. The
    directory is appended, so an installed package of the same name keeps precedence.

    Raises:
        ModuleNotFoundError: the module is found neither on ``sys.path`` nor in the working
            directory (or the retry's own error).
        Exception: whatever the module raises while it is imported; callers name the spec.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        missing = (error.name or "").split(".")[0] == module_name.split(".")[0]
        if not missing or "" in sys.path or here in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)
