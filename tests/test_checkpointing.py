"""Which checkpoints a run keeps: the `callbacks` group (conf/train/callbacks) and the checkpoint.* keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from sam_lightning.training.callbacks.from_config import instantiate_callbacks
from sam_lightning.training.module import SAMClassifier
from train import train


@pytest.fixture
def best_at_epoch_0(monkeypatch):
    """The test error grows every epoch: epoch 0 stays the best one, later epochs never improve."""

    def worse_every_epoch(self, batch, batch_idx):
        self.log("test/error", float(self.current_epoch), on_epoch=True)
        self.log("test/loss", float(self.current_epoch), on_epoch=True)

    monkeypatch.setattr(SAMClassifier, "validation_step", worse_every_epoch)


def ckpt_files(run_dir) -> set[str]:
    return {p.name for p in Path(run_dir).rglob("*.ckpt")}


@pytest.mark.slow
@pytest.mark.parametrize("every", [1, 2], ids=["tested_every_epoch", "tested_every_2nd_epoch"])
def test_last_ckpt_holds_the_last_epoch_even_after_the_best_one(tiny_cfg, best_at_epoch_0, every):
    cfg = tiny_cfg("trainer.max_epochs=3", f"trainer.check_val_every_n_epoch={every}")
    train(cfg)
    run = cfg.paths.output_dir
    assert torch.load(f"{run}/checkpoints/last.ckpt", weights_only=True)["epoch"] == 2
    first_tested = every - 1  # the best one: the test error only grows
    assert (
        torch.load(f"{run}/checkpoints/best-epoch{first_tested:03d}.ckpt", weights_only=True)["epoch"] == first_tested
    )


@pytest.mark.slow
def test_periodic_checkpoints_are_all_kept_and_top_k_keeps_the_k_best(tiny_cfg, best_at_epoch_0):
    cfg = tiny_cfg("trainer.max_epochs=3", "checkpoint.every_n_epochs=1", "checkpoint.top_k=2")
    train(cfg)
    run = cfg.paths.output_dir
    assert ckpt_files(run) == {
        "last.ckpt",
        "epoch000.ckpt",
        "epoch001.ckpt",
        "epoch002.ckpt",
        "best-epoch000.ckpt",
        "best-epoch001.ckpt",
    }
    assert [torch.load(f"{run}/checkpoints/epoch{e:03d}.ckpt", weights_only=True)["epoch"] for e in range(3)] == [
        0,
        1,
        2,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "off", ["callbacks=none", "trainer.enable_checkpointing=false", "+trainer.enable_checkpointing=false"]
)
def test_checkpointing_off_writes_no_checkpoint_but_results(tiny_cfg, off):
    cfg = tiny_cfg(off)
    train(cfg)
    run = cfg.paths.output_dir
    assert ckpt_files(run) == set()  # not even Lightning's own default checkpoint
    assert json.load(open(f"{run}/results.json"))["status"] == "finished"


def test_callback_options_combine_by_name():
    def kinds(choice: str) -> list[type]:
        cfg = compose_config([choice, "paths.output_dir=/tmp/unused"])
        return [type(c) for c in instantiate_callbacks(cfg.callbacks, "test/error")]

    assert kinds("callbacks=default") == [ModelCheckpoint] * 3  # last, best, periodic
    assert kinds("callbacks=last_only") == [ModelCheckpoint]
    assert kinds("callbacks=none") == []
    assert kinds("callbacks=[default,early_stopping,lr_monitor]") == [ModelCheckpoint] * 3 + [
        EarlyStopping,
        LearningRateMonitor,
    ]
    assert kinds("callbacks.best_checkpoint=null") == [ModelCheckpoint] * 2
    cfg = compose_config(["paths.output_dir=/tmp/unused"])
    assert instantiate_callbacks(cfg.callbacks, "test/error", checkpointing=False) == []
    # monitor: auto (checkpoint.monitor's default) is the run's selection metric
    cfg = compose_config(["callbacks=[default,early_stopping]", "paths.output_dir=/tmp/unused"])
    monitors = [c.monitor for c in instantiate_callbacks(cfg.callbacks, "val/error")]
    assert monitors == ["step", "val/error", None, "val/error"]


@pytest.mark.slow
def test_early_stopping_ends_the_run_stopped_and_says_why_and_how_far(tiny_cfg, best_at_epoch_0):
    cfg = tiny_cfg("trainer.max_epochs=4", "callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=1")
    out = train(cfg)
    assert out["status"] == "stopped" and out["epochs_done"] == 2
    assert out["reason"].startswith("early stopping on ") and out["stopped_at"]["epoch"] == 1


def test_trainer_takes_any_lightning_argument_without_plus():
    cfg = compose_config(["trainer.detect_anomaly=true", "trainer.accumulate_grad_batches=1"])
    assert cfg.trainer.detect_anomaly is True and cfg.trainer.max_epochs == 200
