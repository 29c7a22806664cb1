"""initlab: initialization of neural-network parameters, on PyTorch.

Layers, lowest first (lower layers never import higher ones):
fans, gains -> initializers -> policy, pretrained, datadriven, diagnostics -> experiments -> cli.
"""

from initlab.fans import LayerFans, compute_fans, layer_fans

__all__ = [
    # fans and gains
    "compute_fans",
    "layer_fans",
    "LayerFans",
]
__version__ = "0.1.0"
