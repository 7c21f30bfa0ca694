"""A Hydra callback that ends every multirun with its table: the same aggregation as sweep.py.

Configured in conf/train/train.yaml and conf/theory/theory.yaml under `hydra.callbacks`; after the
last job it reads the sweep folder (`hydra.sweep.dir`), prints the table and writes
<sweep dir>/summary/ (CSV, Markdown, PNGs) exactly as `python sweep.py <sweep dir>` would.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepTable(Callback):
    def __init__(self, metric: str = "auto", plots: bool = True) -> None:
        self.metric = metric
        self.plots = plots

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from sam_lightning.sweep.cli import summarize  # pandas and matplotlib only at the end of a multirun
        from sam_lightning.sweep.collect import SweepInputError, collect

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            runs, histories = collect([sweep_dir])
            print(flush=True)
            summarize(runs, histories, [str(sweep_dir)], sweep_dir / "summary", self.metric, self.plots,
                      echo=lambda text: print(text, flush=True))
        except SweepInputError as err:
            print(f"error: no sweep table: {err}", flush=True)
        except Exception as err:  # noqa: BLE001 - the jobs are done; a table problem must not hide them
            log.exception("the sweep table failed")
            print(f"error: no sweep table ({type(err).__name__}: {err}); run python sweep.py {sweep_dir}", flush=True)
