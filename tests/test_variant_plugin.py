"""A SAM variant added from outside the package: one class (here, in this file) and one YAML in a
config folder of one's own, found through Hydra's search path. Nothing in sam_lightning/ changes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from conftest import ROOT, TINY

from sam_lightning.variants import Variant


@dataclass(frozen=True, kw_only=True)
class SignSAM(Variant):
    """e = scale * rho * sign(g) / sqrt(d): the steepest ascent direction of the l-infinity ball,
    rescaled to norm scale * rho (d parameters)."""

    name = "sign_sam"
    scale: float = 1.0

    def perturbation(self, w, grad_fn, rho):
        g = grad_fn(None)
        d = sum(t.numel() for t in g.values())
        return {k: self.scale * rho * torch.sign(t) / d**0.5 for k, t in g.items()}


YAML = """\
_target_: test_variant_plugin.SignSAM
rho: 0.05
scale: 3.0
m: 32
"""


@pytest.mark.slow
def test_a_variant_defined_outside_the_package_trains_through_train_py(tmp_path):
    (tmp_path / "conf" / "method").mkdir(parents=True)
    (tmp_path / "conf" / "method" / "sign_sam.yaml").write_text(YAML)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "train.py",
        *TINY,
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "method=sign_sam",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run_dir}",
        "logger=csv",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished"
    assert (
        results["config"]["method"]["_target_"] == "test_variant_plugin.SignSAM"
        and results["config"]["method"]["name"] == "sign_sam"
    )
    with open(run_dir / "csv" / "metrics.csv") as f:
        norms = [float(r["step/perturbation_norm"]) for r in csv.DictReader(f) if r.get("step/perturbation_norm")]
    assert norms and all(abs(v - 3.0 * 0.05) < 1e-5 for v in norms)  # the toy's e, not SAM's (norm rho)
