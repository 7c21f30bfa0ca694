"""The W&B side of sweep.py: upload a sweep's offline runs, read its runs from the W&B API, log the summary back.

    python sweep.py multirun/2026-11-28/10-00-00 --wandb-sync   # wandb sync of every job's offline run
    python sweep.py --wandb ENTITY/PROJECT --group rho_grid/2026-11-28/10-00-00

Needs to be online (an API key and a reachable server); otherwise it stops at once with one line,
since the API would otherwise retry for minutes. Runs are read from their config (hydra.overrides,
written by train.py) and summary (final_test_error, ...); the per-epoch test error from history.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from sam_lightning.reporting.collect import record
from sam_lightning.run.results import TEST_ERROR
from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.wandb_mode import resolve_mode

REPORT_JOB_TYPE = "sweep-summary"
API_TIMEOUT_S = 30


def require_online(instead: str = "aggregate the local multirun folder instead") -> None:
    mode, why = resolve_mode("auto")
    if mode != "online":
        raise ConfigError(f"W&B is not available ({why or 'mode ' + mode}); {instead}")


def offline_runs(dirs: list[str]) -> list[Path]:
    """Every offline W&B run folder below the given folders (<job>/wandb/offline-run-*), in order."""
    found = []
    for d in dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"{d}: no such folder")
        found += sorted({*Path(d).glob("**/wandb/offline-run-*"), *Path(d).glob("offline-run-*")})
    if not found:
        raise ConfigError(f"no offline W&B run below {', '.join(dirs)} (runs logged with logger=wandb offline)")
    return found


def sync_offline(dirs: list[str]) -> int:
    """Uploads every offline run below `dirs` with one `wandb sync`; its exit status."""
    runs = offline_runs(dirs)
    require_online("the runs stay offline: sync again with an API key (WANDB_API_KEY or wandb login) and network")
    print(f"wandb sync: {len(runs)} offline run(s) below {', '.join(dirs)}", flush=True)
    return subprocess.run([sys.executable, "-m", "wandb", "sync", *map(str, runs)], check=False).returncode


def run_from_api(api_run) -> tuple[dict, list[dict]] | None:
    """One W&B run (wandb.apis.public.Run or anything with its attributes) as a row and its history,
    in the shape `collect` gives a job folder."""
    if getattr(api_run, "job_type", None) == REPORT_JOB_TYPE:
        return None
    config = dict(api_run.config)
    summary = dict(api_run.summary)
    status, reason = "finished", None
    max_epochs = config.get("trainer", {}).get("max_epochs")
    done = summary.get("epochs_done")
    if api_run.state != "finished":
        status, reason = api_run.state, f"W&B run state {api_run.state}"
    elif max_epochs is not None and done is not None and done < max_epochs:
        status, reason = "unfinished", f"{done} of {max_epochs} epochs done"
    overrides = config.get("hydra", {}).get("overrides")
    payload = {**summary, "status": status, "reason": reason, "config": config}
    row = record(api_run.name, payload, list(overrides) if overrides else None)
    history = (
        [
            {"epoch": int(h["epoch"]), TEST_ERROR: float(h[TEST_ERROR])}
            for h in api_run.scan_history(keys=["epoch", TEST_ERROR])
            if h.get(TEST_ERROR) is not None
        ]
        if status == "finished"
        else []
    )
    return row, history


def collect_wandb(path: str, group: str) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    if path.count("/") != 1:
        raise ConfigError(f"--wandb takes ENTITY/PROJECT, got {path!r}")
    require_online()
    import wandb

    api = wandb.Api(timeout=API_TIMEOUT_S)
    rows, histories = [], {}
    for api_run in api.runs(path, filters={"group": group}):
        item = run_from_api(api_run)
        if item is not None:
            rows.append(item[0])
            histories[item[0]["job"]] = item[1]
    if not rows:
        raise ConfigError(f"W&B {path}: no runs in group {group!r}")
    return pd.DataFrame(rows), histories


def log_report(path: str, group: str, header: list[str], table: list[list], images: list[Path]) -> str:
    """Logs the summary table and plots as one run of job_type sweep-summary in the sweep's group."""
    import wandb

    entity, project = path.split("/")
    run = wandb.init(
        entity=entity,
        project=project,
        group=group,
        job_type=REPORT_JOB_TYPE,
        name=f"summary {group}",
        reinit="finish_previous",
    )
    try:
        run.log(
            {"summary": wandb.Table(columns=header, data=table), **{Path(i).stem: wandb.Image(str(i)) for i in images}}
        )
        return run.url or ""
    finally:
        run.finish()
