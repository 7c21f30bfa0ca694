"""`make bench` and `make bench-gpu` keep working: the benchmark runs on a tiny model and writes its table."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

TINY = ["width=4", "batch_sizes=[16]", "m=[4]", "steps=1", "rounds=1", "threads=1"]


def test_bench_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "bench/step_time.py", *TINY, f"out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    methods = {(r["norm"], r["method"], r["engine"]) for r in result["steps"]}
    assert methods == {
        (n, m, e)
        for n in ("batch", "group")
        for m, e in [("ERM", "-"), ("SAM (m = batch)", "-"), ("m-SAM (m = 4)", "loop"), ("m-SAM (m = 4)", "vmap")]
    }
    assert all(r["ms"] > 0 and r["vs_sam"] > 0 for r in result["steps"])
    assert result["loops_ms"]["lightning/plain"] > 0 and set(result["loader_batches_per_s"]) == {
        "DataLoader",
        "device-resident",
    }
    assert "| m-SAM (m = 4) | vmap |" in proc.stdout


def test_gpu_preset_composes_and_runs_its_grid_on_the_cpu(tmp_path):
    # The GPU preset's settings with a CPU and a tiny model: every row of its grid runs.
    out = tmp_path / "gpu.json"
    cmd = [
        sys.executable,
        "bench/step_time.py",
        "preset=gpu",
        "device=cpu",
        *TINY,
        "precisions=[fp32]",
        "compile=[false]",
        "loops=false",
        "loaders=false",
        f"out={out}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["steps"]
    assert {r["channels_last"] for r in rows} == {False, True} and {r["norm"] for r in rows} == {"batch"}
    assert all(r["ms"] is not None for r in rows)
