"""Resume in place: a run resumed from a checkpoint of its own folder goes on with its own settings
(`run_settings`) and that folder's logs (hydra.run.dir follows the checkpoint: `ResumeInPlace` in
sam_lightning/run/run_dir.py).

* csv/metrics.csv: Lightning's CSVLogger deletes the file of an earlier run in its folder; the
  rows up to the checkpoint's step are kept and the resumed epochs appended after them.
* W&B: the same run id (resumed with the logger's `id`), found in <run dir>/wandb/.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sam_lightning.run.jsonio import RESULTS_FILE
from sam_lightning.run.run_dir import HYDRA_DIR

METRICS_FILE = "metrics.csv"


def earlier_rows(csv_dir: Path, until_step: int | None) -> tuple[list[str], list[dict]]:
    """(header, rows) of csv_dir/metrics.csv logged before `until_step` (the checkpoint's global step):
    rows logged after the checkpoint are logged again by the resumed run."""
    path = csv_dir / METRICS_FILE
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = list(reader.fieldnames or [])

    def step(row: dict) -> float:
        try:
            return float(row.get("step") or 0)
        except ValueError:
            return 0.0

    return header, [r for r in rows if until_step is None or step(r) < until_step]


def continue_csv(logger, resume_step: int) -> None:
    """A CSVLogger (its files not written yet) resuming in place at the checkpoint's global step:
    metrics.csv keeps the earlier rows and the new ones are appended."""
    csv_dir = Path(logger.log_dir)
    header, rows = earlier_rows(csv_dir, resume_step)
    if csv_dir.is_dir():
        for (
            old
        ) in csv_dir.iterdir():  # rewritten below and by the run (hparams.yaml); an empty folder raises no warning
            if old.is_file():
                old.unlink()
    if header:
        writer = logger.experiment
        writer.metrics_keys = sorted(header)
        with open(csv_dir / METRICS_FILE, "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=writer.metrics_keys)
            out.writeheader()
            out.writerows(rows)


def earlier_wandb_id(run_dir: Path) -> str | None:
    """The id of the latest W&B run logged in <run dir>/wandb/ ((offline-)run-<date>_<time>-<id>)."""
    runs = [
        p for p in (run_dir / "wandb").glob("*run-*-*") if p.is_dir() and p.name.split("-", 1)[0] in ("run", "offline")
    ]
    if not runs:
        return None
    latest = max(runs, key=lambda p: p.name.split("run-", 1)[1])
    return latest.name.rsplit("-", 1)[1]


# -- the run's own settings ------------------------------------------------------------------------
def saved_settings(folder: Path):
    """(config, config-group choices) the run in `folder` was made with: its .hydra/ files as
    composed, else results.json's resolved config (choices then unknown: None); (None, None) if neither."""
    from omegaconf import OmegaConf

    hydra_dir = folder / HYDRA_DIR
    if (hydra_dir / "config.yaml").is_file():
        config = OmegaConf.load(hydra_dir / "config.yaml")
        choices = None
        if (hydra_dir / "hydra.yaml").is_file():
            found = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.runtime.choices")
            choices = None if found is None else OmegaConf.to_container(found)
        return config, choices
    try:
        config = json.loads((folder / RESULTS_FILE).read_text()).get("config")
    except (OSError, ValueError):
        config = None
    return (OmegaConf.create(config), None) if isinstance(config, dict) else (None, None)


def _value(config, key: str):
    """`key`'s value in `config`, resolved where it can be (plain data), else as written."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(config, key)
    except Exception:  # noqa: BLE001 - an interpolation that resolves only in its own run (e.g. ${hydra:...})
        value = OmegaConf.select(config, key, throw_on_resolution_failure=False)
    if OmegaConf.is_config(value):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except Exception:  # noqa: BLE001 - as above
            return OmegaConf.to_container(value, resolve=False)
    return value


def run_settings(cfg, overrides: list[str] | None = None):
    """ckpt_path=<run>/checkpoints/X.ckpt alone resumes with the settings the run was made with (its
    saved config); this command may set anew only bookkeeping (`is_bookkeeping` in
    sam_lightning/settings/fingerprint.py: where data live, loggers, progress, resources). Any other override (`overrides`: the command's, as Hydra parsed
    them) that differs from the run's value is refused before anything is written. Without the
    command's overrides (a library call, `train(cfg)`), `cfg` is returned as given and the checkpoint's
    fingerprint decides (sam_lightning/run/checkpoints.py)."""
    from omegaconf import OmegaConf, open_dict

    from sam_lightning.run.run_dir import folder_of_run
    from sam_lightning.settings.config import ConfigError
    from sam_lightning.settings.fingerprint import is_bookkeeping
    from sam_lightning.settings.hydra_job import job

    ckpt_path = cfg.get("ckpt_path")
    folder = folder_of_run(ckpt_path)
    hydra = job()
    if folder is None or overrides is None or hydra is None:
        return cfg
    saved, saved_choices = saved_settings(folder)
    if saved is None:
        return cfg
    choices = OmegaConf.to_container(hydra.runtime.choices)
    given = [str(o).split("=", 1)[0].lstrip("+~") for o in overrides]
    for key in given:
        if is_bookkeeping(key):
            continue
        if key in choices and saved_choices is not None:
            now, before = choices[key], saved_choices.get(key)
        else:
            now, before = _value(cfg, key), _value(saved, key)
        if now != before:
            raise ConfigError(
                f"ckpt_path={ckpt_path} resumes its run with the run's own settings: {key}={now} would change it "
                f"(the run has {before}); drop it, or start a new run from its weights with init_from={ckpt_path}"
            )
    merged = OmegaConf.create(OmegaConf.to_container(saved, resolve=False))
    with open_dict(merged):
        for key in dict.fromkeys(["ckpt_path", "paths", *given]):
            if not is_bookkeeping(key) or key.startswith("hydra"):
                continue
            absent = object()  # a group that sets only Hydra's keys (+sweep=...) has no node of its own
            node = OmegaConf.select(cfg, key.replace("/", "."), default=absent)
            if node is not absent:
                value = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
                OmegaConf.update(merged, key.replace("/", "."), value, merge=False, force_add=True)
    return merged


# -- a multirun started again in its own sweep folder -------------------------------------------------
KEPT = ("finished", "stopped", "diverged", "skipped", "failed")  # a job that ended: its record is kept as it is


def earlier_job(output_dir) -> tuple[str, object] | None:
    """What a multirun job finds in its folder when the same sweep runs again (hydra.sweep.dir=<its
    folder>; a job is its subfolder, named by its number and overrides, and resuming checks that its
    settings are the run's own): ("kept", results) for a job that ended (KEPT), ("resume", last.ckpt)
    for one that was stopped mid-way and left a checkpoint (preempted, interrupted, killed while
    running), ("fresh", None) for one that left no checkpoint; None for a folder without a run."""
    from sam_lightning.run.run_dir import holds_run, last_checkpoint

    folder = Path(output_dir)
    if not holds_run(folder):
        return None
    try:
        results = json.loads((folder / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        results = {}
    if results.get("status") in KEPT:
        return "kept", results
    last = last_checkpoint(folder)
    return ("resume", last) if last.is_file() else ("fresh", None)
