"""Resume in place: a run resumed from a checkpoint of its own folder goes on with that folder's
logs (hydra.run.dir follows the checkpoint: `ResumeInPlace` in sam_lightning/run_dir.py).

* csv/metrics.csv: Lightning's CSVLogger deletes the file of an earlier run in its folder; the
  rows up to the checkpoint's step are kept and the resumed epochs appended after them.
* W&B: the same run id (resumed with the logger's `id`), found in <run dir>/wandb/.
"""

from __future__ import annotations

import csv
from pathlib import Path

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
