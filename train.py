"""Train a CIFAR ResNet with ERM or m-SAM. Hydra composes the config from conf/.

    python train.py                                   # SAM, CIFAR-10, ResNet-18, 200 epochs
    python train.py method=sam_m128 data=cifar100     # 128-SAM, CIFAR-100, ResNet-34
    python train.py experiment=smoke                  # a CPU check in under a minute
    python train.py -m method.rho=0.05,0.1,0.2 seed=0,1,2   # a grid, one job per combination
    python train.py ckpt_path=outputs/.../checkpoints/last.ckpt   # resume, with the run's own settings
    python train.py experiment=smoke callbacks=none   # no checkpoints

Each run directory holds results.json, train.log, checkpoints/ (the `callbacks` group) and the
logger's files. results.json's status is finished, stopped, diverged, interrupted, preempted, skipped or failed
(README, Outputs).
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from sam_lightning.data import ImageDataModule
from sam_lightning.entry import check_mode_flags, fail, is_multirun, run_command
from sam_lightning.run.duplicates import skip_if_duplicate
from sam_lightning.run.provenance import provenance
from sam_lightning.run.results import ResultsWriter, write_failure
from sam_lightning.run.resume import earlier_job, run_settings
from sam_lightning.run.run_dir import (
    claimed,
    claimed_here,
    discard_if_unused,
    folder_of_run,
    holds_run,
    write_hydra_files,
)
from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.hydra_job import task_overrides
from sam_lightning.settings.threads import cpu_name
from sam_lightning.training.callbacks.checked_io import CheckedCheckpointIO
from sam_lightning.training.callbacks.divergence import DivergenceGuard
from sam_lightning.training.callbacks.epoch_metrics import EpochMetricsState
from sam_lightning.training.callbacks.log_interval import LogInterval
from sam_lightning.training.callbacks.preemption import Preempted, Preemption
from sam_lightning.training.callbacks.progress import progress_bar
from sam_lightning.training.callbacks.rng_state import RNGState
from sam_lightning.training.callbacks.switch import MethodSwitch
from sam_lightning.training.loggers import FinalMetrics, finish_wandb, make_loggers
from sam_lightning.training.module import SAMClassifier
from sam_lightning.training.print_config import print_config_tree
from sam_lightning.training.quiet import quiet_lightning, silence_deprecations
from sam_lightning.training.run_spec import RunSpec, TrainerSpec, build_run, check_trainer_overrides

log = logging.getLogger("train")
# measured (README, Speed): the one combination that only costs time, said once instead of refused
CPU_GROUPNORM_CHANNELS_LAST = (
    "channels_last=true with GroupNorm on a CPU is not faster (0.97-1.34x the float32 step time, "
    "README Speed): channels_last=auto leaves it off there"
)
silence_deprecations()


def make_trainer(trainer: TrainerSpec, run_dir: Path, loggers: list, always_on: list[pl.Callback]) -> pl.Trainer:
    """pl.Trainer(**trainer.args) with the always-on callbacks and those of the `callbacks` group
    (trainer.callbacks). Checkpointing is on exactly when the group holds a checkpoint callback:
    a group without any (callbacks=none, trainer.enable_checkpointing=false) turns Lightning's own
    default checkpoint off too. Settings only Lightning itself checks are refused in one line."""
    args = dict(trainer.args)
    if args.get("enable_progress_bar", True):
        always_on = [*always_on, progress_bar()]
    args["enable_checkpointing"] = any(isinstance(c, Checkpoint) for c in trainer.callbacks)
    plugins = args.get("plugins") or []
    plugins = plugins if isinstance(plugins, list) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):  # a checkpoint that fails to save fails the run
        args["plugins"] = [*plugins, CheckedCheckpointIO()]
    try:
        return pl.Trainer(
            **args, logger=loggers or False, callbacks=[*always_on, *trainer.callbacks], default_root_dir=str(run_dir)
        )
    except (TypeError, ValueError, MisconfigurationException) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"trainer: {first}") from err


def make_model(run: RunSpec) -> SAMClassifier:
    """The training system; with init_from, its backbone starts from that checkpoint's weights only
    (no optimizer, epoch or schedule state)."""
    model = SAMClassifier(
        model=run.model,
        method=run.method,
        optim=run.optim,
        num_classes=run.num_classes,
        max_epochs=run.trainer.max_epochs,
        channels_last=run.channels_last,
        compile=run.compile,
        track_label_noise=run.data.label_noise > 0,
        fingerprint=run.fingerprint,
    )
    if run.init_from is not None:
        model.backbone.load_state_dict(run.init_from.state_dict)
        log.info("initialized the weights from %s (epoch %s)", run.init_from.path, run.init_from.epoch)
    return model


def resume_step_of(run: RunSpec, run_dir: Path) -> int | None:
    """The checkpoint's global step when the run resumes in its own folder (its logs go on), else None."""
    folder = folder_of_run(run.ckpt_path)
    if run.resume_from is None or folder is None or folder.resolve() != run_dir.resolve():
        return None
    return run.resume_from.global_step or 0


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Runs one training job and returns what results.json holds. Raises on failure. Every check
    comes first; the run folder is written only once it is claimed for this process. `overrides`:
    the command line's (Hydra's), which a resume checks against the run's own settings."""
    cfg = run_settings(cfg, overrides)  # ckpt_path alone: the run's own settings
    composed = copy.deepcopy(cfg)  # as Hydra composed it, for .hydra/config.yaml (build_run adds method.name)
    run = build_run(cfg)
    resume_step = resume_step_of(run, run.output_dir)
    with claimed(run.output_dir, clear=run.overwrite) as run_dir:
        if resume_step is None:  # a resumed run keeps the .hydra/ files it was made with
            write_hydra_files(run_dir, composed)
        return train_in(run, run_dir, cfg, resume_step)


