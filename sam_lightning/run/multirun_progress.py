"""A Hydra callback that says where a multirun stands: one line as each job starts,

    job 3/12 (method=sam seed=1) — elapsed 1:02:10, ETA 4:33:56

with the overrides the sweep varies. ETA: the mean duration of the jobs trained so far times the
jobs left to train (this one included); none before the first job has trained. Jobs that will be
skipped as duplicates (a method that ignores rho, ERM, at a second rho of a grid: `sam_lightning.run.duplicates`) count in neither: they
take no time, so they would pull the mean down and inflate the work left. Configured in conf/train/train.yaml and conf/theory/theory.yaml
under `hydra.callbacks`. The count N is that of Hydra's basic sweeper (the grid of
`hydra.sweeper.params` and the command line) or an Optuna study's `n_trials`; another sweeper's
lines have no N and no ETA. Jobs that a parallel launcher runs in other processes get the elapsed
time only (their durations stay in those processes).
"""

from __future__ import annotations

import time

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def planned_jobs(config: DictConfig) -> tuple[int | None, set[str] | None]:
    """How many jobs the multirun of `config` (its multirun config) will run, and the override keys
    whose values differ between them; None where unknown."""
    from sam_lightning.run.duplicates import sweep_jobs

    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    if target.endswith(".BasicSweeper"):
        overrides = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in config.hydra.overrides.task]
        try:
            jobs = sweep_jobs(overrides)
        except Exception:  # noqa: BLE001 - an override the parser cannot enumerate: no count, the jobs run
            return None, None
        varying = {o.split("=", 1)[0] for i, o in enumerate(jobs[0]) if len({job[i] for job in jobs}) > 1}
        return len(jobs), varying
    trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
    return (int(trials), set(params)) if isinstance(trials, int) else (None, None)


def skipped_jobs(config: DictConfig) -> set[int]:
    """The numbers of the jobs of Hydra's basic sweeper's grid that will be skipped as duplicates
    (`duplicates.find_duplicate`, told each job's method by its `method=` override, read as a
    method's name, with the job's own `method.<key>=` values); empty for another sweeper or a grid
    the parser cannot enumerate. (The job itself decides from its composed config.)"""
    from sam_lightning.run.duplicates import find_duplicate, sweep_jobs
    from sam_lightning.run.naming import canonical_value, split_override

    if not str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).endswith(".BasicSweeper"):
        return set()
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    overrides = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in config.hydra.overrides.task]
    try:
        jobs = sweep_jobs(overrides)
    except Exception:  # noqa: BLE001 - an override the parser cannot enumerate: every job counts
        return set()
    skipped = set()
    for num, job in enumerate(jobs):
        pairs = list(map(split_override, job))
        methods = [value for key, value in pairs if key == "method"]
        settings = {
            k.removeprefix("method."): canonical_value(v)
            for k, v in pairs
            if k.count(".") == 1 and k.startswith("method.")
        }
        if methods and find_duplicate(overrides, job, {**settings, "name": methods[-1]}, num) is not None:
            skipped.add(num)
    return skipped


def clock(seconds: float) -> str:
    """H:MM:SS."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MultirunProgress(Callback):
    def __init__(self) -> None:
        self.total: int | None = None
        self.varying: set[str] | None = None  # the swept keys: a line shows those of its job's overrides
        self.started: float | None = None  # wall clock (time.time): the same in a launcher's other processes
        self.job_started: float | None = None
        self.durations: list[float] = []  # of the jobs that trained
        self.skipped: set[int] = set()  # job numbers (from 0) that will be skipped as duplicates

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.time()
        self.total, self.varying = planned_jobs(config)
        self.skipped = skipped_jobs(config)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        from sam_lightning.settings.hydra_job import is_multirun

        if not is_multirun(config.hydra):
            return
        now = time.time()
        self.job_started = now
        if self.started is None:
            self.started = now
        print(self.line(int(config.hydra.job.num) + 1, [str(o) for o in config.hydra.overrides.task], now), flush=True)

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        if self.job_started is not None and int(config.hydra.job.num) not in self.skipped:
            self.durations.append(time.time() - self.job_started)
        self.job_started = None

    def line(self, k: int, overrides: list[str], now: float) -> str:
        """`job k/N (<overrides>) — elapsed <t>, ETA <t>` for job k (counted from 1) starting at `now`;
        the overrides the sweep varies (all of them when none does, or it is not known which)."""
        swept = [o for o in overrides if o.split("=", 1)[0] in (self.varying or ())]
        overrides = swept or overrides
        text = f"job {k}/{self.total}" if self.total else f"job {k}"
        text += f" ({' '.join(overrides)}) — elapsed {clock(now - self.started)}"
        if self.durations and self.total:
            left = sum(1 for num in range(k - 1, self.total) if num not in self.skipped)
            text += f", ETA {clock(sum(self.durations) / len(self.durations) * left)}"
        return text
