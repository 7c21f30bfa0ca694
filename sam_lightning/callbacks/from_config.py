"""The conf/train/callbacks group -> Lightning callbacks (the lightning-hydra-template way).

`callbacks` is a mapping of name -> `_target_` entry, so that a preset or the command line can add,
change or drop one entry by name (callbacks.best_checkpoint.save_top_k=3, callbacks.lr_monitor=null).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

from sam_lightning.cli import instantiate_one_line
from sam_lightning.config import ConfigError

log = logging.getLogger(__name__)


def instantiate_callbacks(entries: Mapping | None, checkpointing: bool = True) -> list[pl.Callback]:
    """One callback per non-null entry, in the group's order. With `checkpointing` false
    (trainer.enable_checkpointing=false) the checkpoint entries are left out."""
    callbacks = []
    for name, entry in (entries or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or "_target_" not in entry:
            raise ConfigError(
                f"callbacks.{name} must be a mapping with a _target_ (a Lightning callback class), got {entry!r}"
            )
        callback = instantiate_one_line(entry, f"callbacks.{name}")
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"callbacks.{name}: {entry['_target_']} is not a Lightning callback")
        if isinstance(callback, Checkpoint) and not checkpointing:
            log.info("trainer.enable_checkpointing=false: callbacks.%s left out", name)
            continue
        callbacks.append(callback)
    return callbacks
