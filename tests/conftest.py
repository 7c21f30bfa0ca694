"""Shared test helpers: compose the real Hydra config with tiny limits, run jobs in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import sam_lightning.open_config_node  # noqa: F401 - the open node conf/train/trainer and conf/analysis build on

# The suite runs as 2 pytest-xdist workers on 2 cores (make test): one thread each, and the same for
# the training subprocesses that tests start. Oversubscribed threads make tiny jobs 10x slower.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "train"
sys.path.insert(0, str(ROOT))  # train.py and sweep.py live at the top level

# Tiny but real: the smoke preset shrunk further. Every end-to-end test starts from these.
TINY = [
    "experiment=smoke",
    "trainer.max_epochs=1",
    "data.n_train=256",
    "data.n_test=128",
    "model.width=4",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def compose_config(overrides: list[str], config_name: str = "train", tree: str = "train"):
    """Compose `config_name` from one application's tree: conf/train, conf/analysis or conf/theory."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf" / tree), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str):
        return compose_config([*TINY, f"paths.output_dir={tmp_path / 'run'}", *overrides])

    return make


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    # No test may reach W&B servers or read a developer's credentials.
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("NETRC", os.devnull)


class StopAfterEpoch(pl.Callback):
    """A run stopped at the end of epoch `epoch` (after its checkpoints), as if killed there.
    Added from the command line: +callbacks.stop._target_=conftest.StopAfterEpoch +callbacks.stop.epoch=0"""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            trainer.should_stop = True


def stop_after(epoch: int) -> list[str]:
    return ["+callbacks.stop._target_=conftest.StopAfterEpoch", f"+callbacks.stop.epoch={epoch}"]
