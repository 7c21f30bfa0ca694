"""Exact resume: a run stopped after an epoch and resumed from last.ckpt ends with the weights of the
run that never stopped, bit for bit on the CPU (RNG states, n-SAM's previous batch, the switch)."""

from __future__ import annotations

import pytest
import torch
from conftest import stop_after

from train import train

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
    assert resumed["history"] == whole["history"]
    if "method=erm_to_sam" in overrides:
        assert [h["train/perturbed"] for h in resumed["history"]] == [0.0, 1.0]
