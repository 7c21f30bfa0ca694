"""Training batches sliced from tensors that live on the training device (the airbench way).

`DataLoader(TensorDataset(...), shuffle=True, drop_last=True)` collates every batch on the CPU from
single examples and then copies it to the device. With the whole uint8 training set already on the
device (CIFAR-10: 150 MB), a batch is one index operation there. The order is drawn exactly as the
DataLoader draws it (seeds from the global torch RNG per epoch, then `randperm` on the CPU), so both paths give the same batches for the same seed; augmentation happens afterwards
in `on_after_batch_transfer` either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from sam_lightning.data.resumable_epoch import ResumableEpoch


class DeviceBatches(ResumableEpoch):
    """An iterable of (images, labels, true labels) batches of `batch_size`, reshuffled per epoch."""

    def __init__(self, tensors: tuple[Tensor, ...], batch_size: int, device: torch.device | str) -> None:
        self.tensors = tuple(t.to(device) for t in tensors)
        self.batch_size = batch_size
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.tensors[0]) // self.batch_size  # the last incomplete batch is dropped

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        skip, now = self._begin_epoch()  # resuming mid-epoch: the same order, from the first untrained batch
        n = len(self.tensors[0])
        # The DataLoader's iterator draws its workers' base seed, then RandomSampler draws the seed of
        # the order, both from the global RNG: draw the same two numbers.
        torch.empty((), dtype=torch.int64).random_()
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(self.device)
        if now is not None:
            torch.set_rng_state(now)
        for i in range(skip, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)
