"""Model factories for tests/test_user_model.py: imported by spec, ``tests.factories:NAME``."""

from torch import nn


def tiny_mlp(width=16, num_classes=10):
    """A one-hidden-layer MLP for 28x28 images: 784 -> width -> ReLU -> num_classes."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, num_classes)
    )


def three_logits():
    """An MLP with 3 outputs: too few for MNIST's 10 labels."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))


def raises(width=4):
    """A factory that fails when called."""
    raise RuntimeError(f"no GPU for width {width}")


def not_a_module():
    """Returns a list, not an nn.Module."""
    return [nn.Linear(784, 10)]


NOT_CALLABLE = 42


def dropout_mlp(p=0.5):
    """An MLP with dropout: its runs cannot be stacked (a dropout draw per run)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Dropout(p), nn.Linear(8, 10))
