"""Data-dependent initialization: LSUV, and Fixup for residual networks without normalization."""

from initlab.datadriven.lsuv import LSUVLayer, LSUVReport, lsuv_

__all__ = ["LSUVLayer", "LSUVReport", "lsuv_"]
