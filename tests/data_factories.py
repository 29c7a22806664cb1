"""Dataset factories for tests/test_user_data.py (``--dataset tests.data_factories:NAME``).

Tiny synthetic classification data: 3 classes of 6x6 one-channel uint8 images whose class
sets the mean brightness, so a model can learn them in an epoch.
"""

import torch
from torch.utils.data import Dataset, TensorDataset


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    noise = torch.randint(0, 40, (n, 6, 6), generator=generator)
    images = (labels.view(-1, 1, 1) * 100 + noise).to(torch.uint8)
    return images, labels


def pair():
    """A (train, test) pair of TensorDatasets: 120 and 30 images."""
    return TensorDataset(*_images(120, 0)), TensorDataset(*_images(30, 1))


def single():
    """One dataset of 50 items, which the loader splits 40 / 10."""
    return TensorDataset(*_images(50, 2))


class _Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def mixed_sizes():
    """Item 3 of the training part is 5x5 while the others are 6x6."""
    items = [(torch.zeros(6, 6, dtype=torch.uint8), 0) for _ in range(5)]
    items[3] = (torch.zeros(5, 5, dtype=torch.uint8), 1)
    return _Items(items), _Items(items[:2])


def float_labels():
    """Labels 0.0, 1.0, ...: floats, not integers."""
    items = [(torch.zeros(6, 6, dtype=torch.uint8), float(i % 2)) for i in range(4)]
    return _Items(items), _Items(items)


def fails():
    """A factory whose call raises."""
    raise RuntimeError("the data server is down")


def not_a_dataset():
    """Returns a number."""
    return 42


NOT_CALLABLE = 3


def initlab_dataset():
    """An initlab Dataset of 5 classes whose labels use only 0..2: its class count is kept."""
    from initlab.datasets.families import Dataset as InitlabDataset

    train, test = _images(30, 3), _images(9, 4)
    return InitlabDataset("five", *train, *test, num_classes=5, source="memory")
