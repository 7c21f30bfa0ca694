"""Results as data: copy the results.json of every job that ended into a folder to commit.

    python sweep.py multirun/laptop_sam_vs_erm/2026-12-01/09-00-00 --export docs/results/laptop_sam_vs_erm

Each job keeps its folder name (`<num>_<overrides>`, below the sweep folder), and only its
results.json is copied: no checkpoints, logs, .hydra/ or images. `python sweep.py <target>` then
prints the same table as `python sweep.py <sweep dir>`: the job's overrides, which define its row,
are recorded in results.json itself (`overrides`); for a job written before they were, they are
added to the copy from its .hydra/overrides.yaml.

Jobs that ended in a result are exported: finished, diverged (a rho too large is a result) and
skipped (ERM at a second rho of a grid, counted under the table). Jobs still running, failed,
interrupted or without a readable results.json are left out and listed; run the export again when
they end. A job already in the target is updated when it is the same run (the same config, which
includes its output folder), and the export stops with one line, writing nothing, when the target
holds another run under the same name.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sam_lightning.reporting.collect import RESULTS_FILE, iter_jobs, recorded_overrides
from sam_lightning.run.jsonio import atomic_write_json
from sam_lightning.settings.config import ConfigError

EXPORTED = ("finished", "diverged", "skipped")


@dataclass
class Export:
    """What an export did: job names per action, and the jobs left out with why."""

    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return len(self.new) + len(self.updated) + len(self.unchanged)


def _job_payload(job: Path) -> tuple[dict | None, str]:
    """(payload, why not) of one job folder's results.json."""
    path = job / RESULTS_FILE
    if not path.is_file():
        return None, "no results.json"
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"unreadable results.json ({err})"
    if not isinstance(payload, dict):
        return None, "unreadable results.json (not a JSON object)"
    status = str(payload.get("status"))
    return (payload, "") if status in EXPORTED else (None, status)


def _with_overrides(job: Path, payload: dict) -> dict | None:
    """The payload with the job's overrides added from .hydra/overrides.yaml when results.json was
    written without them; None when nothing needs adding (the file is copied as it is)."""
    hydra_file = job / ".hydra" / "overrides.yaml"
    if recorded_overrides(payload) is not None or not hydra_file.is_file():
        return None
    try:
        overrides = [str(o) for o in (yaml.safe_load(hydra_file.read_text()) or [])]
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{hydra_file}: unreadable ({err}); the job's row cannot be kept") from err
    return {**payload, "overrides": overrides}


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def export(roots: list[str | os.PathLike], target: str | os.PathLike) -> Export:
    """Copy the results.json of every job below `roots` that ended into `target`/<job name>/.
    Job names are those sweep.py gives (with several roots: <root name>/<job>). Checks everything
    before it writes anything; raises ConfigError with one line."""
    target = Path(target)
    plan, done = [], Export()

    def outside(root: Path) -> None:
        if _inside(target, root):
            raise ConfigError(
                f"--export {target} is inside {root}: its copies would be read as jobs of the sweep; "
                "export into a folder outside it, e.g. docs/results/<name>"
            )

    for job, name in iter_jobs(roots, check=outside):
        payload, why = _job_payload(job)
        if payload is None:
            done.left_out.append((name, why))
            continue
        augmented = _with_overrides(job, payload)
        content = (
            json.dumps(augmented, indent=2, default=str) if augmented is not None else (job / RESULTS_FILE).read_text()
        )
        dest = target / name / RESULTS_FILE
        if dest.is_file():
            old = dest.read_text()
            if old == content:
                done.unchanged.append(name)
                continue
            try:
                same_run = json.loads(old).get("config") == payload.get("config")
            except (ValueError, AttributeError):
                same_run = False
            if not same_run:
                raise ConfigError(
                    f"{dest} holds another run (its config differs) under the same job name; export into another folder"
                )
            done.updated.append(name)
        else:
            done.new.append(name)
        plan.append((job, augmented, dest))
    for job, augmented, dest in plan:
        if augmented is not None:
            atomic_write_json(dest, augmented)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(job / RESULTS_FILE, dest)
    return done


def describe(done: Export, target: str | os.PathLike) -> str:
    """What the export did, in a few lines."""
    lines = [
        f"exported {done.written} job(s) to {target}: {len(done.new)} new, {len(done.updated)} updated, "
        f"{len(done.unchanged)} unchanged"
    ]
    if done.left_out:
        lines.append(
            f"left out {len(done.left_out)} job(s) that did not end in a result (export again when they have):"
        )
        lines += [f"  {name}: {why}" for name, why in done.left_out]
    return "\n".join(lines)
