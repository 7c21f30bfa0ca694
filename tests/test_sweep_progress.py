"""The multirun's progress line, `job k/N (<overrides>) — elapsed <t>, ETA <t>`, from the Hydra
callback itself: a multirun config, fake jobs and a fake clock (tests/test_sweep.py sees the lines
of a real multirun)."""

from __future__ import annotations

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from sam_lightning.run import multirun_progress as progress
from sam_lightning.run.multirun_progress import MultirunProgress, planned_jobs

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def multirun(task: list[str], params: dict | None = None, sweeper: str = BASIC, **more) -> OmegaConf:
    return OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweeper": {"_target_": sweeper, "params": params, **more},
                "overrides": {"task": task},
                "job": {"num": 0},
            }
        }
    )


def job(num: int, overrides: list[str], mode=RunMode.MULTIRUN) -> OmegaConf:
    return OmegaConf.create({"hydra": {"mode": mode, "job": {"num": num}, "overrides": {"task": overrides}}})


def test_each_job_start_says_k_of_n_with_the_elapsed_time_and_from_the_second_an_eta(monkeypatch, capsys):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    callback = MultirunProgress()
    # a preset's axes and the command line: 2 methods x 3 seeds
    callback.on_multirun_start(multirun(["method=erm,sam", "data=synthetic"], params={"seed": "0,1,2"}))
    lines = []
    for num, duration in enumerate([600.0, 1200.0, 900.0]):
        callback.on_job_start(
            job(num, [f"seed={num}", "method=erm", "data=synthetic"])
        )  # what it does not vary: left out
        lines.append(capsys.readouterr().out.strip())
        now[0] += duration
        callback.on_job_end(job(num, []), job_return=JobReturn(status=JobStatus.COMPLETED))
    assert lines == [
        "job 1/6 (seed=0 method=erm) — elapsed 0:00:00",
        "job 2/6 (seed=1 method=erm) — elapsed 0:10:00, ETA 0:50:00",  # 5 jobs left at 10 min each
        "job 3/6 (seed=2 method=erm) — elapsed 0:30:00, ETA 1:00:00",  # 4 left at 15 min each
    ]


def test_a_single_run_prints_nothing(capsys):
    callback = MultirunProgress()
    callback.on_job_start(job(0, ["method=sam"], mode=RunMode.RUN))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "config,count",
    [
        (multirun(["method=erm,sam", "method.rho=0.05,0.1", "seed=0,1"]), 8),
        (multirun(["seed=0"]), 1),
        (multirun([], sweeper="hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", n_trials=20), 20),
        (multirun(["seed=0,1"], sweeper="some.OtherSweeper"), None),
    ],
    ids=["grid", "one_job", "optuna", "unknown_sweeper"],
)
def test_the_count_is_the_sweepers(config, count, capsys):
    assert planned_jobs(config)[0] == count
    callback = MultirunProgress()
    callback.on_multirun_start(config)
    callback.on_job_start(job(0, ["seed=0"]))
    assert capsys.readouterr().out.startswith("job 1/" + str(count) if count else "job 1 (seed=0)")


def test_the_eta_counts_only_the_jobs_that_train(monkeypatch, capsys):
    # method=erm,sam x rho=0.05,0.1: ERM at rho 0.1 (job 1) repeats job 0 and is skipped at once; it
    # must neither pull the mean down nor count as work left.
    now = [0.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    callback = MultirunProgress()
    grid = ["method=erm,sam", "method.rho=0.05,0.1"]
    callback.on_multirun_start(multirun(grid))
    assert callback.skipped == {1}
    lines = []
    jobs = [["method=erm", "method.rho=0.05"], ["method=erm", "method.rho=0.1"]]
    jobs += [["method=sam", "method.rho=0.05"], ["method=sam", "method.rho=0.1"]]
    for num, (overrides, duration) in enumerate(zip(jobs, [600.0, 0.5, 600.0, 600.0])):
        callback.on_job_start(job(num, overrides))
        lines.append(capsys.readouterr().out.strip())
        now[0] += duration
        callback.on_job_end(job(num, overrides), job_return=JobReturn(status=JobStatus.COMPLETED))
    assert [line.split("ETA ")[-1] if "ETA" in line else None for line in lines] == [
        None,
        "0:20:00",  # this job is skipped: the work left is the two SAM jobs, 10 min each
        "0:20:00",  # the mean is 10 min (the skipped 0.5 s left out), two jobs left
        "0:10:00",
    ]
