"""The seed's plain PyTorch training loop, the peer every training benchmark is timed against.

As the seed writes it: a ``TensorDataset`` in a ``DataLoader(batch_size=64, shuffle=True)``,
``running_loss += loss.item()`` per step, and a test pass with ``DataLoader(batch_size=1000)``
after the epoch. Shared by ``bench_train.py`` and ``bench_sweep.py`` so both time the same peer.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from initlab.experiments.trainer import TensorData


def seed_loop_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, label: str
) -> float:
    """Run one epoch of the seed's loop (train + test), print its result; return wall seconds."""
    train_loader = DataLoader(
        TensorDataset(data.train_x, data.train_y), batch_size=64, shuffle=True
    )
    test_loader = DataLoader(TensorDataset(data.test_x, data.test_y), batch_size=1000)
    start = time.perf_counter()
    model.train()
    running_loss = 0.0
    for images, labels in train_loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in test_loader:
            correct += (model(images).argmax(1) == labels).sum().item()
    elapsed = time.perf_counter() - start
    print(
        f"  {label}: loss {running_loss / len(train_loader):.4f}, "
        f"accuracy {100 * correct / len(data.test_y):.2f}%, {elapsed:.3f} s"
    )
    return elapsed
