"""`make gpu-check` (bench/gpu_check.py) shrunk to the CPU: every step runs or says why it is skipped,
its report is written as it goes, and a failing step is recorded while the check goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import SCRIPTS, check_one_line, run_entry

SCRIPT = ROOT / "bench" / "gpu_check.py"
STEPS = ["train", "resume", "bench", "ddp", "sharpness"]


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    """The command `make gpu-check` runs, with the CPU profile (also on a machine with a GPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "profile=cpu", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_shrunk_check_runs_every_step_and_writes_its_report(tmp_path):
    out = tmp_path / "check"
    proc = gpu_check(f"out={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished" and report["shrunk"] and report["failed_steps"] == []
    steps = {s["step"]: s for s in report["steps"]}
    assert [s["step"] for s in report["steps"]] == STEPS
    for step in report["steps"]:
        assert step["status"] in ("ok", "skipped"), step
        assert step["status"] == "ok" or step["reason"], step
        assert f"{step['step']}: {step['status']} in " in proc.stdout  # its console line

    runs = steps["train"]["runs"]
    assert [r["name"].rsplit(", ", 1)[0] for r in runs] == ["ERM", "SAM (m = batch)", "m-SAM (m = 4, vmap)"]
    for run in runs:
        assert run["status"] == "finished" and run["exit_code"] == 0, run
        assert len(run["epoch_time_s"]) == 2 and all(t > 0 for t in run["epoch_time_s"]), run
        assert 0 <= run["final_test_error"] <= 1 and run["precision"] == "32-true"
    assert any(line.startswith("m-SAM engine: vmap") for line in runs[2]["log_lines"]), runs[2]["log_lines"]

    resume = steps["resume"]
    assert resume["flags"] == ["trainer.deterministic=true", "trainer.benchmark=false"]
    assert "ckpt_path=" in resume["runs"][1]["command"] and "ckpt_path=" not in resume["runs"][0]["command"]
    weights = resume["weights"]
    assert weights["tensors"] > 0 and weights["tensors_differing"] == 0 and weights["max_abs_difference"] == 0
    assert weights["global_steps"][0] == weights["global_steps"][1] > 0

    bench = steps["bench"]
    assert bench["matmul_tflops"]["fp32"] > 0 and bench["rows"]
    assert all(0 < r["of_matmul_rate"] for r in bench["rows"]), bench["rows"]

    assert "DDP needs two or more" in steps["ddp"]["reason"]

    sharpness = steps["sharpness"]
    assert sharpness["device"] == "cpu" and "device=auto" in sharpness["command"]
    assert str(out / "train" / "sam_32-true" / "checkpoints" / "last.ckpt") in sharpness["command"]
    assert [isinstance(r["sharpness"], float) for r in sharpness["results"]] == [True]
    assert "| m-SAM (m = 4, vmap), 32-true |" in proc.stdout  # the table that ends the check


@pytest.mark.slow
def test_a_failing_step_is_recorded_and_the_check_goes_on(tmp_path):
    out = tmp_path / "check"
    proc = gpu_check(f"out={out}", "steps=[bench,ddp]", "bench_overrides=['width=0']")  # the bench refuses width=0
    check_one_line(proc.stderr, proc.returncode, 1, "step(s) failed: bench")
    report = json.loads((out / "report.json").read_text())
    bench, ddp = report["steps"]
    assert bench["status"] == "failed" and bench["exit_code"] == 2
    assert bench["error"].startswith("error: width=0") and bench["error"].endswith("(exit status 2)")
    assert "bench: failed in " in proc.stdout and "width=0" in (out / "logs" / "bench.log").read_text()
    assert ddp["step"] == "ddp" and ddp["status"] == "skipped"  # the step after the failed one ran
    assert report["status"] == "finished" and report["failed_steps"] == ["bench"]


@pytest.mark.slow
def test_a_command_past_its_steps_deadline_is_stopped_and_the_check_goes_on(tmp_path):
    out = tmp_path / "check"
    proc = gpu_check(f"out={out}", "steps=[bench,ddp]", "budget_s.bench=1")  # the bench takes longer to start
    assert proc.returncode == 1, proc.stderr[-3000:]
    bench, ddp = json.loads((out / "report.json").read_text())["steps"]
    assert bench["status"] == "failed" and bench["timed_out"] and bench["error"].startswith("timed out")
    assert bench["seconds"] < 30 and ddp["status"] == "skipped"


@pytest.mark.slow
def test_make_gpu_check_passes_out_to_the_script():
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    lines = subprocess.run(
        ["make", "-n", "gpu-check", "OUT=/tmp/somewhere"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert ".venv/bin/python bench/gpu_check.py out=/tmp/somewhere" in lines


@pytest.mark.parametrize(
    "args,names",
    [
        (["steps=[train,nope]"], "steps: 'nope'"),
        (["steps=[]"], "steps=[]"),
        (["profile=tpu"], "profile='tpu'"),
        (["budget_s.train=0"], "budget_s.train=0"),
        (["profiles.cpu.width=-8"], "profiles.cpu.width=-8"),
        (["train_overrides=5"], "train_overrides=5"),
        (["data=cifar10"], "data=cifar10 needs data_root"),
        (["data=mnist"], "data='mnist'"),
        (["data=cifar10", "data_root=/no/such/folder"], "data_root=/no/such/folder"),
    ],
)
def test_bad_settings_are_one_line_before_anything_runs(tmp_path, args, names, capfd, monkeypatch):
    monkeypatch.setitem(SCRIPTS, "gpu_check", SCRIPT)
    out = tmp_path / "check"
    profile = [] if any(a.startswith("profile=") for a in args) else ["profile=cpu"]
    code = run_entry("gpu_check", [*profile, f"out={out}", *args], monkeypatch)
    check_one_line(capfd.readouterr().err, code, 2, names)
    assert not (out / "report.json").exists()


def test_a_folder_that_holds_a_report_is_refused(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(SCRIPTS, "gpu_check", SCRIPT)
    (tmp_path / "report.json").write_text("{}")
    code = run_entry("gpu_check", ["profile=cpu", f"out={tmp_path}"], monkeypatch)
    check_one_line(capfd.readouterr().err, code, 2, "already holds a report")
    assert (tmp_path / "report.json").read_text() == "{}"


def test_a_gpu_run_records_its_peak_memory_in_results_json(tmp_path, monkeypatch):
    # What step train reports as peak GPU memory: results.json's, reset when fit starts (a multirun's
    # earlier jobs in the same process do not count) and kept out of the history.
    from types import SimpleNamespace

    import torch

    from sam_lightning.run.results import ResultsWriter

    reset = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset.append)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 1536 * 2**20)
    trainer = SimpleNamespace(callback_metrics={}, current_epoch=0, global_step=4, is_global_zero=True)
    for device, expected in ((torch.device("cuda", 0), 1536.0), (torch.device("cpu"), None)):
        writer = ResultsWriter(tmp_path / device.type, {})
        module = SimpleNamespace(device=device)
        writer.on_fit_start(trainer, module)
        writer.on_train_epoch_end(trainer, module)
        results = json.loads((tmp_path / device.type / "results.json").read_text())
        assert results.get("peak_gpu_memory_mb") == expected
        assert "peak_gpu_memory_mb" not in results["history"][0]
    assert reset == [torch.device("cuda", 0)]
