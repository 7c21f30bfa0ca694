"""Preemption: SIGTERM mid-epoch saves last.ckpt at that step, records `preempted`, exits 143, and the
run resumed from that checkpoint ends with the weights of the run that never stopped, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TINY

from train import train

STEPS = ["trainer.max_epochs=2", "data.batch_size=64"]  # 4 steps an epoch: step 6 is mid-epoch 1

# Every test here trains or starts a process.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("on_device", ["false", "true"])
def test_sigterm_mid_epoch_is_preempted_and_resumes_exactly(tmp_path, tiny_cfg, on_device):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    run = tmp_path / "preempted"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            *TINY,
            *STEPS,
            f"data_on_device={on_device}",
            f"hydra.run.dir={run}",
            "+callbacks.term._target_=conftest.SigtermAtStep",
            "+callbacks.term.step=6",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "preempted" in proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "preempted" and "SIGTERM" in results["reason"]
    stopped = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["global_step"] == 6 and stopped["epoch"] == 1  # the step it stopped at, not the last epoch's end

    whole = train(tiny_cfg(*STEPS, f"data_on_device={on_device}", f"paths.output_dir={tmp_path / 'whole'}"))
    resumed = train(
        tiny_cfg(
            *STEPS,
            f"data_on_device={on_device}",
            f"paths.output_dir={run}",
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        )
    )
    a = torch.load(tmp_path / "whole/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert resumed["status"] == "finished"
    # the epochs' test evaluations are those of the uninterrupted run
    assert [h.get("test/error") for h in resumed["history"]] == [h.get("test/error") for h in whole["history"]]

    # and so are the training metrics of the epoch cut in two: its running sums travel in the checkpoint
    def metrics(payload: dict) -> list[dict]:
        return [{k: v for k, v in h.items() if k.startswith("train/")} for h in payload["history"]]

    assert metrics(resumed) == metrics(whole)
    assert resumed["final_train_error"] == whole["final_train_error"]
