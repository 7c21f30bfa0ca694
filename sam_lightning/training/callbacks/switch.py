"""ERM -> SAM and SAM -> ERM switching (paper Figs. 8, 9): a Lightning callback.

At the start of every epoch it asks the method whether the epoch's steps perturb
(`perturbs_at`) and tells the training system (`perturbing`). The switch epoch comes from the
method (`switch_epoch(max_epochs)`: round(switch_at * max_epochs) for erm_to_sam and sam_to_erm,
None for a method that never switches); it is fixed when training first starts and kept in
checkpoints, so a resumed run switches where the original plan said.
"""

from __future__ import annotations

import pytorch_lightning as pl


class MethodSwitch(pl.Callback):
    def __init__(self) -> None:
        self.switch_epoch: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.switch_epoch is None:
            self.switch_epoch = pl_module.method.switch_epoch(pl_module.hparams.max_epochs)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.perturbing = pl_module.method.perturbs_at(trainer.current_epoch, self.switch_epoch)

    def state_dict(self) -> dict:
        return {"switch_epoch": self.switch_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.switch_epoch = state_dict.get("switch_epoch", self.switch_epoch)
