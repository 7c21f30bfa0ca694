"""The rho protocol's second stage: `python sweep.py <stage-1 dir> --next` prints, for each method,
stage 1's command at the rho chosen on the validation split, over the remaining seeds."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF
from omegaconf import OmegaConf

from sam_lightning.reporting.cli import main as sweep_main
from sam_lightning.reporting.next_stage import paper_seeds

ROOT = Path(__file__).resolve().parents[1]
REGIME_A = ROOT / "docs" / "results" / "laptop_sam_vs_erm"
FIG_PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("fig*.yaml"))


def _next(capsys, *args: str) -> list[str]:
    assert sweep_main([*args, "--next"]) == 0
    return capsys.readouterr().out.splitlines()


def _commands(lines: list[str]) -> dict[str, list[str]]:
    """method=... -> the words of its command."""
    out = {}
    for line in lines:
        if line.startswith("python "):
            words = shlex.split(line)
            method = next(w for w in words if w.startswith("method="))
            extra = [w for w in words if w.startswith(("method.m=", "method.sigma=", "method.switch_at="))]
            out[" ".join([method, *extra])] = words
    return out


def test_next_picks_each_methods_rho_on_seed_0s_validation_split(capsys):
    # Regime A's committed stage 1: SAM chose 0.025, n-SAM 0.1 and 4-SAM 0.05 (docs/reproduction.md).
    commands = _commands(_next(capsys, str(REGIME_A), "--where", "seed=0"))
    assert "method.rho=0.025" in commands["method=sam"]
    assert "method.rho=0.1" in commands["method=nsam"]
    assert "method.rho=0.05" in commands["method=sam_m4"]
    assert not any(w.startswith("method.rho=") for w in commands["method=erm"])  # ERM ignores rho
    for words in commands.values():
        assert words[:3] == ["python", "train.py", "-m"]
        assert "experiment=laptop_sam_vs_erm" in words and "data=imagefolder" in words
        assert words[-1] == "seed=" + ",".join(str(s) for s in paper_seeds() if s != 0)


def test_next_takes_the_stage_2_seeds_and_refuses_bad_ones(capsys):
    commands = _commands(_next(capsys, str(REGIME_A), "--where", "seed=0", "--seeds", "1,2,3,4"))
    assert commands["method=sam"][-1] == "seed=1,2,3,4"
    with pytest.raises(SystemExit) as exit_:
        sweep_main([str(REGIME_A), "--next", "--seeds", "one"])
    assert exit_.value.code == 2
    assert sweep_main([str(REGIME_A), "--where", "seed=0", "--next", "--seeds", "0"]) == 2  # nothing left to run


def test_every_paper_preset_runs_stage_1_of_the_protocol():
    grid = OmegaConf.load(CONF / "sweep" / "rho_grid.yaml").hydra.sweeper.params["method.rho"]
    for preset in FIG_PRESETS:
        node = OmegaConf.load(CONF / "experiment" / f"{preset}.yaml")
        assert {"/sweep": "rho_grid"} in list(node.defaults), preset
        params = node.hydra.sweeper.params
        assert str(params.seed) == "0" and "method.rho" not in params, preset
    assert str(grid) == "0.025,0.05,0.1,0.2,0.3,0.4"  # App. D


@pytest.mark.slow
def test_next_prints_a_stage_2_that_runs(tmp_path, capsys):
    tiny = ["debug=smoke", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=csv"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stage1 = tmp_path / "stage1"
    grid = ["method=erm,nsam", "method.rho=0.05,0.1"]  # a small stage 1 of the fig1 preset
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "experiment=fig1", *tiny, *grid, f"hydra.sweep.dir={stage1}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    val = {}
    for path in stage1.glob("*/results.json"):
        r = json.loads(path.read_text())
        if r["status"] == "finished" and r["config"]["method"]["name"] != "erm":
            val[r["config"]["method"]["rho"]] = r["final_val_error"]
    chosen = min(sorted(val), key=lambda rho: val[rho])  # a tie goes to the smaller rho
    commands = _commands(_next(capsys, str(stage1), "--seeds", "1"))
    assert set(commands) == {"method=erm", "method=nsam"}
    words = commands["method=nsam"]
    assert f"method.rho={chosen}" in words and "experiment=fig1" in words and words[-1] == "seed=1"
    stage2 = tmp_path / "stage2"
    proc = subprocess.run(
        [sys.executable, *words[1:], f"hydra.sweep.dir={stage2}"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = [json.loads(p.read_text()) for p in stage2.glob("*/results.json")]
    assert result["status"] == "finished" and result["config"]["seed"] == 1
    assert result["config"]["method"]["rho"] == chosen and result["config"]["method"]["name"] == "nsam"
