"""The random number generators, carried in checkpoints, so that a resumed run is the same run.

Shuffling (the DataLoader's sampler), augmentation (`data.augment`), n-SAM's random ascent batch and
random perturbations all draw from the global generators. A checkpoint without their state lets a
resumed run draw other batches than the uninterrupted one: its weights then differ (max |dW| ~1e-2,
BatchNorm statistics by 0.2-0.4 on the smoke setting). With it, a run stopped after any epoch and
resumed from last.ckpt ends with the same weights, bit for bit, on a CPU.

The state is read when a checkpoint is written (the end of an epoch) and put back in `on_fit_start`:
after Lightning has rebuilt the model and optimizer (whose set-up draws nothing that matters any
more), but before the fit loop creates the first DataLoader iterator, which draws its base seed
from the global generator, as the uninterrupted run does at the start of every epoch.
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


class RNGState(pl.Callback):
    """torch (CPU and every CUDA device), numpy and python `random` generator states."""

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            # numpy's state as tensors and numbers: checkpoints stay loadable with weights_only=True
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._pending = dict(state)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()  # strategies that restore checkpoints after on_fit_start (FSDP, DeepSpeed)

    def _restore(self) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"].cpu())
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        if "cuda" in state and torch.cuda.is_available():
            saved = state["cuda"]
            for device in range(min(len(saved), torch.cuda.device_count())):
                torch.cuda.set_rng_state(saved[device].cpu(), device)