def train_in(run: RunSpec, run_dir: Path, cfg: DictConfig, resume_step: int | None) -> dict:
    """The run, in its claimed folder."""
    quiet_lightning()
    torch.set_num_threads(run.threads)
    log.info("CPU threads: %d (cpu_threads=%s; %s)", run.threads, run.config.get("cpu_threads", "auto"), cpu_name())
    log.info(run.speed)  # precision, memory layout, compile: what was chosen and why (sam_lightning/settings/speed.py)
    if run.channels_last and run.model.norm == "group" and not run.trainer.on_gpu:
        log.warning(CPU_GROUPNORM_CHANNELS_LAST)
    pl.seed_everything(run.seed, workers=True, verbose=False)

    datamodule = ImageDataModule(
        run.data, eval_batch_size=run.eval_batch_size, num_workers=run.num_workers, on_device=run.data_on_device
    )
    model = make_model(run)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model %s width %d, %s norm: %s parameters; method %s",
        *(run.model.arch, run.model.width, run.model.norm, f"{n_params:,}", run.method.name),
    )
    config = run.config
    results = ResultsWriter(
        run_dir,
        config,
        extra={
            "parameters": n_params,
            "cpu_threads": run.threads,
            "cpu": cpu_name(),
            "channels_last": run.channels_last,  # resolved; config holds the setting (auto)
            "compile": run.compile,
            "provenance": provenance(),  # git commit (and dirty flag), versions, CPU and GPU names
        },
    )
    loggers = make_loggers(cfg, run_dir, config, resume_step)
    preemption = Preemption(run_dir)
    trainer = make_trainer(
        run.trainer,
        run_dir,
        loggers,
        always_on=[
            DivergenceGuard(),
            results,
            RNGState(),
            MethodSwitch(),
            preemption,
            EpochMetricsState(),
            LogInterval(),
            FinalMetrics(results),
        ],
    )
    wandb_dir = None
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=run.ckpt_path)
    except SIGTERMException as stop:  # Lightning's answer to SIGTERM, after the step in progress: exit 143, not 0
        raise Preempted(
            f"preempted (SIGTERM) at step {trainer.global_step}; resume with ckpt_path={preemption.saved}"
        ) from stop
    finally:
        if trainer.is_global_zero:
            wandb_dir = finish_wandb(loggers, results, run_dir)
    if not trainer.interrupted and run.criterion is not None and run.criterion.applies_to(run.method.name):
        reached = run.criterion.check(results.history, run.trainer.max_epochs)
        results.extra["criterion"] = reached
        (log.info if reached["met"] else log.warning)(run.criterion.describe(reached))
    payload = results.write_end(trainer)
    if trainer.is_global_zero:
        print(summary_line(payload), flush=True)
        print(f"run directory: {run_dir}\nresults:       {results.path}", flush=True)
        if wandb_dir is not None:
            print(f"W&B run:       {wandb_dir}", flush=True)
    return payload


