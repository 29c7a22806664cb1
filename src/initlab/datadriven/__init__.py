"""Data-dependent initialization: LSUV, and Fixup for residual networks without normalization."""

from initlab.datadriven.fixup import FixupReport, fixup_, residual_blocks
from initlab.datadriven.lsuv import LSUVLayer, LSUVReport, lsuv_

__all__ = ["FixupReport", "LSUVLayer", "LSUVReport", "fixup_", "lsuv_", "residual_blocks"]
