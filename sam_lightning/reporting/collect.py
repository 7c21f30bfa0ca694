"""Find the jobs of one or more multirun folders and read what each produced into one table.

A job folder is one that holds results.json or Hydra's .hydra/ (a job that started but never wrote
results.json). Every job becomes one row of a pandas DataFrame: its name, status and reason, its
seed, its final metrics (every `final_*` / `best_*` number of results.json, and
`test_error_at_best_val`), whether it met its regime's criterion (`criterion_met`, where
checked) and one `key:<override>` column per command-line override that can define a group
(none for `method.rho` of a method without an ascent step: ERM). The overrides come from the
job's .hydra/overrides.yaml, else from the `overrides` list results.json records (so a folder of
bare results.json files, as committed under docs/results/, makes the same table), else from the
config (`pseudo_overrides`: a run without either). A job whose status is not
`finished` (failed, diverged, interrupted, running, missing, unreadable, skipped) keeps its row,
so that tables can name it, but is never averaged. The per-epoch (or per-step) histories are returned beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import yaml

from sam_lightning.run.duplicates import RHO as RHO_KEY
from sam_lightning.run.jsonio import RESULTS_FILE
from sam_lightning.run.naming import ascends, group_keys, method_label
from sam_lightning.run.results import AT_BEST_VAL, current_keys
from sam_lightning.settings.config import ConfigError

KEY = "key:"  # prefix of the group columns: key:method, key:method.rho, ...
RHO = KEY + RHO_KEY  # the rho column
SWITCH_KEY = "method.switch_at"  # the share of the epochs trained before a method switch
SWITCH_AT = KEY + SWITCH_KEY  # its column
CRITERION_MET = "criterion_met"  # whether the run met its regime's criterion (results.json `criterion`), if checked
# Besides every final_*/best_* number: the test error at the epoch of lowest validation error.
EXTRA_METRICS = (AT_BEST_VAL,)


def find_job_dirs(root: Path) -> list[Path]:
    if (root / RESULTS_FILE).is_file() or (root / ".hydra").is_dir():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if RESULTS_FILE in filenames or ".hydra" in dirnames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a job's own subfolders (checkpoints, wandb, csv) hold no jobs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "summary")
    return sorted(found, key=_job_order)


def _job_order(path: Path):
    # Hydra names job folders <num>_<overrides>: sort 2_ before 10_.
    head = path.name.split("_", 1)[0]
    return (str(path.parent), int(head) if head.isdigit() else 1 << 30, path.name)


def pseudo_overrides(config: dict) -> list[str]:
    """For a run without Hydra's overrides (a single run folder, a W&B run): the settings that
    define the experiment."""
    method, data, model = config.get("method", {}), config.get("data", {}), config.get("model", {})
    pairs = [
        ("method", method_label(method)),
        (RHO_KEY, method.get("rho")),
        ("data", data.get("name")),
        ("model", model.get("arch")),
    ]
    return [f"{k}={v}" for k, v in pairs if v is not None]


def recorded_overrides(payload: dict) -> list[str] | None:
    """The job's overrides as train.py records them in results.json (`hydra.overrides.task`), or None."""
    overrides = payload.get("overrides")
    return [str(o) for o in overrides] if isinstance(overrides, list) else None


def _clip(text, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_value(config: dict, key: str):
    """`key` (dotted) in a run's resolved config, or None."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def record(name: str, payload: dict, overrides: list[str] | None, fill: tuple[str, ...] = ()) -> dict:
    """One row: name, status, reason, seed, label, final metrics and key:<override> columns. Each key
    of `fill` that the run did not override gets its column from the run's config (a run made
    with the default is then told from one that overrode it)."""
    config = payload.get("config") or {}
    status = str(payload.get("status"))
    reason = payload.get("reason")
    if status != "finished" and not reason:
        reason = f"{payload.get('epochs_done', 0)} epoch(s) done"
    row = {
        "job": name,
        "status": status,
        "reason": _clip(reason) if reason else "",
        "seed": config.get("seed"),
        "method_label": method_label(config.get("method") or {}),
    }
    criterion = payload.get("criterion")
    if isinstance(criterion, dict) and isinstance(criterion.get("met"), bool):
        row[CRITERION_MET] = criterion["met"]
    row.update(
        {
            k: float(v)
            for k, v in payload.items()
            if (k.startswith(("final_", "best_")) or k in EXTRA_METRICS)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        }
    )
    if overrides is None:
        overrides = recorded_overrides(payload)
    keys = group_keys(pseudo_overrides(config) if overrides is None else overrides, config)
    # A method without an ascent step (ERM) has no rho: its runs at every rho of a grid are one group,
    # never a best rho. (Random perturbations keep the rho they were given: with gaussian noise it
    # changes nothing, and a grid skips their repeated jobs, `Method.uses_rho`.) A job without its
    # config (unreadable, never started) is known by its `method=` override.
    if not ascends(config.get("method") or {"name": keys.get("method")}):
        keys.pop(RHO_KEY, None)
    row.update({KEY + k: v for k, v in keys.items()})
    for key in fill:
        if row.get(KEY + key) is None and (value := config_value(config, key)) is not None:
            row[KEY + key] = value
    return row


def hydra_overrides(job: Path) -> list[str] | None:
    """The job's command-line overrides as Hydra saved them (.hydra/overrides.yaml), or None."""
    path = job / ".hydra" / "overrides.yaml"
    return [str(o) for o in (yaml.safe_load(path.read_text()) or [])] if path.is_file() else None


