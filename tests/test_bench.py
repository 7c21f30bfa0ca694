"""`make bench` keeps working: the benchmark runs on a tiny model and writes its ratios."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_bench_runs_and_writes_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "bench/step_time.py", "--width", "4", "--batch-size", "64", "--steps", "2", "--rounds", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"sam/erm", "sam_m32/erm", "lightning/plain"}
    assert all(v > 0 for v in result["ratios"].values())
    assert "sam/erm" in proc.stdout
