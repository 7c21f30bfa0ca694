"""Exact resume: a run stopped after an epoch and resumed from last.ckpt ends with the weights of the
run that never stopped, bit for bit on the CPU (RNG states, n-SAM's previous batch, the switch)."""

from __future__ import annotations

import pytest
import torch
from conftest import stop_after
from helpers import computed

from train import train

# Every test here trains or starts a process.
pytestmark = pytest.mark.slow

CASES = {
    "sam": [],
    "nsam_previous_batch": ["method=nsam", "method.m=null"],
    "erm_to_sam_across_the_switch": ["method=erm_to_sam", "method.switch_at=0.5"],  # ERM in epoch 0, SAM in epoch 1
    "label_noise": ["data.label_noise=0.25"],
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_resumed_run_ends_with_the_weights_of_the_uninterrupted_one(tmp_path, tiny_cfg, overrides):
    def run(name: str, *more: str) -> dict:
        return train(tiny_cfg(f"paths.output_dir={tmp_path / name}", "trainer.max_epochs=2", *overrides, *more))

    whole = run("whole")
    run("stopped", *stop_after(0))
    resumed = run("stopped", f"ckpt_path={tmp_path / 'stopped/checkpoints/last.ckpt'}")

    a = torch.load(tmp_path / "whole/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "stopped/checkpoints/last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1 and a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert computed(resumed["history"]) == computed(whole["history"])
    if "method=erm_to_sam" in overrides:
        assert [h["train/perturbed"] for h in resumed["history"]] == [0.0, 1.0]


@pytest.mark.parametrize("logger", ["csv", "wandb", "tensorboard"])
def test_resume_from_the_command_line_continues_the_run_in_its_own_folder(tmp_path, logger):
    import csv
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT, TINY
    from wandb_log import run_contents

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    args = [
        *TINY,
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        f"logger={logger}",
        *(["logger.wandb.mode=offline"] if logger == "wandb" else []),
    ]

    def train_cli(*more: str) -> None:  # run from tmp_path: a new default run folder would land under tmp_path/outputs
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args, *more],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    run = tmp_path / "run"
    train_cli(*stop_after(0), f"hydra.run.dir={run}")
    train_cli("ckpt_path=run/checkpoints/last.ckpt")
    assert not (tmp_path / "outputs").exists()  # no second folder
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["epochs_done"] == 2
    assert [h["epoch"] for h in results["history"]] == [0, 1]
    if logger == "csv":
        rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
        tested = [r["epoch"] for r in rows if r.get("test/error")]
        assert tested == ["0", "1"], rows  # the first segment's rows kept, none repeated
        assert [r["epoch"] for r in rows if r.get("train/loss")] == ["0", "1"], rows
    elif logger == "tensorboard":
        assert len(list(run.glob("tensorboard/events.out.tfevents.*"))) == 2  # one per segment, in one folder
    else:
        files = sorted(run.glob("wandb/offline-run-*/*.wandb"))
        assert len(files) == 2
        ids = {run_contents(f)[2]["id"] for f in files}
        assert len(ids) == 1, ids  # one W&B run, resumed


def test_resume_refuses_another_experiment_and_init_from_with_ckpt_path(tmp_path, tiny_cfg):
    from sam_lightning.settings.config import ConfigError

    train(tiny_cfg(f"paths.output_dir={tmp_path / 'sam'}", "trainer.max_epochs=2", *stop_after(0)))
    last = tmp_path / "sam/checkpoints/last.ckpt"
    for other, key in (
        (["method=erm"], "method._target_"),
        (["data.label_noise=0.2"], "data.label_noise"),
        (["seed=3"], "data.seed"),
    ):
        with pytest.raises(ConfigError, match="another experiment") as err:
            train(tiny_cfg(f"paths.output_dir={tmp_path / 'sam'}", "trainer.max_epochs=2", f"ckpt_path={last}", *other))
        assert key in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="init_from and ckpt_path together"):
        train(
            tiny_cfg(
                f"paths.output_dir={tmp_path / 'other'}",
                "trainer.max_epochs=2",
                f"ckpt_path={last}",
                f"init_from={last}",
            )
        )


def test_trainer_arguments_at_lightnings_defaults_leave_the_fingerprint_as_before():
    # Checkpoints written before conf/train/trainer listed every argument still resume.
    from sam_lightning.settings.fingerprint import fingerprint, first_difference

    before = {"seed": 0, "trainer": {"max_epochs": 2, "precision": "32-true", "devices": 1}}
    now = {"seed": 0, "trainer": {**before["trainer"], "accumulate_grad_batches": 1, "gradient_clip_val": None}}
    now["trainer"]["num_nodes"] = 1
    assert first_difference(fingerprint(before), fingerprint(now)) is None
    now["trainer"]["accumulate_grad_batches"] = 2
    assert "trainer.accumulate_grad_batches" in first_difference(fingerprint(before), fingerprint(now))