def summary_line(payload: dict) -> str:
    """The run's answer in one line: final and best test error (epochs counted from 1, as the progress
    bar and the plots count them), and how long it took. A fast_dev_run says that its errors come from
    one batch (an ImageFolder test set is ordered by class: its first batch holds one or two classes)."""
    final, best, epochs = payload.get("final_test_error"), payload.get("best_test_error"), payload.get("epochs_done")
    at = "" if payload.get("best_epoch") is None else f" (epoch {payload['best_epoch'] + 1} of {epochs})"
    errors = (
        "no test evaluation" if final is None else f"final test error {100 * final:.2f}%, best {100 * best:.2f}%{at}"
    )
    if payload.get("test_error_at_best_val") is not None:  # early stopping chosen on validation, not on test
        errors += (
            f"; at the best validation epoch ({payload['best_val_epoch'] + 1}): test error "
            f"{100 * payload['test_error_at_best_val']:.2f}%, validation error {100 * payload['best_val_error']:.2f}%"
        )
    if dev := (payload.get("config") or {}).get("trainer", {}).get("fast_dev_run"):
        batches = "one batch" if dev is True or dev == 1 else f"{dev} batches"
        errors += f" (fast_dev_run: {batches} of training and of test, not a test error)"
    return f"{payload['status']}: {errors}; {epochs} epoch(s) in {payload.get('wall_time_s', 0):.0f} s"


@hydra.main(version_base="1.3", config_path="conf/train", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point. Returns what Hydra sweepers that optimize (Optuna) minimize: `objective`."""
    if skip_if_duplicate(cfg):  # a method that ignores rho (ERM) at a second rho: the same run as at the first
        return float("inf")
    if is_multirun() and (earlier := earlier_job(cfg.paths.output_dir)) is not None:
        what, found = earlier  # the same sweep again, in its own folder: each job goes on where it ended
        if what == "kept":  # printed, not logged: the job's train.log is its own
            print(f"{cfg.paths.output_dir}: {found.get('status')} earlier, kept as it is", flush=True)
            return objective(found)
        with open_dict(cfg):
            cfg.ckpt_path, cfg.overwrite = (str(found), False) if what == "resume" else (None, True)
    if cfg.get("print_config") is True:
        print_config_tree(cfg)

    def record(reason: str, status: str = "failed") -> None:
        """A run's failure is written into its own folder only: one this process claimed, or in a
        multirun the job's fresh folder (sweep.py lists the job as failed). A refused single run
        writes nothing, and the empty folder Hydra made for it goes."""
        folder = Path(cfg.paths.output_dir)
        try:
            if folder.resolve() in claimed_here():
                write_failure(folder, cfg, reason, status)
            elif is_multirun() and not holds_run(folder):
                with claimed(folder):
                    write_hydra_files(folder, cfg)  # the job's settings, as for any job of the sweep
                    write_failure(folder, cfg, reason, status)
            else:
                discard_if_unused(folder)
        except (OSError, ConfigError):  # the folder itself is what failed, or another run holds it
            pass

    try:
        given = task_overrides() or []
        out = run_command(lambda c: train(c, given), cfg, record_failure=record)
    except KeyboardInterrupt:  # Ctrl-C before Lightning took over (during the data load); Lightning handles it later
        record("KeyboardInterrupt: stopped before training started", status="interrupted")
        fail("interrupted (Ctrl-C) before training started")
    return objective(out)


def objective(payload: dict | None) -> float:
    """The number an optimizing sweeper minimizes: the final validation error of a run that holds
    out a validation split (data.val_fraction > 0), else its final test error. A failed, diverged
    or unfinished run gives inf, which a minimizing study records as its worst."""
    if not payload or payload.get("status") != "finished":
        return float("inf")
    value = payload.get("final_val_error")
    value = payload.get("final_test_error") if value is None else value
    return float("inf") if value is None else float(value)


if __name__ == "__main__":
    check_mode_flags()  # -m with --cfg: one line, not Hydra's traceback
    try:  # trainer.<typo>=... is one line naming the argument meant, before Hydra refuses it in several
        check_trainer_overrides(sys.argv[1:])
    except ConfigError as err:
        fail(str(err), code=2)
    from sam_lightning.entry import hydra_main

    hydra_main(main)  # Hydra's own composition errors (method=sam_m12, method.rhoo=...): one line, exit 2
