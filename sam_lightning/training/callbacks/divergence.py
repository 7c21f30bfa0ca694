"""Stop a run at its first non-finite training loss, and say where.

Without it a diverged run (optim.lr=1e8) trains on NaN weights to the end, exits 0 with status
`finished`, and sweep.py averages it as a normal row. The check reads the loss `training_step`
returns, after each step (the SAM step itself stays free of bookkeeping), and the epoch's mean
training loss: steps of finite but huge losses (1e36) overflow that mean, which results.json could
only record as null.

Each step only keeps its loss (a tensor on the device) with its epoch and step; they are read, which
waits for the device and, under DDP, takes one all-reduce, every `trainer.log_every_n_steps` steps,
before each test evaluation and at the end of each epoch: the run stops within that many steps of the
first bad one, names that one, and never checkpoints it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from sam_lightning.run.results import TEST_LOSS, TRAIN_LOSS, TRAIN_OBJECTIVE, VAL_LOSS, TrainingDiverged

TRAINING_LOSSES = (TRAIN_LOSS, TRAIN_OBJECTIVE)  # non-finite at an epoch's end: diverged
EVAL_LOSSES = (TEST_LOSS, VAL_LOSS)  # a model whose evaluation loss is not finite has diverged too


class DivergenceGuard(pl.Callback):
    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []  # since the last check, on the device
        self._where: list[tuple[int, int]] = []  # their (epoch, step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().float().reshape(-1)[0])
            self._where.append((trainer.current_epoch, trainer.global_step))
        if len(self._losses) >= max(1, trainer.log_every_n_steps):
            self._check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the checkpoint callbacks' on_validation_end: such weights never become a "best" checkpoint.
        if trainer.sanity_checking:
            return
        for key in EVAL_LOSSES:
            value = trainer.callback_metrics.get(key)
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                raise TrainingDiverged(
                    float(value), trainer.current_epoch, trainer.global_step, what=f"the evaluation's {key}"
                )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)
        for key in TRAINING_LOSSES:  # reduced across devices already: every rank sees the same value
            value = trainer.callback_metrics.get(key)
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                raise TrainingDiverged(
                    float(value), trainer.current_epoch, trainer.global_step, what=f"the epoch's mean {key}"
                )

    def _check(self, trainer: pl.Trainer) -> None:
        losses, where = self._losses, self._where
        self._losses, self._where = [], []
        values = torch.stack(losses).tolist() if losses else []
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        # Any device's NaN stops every device: a lone rank raising would leave the others waiting.
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            if not bad:  # another device diverged; this one names where it stands
                raise TrainingDiverged(
                    float("nan"), trainer.current_epoch, trainer.global_step, what="another device's loss"
                )
            epoch, step = where[bad[0]]
            raise TrainingDiverged(values[bad[0]], epoch, step)
