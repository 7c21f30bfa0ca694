"""The second stage of the paper's rho protocol, printed from the first stage's folder.

App. D picks each method's rho by a grid search; the presets do it in two stages: stage 1 runs the
grid on one seed with a validation split, stage 2 runs every other seed at each method's chosen rho.

    python train.py -m experiment=fig1                    # stage 1: the rho grid on seed 0
    python sweep.py multirun/fig1/<date>/<time> --next    # prints stage 2, one command per method

Each printed command is stage 1's own command line (the overrides every stage-1 job shares:
preset, data, data.root as the user wrote it) with the method's settings, its chosen rho and the
remaining seeds. The choice is the table's best rho (`sweep.py <dir> --where seed=0` shows it):
the lowest validation error when the runs hold out a split, else the reported metric. A method
that does not use rho (ERM) gets the seeds alone.
"""

from __future__ import annotations

import os
import shlex

import pandas as pd
from omegaconf import OmegaConf

from sam_lightning.reporting import table
from sam_lightning.reporting.collect import KEY, RHO, iter_jobs, job_overrides
from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.strict import CONF

# The paper's seeds, one home: conf/train/sweep/seeds.yaml.
SEEDS_FILE = CONF / "train" / "sweep" / "seeds.yaml"


def paper_seeds() -> list[int]:
    params = OmegaConf.load(SEEDS_FILE).hydra.sweeper.params
    return [int(s) for s in str(params.seed).split(",")]


def shared_overrides(dirs: list[str | os.PathLike], finished: set[str]) -> list[str]:
    """The overrides every finished stage-1 job was given, in the order the first job lists them."""
    lists = [job_overrides(job) or [] for job, name in iter_jobs(dirs) if name in finished]
    if not lists:
        return []
    return [o for o in lists[0] if all(o in other for other in lists[1:])]


def next_commands(
    runs: pd.DataFrame, dirs: list[str | os.PathLike], metric: str = "auto", seeds: list[int] | None = None
) -> list[str]:
    """One `python train.py -m ...` line per method family of stage 1 (with a comment line above it)."""
    summary, info = table.aggregate(runs, metric)
    if summary.empty:
        raise ConfigError("--next: no stage-1 job finished yet")
    done = runs[runs["status"] == "finished"]
    stage1 = sorted({int(s) for s in done["seed"].dropna()})
    seeds = [s for s in (paper_seeds() if seeds is None else seeds) if s not in stage1]
    if not seeds:
        raise ConfigError(f"--next: stage 1 already ran seeds {stage1}; give the stage-2 seeds with --seeds")
    groups = info["groups"]
    family = [g for g in groups if g != RHO]
    varying = {g.removeprefix(KEY) for g in groups} | {"seed"}
    shared = [
        o
        for o in shared_overrides(dirs, set(done["job"]))
        if o.partition("=")[0].lstrip("+~") not in varying | {"method.rho"}
    ]
    chosen_on = info.get("val_metric") or info["metric"]
    lines = []
    for _, members in summary.groupby(family, dropna=False, sort=False) if family else [(None, summary)]:
        rows = members[members[RHO].notna()] if RHO in members else members.iloc[0:0]
        if len(rows):
            row = rows[rows["best"]].iloc[0] if rows["best"].any() else rows.iloc[0]
            how = (
                f"rho {str(row[RHO])} chosen on {chosen_on} among {len(rows)}"
                if len(rows) > 1
                else f"rho {str(row[RHO])}, the only one stage 1 ran"
            )
        else:
            row, how = members.iloc[0], "no rho"
        settings = [f"{g.removeprefix(KEY)}={str(row[g])}" for g in family if pd.notna(row.get(g))]
        if len(rows):
            settings.append(f"method.rho={str(row[RHO])}")
        label = " ".join(settings[:-1] if len(rows) else settings) or "all jobs"
        lines.append(f"# {label}: {how}")
        words = ["python", "train.py", "-m", *shared, *settings, "seed=" + ",".join(map(str, seeds))]
        lines.append(" ".join(shlex.quote(w) for w in words))
    return lines
