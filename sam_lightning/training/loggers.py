"""The conf/train/logger group -> Lightning loggers (the lightning-hydra-template way).

`logger` is a mapping of name -> `_target_` entry (logger=wandb, logger=[csv,tensorboard]), each
instantiated with `hydra.utils.instantiate`. What only the run knows is added here:

* W&B (a WandbLogger entry): mode=auto chosen as online or offline (offline without an API key or
  network, said in one line, never a prompt), the group, job type, name and tags of `naming.wandb_names`,
  the resolved config, and, resuming in the run's own folder, the same run id. `finish_wandb` writes
  the summary and attaches results.json and train.log.
* CSV (a CSVLogger entry): resuming in place, metrics.csv keeps the rows up to the checkpoint's
  step and the resumed ones are appended (`resume.continue_csv`).
* Every other logger (CSV, TensorBoard, ...) gets the run's hyperparameters when it is made
  (`hyperparameters`: the resolved config without where things live, and the provenance; CSV's and
  TensorBoard's hparams.yaml) and the final metrics at the end of the fit (`FinalMetrics`):
  TensorBoard's HPARAMS tab compares runs by them, CSV adds them as its last row.

An entry without a `_target_` holds settings for a logger the run does not use (e.g.
logger.wandb.entity from conf/train/local/default.yaml while logger=csv): it is left out.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from sam_lightning.entry import instantiate_one_line
from sam_lightning.run.naming import wandb_names
from sam_lightning.run.provenance import provenance
from sam_lightning.run.resume import continue_csv, earlier_wandb_id
from sam_lightning.settings.config import ConfigError, require_bool
from sam_lightning.settings.wandb_mode import MODES, api_key_known, resolve_mode
from sam_lightning.training.callbacks.from_config import is_boolean_parameter

log = logging.getLogger(__name__)


def logger_class(entry, key: str) -> type | None:
    """The class an entry names by `_target_`, None for an entry without one; a bad name is one line."""
    from hydra.utils import get_class

    if entry is None:
        return None
    if not (isinstance(entry, Mapping) or OmegaConf.is_dict(entry)):
        raise ConfigError(f"{key} must be a mapping with a _target_ (a Lightning logger class), got {entry!r}")
    if "_target_" not in entry:
        return None
    try:
        return get_class(entry["_target_"])
    except Exception as err:  # noqa: BLE001 - any import failure is a bad _target_
        raise ConfigError(f"{key}._target_={entry['_target_']!r}: no such class can be imported") from err


def logger_entries(group: Mapping | None) -> list[tuple[str, Mapping, type]]:
    """(name, entry, class) of each entry of the logger group the run uses, in the group's order."""
    entries = []
    for name, entry in (group or {}).items():
        cls = logger_class(entry, f"logger.{name}")
        if cls is None:
            if entry is not None:
                log.info("logger.%s has no _target_ (settings of a logger not chosen): left out", name)
            continue
        entries.append((name, entry, cls))
    return entries


# Arguments that take a word besides true and false: WandbLogger's log_model (all: every checkpoint).
WORDS = {"log_model": ("all",)}


def check_entries(group: Mapping | None) -> None:
    """Before anything runs: every entry's class imports, its true/false arguments are booleans (the
    constructor's defaults and annotations say which: logger.tensorboard.log_graph=off would log the
    graph), and a W&B entry's mode is one W&B takes, online only with an API key (never a login prompt)."""
    for name, entry, cls in logger_entries(group):
        params = inspect.signature(cls.__init__).parameters
        for key, value in entry.items():
            if key in params and not str(key).startswith("_") and value is not None:
                if is_boolean_parameter(params[key]):
                    require_bool(f"logger.{name}.{key}", value, WORDS.get(key, ()))
        if not issubclass(cls, pl.loggers.WandbLogger):
            continue
        mode = entry.get("mode", "auto")
        if mode not in MODES:
            raise ConfigError(f"logger.{name}.mode={mode!r}: must be one of {', '.join(MODES)}")
        if mode == "online" and not api_key_known():
            raise ConfigError(
                f"logger.{name}.mode=online needs a W&B API key (WANDB_API_KEY, or `wandb login`); "
                f"logger.{name}.mode=offline logs here (wandb sync uploads later), logger.{name}.mode=auto chooses"
            )


