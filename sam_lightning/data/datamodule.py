"""A LightningDataModule over in-memory uint8 tensors.

Batches leave the DataLoader as uint8 (cheap to collate and to copy to the GPU) and are cropped,
flipped and normalized on the device in `on_after_batch_transfer`; the test set is only normalized.
The training loader drops the last incomplete batch so that every batch has the configured size
(m-SAM needs m to divide it). Training batches are (images, labels, true labels): the labels are
the noisy ones under `label_noise`, the true ones come along for the noise metrics.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from sam_lightning.data.augment import normalize, random_crop_flip
from sam_lightning.data.device_loader import DeviceBatches
from sam_lightning.data.registry import source_of
from sam_lightning.data.resumable_epoch import ResumableEpoch
from sam_lightning.data.spec import DataSpec, require_full_batches
from sam_lightning.data.splits import Splits, load_splits

log = logging.getLogger("train")


class ResumableDataLoader(ResumableEpoch, DataLoader):
    """The training DataLoader, resumable mid-epoch (a preempted run's last.ckpt): see ResumableEpoch."""

    def __iter__(self):
        skip, now = self._begin_epoch()
        iterator = super().__iter__()
        if skip:
            for _ in range(skip):  # the first batch draws the epoch's order, as in the uninterrupted run
                next(iterator)
            torch.set_rng_state(now)
        return iterator


class ImageDataModule(pl.LightningDataModule):
    """Lightning calls the hooks: `prepare_data` (once per machine) downloads, `setup` (every
    process) loads the images and makes the splits, once. Nothing else drives them.

    data: the checked settings (`DataSpec`; its batch_size is the training batch per device).
    on_device: auto (the training set lives on the device for single-GPU runs: DeviceBatches), true
    or false (the DataLoader)."""

    def __init__(
        self, data: DataSpec, eval_batch_size: int = 512, num_workers: int = 0, on_device: bool | str = "auto"
    ) -> None:
        super().__init__()
        self.data = data
        self.on_device = on_device
        self.batch_size = data.batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.splits: Splits | None = None

    def prepare_data(self) -> None:
        """The source's preparation: CIFAR downloads when data.download is set (state made here is
        not seen by other processes)."""
        source_of(self.data).prepare(self.data)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:  # fit, then test or validate: the same splits
            return
        self.splits = load_splits(self.data)
        sizes = self.splits.sizes()
        noisy = f", {sizes['noisy_train']} flipped labels" if "noisy_train" in sizes else ""
        log.info(
            "data %s: %d train / %d validation / %d test examples, %d classes%s",
            self.data.name,
            sizes["train"],
            sizes["val"],
            sizes["test"],
            sizes["num_classes"],
            noisy,
        )
        # With the real device count (build_run checked the counted images before anything started,
        # with the device count the settings give: "auto" devices are only known here).
        require_full_batches(
            sizes["train"], self.batch_size, self.trainer.world_size if self.trainer is not None else 1
        )

    @property
    def eval_sets(self) -> tuple[str, ...]:
        """The evaluation loaders' names, in dataloader_idx order (`DataSpec.eval_sets`)."""
        return self.data.eval_sets

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
        s = self.splits
        device = self._device_for_batches()
        if device is not None:
            loader = DeviceBatches((s.train_x, s.train_y, s.train_true_y), self.batch_size, device)
        else:
            loader = ResumableDataLoader(
                TensorDataset(s.train_x, s.train_y, s.train_true_y),
                batch_size=self.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
            )
        loader.trainer = self.trainer
        return loader

    def _eval_loader(self, x, y) -> DataLoader:
        return DataLoader(
            TensorDataset(x, y),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> list[DataLoader]:
        """Evaluated every trainer.check_val_every_n_epoch epochs, in the order of `eval_sets`."""
        s = self.splits
        tensors = {"test": (s.test_x, s.test_y), "val": (s.val_x, s.val_y), "train_eval": (s.train_x, s.train_true_y)}
        return [self._eval_loader(*tensors[name]) for name in self.eval_sets]

    def transform(self, batch, train: bool):
        """uint8 batch on the device -> augmented (if `train`) and normalized float batch."""
        x, *labels = batch
        if train and self.data.augment:
            x = random_crop_flip(x, padding=self.data.crop_padding)
        return (normalize(x, self.splits.mean, self.splits.std), *labels)

    def random_train_batch(self, n: int, device: torch.device):
        """n training examples drawn uniformly without replacement, augmented (n-SAM's other batch)."""
        idx = torch.randperm(len(self.splits.train_y), device="cpu")[:n]
        batch = (self.splits.train_x[idx].to(device), self.splits.train_y[idx].to(device))
        return self.transform(batch, train=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        training = self.trainer is not None and self.trainer.training
        return self.transform(batch, train=training)
