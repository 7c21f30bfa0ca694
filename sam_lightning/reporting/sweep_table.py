"""A Hydra callback that ends every multirun with its table: the same aggregation as sweep.py.

Configured in conf/train/train.yaml and conf/theory/theory.yaml under `hydra.callbacks`; after the
last job it reads the sweep folder (`hydra.sweep.dir`), prints the table and writes
<sweep dir>/summary/ (CSV, Markdown, PNGs) exactly as `python sweep.py <sweep dir>` would. A
multirun in which any job did not finish (failed, diverged, interrupted; `skipped` duplicates are
fine) then exits with status 1, so that a script or scheduler sees it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepTable(Callback):
    def __init__(self, metric: str = "auto", plots: bool = True) -> None:
        self.metric = metric
        self.plots = plots

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from sam_lightning.reporting.cli import summarize  # pandas and matplotlib only at the end of a multirun
        from sam_lightning.reporting.collect import collect
        from sam_lightning.settings.config import ConfigError

        sweep_dir = Path(config.hydra.sweep.dir)
        runs = None
        try:
            runs, histories = collect([sweep_dir])
            print(flush=True)
            summarize(
                runs,
                histories,
                [str(sweep_dir)],
                sweep_dir / "summary",
                self.metric,
                self.plots,
                echo=lambda text: print(text, flush=True),
            )
        except ConfigError as err:
            print(f"error: no sweep table: {err}", flush=True)
        except Exception as err:  # noqa: BLE001 - the jobs are done; a table problem must not hide them
            log.exception("the sweep table failed")
            print(f"error: no sweep table ({type(err).__name__}: {err}); run python sweep.py {sweep_dir}", flush=True)
        unfinished = failed_jobs(runs)
        if unfinished:
            print(
                f"error: {len(unfinished)} job(s) of this multirun did not finish: {', '.join(unfinished)}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)


def failed_jobs(runs) -> list[str]:
    """'<job folder> (<status>)' of every job that neither finished nor was skipped as a duplicate."""
    if runs is None or "status" not in runs:
        return []
    bad = runs[~runs["status"].isin(["finished", "skipped"])]
    names = bad["job"] if "job" in bad else bad.index.astype(str)
    return [f"{name} ({status})" for name, status in zip(names, bad["status"])]