def wandb_arguments(
    cfg: DictConfig, entry, run_dir: Path, config: dict, resume_step: int | None, made_by: dict
) -> dict:
    """What a WandbLogger entry gets from the run: mode, names, tags, config (with `made_by`, the
    provenance), id."""
    mode, why = resolve_mode(entry.get("mode", "auto"))
    save_dir = Path(entry.get("save_dir") or run_dir)
    if why:
        print(
            f"W&B: offline mode ({why}); upload later with: wandb sync {save_dir / 'wandb'}/offline-run-*", flush=True
        )
    os.environ.setdefault("WANDB_SILENT", "true")
    # W&B's debug logs and cache in the run's folder, not the home directory (WANDB_CACHE_DIR moves them).
    os.environ.setdefault("WANDB_CACHE_DIR", str(save_dir / "wandb" / "cache"))
    names = wandb_names(cfg, group=entry.get("group"), job_type=entry.get("job_type"), name=entry.get("name"))
    return {
        "save_dir": str(save_dir),
        "mode": mode,
        "group": names["group"],
        "job_type": names["job_type"],
        "name": names["name"],
        # the run's own tags (method, data, norm, preset, scale) and the top-level `tags` list
        "tags": list(dict.fromkeys([*names["tags"], *(entry.get("tags") or [])])),
        "config": {**config, "hydra": names["hydra"], "provenance": made_by},
        "reinit": "finish_previous",
        "id": earlier_wandb_id(save_dir) if resume_step is not None else None,
    }


# Not hyperparameters: where a run lives or logs (a machine's paths), and the logger and callback objects.
NOT_HYPERPARAMETERS = ("paths", "logger", "callbacks", "hydra")
MACHINE_KEYS = ("root", "cache_dir")  # of the data section: where the images are on this machine


def hyperparameters(config: dict, made_by: dict) -> dict:
    """What every logger records as the run's hyperparameters: the resolved config without where
    things live or are logged, and `made_by`, the provenance (git commit, versions, CPU and GPU)."""
    params = {k: v for k, v in config.items() if k not in NOT_HYPERPARAMETERS}
    if isinstance(params.get("data"), Mapping):
        params["data"] = {k: v for k, v in params["data"].items() if k not in MACHINE_KEYS}
    return {**params, "provenance": made_by}


def final_numbers(results) -> dict:
    """The run's final metrics (results.json's names) and wall time, numbers only."""
    values = {**results.final_metrics(), "wall_time_s": round(results.wall_time(), 3)}
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def make_loggers(
    cfg: DictConfig, run_dir: Path, config: dict, resume_step: int | None = None
) -> list[pl.loggers.Logger]:
    """One Lightning logger per entry of the logger group. resume_step: the global step of the
    checkpoint a run resumes in its own folder (its logs go on)."""
    entries = logger_entries(cfg.get("logger"))
    made_by = provenance() if entries else {}
    loggers = []
    for name, entry, cls in entries:
        values = OmegaConf.to_container(entry, resolve=True)
        if issubclass(cls, pl.loggers.WandbLogger):
            values.update(wandb_arguments(cfg, entry, run_dir, config, resume_step, made_by))
            values["_recursive_"] = False  # the logged config holds `_target_` entries: data, not objects to build
        logger = instantiate_one_line(values, f"logger.{name}")
        if not isinstance(logger, pl.loggers.Logger):
            raise ConfigError(f"logger.{name}: {entry['_target_']} is not a Lightning logger")
        if isinstance(logger, pl.loggers.WandbLogger):
            logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; W&B warns that it has no effect
        if isinstance(logger, pl.loggers.CSVLogger) and resume_step is not None:
            continue_csv(logger, resume_step)
        if not isinstance(logger, pl.loggers.WandbLogger):  # W&B holds the whole config already
            logger.log_hyperparams(hyperparameters(config, made_by))
        loggers.append(logger)
    return loggers


class FinalMetrics(pl.Callback):
    """Every logger but W&B (whose summary `finish_wandb` writes) gets the run's final metrics when
    the fit ends, in `teardown`: after the results callback's last epoch, before Lightning closes
    the loggers (a TensorBoard writer written to after that would start a second event file)."""

    def __init__(self, results) -> None:
        self.results = results

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        numbers = final_numbers(self.results)
        for logger in trainer.loggers:
            if isinstance(logger, pl.loggers.TensorBoardLogger):  # its HPARAMS tab: hyperparameters beside these
                logger.log_hyperparams(logger.hparams, metrics=numbers)
            elif not isinstance(logger, pl.loggers.WandbLogger):
                logger.log_metrics(numbers, step=trainer.global_step)
            logger.save()


def finish_wandb(loggers, results, run_dir: Path) -> Path | None:
    """The W&B run's summary (the final metrics of `final_numbers`, the parameter count) and files
    (results.json, train.log, uploaded at its end), then the run closed. Returns its folder; None
    without a W&B logger or when W&B is disabled."""
    wandb_dir = None
    for logger in loggers:
        if not isinstance(logger, pl.loggers.WandbLogger):
            continue
        run = logger.experiment
        summary = {**final_numbers(results), "parameters": results.extra.get("parameters")}
        run.summary.update({k: v for k, v in summary.items() if v is not None})
        if not run.disabled:
            for path in (results.path, run_dir / "train.log"):
                if path.exists():
                    run.save(str(path), base_path=str(run_dir), policy="end")
            wandb_dir = Path(run.dir).parent
        run.finish()
    return wandb_dir
