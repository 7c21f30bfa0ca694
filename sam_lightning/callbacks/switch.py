"""ERM -> SAM and SAM -> ERM switching (paper Figs. 8, 9): a Lightning callback.

With a `SwitchedSAM` method (method=erm_to_sam or sam_to_erm) it turns the SAM step on or off at
the start of every epoch. The switch epoch, round(switch_at * max_epochs), is fixed when training
first starts and kept in checkpoints, so a resumed run switches where the original plan said.
With any other method it does nothing.
"""

from __future__ import annotations

import pytorch_lightning as pl

from sam_lightning.variants import SwitchedSAM


class MethodSwitch(pl.Callback):
    def __init__(self) -> None:
        self.switch_epoch: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        method = pl_module.method
        if isinstance(method, SwitchedSAM) and self.switch_epoch is None:
            self.switch_epoch = method.switch_epoch(pl_module.hparams.max_epochs)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        method = pl_module.method
        if isinstance(method, SwitchedSAM):
            pl_module.perturbing = method.perturbs_at(trainer.current_epoch, self.switch_epoch)

    def state_dict(self) -> dict:
        return {"switch_epoch": self.switch_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.switch_epoch = state_dict.get("switch_epoch", self.switch_epoch)
