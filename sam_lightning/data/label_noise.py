"""Symmetric label noise and training subsets, both fixed by a seed (paper Fig. 12, App. E.7).

The fractions are checked once, by `sam_lightning.data.spec.DataSpec`."""

from __future__ import annotations

import torch
from torch import Tensor

from sam_lightning.settings.config import ConfigError


def flip_labels(labels: Tensor, fraction: float, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """Flip exactly round(fraction * N) labels, each to a class drawn uniformly from the other
    num_classes - 1 (never the true one). Returns (noisy labels, sorted indices of the flipped)."""
    if fraction > 0 and num_classes < 2:
        raise ConfigError(f"data.label_noise={fraction} needs at least two classes; the data set has {num_classes}")
    g = torch.Generator().manual_seed(seed)
    n_flip = round(fraction * len(labels))
    flipped = torch.randperm(len(labels), generator=g)[:n_flip].sort().values
    noisy = labels.clone()
    shift = torch.randint(1, max(num_classes, 2), (n_flip,), generator=g)
    noisy[flipped] = (labels[flipped] + shift) % num_classes
    return noisy, flipped


def subset_indices(n: int, fraction: float, seed: int) -> Tensor:
    """round(fraction * n) of range(n), drawn without replacement and sorted; all when fraction = 1."""
    if fraction == 1:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[: max(1, round(fraction * n))].sort().values


def noise_fit(predictions: Tensor, labels: Tensor, true_labels: Tensor) -> tuple[Tensor, Tensor]:
    """(clean, fitted): which examples kept their true label, and which of the flipped ones are
    predicted as their flipped label (the paper's 'fitting the noise')."""
    clean = labels == true_labels  # a flip never lands on the true class
    return clean, (predictions == labels) & ~clean
