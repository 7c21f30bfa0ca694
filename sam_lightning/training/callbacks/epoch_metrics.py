"""The running sums of the epoch in progress, carried across a mid-epoch resume.

The training metrics (error, loss, objective, the label-noise fit) are torchmetrics objects that
Lightning reduces at the epoch's end. Their states are not part of the module's weights, so a run
preempted mid-epoch and resumed would report that epoch over the batches after the resume only.
This callback keeps the states in the checkpoint, with the epoch and the number of batches they
cover, and puts them back when the resumed run continues that same epoch; a checkpoint taken at an
epoch's end (the next epoch starts from zero) leaves them out.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torchmetrics import Metric


def _running_metrics(pl_module: pl.LightningModule) -> dict[str, Metric]:
    """The module's own metric attributes: the epoch's running training metrics (the evaluation
    metrics sit in ModuleDicts, reset at each evaluation)."""
    return {name: m for name, m in pl_module.named_children() if isinstance(m, Metric)}


class EpochMetricsState(pl.Callback):
    def __init__(self) -> None:
        self._module: pl.LightningModule | None = None
        self._trainer: pl.Trainer | None = None
        self._pending: dict | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer, self._module = trainer, pl_module

    def state_dict(self) -> dict:
        if self._module is None or self._trainer is None:
            return {}
        done = int(self._trainer.fit_loop.epoch_loop.batch_progress.current.completed)
        if not 0 < done < self._trainer.num_training_batches:
            return {}  # at an epoch's end: the next epoch starts from zero
        states = {
            name: {k: v.detach().clone() for k, v in metric.metric_state.items()}
            for name, metric in _running_metrics(self._module).items()
        }
        return {"epoch": self._trainer.current_epoch, "done": done, "states": states}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = dict(state_dict) if state_dict.get("states") else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning restored the checkpoint, before the resumed epoch's remaining batches (a
        # mid-epoch restart does not call on_train_epoch_start again).
        pending, self._pending = self._pending, None
        if pending is None or pending["epoch"] != trainer.current_epoch:
            return
        metrics = _running_metrics(pl_module)
        for name, states in pending["states"].items():
            metric = metrics.get(name)
            if metric is None:
                continue
            for key, value in states.items():
                setattr(metric, key, value.to(pl_module.device))
            metric._update_count = max(metric._update_count, 1)  # states hold updates: compute() is meaningful
