"""A Hydra callback: refuse, in one line, a run or sweep folder that cannot be created.

Hydra creates `hydra.run.dir` (or `hydra.sweep.dir`) itself, before the task function runs, and
reports a failure there as a stack trace. This check runs first (on_run_start / on_multirun_start).
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sam_lightning.entry import BAD_INPUT, fail
from sam_lightning.settings.hydra_job import set_early


def check_creatable(path: str, key: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(
            f"{key}={path} cannot be created ({err.strerror or err}); choose a writable folder with {key}=...",
            BAD_INPUT,
        )


class WritableOutputDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        set_early(config)  # the folder's ${hydra:runtime.choices...} interpolations resolve here
        check_creatable(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_creatable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
