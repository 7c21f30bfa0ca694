"""Find the jobs of one or more multirun folders and read what each produced.

A job folder is one that holds results.json or Hydra's .hydra/ (a job that started but never wrote
results.json). Each becomes either a Run (finished, with a test error) or a Problem (failed,
interrupted, still running or unreadable: listed by name and reason, never averaged).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sam_lightning.naming import method_label
from sam_lightning.sweep.keys import group_overrides

RESULTS_FILE = "results.json"


class SweepInputError(ValueError):
    """The folders given to sweep.py hold nothing it can read; the message says what and where."""


@dataclass
class Run:
    name: str                       # the job folder relative to the folder given, or the W&B run name
    overrides: tuple[str, ...]
    config: dict
    test_error: float               # final test error (fraction)
    train_error: float | None
    best_test_error: float | None
    history: list[dict] = field(default_factory=list)
    seed: int | None = None
    key: tuple[str, ...] = ()       # group: overrides minus seed and what the method ignores

    def __post_init__(self) -> None:
        method = self.config.get("method", {})
        self.key = group_overrides(self.overrides, method.get("name"))
        if self.seed is None:
            self.seed = self.config.get("seed")

    @property
    def method(self) -> dict:
        return self.config.get("method", {})

    @property
    def uses_rho(self) -> bool:
        return self.method.get("name") != "erm"

    @property
    def label(self) -> str:
        return method_label(self.method)

    @property
    def m(self) -> int | None:
        """The chunk size m in effect (null in the config means the whole per-device batch)."""
        if not self.uses_rho:
            return None
        return self.method.get("m") or self.config.get("data", {}).get("batch_size")

    @property
    def rho(self) -> float | None:
        return float(self.method["rho"]) if self.uses_rho and self.method.get("rho") is not None else None


@dataclass
class Problem:
    name: str
    status: str
    reason: str


def find_job_dirs(root: Path) -> list[Path]:
    if (root / RESULTS_FILE).is_file() or (root / ".hydra").is_dir():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if RESULTS_FILE in filenames or ".hydra" in dirnames:
            found.append(here)
            dirnames[:] = []  # a job's own subfolders (checkpoints, wandb, csv) hold no jobs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "summary")
    return sorted(found, key=_job_order)


def _job_order(path: Path):
    # Hydra names job folders <num>_<overrides>: sort 2_ before 10_.
    head = path.name.split("_", 1)[0]
    return (str(path.parent), int(head) if head.isdigit() else 1 << 30, path.name)


def _read_overrides(job: Path, config: dict) -> tuple[str, ...]:
    path = job / ".hydra" / "overrides.yaml"
    if path.is_file():
        return tuple(str(o) for o in (yaml.safe_load(path.read_text()) or []))
    # A run folder without Hydra's files: group by the settings that define the experiment.
    method, data, model = config.get("method", {}), config.get("data", {}), config.get("model", {})
    return tuple(f"{k}={v}" for k, v in (
        ("method.name", method.get("name")), ("method.m", method.get("m")), ("method.rho", method.get("rho")),
        ("method.normalize", method.get("normalize")), ("data.name", data.get("name")),
        ("model.arch", model.get("arch")), ("model.width", model.get("width")),
    ))


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_job(job: Path, name: str) -> Run | Problem:
    path = job / RESULTS_FILE
    if not path.is_file():
        return Problem(name, "missing", "no results.json: still starting, or killed before its first epoch")
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        return Problem(name, "unreadable", f"results.json: {_clip(err)}")
    status = payload.get("status")
    if status != "finished":
        reason = payload.get("reason") or f"{payload.get('epochs_done', 0)} epoch(s) done"
        return Problem(name, str(status), _clip(reason))
    if payload.get("final_test_error") is None:
        return Problem(name, "no-test-error", "finished without a test evaluation")
    config = payload.get("config") or {}
    try:
        overrides = _read_overrides(job, config)
    except (OSError, yaml.YAMLError) as err:
        return Problem(name, "unreadable", f".hydra/overrides.yaml: {_clip(err)}")
    return Run(
        name=name, overrides=overrides, config=config,
        test_error=float(payload["final_test_error"]),
        train_error=payload.get("final_train_error"), best_test_error=payload.get("best_test_error"),
        history=[h for h in payload.get("history", []) if h.get("test/error") is not None],
    )


def collect(roots: list[str | os.PathLike]) -> tuple[list[Run], list[Problem]]:
    """Every job below the given folders, split into finished runs and problems."""
    runs: list[Run] = []
    problems: list[Problem] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise SweepInputError(f"{root}: no such folder")
        jobs = find_job_dirs(root)
        if not jobs:
            raise SweepInputError(f"{root}: no job folders (none holds results.json or .hydra/)")
        for job in jobs:
            name = str(job.relative_to(root)) if job != root else job.name
            if len(roots) > 1:
                name = f"{root.name}/{name}"
            item = read_job(job, name)
            (runs if isinstance(item, Run) else problems).append(item)
    return runs, problems
