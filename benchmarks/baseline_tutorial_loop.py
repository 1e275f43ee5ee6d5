"""The frozen baseline of benchmarks/train_throughput.py: the PyTorch tutorial loop.

An nn.Sequential of the reference CNN's layers in the default NCHW layout,
torch.optim.Adam, batches sliced from in-memory tensors,
zero_grad(); backward(); step(), the loss read every 100 steps; no
channels_last, no compile. Do not tune this file: it is the yardstick.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


def reference_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64, eps=1e-3, momentum=0.01),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def train_epochs(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, epochs: int, seed: int = 0, build: Callable[[], nn.Module] = reference_cnn
) -> list[float]:
    """Samples per second of each epoch (the first one is the warm-up); `build` makes the model (tutorial_models.py)."""
    torch.manual_seed(seed)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    rates = []
    for _ in range(epochs):
        start, step = time.perf_counter(), 0
        for i in range(0, len(images) - batch_size + 1, batch_size):
            loss = F.cross_entropy(model(images[i : i + batch_size]), labels[i : i + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 100 == 0:
                loss.item()
        loss.item()
        rates.append(step * batch_size / (time.perf_counter() - start))
    return rates
