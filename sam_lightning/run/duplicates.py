"""A method that ignores rho in a rho grid (ERM): the jobs of a multirun that repeat an earlier job exactly.

`python train.py -m method=erm,sam method.rho=0.05,0.1 seed=0,1` is a cartesian product, so ERM
gets one job per rho; rho has no effect on ERM, so its jobs at the second and later rho values
would compute what its job at the grid's first rho computes (same seed, same everything else).
Which methods ignore rho, their classes say (`Method.uses_rho`): ERM, and random perturbations with
their default gaussian noise (only noise=sphere draws at radius rho).
Such a job writes results.json with status `skipped` and a reason that names the job it repeats,
prints one line and trains nothing; sweep tables leave it out (and count it under the table).

The grid is read as Hydra's basic sweeper builds it. `BasicSweeper.sweep()` saves the sweep's
own config to <sweep dir>/multirun.yaml before it launches any job: `hydra.sweeper.params` (the
axes of a `+sweep=` or experiment preset) followed by `hydra.overrides.task` (the command line) are
the sweep's overrides, parsed by Hydra's override parser, and `BasicSweeper.split_arguments`
turns them into the list of jobs, job number i being the i-th. A job is only skipped when its own
overrides are job `hydra.job.num` of that list: a multirun.yaml left by another command into the
same folder, or another sweeper (Optuna writes none), never skips a job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

RHO = "method.rho"  # the override key of the perturbation radius

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duplicate:
    """The earlier job of the sweep that a job repeats: its number, all its overrides, and those of
    the swept keys (what tells it from the sweep's other jobs)."""

    job_num: int
    overrides: tuple[str, ...]
    swept: tuple[str, ...]

    def describe(self) -> str:
        return f"job {self.job_num} ({' '.join(self.swept)})"


def sweep_jobs(sweep_overrides: Sequence[str]) -> list[list[str]]:
    """Every job's overrides, in job-number order, as Hydra's basic sweeper enumerates them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(o) for o in sweep_overrides])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _rho_position(job: Sequence[str]) -> int | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(job))
    found = [i for i, o in enumerate(parsed) if o.key_or_group == RHO and o.package is None and not o.is_delete()]
    return found[0] if len(found) == 1 else None


def find_duplicate(
    sweep_overrides: Sequence[str], job_overrides: Sequence[str], method: Mapping | str, job_num: int | None = None
) -> Duplicate | None:
    """The earlier job that this one repeats, or None.

    sweep_overrides: the whole sweep's overrides (`hydra.sweeper.params` as `key=value`, then
    `hydra.overrides.task` of multirun.yaml), e.g. ["method=erm,sam", "method.rho=0.05,0.1", "seed=0,1"];
    job_overrides: this job's `hydra.overrides.task`, e.g. ["method=erm", "method.rho=0.1", "seed=0"];
    method: this job's method config (its `_target_` or `name`, and its settings), or a method's
    name alone (erm, sam, random, ...);
    job_num: this job's `hydra.job.num`; when given, the job must be that job of the sweep.

    A job is a duplicate when its method ignores rho (`Method.uses_rho` of its class: ERM), rho is
    swept, and its rho is not the grid's first value: it repeats the job with the first value and
    everything else equal.
    """
    from sam_lightning.run.naming import uses_rho

    if uses_rho(method if isinstance(method, Mapping) else {"name": method}):
        return None
    jobs = sweep_jobs(sweep_overrides)
    job = [str(o) for o in job_overrides]
    if job_num is not None and not (0 <= job_num < len(jobs) and jobs[job_num] == job):
        return None  # not this sweep's job: never skip on a guess
    if job not in jobs:
        return None
    pos = _rho_position(job)
    if pos is None:
        return None
    first = jobs[0][pos]  # the rho axis keeps its position in every job; job 0 has the first value
    if job[pos] == first:
        return None
    original = [*job[:pos], first, *job[pos + 1 :]]
    swept = [o for i, o in enumerate(original) if len({j[i] for j in jobs}) > 1]
    return Duplicate(jobs.index(original), tuple(original), tuple(swept))


def _multirun_job():
    """(sweep dir, job num, job overrides) in a multirun of Hydra's basic sweeper, else None."""
    from sam_lightning.settings.hydra_job import is_multirun, job

    hc = job()
    if not is_multirun(hc) or not str(hc.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return None
    return Path(hc.sweep.dir), int(hc.job.num), [str(o) for o in hc.overrides.task]


def duplicate_of_this_job(cfg) -> Duplicate | None:
    """The earlier job of this multirun that the running job repeats (see the module doc), or None.
    Anything unreadable (no multirun.yaml, an override the parser cannot enumerate) is None: the job
    trains."""
    from omegaconf import OmegaConf

    try:
        job = _multirun_job()
        if job is None:
            return None
        sweep_dir, num, overrides = job
        sweep = OmegaConf.load(sweep_dir / "multirun.yaml")
        if not str(OmegaConf.select(sweep, "hydra.sweeper._target_", default="")).endswith(".BasicSweeper"):
            return None
        params = OmegaConf.select(sweep, "hydra.sweeper.params") or {}
        sweep_overrides = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in sweep.hydra.overrides.task]
        return find_duplicate(sweep_overrides, overrides, OmegaConf.to_container(cfg.method, resolve=True), num)
    except Exception as err:  # noqa: BLE001 - a job that cannot tell trains, as it would without this check
        log.debug("duplicate check skipped: %s", err)
        return None


def skip_if_duplicate(cfg) -> bool:
    """For train.py: when this multirun job repeats an earlier one, write its results.json with
    status `skipped` and the reason, print one line and return True (the caller trains nothing)."""
    duplicate = duplicate_of_this_job(cfg)
    if duplicate is None:
        return False
    from omegaconf import OmegaConf

    from sam_lightning.run.results import ResultsWriter
    from sam_lightning.variants.lookup import method_class

    method = method_class(OmegaConf.to_container(cfg.method, resolve=True))
    reason = f"duplicate of {duplicate.describe()}: {RHO} has no effect on {method.__name__}"
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - the record keeps the config as written
        config = OmegaConf.to_container(cfg, resolve=False)
    from sam_lightning.run.run_dir import write_hydra_files

    write_hydra_files(cfg.paths.output_dir, cfg)  # the job's settings, as every job of the sweep has them
    ResultsWriter(cfg.paths.output_dir, config).write("skipped", reason=reason)
    print(f"skipped: {reason}", flush=True)
    return True
