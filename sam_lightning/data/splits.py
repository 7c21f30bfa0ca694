"""What a run trains, validates and tests on, made once from a source's arrays (any source).

    splits = make_splits(load_source(data), train_fraction=0.04, val_fraction=0.1, label_noise=0.6, seed=0, test_fraction=0.1)
    splits = load_splits(data)   # the same, with the fractions, noise and seed of a DataSpec

In this order, as the paper's code does: a subset of the training images (`train_fraction`), a
held-out validation part of that subset (`val_fraction`, the paper's 10%: 45k / 5k on CIFAR),
then symmetric label noise flipped in the training part and, at the same rate, in the validation
part (the paper's code flips both: a held-out set from noisy data is noisy). Everything is fixed by
`seed` (`data.seed`), so runs with another training `seed` and the same `data.seed` see the same
images and the same flipped labels. With val_fraction=0 and label_noise=0 the training set is the
subset itself, in its original order. `test_fraction` keeps a fixed subset of the test set (drawn by
`seed` too), the same for every run of one `data.seed`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sam_lightning.data.label_noise import flip_labels, subset_indices
from sam_lightning.data.sources import ImageArrays, load_source
from sam_lightning.data.spec import DataSpec


@dataclass
class Splits:
    train_x: Tensor  # uint8 (N, C, H, W)
    train_y: Tensor  # the labels training sees (flipped ones included)
    train_true_y: Tensor  # the original labels
    noisy_indices: Tensor  # positions in the training part whose label was flipped
    val_x: Tensor  # empty when val_fraction = 0
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    mean: Tensor  # the input normalization (per channel, [0, 1] units)
    std: Tensor

    def sizes(self) -> dict:
        sizes = {
            "train": len(self.train_y),
            "val": len(self.val_y),
            "test": len(self.test_y),
            "num_classes": self.num_classes,
        }
        if len(self.noisy_indices):
            sizes["noisy_train"] = len(self.noisy_indices)
        return sizes

    def noisy_labels(self) -> dict:
        """Which training examples carry a flipped label, and which label (positions in the training part)."""
        idx = self.noisy_indices
        return {
            "indices": idx.tolist(),
            "noisy_labels": self.train_y[idx].tolist(),
            "true_labels": self.train_true_y[idx].tolist(),
        }


def validation_indices(n: int, fraction: float, seed: int) -> Tensor:
    """round(fraction * n) of range(n) drawn by `seed`, sorted; none when fraction = 0."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[: round(fraction * n)].sort().values


def make_splits(
    arrays: ImageArrays,
    *,
    train_fraction: float,
    val_fraction: float,
    label_noise: float,
    seed: int,
    test_fraction: float = 1.0,
) -> Splits:
    keep = subset_indices(len(arrays.train_y), train_fraction, seed)
    x, y = arrays.train_x[keep], arrays.train_y[keep]
    held_out = torch.zeros(len(y), dtype=torch.bool)
    held_out[validation_indices(len(y), val_fraction, seed + 2)] = True
    train_x, train_true_y = x[~held_out], y[~held_out]
    # seed + 1 for the training part's flips: the stream used before validation splits existed.
    train_y, noisy = flip_labels(train_true_y, label_noise, arrays.num_classes, seed + 1)
    val_y, _ = flip_labels(y[held_out], label_noise, arrays.num_classes, seed + 3)
    tested = subset_indices(len(arrays.test_y), test_fraction, seed + 4)  # all, in order, at 1
    return Splits(
        train_x=train_x,
        train_y=train_y,
        train_true_y=train_true_y,
        noisy_indices=noisy,
        val_x=x[held_out],
        val_y=val_y,
        test_x=arrays.test_x[tested],
        test_y=arrays.test_y[tested],
        num_classes=arrays.num_classes,
        mean=arrays.mean,
        std=arrays.std,
    )


def load_splits(data: DataSpec) -> Splits:
    """The splits of a run's data, from its source."""
    return make_splits(
        load_source(data),
        train_fraction=data.train_fraction,
        val_fraction=data.val_fraction,
        label_noise=data.label_noise,
        seed=data.seed,
        test_fraction=data.test_fraction,
    )
