"""Names shared by train.py (W&B group, job type, run name) and sweep.py (table rows).

In a multirun every job is its own W&B run:
    group    = the sweep's folder below multirun/, e.g. rho_grid/2026-11-28/10-00-00
               (logger.group=NAME sets it; single runs default to <data>-<model>)
    job_type = the method: erm, sam, sam_m128, sam_const, ... (logger.job_type=NAME sets it)
    name     = the job's overrides, e.g. method.rho=0.1,method=sam_m128,seed=2
and its config carries hydra.overrides and hydra.group_key (the overrides minus the seed), so
that "Group by hydra.group_key" in the W&B table averages over seeds exactly as sweep.py does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

from sam_lightning.sweep.keys import group_overrides


def method_label(method: Mapping) -> str:
    """The method's name, then _m<m> for m-SAM chunks and _const for unnormalized steps:
    erm, sam, sam_m128, sam_const, nsam, asam_m32, ... (ERM ignores both)."""
    if method.get("name") == "erm":
        return "erm"
    label = str(method.get("name", "sam"))
    if method.get("m") is not None:
        label += f"_m{method['m']}"
    if method.get("normalize") is False:
        label += "_const"
    return label


def sweep_name(sweep_dir: str) -> str:
    """multirun/rho_grid/2026-11-28/10-00-00 -> rho_grid/2026-11-28/10-00-00; /elsewhere/x -> x."""
    parts = PurePath(sweep_dir).parts
    if "multirun" in parts:
        below = parts[len(parts) - parts[::-1].index("multirun"):]
        if below:
            return "/".join(below)
    return PurePath(sweep_dir).name or str(sweep_dir)


def _hydra_job():
    """(sweep dir, job num, overrides, override_dirname) in a multirun, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return str(hc.sweep.dir), hc.job.num, list(hc.overrides.task), hc.job.override_dirname


def wandb_names(cfg) -> dict:
    """group, job_type, name and the hydra section to log for this job (see the module doc)."""
    lc = cfg.logger
    job = _hydra_job()
    names = {
        "group": lc.group or (sweep_name(job[0]) if job else f"{cfg.data.name}-{cfg.model.arch}"),
        "job_type": lc.job_type or method_label(cfg.method),
        "name": (job[3] or cfg.run_name) if job else cfg.run_name,
        "hydra": {},
    }
    if job:
        sweep_dir, num, overrides, _ = job
        names["hydra"] = {
            "sweep_dir": sweep_dir, "job_num": num, "overrides": overrides,
            "group_key": ",".join(group_overrides(overrides, cfg.method.name)),
        }
    return names
