"""trainer.log_every_n_steps follows the epoch's length: at most the number of training batches of
an epoch (per device, after trainer.limit_train_batches), so that a short run still logs its
per-step metrics (step/perturbation_norm, ...) and Lightning never warns that the interval exceeds
the epoch. Set in `setup`, once the data module knows its training set and before the fit loop reads
the interval."""

from __future__ import annotations

import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def batches_per_epoch(n_train: int, batch_size: int, world_size: int, limit) -> int:
    """Training batches per epoch and device: full batches of the device's share, then the limit
    (an int: at most that many; a float: that fraction, as Lightning counts them)."""
    full = n_train // max(world_size, 1) // batch_size
    if limit is None:
        return full
    return min(full, int(limit)) if isinstance(limit, int) else int(full * float(limit))


class LogInterval(pl.Callback):
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        splits = getattr(trainer.datamodule, "splits", None)
        if stage != "fit" or splits is None:
            return
        batches = batches_per_epoch(
            splits.sizes()["train"], trainer.datamodule.batch_size, trainer.world_size, trainer.limit_train_batches
        )
        if 1 <= batches < trainer.log_every_n_steps:
            log.info(
                "per-step metrics logged every %d steps (the epoch's batches; log_every_n_steps=%d)",
                batches,
                trainer.log_every_n_steps,
            )
            trainer.log_every_n_steps = batches
