"""A run's record is written only by the run that owns it: a resume takes the run's own settings and
refuses, before writing a byte, what would change the run; a folder is claimed by one process at a
time; other commands never write into a run folder; a run that ends early says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, stop_after
from helpers import check_one_line, run_entry

# Every test here trains (or resumes) a run.
pytestmark = pytest.mark.slow

SETTINGS = [*TINY, "trainer.max_epochs=2", "method.rho=0.07", "seed=1"]  # a run whose settings are not the defaults


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path: equal snapshots mean nothing was written."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A run of SETTINGS stopped after its first epoch (as if killed there), made once."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as mp:
        assert run_entry("train", [*SETTINGS, *stop_after(0), f"hydra.run.dir={folder}"], mp) == 0
    return folder


@pytest.fixture
def run(stopped_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(stopped_run, copy)
    return copy


def test_ckpt_path_alone_resumes_with_the_runs_own_settings(run, capfd, monkeypatch):
    got = run_entry("train", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "logger=csv"], monkeypatch)
    assert got == 0, capfd.readouterr().err[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["epochs_done"] == 2
    assert results["config"]["method"]["rho"] == 0.07 and results["config"]["seed"] == 1
    assert results["provenance"]["torch"] and "git_commit" in results["provenance"]  # where the numbers came from
    assert [h["epoch"] for h in results["history"]] == [0, 1]
    assert (run / ".hydra" / "overrides.yaml").read_text().count("method.rho=0.07") == 1  # the run's own, kept


@pytest.mark.parametrize(
    "override",
    [
        "seed=3",
        "method=erm",
        "norm=group",
        "trainer.max_epochs=5",
        "data.label_noise=0.2",
        "trainer.devices=2",
        "method.engine=vmap",
        "trainer.limit_train_batches=1",
        "trainer.max_steps=5",
        "overwrite=true",
    ],
)
def test_a_refused_resume_leaves_every_file_of_the_run_as_it_was(run, override, capfd, monkeypatch):
    before = snapshot(run)
    got = run_entry("train", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", override], monkeypatch)
    key = override.split("=")[0]
    check_one_line(capfd.readouterr().err, got, 2, key)
    assert snapshot(run) == before


def test_a_refused_run_writes_nothing_anywhere(tmp_path, capfd, monkeypatch):
    # the default run folder, outputs/<date>/<time>_..., under paths.log_dir
    got = run_entry("train", [*TINY, "data.batch_size=0", f"paths.log_dir={tmp_path}"], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, "data.batch_size")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_in_use_is_refused_and_a_dead_process_lock_is_taken_over(tmp_path, capfd, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / ".run.lock"
    import socket

    here = socket.gethostname()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": here, "since": "now"}))  # a live process holds it
    got = run_entry("train", [*TINY, f"hydra.run.dir={folder}"], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, "in use by another run")
    assert sorted(p.name for p in folder.iterdir()) == [".run.lock"]

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": here, "since": "then"}))  # killed without cleaning up
    assert run_entry("train", [*TINY, f"hydra.run.dir={folder}"], monkeypatch) == 0, capfd.readouterr().err[-3000:]
    assert json.loads((folder / "results.json").read_text())["status"] == "finished"
    assert not lock.exists()  # released at the end


def test_overwrite_starts_a_fresh_log(tmp_path, capfd, monkeypatch):
    folder = tmp_path / "run"
    assert run_entry("train", [*TINY, "method=erm", f"hydra.run.dir={folder}"], monkeypatch) == 0
    assert "method erm" in (folder / "train.log").read_text()
    args = [*TINY, "method=sam", f"hydra.run.dir={folder}", "overwrite=true"]
    assert run_entry("train", args, monkeypatch) == 0, capfd.readouterr().err[-3000:]
    log = (folder / "train.log").read_text()
    assert "method sam" in log and "method erm" not in log


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "ckpt_path={ckpt}", "out_dir={run}"],
        ["sharpness", "ckpt={ckpt}", "out_dir={run}", "n=8", "m=[8]"],
        ["theory", "experiment=diag_net", "method=erm", "hydra.run.dir={run}"],
    ],
    ids=["eval", "sharpness", "theory"],
)
def test_other_commands_never_write_into_a_run_folder(run, command, capfd, monkeypatch):
    before = snapshot(run)
    args = [a.format(ckpt=run / "checkpoints" / "last.ckpt", run=run) for a in command[1:]]
    got = run_entry(command[0], args, monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, "holds a training run")
    assert snapshot(run) == before


def test_a_run_that_ends_before_max_epochs_is_stopped_with_its_reason(tmp_path, capfd, monkeypatch):
    folder = tmp_path / "run"
    got = run_entry(
        "train", [*TINY, "trainer.max_epochs=2", "trainer.max_steps=3", f"hydra.run.dir={folder}"], monkeypatch
    )
    assert got == 0, capfd.readouterr().err[-3000:]
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "stopped", results["status"]
    assert "trainer.max_steps=3" in results["reason"] and results["stopped_at"]["step"] == 3
    assert results["stopped_at"]["epoch"] == 1  # 2 steps an epoch: the third is epoch 1's first
    assert run_entry("sweep", [str(tmp_path)], monkeypatch) == 1  # listed apart, never averaged as finished
    assert "run: stopped: trainer.max_steps=3 reached in epoch 2 of 2, at step 3" in capfd.readouterr().out


def test_sigterm_ends_a_multirun_and_the_same_sweep_again_goes_on_where_it_stopped(tmp_path):
    from conftest import ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    sweep = tmp_path / "sweep"
    # job 0 is preempted at its step 6 (mid-epoch 1 of 2), before job 1 starts
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        *TINY,
        "trainer.max_epochs=2",
        "data.batch_size=64",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.term._target_=conftest.SigtermAtStep",
        "+callbacks.term.step=6",
    ]

    def sweep_once() -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    first = sweep_once()
    assert first.returncode == 143, first.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 1 and json.loads((jobs[0] / "results.json").read_text())["status"] == "preempted"

    # The same command again: job 0 resumes from its step 6 and finishes; job 1 is preempted in its turn.
    second = sweep_once()
    assert second.returncode == 143, second.stderr[-3000:]
    job0 = snapshot(jobs[0])
    assert json.loads(job0["results.json"])["status"] == "finished"

    third = sweep_once()  # job 0 kept as it is, job 1 resumed
    assert third.returncode == 0, third.stderr[-3000:]
    assert "finished earlier, kept as it is" in third.stdout
    assert snapshot(jobs[0]) == job0
    results = [
        json.loads((p / "results.json").read_text())
        for p in sorted(sweep.iterdir())
        if p.is_dir() and p.name[0].isdigit()
    ]
    assert [(r["status"], r["global_step"], r["config"]["seed"]) for r in results] == [
        ("finished", 8, 0),
        ("finished", 8, 1),
    ]


def test_a_checkpoint_that_is_not_written_fails_the_run(tmp_path, capfd, monkeypatch):
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    # What Lightning's writer does on an unwritable checkpoints/ folder: catch the PermissionError, write nothing.
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", lambda self, *args, **kwargs: None)
    folder = tmp_path / "run"
    got = run_entry("train", [*TINY, f"hydra.run.dir={folder}"], monkeypatch)
    capfd.readouterr()
    assert got == 1
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "failed" and "was not written" in results["reason"], results["reason"]


def test_an_unwritable_image_cache_is_a_warning_not_a_failure(source_trees, tmp_path, capfd, monkeypatch):
    from conftest import tiny_on

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    source = ["data=imagefolder", f"data.root={source_trees['imagefolder']}", f"data.cache_dir={blocker / 'cache'}"]
    folder = tmp_path / "run"
    got = run_entry("train", [*tiny_on(source), f"hydra.run.dir={folder}"], monkeypatch)
    assert got == 0, capfd.readouterr().err[-3000:]
    assert "cannot be cached" in (folder / "train.log").read_text()
    assert json.loads((folder / "results.json").read_text())["status"] == "finished"


def test_an_output_folder_under_a_file_is_one_line(tmp_path, capfd, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    got = run_entry("eval", ["ckpt_path=whatever.ckpt", f"out_dir={blocker / 'eval'}"], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, "cannot be created")
