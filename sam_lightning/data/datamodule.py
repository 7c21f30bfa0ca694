"""A LightningDataModule over in-memory uint8 tensors.

Batches leave the DataLoader as uint8 (cheap to collate and to copy to the GPU) and are cropped,
flipped and normalized on the device in `on_after_batch_transfer`; the test set is only normalized.
The training loader drops the last incomplete batch so that every batch has the configured size
(m-SAM needs m to divide it). Training batches are (images, labels, true labels): the labels are
the noisy ones under `label_noise`, the true ones come along for the noise metrics.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from sam_lightning.config import ConfigError
from sam_lightning.data.augment import normalize, random_crop_flip
from sam_lightning.data.device_loader import DeviceBatches
from sam_lightning.data.label_noise import flip_labels, subset_indices
from sam_lightning.data.sources import ImageArrays, load_source


class ImageDataModule(pl.LightningDataModule):
    def __init__(self, cfg, batch_size: int, eval_batch_size: int = 512, num_workers: int = 0, on_device: bool | str = "auto") -> None:
        super().__init__()
        self.cfg = cfg
        # auto: the training set lives on the device for single-GPU runs (DeviceBatches), else the DataLoader.
        if on_device not in ("auto", True, False):
            raise ConfigError(f"data_on_device={on_device!r}: must be auto, true or false")
        self.on_device = on_device
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.arrays: ImageArrays | None = None
        self.true_train_y: torch.Tensor | None = None
        self.noisy_indices: torch.Tensor | None = None  # positions in the (subset) training set

    def prepare_data(self) -> None:
        """Download (CIFAR) or check that the data can be read; raises DataUnavailableError."""
        if self.cfg.name in ("cifar10", "cifar100"):
            self.arrays = load_source(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.true_train_y is not None:
            return
        if self.arrays is None:
            self.arrays = load_source(self.cfg)
        a = self.arrays
        seed = int(self.cfg.get("seed") or 0)
        keep = subset_indices(len(a.train_y), float(self.cfg.get("train_fraction", 1.0)), seed)
        a.train_x, a.train_y = a.train_x[keep], a.train_y[keep]
        self.true_train_y = a.train_y
        a.train_y, self.noisy_indices = flip_labels(a.train_y, float(self.cfg.get("label_noise", 0.0)), a.num_classes, seed + 1)
        if len(a.train_y) < self.batch_size:
            # The training loader drops the incomplete last batch: not one step would be made.
            raise ConfigError(f"data.batch_size={self.batch_size} exceeds the {len(a.train_y)} training images: lower data.batch_size")

    def _device_for_batches(self) -> torch.device | None:
        """The device to keep the training set on, or None for the DataLoader path."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if trainer is not None and trainer.world_size > 1:
            return None  # each process needs its own shard: the DataLoader's DistributedSampler does that
        if self.on_device == "auto":
            return device if device.type == "cuda" else None
        return device if self.on_device else None

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        a = self.arrays
        device = self._device_for_batches()
        if device is not None:
            return DeviceBatches((a.train_x, a.train_y, self.true_train_y), self.batch_size, device)
        return DataLoader(TensorDataset(a.train_x, a.train_y, self.true_train_y), batch_size=self.batch_size, shuffle=True, drop_last=True, num_workers=self.num_workers, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        a = self.arrays
        return DataLoader(TensorDataset(a.test_x, a.test_y), batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers, pin_memory=torch.cuda.is_available())

    def transform(self, batch, train: bool):
        """uint8 batch on the device -> augmented (if `train`) and normalized float batch."""
        x, *labels = batch
        if train and self.cfg.augment:
            x = random_crop_flip(x, padding=self.cfg.crop_padding)
        return (normalize(x, self.arrays.mean, self.arrays.std), *labels)

    def random_train_batch(self, n: int, device: torch.device):
        """n training examples drawn uniformly without replacement, augmented (n-SAM's other batch)."""
        idx = torch.randperm(len(self.arrays.train_y), device="cpu")[:n]
        batch = (self.arrays.train_x[idx].to(device), self.arrays.train_y[idx].to(device))
        return self.transform(batch, train=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        training = self.trainer is not None and self.trainer.training
        return self.transform(batch, train=training)