def job_overrides(job: Path) -> list[str] | None:
    """The job's overrides as its command line gave them: Hydra's file, else results.json's record."""
    overrides = hydra_overrides(job)
    if overrides is None and (job / RESULTS_FILE).is_file():
        overrides = recorded_overrides(json.loads((job / RESULTS_FILE).read_text()))
    return overrides


def read_job(job: Path, name: str, fill: tuple[str, ...] = ()) -> tuple[dict, list[dict]]:
    """(row, history) of one job folder."""
    path = job / RESULTS_FILE
    try:
        overrides = hydra_overrides(job)
    except (OSError, yaml.YAMLError) as err:
        return {"job": name, "status": "unreadable", "reason": f".hydra/overrides.yaml: {_clip(err)}"}, []
    if not path.is_file():
        return {
            **record(
                name,
                {"status": "missing", "reason": "no results.json: still starting, or killed before its first epoch"},
                overrides or [],
            )
        }, []
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        return {**record(name, {"status": "unreadable", "reason": f"results.json: {_clip(err)}"}, overrides or [])}, []
    return record(name, current_keys(payload), overrides, fill), list(payload.get("history") or [])


def iter_jobs(roots: list[str | os.PathLike], check=None):
    """(job folder, its name in tables) for every job below the given folders; a name is relative
    to its root, prefixed by the root's name when there are several. `check(root)` runs first."""
    for root in map(Path, roots):
        if not root.is_dir():
            raise ConfigError(f"{root}: no such folder")
        if check is not None:
            check(root)
        jobs = find_job_dirs(root)
        if not jobs:
            raise ConfigError(f"{root}: no job folders (none holds results.json or .hydra/)")
        for job in jobs:
            name = str(job.relative_to(root)) if job != root else job.name
            yield job, (f"{root.name}/{name}" if len(roots) > 1 else name)


def collect(roots: list[str | os.PathLike], fill: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """Every job below the given folders: one row each (finished or not), and {job: history}."""
    rows, histories = [], {}
    for job, name in iter_jobs(roots):
        row, histories[name] = read_job(job, name, fill)
        rows.append(row)
    return pd.DataFrame(rows), histories


def select(runs: pd.DataFrame, where: list[str]) -> pd.DataFrame:
    """The rows whose KEY equals VALUE for every `KEY=VALUE` of `where` (KEY: seed or any override key;
    numbers compare as numbers, so 0.10 selects 0.1). VALUE may list values as a Hydra sweep does,
    `seed=0,1`: any of them. A job without the key (ERM in a rho grid) is left out."""
    for condition in where:
        key, sep, value = condition.partition("=")
        column = key if key == "seed" else KEY + key
        if not sep or column not in runs:
            keys = ["seed", *(c.removeprefix(KEY) for c in runs.columns if c.startswith(KEY))]
            raise ConfigError(f"--where {condition}: give KEY=VALUE, KEY one of {', '.join(keys)}")
        values = value.split(",")
        runs = runs[runs[column].map(lambda v, values=values: any(equals_setting(v, x) for x in values))]
    if runs.empty:
        raise ConfigError(f"no job has {' and '.join(where)}")
    return runs


def equals_setting(recorded, value: str) -> bool:
    """Whether a recorded key value is the command line's VALUE: numbers as numbers (0.10 is 0.1, 1 is 1.0)."""
    if pd.isna(recorded):
        return False
    try:
        return float(recorded) == float(value)
    except (TypeError, ValueError):
        return str(recorded) == value
