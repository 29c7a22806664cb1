"""initlab: initialization of neural-network parameters, on PyTorch.

Layers, lowest first (lower layers never import higher ones):
fans, gains -> initializers -> policy, pretrained, datadriven, diagnostics -> experiments -> cli.
"""

from initlab.fans import LayerFans, compute_fans, layer_fans
from initlab.gains import calculate_gain, compute_gain

__all__ = [
    # fans and gains
    "compute_fans",
    "layer_fans",
    "LayerFans",
    "calculate_gain",
    "compute_gain",
]
__version__ = "0.1.0"
