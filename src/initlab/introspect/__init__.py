"""How initlab reads a model: layer kinds and roles, activations, what follows each layer, hooks.

The one lower layer that policy, datadriven and diagnostics share. Modules: ``kinds`` (layer
kinds, norm layers, roles, fans), ``activations`` (recognizing activation modules and
functions), ``trace`` (the data flow of one forward pass: what follows each layer),
``hooks`` (forward hooks and state guards that always restore what they change).
"""
