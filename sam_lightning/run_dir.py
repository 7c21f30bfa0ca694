"""One run, one folder.

* The default `hydra.run.dir` (conf/train/train.yaml, conf/theory/theory.yaml) ends with the
  microseconds of the start time (`${now:%f}`, Hydra's own resolver), so that two runs started in
  the same second get two folders. Multirun job folders keep Hydra's names (the sweep folder and
  the job's number).
* `ResumeInPlace`: a run resumed from <run folder>/checkpoints/*.ckpt continues in that folder, not
  in a new one (a Hydra callback: it sets hydra.run.dir before Hydra creates the folder).
* `check_run_dir`: a folder that already holds a run's results.json is refused, unless the run
  resumes that very run (ckpt_path inside the folder) or says `overwrite=true`. Called by a Hydra
  callback before Hydra writes .hydra/ into the folder, and by train.py for paths.output_dir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from sam_lightning.config import ConfigError
from sam_lightning.entry import BAD_INPUT, fail
from sam_lightning.jsonio import RESULTS_FILE


def folder_of_run(ckpt_path) -> Path | None:
    """The run folder that holds `ckpt_path` (<folder>/checkpoints/*.ckpt beside <folder>/results.json), else None."""
    if not ckpt_path:
        return None
    path = Path(str(ckpt_path)).expanduser()
    folder = path.parent.parent if path.parent.name == "checkpoints" else None
    return folder if folder is not None and (folder / RESULTS_FILE).is_file() else None


class ResumeInPlace(Callback):
    """hydra.run.dir: a run resumed from a checkpoint in its run folder continues in that folder
    (results.json, metrics.csv and the W&B run go on), unless the command names hydra.run.dir itself."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        folder = folder_of_run(config.get("ckpt_path"))
        given = any(str(o).lstrip("+").startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra)
        if folder is None or given:
            return
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = str(folder)


# What a run writes into its folder, removed by overwrite=true (.hydra/ is rewritten by Hydra).
RUN_FILES = (RESULTS_FILE, "noisy_labels.json", "checkpoints", "csv", "wandb", "tensorboard")


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    try:
        return Path(path).expanduser().resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_run_dir(
    run_dir: str | os.PathLike, ckpt_path: str | None, overwrite: object, key: str = "paths.output_dir"
) -> None:
    """Raises ConfigError when `run_dir` holds another run's results.json (see the module's doc)."""
    folder = Path(run_dir)
    if not (folder / RESULTS_FILE).is_file() or overwrite is True:
        return
    if ckpt_path and _inside(ckpt_path, folder):
        return
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return  # a DDP worker started in its rank 0's folder
    from sam_lightning.results import ResultsWriter

    ResultsWriter.closed.add((folder / RESULTS_FILE).resolve())  # the failure record leaves that run's file alone
    raise ConfigError(
        f"{key}={folder} already holds a run (results.json): choose another folder, resume that run with "
        f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}, or replace it with overwrite=true"
    )


def clear_run_dir(run_dir: str | os.PathLike) -> None:
    """overwrite=true: the earlier run's files go, so that none of them mixes with the new run's."""
    folder = Path(run_dir)
    for name in RUN_FILES:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class FreshRunDir(Callback):
    """hydra.run.dir checked before Hydra writes its .hydra/ files into it (on_run_start)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            run_dir = str(config.hydra.run.dir)
        except Exception:  # noqa: BLE001 - the default folder names Hydra's runtime, not known yet: it is a fresh one
            return
        try:
            check_run_dir(run_dir, config.get("ckpt_path"), config.get("overwrite", False), key="hydra.run.dir")
        except ConfigError as err:
            fail(str(err), BAD_INPUT)
