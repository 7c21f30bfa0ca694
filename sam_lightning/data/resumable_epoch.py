"""A training loader that resumes mid-epoch exactly: the epoch's batch order and the batches already trained,
saved in the checkpoint through Lightning's stateful-loader hooks (the preemption path: sam_lightning/training/callbacks/preemption.py)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class ResumableEpoch:
    """What a training loader needs to resume mid-epoch exactly (Lightning's stateful-loader hooks):
    the global torch RNG state its epoch's order was drawn from and the batches already trained.
    A loader that resumes sets the RNG to that state, draws the same order, skips the trained
    batches, then gives the RNG back the state the checkpoint holds (restored by RNGState)."""

    trainer: pl.Trainer | None = None  # set by the data module: where the trained batches are counted
    _epoch_rng: torch.Tensor | None = None
    _resume: dict | None = None

    def state_dict(self) -> dict:
        done = 0
        if self.trainer is not None:
            done = int(self.trainer.fit_loop.epoch_loop.batch_progress.current.completed)
        return {"epoch_rng": self._epoch_rng, "done": done}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state if state.get("epoch_rng") is not None and state.get("done") else None

    def _begin_epoch(self) -> tuple[int, torch.Tensor | None]:
        """Before the epoch's iterator draws anything: (batches to skip, RNG state to put back after)."""
        if self._resume is None:
            self._epoch_rng = torch.get_rng_state()
            return 0, None
        state, self._resume = self._resume, None
        now = torch.get_rng_state()
        self._epoch_rng = state["epoch_rng"]
        torch.set_rng_state(state["epoch_rng"].cpu())
        return int(state["done"]), now
