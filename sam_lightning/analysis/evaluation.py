"""What both analyses share: list settings, the device, the data, loss/error, BatchNorm statistics.

Images stay uint8 until a batch is used (as in training), then are normalized with the data set's
mean and std; there is no augmentation in any analysis.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import ListConfig
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from sam_lightning.data.augment import normalize
from sam_lightning.data.spec import DataSpec
from sam_lightning.data.splits import Splits, load_splits
from sam_lightning.settings.config import ConfigError


def as_list(value, key: str, kind: type) -> list:
    """A scalar or a list from the command line, as a non-empty list of `kind`."""
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not values:
        raise ConfigError(f"{key} is empty")
    try:
        return [kind(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}={values}: every entry must be a {kind.__name__}") from err


def resolve_device(name: str) -> torch.device:
    """device=auto takes the GPU when there is one; cuda is refused on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available: use device=cpu or device=auto")
    return device


class DataCache:
    """Loads each distinct data spec once (several checkpoints of one data set share it), as the
    run saw it: its training subset without the validation split, its (flipped) labels, its inputs."""

    def __init__(self) -> None:
        self._arrays: dict[DataSpec, Splits] = {}

    def get(self, data: DataSpec, num_classes: int | None = None) -> Splits:
        if data not in self._arrays:
            self._arrays[data] = load_splits(data)
        arrays = self._arrays[data]
        if num_classes is not None and arrays.num_classes != num_classes:
            raise ConfigError(f"data {data.name} has {arrays.num_classes} classes but the model predicts {num_classes}")
        return arrays


@dataclass
class Points:
    """A fixed set of labelled images, uint8 on the analysis device, with the normalization to apply."""

    x: Tensor
    y: Tensor
    mean: Tensor
    std: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, size: int, even: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """Consecutive normalized batches of `size` (the last one may be smaller); `even`: as few
        batches as `size` allows, of sizes that differ by at most one image."""
        if even:
            parts = torch.arange(len(self.y)).tensor_split(max(1, math.ceil(len(self.y) / size)))
            bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts if len(p)]
        else:
            bounds = [(i, i + size) for i in range(0, len(self.y), size)]
        for i, j in bounds:
            yield normalize(self.x[i:j], self.mean, self.std), self.y[i:j]


def select_points(
    arrays: Splits, split: str, n: int | None, seed: int, device: torch.device, key: str, at_most: bool = False
) -> Points:
    """`n` images of `split` drawn without replacement by `seed` (None: all, in order); with
    `at_most`, a smaller data set is taken whole instead of refused."""
    x, y = getattr(arrays, f"{split}_x"), getattr(arrays, f"{split}_y")
    if n is not None and at_most:
        n = min(n, len(y))
    if n is not None:
        if not 1 <= n <= len(y):
            raise ConfigError(f"{key}={n} must be between 1 and the {len(y)} {split} images")
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[idx], y[idx]
    return Points(x.to(device), y.to(device), arrays.mean.to(device), arrays.std.to(device))


@torch.no_grad()
def loss_and_error(model: nn.Module, points: Points, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and error of `model` (in whatever train/eval mode it is) over `points`."""
    loss_sum, wrong = 0.0, 0
    for x, y in points.batches(batch_size):
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        wrong += (logits.argmax(dim=1) != y).sum().item()
    return loss_sum / len(points), wrong / len(points)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recompute_bn_stats(model: nn.Module, points: Points, batch_size: int) -> None:
    """Replace BatchNorm running statistics by their average over `points` (as SWA does); eval mode after."""
    # update_bn averages the batches' statistics with equal weights (momentum=None): batches of equal
    # size weigh every image the same, where a last batch of a few images would weigh as much as a full one
    # (1,026 images in batches of 512: two images made a third of the statistics).
    with torch.no_grad():  # update_bn itself would record a graph of every batch
        update_bn((x for x, _ in points.batches(batch_size, even=True)), model)
    model.eval()
