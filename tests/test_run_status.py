"""Honest status in results.json: diverged, interrupted, and the file mode of the JSON outputs."""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest
from conftest import TINY
from helpers import check_one_line, run_entry

from sam_lightning.reporting.collect import collect
from sam_lightning.run.jsonio import atomic_write_json
from sam_lightning.training.module import SAMClassifier
from train import train


@pytest.mark.slow
@pytest.mark.parametrize("checked_every", [1, 50], ids=["checked_every_step", "checked_at_epoch_end"])
def test_non_finite_loss_stops_the_run_as_diverged_and_sweep_keeps_it_apart(
    tiny_cfg, tmp_path, monkeypatch, checked_every
):
    step = SAMClassifier.training_step

    def nan_from_step_4(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step >= 4 else loss  # 2 steps per epoch: epoch 1, step 4

    monkeypatch.setattr(SAMClassifier, "training_step", nan_from_step_4)
    cfg = tiny_cfg(
        "trainer.max_epochs=3",
        f"trainer.log_every_n_steps={checked_every}",
        f"paths.output_dir={tmp_path / 'sweep' / 'job0'}",
    )
    with pytest.raises(FloatingPointError, match="epoch 1, step 4"):
        train(cfg)
    results = json.loads((tmp_path / "sweep" / "job0" / "results.json").read_text())
    assert results["status"] == "diverged" and results["diverged_at"] == {"epoch": 1, "step": 4, "loss": "nan"}
    assert "epoch 1, step 4" in results["reason"] and [h["epoch"] for h in results["history"]] == [0]

    runs, _ = collect([tmp_path / "sweep"])
    assert [(r.status, "epoch 1, step 4" in r.reason) for r in runs.itertuples()] == [("diverged", True)]


@pytest.mark.slow
def test_diverging_run_exits_non_zero_with_one_line_naming_epoch_and_step(tmp_path, capfd, monkeypatch):
    code = run_entry("train", [*TINY, "trainer.max_epochs=3", "optim.lr=1e8", f"hydra.run.dir={tmp_path}"], monkeypatch)
    check_one_line(capfd.readouterr().err, code, 1, "training diverged")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "diverged" and set(results["diverged_at"]) == {"epoch", "step", "loss"}


@pytest.mark.slow
def test_ctrl_c_ends_the_run_as_interrupted(tiny_cfg, monkeypatch):
    step = SAMClassifier.training_step

    def ctrl_c_at_step_2(self, batch, batch_idx):
        if self.global_step == 2:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    monkeypatch.setattr(SAMClassifier, "training_step", ctrl_c_at_step_2)
    handler = signal.getsignal(signal.SIGINT)
    cfg = tiny_cfg("trainer.max_epochs=2")
    try:
        with pytest.raises(SystemExit) as stop:  # Lightning's own graceful shutdown: exit 1
            train(cfg)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C from here on
    assert stop.value.code == 1
    results = json.loads(open(f"{cfg.paths.output_dir}/results.json").read())
    assert results["status"] == "interrupted" and "KeyboardInterrupt" in results["reason"]
    assert [h["epoch"] for h in results["history"]] == [0]


def test_json_outputs_are_readable_by_everyone_as_other_outputs(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "analysis.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "analysis.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


def test_ctrl_c_before_training_is_interrupted_too(tmp_path, capfd, monkeypatch):
    from sam_lightning.data import datamodule

    def ctrl_c(self, stage=None):
        raise KeyboardInterrupt

    # The data load runs in Lightning's setup hook: Lightning's own Ctrl-C handling applies.
    monkeypatch.setattr(datamodule.ImageDataModule, "setup", ctrl_c)
    code = run_entry("train", [*TINY, f"hydra.run.dir={tmp_path}"], monkeypatch)
    assert code == 1 and "Traceback" not in capfd.readouterr().err
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_a_non_finite_test_loss_is_divergence_and_never_a_best_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    # The training loss stays finite; the evaluation of epoch 0 sees NaN logits.
    forward = SAMClassifier.validation_step

    def nan_logits(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        return forward(self, (x * float("nan"), y), batch_idx, dataloader_idx)

    monkeypatch.setattr(SAMClassifier, "validation_step", nan_logits)
    with pytest.raises(FloatingPointError, match="test/loss"):
        train(tiny_cfg("trainer.max_epochs=2", f"paths.output_dir={tmp_path}"))
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "diverged"
    assert not list((tmp_path / "checkpoints").glob("best-*.ckpt"))


def test_results_config_is_resolved_in_every_status(tmp_path, capfd, monkeypatch):
    # A multirun job refused before training records (in its own fresh folder, so that the sweep
    # lists it) the config resolved, as a finished run does. A single run refused writes nothing.
    failed, finished = tmp_path / "failed", tmp_path / "finished"
    args = [*TINY, "data.batch_size=0", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=failed"]
    assert run_entry("train", ["-m", *args], monkeypatch) == 1  # the multirun says a job failed
    assert run_entry("train", [*TINY, "callbacks=none", f"hydra.run.dir={finished}"], monkeypatch) == 0
    configs = {p.name: json.loads((p / "results.json").read_text()) for p in (failed, finished)}
    assert configs["failed"]["status"] == "failed" and configs["finished"]["status"] == "finished"
    for name, payload in configs.items():
        assert payload["config"]["paths"]["output_dir"] == str(tmp_path / name)
        assert "config_unresolved" not in payload
    assert configs["failed"]["config"]["data"]["seed"] == configs["finished"]["config"]["data"]["seed"] == 0


def test_a_config_that_cannot_be_resolved_is_recorded_as_composed_and_says_why(tmp_path, monkeypatch):
    from conftest import compose_config

    from sam_lightning.run.results import write_failure

    monkeypatch.delenv("NO_SUCH_VARIABLE", raising=False)
    cfg = compose_config([*TINY, f"paths.output_dir={tmp_path}", "+where=${oc.env:NO_SUCH_VARIABLE}"])
    write_failure(tmp_path, cfg, "the config could not be resolved")
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"]["where"] == "${oc.env:NO_SUCH_VARIABLE}" and payload["config"]["seed"] == 0
    assert "NO_SUCH_VARIABLE" in payload["config_unresolved"]
