"""Stop a run at its first non-finite training loss, and say where.

Without it a diverged run (optim.lr=1e8) trains on NaN weights to the end, exits 0 with status
`finished`, and sweep.py averages it as a normal row. The check reads the loss `training_step`
returns, after each step (the SAM step itself stays free of bookkeeping), and the epoch's mean
training loss: steps of finite but huge losses (1e36) overflow that mean, which results.json could
only record as null.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch


EPOCH_KEYS = ("train/loss", "train/objective")


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; results.json records status `diverged`."""

    def __init__(self, loss: float, epoch: int, step: int, what: str = "the loss") -> None:
        self.loss, self.epoch, self.step = loss, epoch, step
        super().__init__(f"training diverged: {what} is {loss} at epoch {epoch}, step {step}; try a smaller optim.lr (or method.rho)")


class DivergenceGuard(pl.Callback):
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        bad = not bool(torch.isfinite(loss).all())
        # Any device's NaN stops every device: a lone rank raising would leave the others waiting.
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            value = float(loss.detach().float().reshape(-1)[0]) if bad else float("nan")
            raise TrainingDiverged(value, trainer.current_epoch, trainer.global_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key in EPOCH_KEYS:  # reduced across devices already: every rank sees the same value
            value = trainer.callback_metrics.get(key)
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                raise TrainingDiverged(float(value), trainer.current_epoch, trainer.global_step, what=f"the epoch's mean {key}")
