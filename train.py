"""Train a CIFAR ResNet with ERM or m-SAM. Hydra composes the config from conf/.

    python train.py                                   # SAM, CIFAR-10, ResNet-18, 200 epochs
    python train.py method=sam_m128 data=cifar100     # 128-SAM, CIFAR-100, ResNet-34
    python train.py experiment=smoke                  # a CPU check in under a minute
    python train.py -m method.rho=0.05,0.1,0.2 seed=0,1,2   # a grid, one job per combination
    python train.py ckpt_path=outputs/.../checkpoints/last.ckpt   # resume (same settings)
    python train.py experiment=smoke callbacks=none   # no checkpoints

Each run directory holds results.json, train.log, checkpoints/ (the `callbacks` group) and the
logger's files. results.json's status is finished, diverged, interrupted, preempted, skipped or failed
(README, Outputs).
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

import sam_lightning.open_config_node  # noqa: F401 - trainer.<any argument>=... composes without "+"
import sam_lightning.run_dir  # noqa: F401 - registers the ${run_token:} resolver of the default run folder
from sam_lightning.callbacks.divergence import DivergenceGuard, TrainingDiverged
from sam_lightning.callbacks.from_config import instantiate_callbacks
from sam_lightning.callbacks.preemption import Preempted, Preemption
from sam_lightning.callbacks.progress import progress_bar
from sam_lightning.callbacks.rng_state import RNGState
from sam_lightning.callbacks.switch import MethodSwitch
from sam_lightning.checkpoints import CheckpointError, load_for_model
from sam_lightning.cli import fail, instantiate_method, run_hydra_job
from sam_lightning.config import ConfigError, ModelSpec, OptimSpec
from sam_lightning.data import DataUnavailableError, ImageDataModule
from sam_lightning.data.sources import num_classes_of
from sam_lightning.fingerprint import fingerprint, first_difference
from sam_lightning.module import SAMClassifier
from sam_lightning.naming import wandb_names
from sam_lightning.quiet import quiet_lightning, silence_deprecations
from sam_lightning.results import ResultsWriter, write_failure
from sam_lightning.resume import csv_logger, earlier_wandb_id
from sam_lightning.run_dir import clear_run_dir, folder_of_run
from sam_lightning.sweep.duplicates import skip_if_duplicate
from sam_lightning.threads import choose_threads, cpu_name
from sam_lightning.train_checks import check_train_config
from sam_lightning.wandb_mode import resolve_mode

log = logging.getLogger("train")
silence_deprecations()


def make_logger(cfg: DictConfig, run_dir: Path, config: dict, resume_step: int | None = None):
    """resume_step: the global step of the checkpoint a run resumes in its own folder (its logs go on)."""
    lc = cfg.logger
    if lc.name == "csv":
        return csv_logger(run_dir, resume_step)
    if lc.name != "wandb":
        raise ConfigError(f"logger.name must be wandb or csv, got {lc.name!r}")
    mode, why = resolve_mode(lc.mode)
    if why:
        print(f"W&B: offline mode ({why}); upload later with: wandb sync {run_dir / 'wandb'}/offline-run-*", flush=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    # W&B's debug logs and cache in the run's folder, not the home directory (WANDB_CACHE_DIR moves them).
    os.environ.setdefault("WANDB_CACHE_DIR", str(run_dir / "wandb" / "cache"))
    names = wandb_names(cfg)  # one group per sweep, job_type = method, name = the job's overrides
    logger = pl.loggers.WandbLogger(
        project=lc.project,
        entity=lc.entity,
        group=names["group"],
        job_type=names["job_type"],
        tags=list(lc.tags),
        name=names["name"],
        save_dir=str(run_dir),
        mode=mode,
        log_model=lc.log_model,
        config={**config, "hydra": names["hydra"]},
        reinit="finish_previous",
        id=earlier_wandb_id(run_dir) if resume_step is not None else None,
    )
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; W&B warns that it has no effect
    return logger


def finish_wandb(logger, results: ResultsWriter, run_dir: Path) -> Path | None:
    """The W&B run's summary (the errors, parameter count, wall time) and files (results.json,
    train.log, uploaded at its end), then the run closed. Returns its folder; None when disabled."""
    run = logger.experiment
    summary = {
        **results.summary(),
        "wall_time_s": round(results.wall_time(), 3),
        "parameters": results.extra.get("parameters"),
    }
    run.summary.update({k: v for k, v in summary.items() if v is not None})
    if not run.disabled:
        for path in (results.path, run_dir / "train.log"):
            if path.exists():
                run.save(str(path), base_path=str(run_dir), policy="end")
    wandb_dir = None if run.disabled else Path(run.dir).parent
    run.finish()
    return wandb_dir


def make_run_dir(path: str) -> Path:
    run_dir = Path(path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"paths.output_dir={path} cannot be created ({err.strerror or err}); choose a writable folder"
        ) from err
    return run_dir


def make_trainer(cfg: DictConfig, run_dir: Path, logger, always_on: list[pl.Callback]) -> pl.Trainer:
    """pl.Trainer(**cfg.trainer) with the always-on callbacks and those of the `callbacks` group.
    trainer.enable_checkpointing=false leaves the group's checkpoint entries out; a group without
    any (callbacks=none) turns Lightning's own default checkpoint off too."""
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    known = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks", "default_root_dir"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(
            f"trainer.{unknown[0]} is not a pl.Trainer argument (see the Lightning Trainer documentation)"
        )
    group = instantiate_callbacks(cfg.get("callbacks"), checkpointing=bool(args.get("enable_checkpointing", True)))
    if args.get("enable_progress_bar", True):
        always_on = [*always_on, progress_bar()]
    args["enable_checkpointing"] = any(isinstance(c, Checkpoint) for c in group)
    try:
        return pl.Trainer(**args, logger=logger, callbacks=[*always_on, *group], default_root_dir=str(run_dir))
    except (TypeError, ValueError, MisconfigurationException) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"trainer: {first}") from err


def on_gpu(cfg: DictConfig) -> bool:
    return cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available()
    )


def use_channels_last(cfg: DictConfig) -> bool:
    return on_gpu(cfg) if cfg.channels_last == "auto" else bool(cfg.channels_last)


def set_cpu_threads(setting) -> int:
    """torch's CPU threads for this run (cpu_threads, sam_lightning/threads.py), logged and recorded."""
    if setting != "auto" and not (isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1):
        raise ConfigError(f"cpu_threads={setting!r}: must be auto or an integer >= 1")
    threads = choose_threads(setting)
    torch.set_num_threads(threads)
    log.info("CPU threads: %d (cpu_threads=%s; %s)", threads, setting, cpu_name())
    return threads


def selection_metric(cfg: DictConfig) -> str:
    """checkpoint.monitor: what "best" means for checkpoints and early stopping. auto: the
    validation error when the run holds out a validation split, else the test error."""
    monitor = cfg.get("checkpoint", {}).get("monitor", "auto")
    if monitor != "auto":
        return monitor
    return "val/error" if cfg.data.get("val_fraction", 0.0) > 0 else "test/error"


def train(cfg: DictConfig) -> dict:
    """Runs one training job and returns what results.json holds. Raises on failure."""
    quiet_lightning(on_cpu=not on_gpu(cfg))
    check_train_config(cfg)
    threads = set_cpu_threads(cfg.get("cpu_threads", "auto"))
    method = instantiate_method(cfg.method)
    model_spec, optim = ModelSpec.from_mapping(cfg.model), OptimSpec.from_mapping(cfg.optim)
    method.check_batch_size(cfg.data.batch_size)
    run_dir = make_run_dir(cfg.paths.output_dir)
    if cfg.get("overwrite") is True and not cfg.get("ckpt_path"):
        clear_run_dir(run_dir)  # the earlier run's results and checkpoints must not mix with this one's
    # The variant's name is recorded beside its settings (results.json, W&B, sweep tables).
    OmegaConf.update(cfg, "method.name", method.name, force_add=True)
    OmegaConf.update(cfg, "checkpoint.monitor", selection_metric(cfg), force_add=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = ImageDataModule(
        cfg.data,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.eval_batch_size,
        num_workers=cfg.num_workers,
        on_device=cfg.data_on_device,
    )
    model = SAMClassifier(
        model=model_spec,
        method=method,
        optim=optim,
        num_classes=num_classes_of(cfg.data),
        max_epochs=cfg.trainer.max_epochs,
        channels_last=use_channels_last(cfg),
        track_label_noise=cfg.data.get("label_noise", 0.0) > 0,
        fingerprint=fingerprint(config),
    )
    if cfg.get("init_from") and cfg.get("ckpt_path"):
        raise ConfigError(
            "init_from and ckpt_path together: ckpt_path resumes a run (weights, optimizer, epoch), init_from starts "
            "a new one from weights only; give one of them"
        )
    if cfg.get("init_from"):
        load_backbone_weights(model, cfg.init_from)
    resume_step = None
    if cfg.get("ckpt_path"):
        ckpt = check_resume(cfg.ckpt_path, model)
        if (folder := folder_of_run(cfg.ckpt_path)) is not None and folder.resolve() == run_dir.resolve():
            resume_step = ckpt.global_step or 0  # resumed in place: the folder's logs go on
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model %s width %d, %s norm: %s parameters; method %s",
        model_spec.arch,
        model_spec.width,
        model_spec.norm,
        f"{n_params:,}",
        method.name,
    )
    results = ResultsWriter(run_dir, config, extra={"parameters": n_params, "cpu_threads": threads, "cpu": cpu_name()})
    logger = make_logger(cfg, run_dir, config, resume_step)
    preemption = Preemption(run_dir)
    trainer = make_trainer(
        cfg, run_dir, logger, always_on=[DivergenceGuard(), results, RNGState(), MethodSwitch(), preemption]
    )
    wandb_dir = None
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except SIGTERMException as stop:  # Lightning's answer to SIGTERM, after the step in progress: exit 143, not 0
        raise Preempted(
            f"preempted (SIGTERM) at step {trainer.global_step}; resume with ckpt_path={preemption.saved}"
        ) from stop
    finally:
        if isinstance(logger, pl.loggers.WandbLogger) and trainer.is_global_zero:
            wandb_dir = finish_wandb(logger, results, run_dir)
    payload = results.write("finished" if not trainer.interrupted else "interrupted")
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


def checked_checkpoint(path: str, key: str, model: SAMClassifier):
    """The checkpoint given as `key` (init_from, ckpt_path), checked against `model`: one line on failure."""
    try:
        return load_for_model(path, key, model.hparams.model, model.hparams.num_classes)
    except CheckpointError as err:
        raise ConfigError(str(err)) from err


def load_backbone_weights(model: SAMClassifier, path: str) -> None:
    """init_from: start from a checkpoint's weights only (no optimizer, epoch or schedule state)."""
    ckpt = checked_checkpoint(path, "init_from", model)
    model.backbone.load_state_dict(ckpt.state_dict)
    log.info("initialized the weights from %s (epoch %s)", path, ckpt.epoch)


def check_resume(path: str, model: SAMClassifier):
    """ckpt_path: the same checks as init_from, and the same planned length. The LR schedule and
    the ERM->SAM switch epoch are fractions of trainer.max_epochs: resuming with another value
    would silently give another run, so it is refused; training longer is a new run."""
    ckpt = checked_checkpoint(path, "ckpt_path", model)
    planned, asked = ckpt.max_epochs, model.hparams.max_epochs
    if planned is not None and planned != asked:
        raise ConfigError(
            f"ckpt_path={path} is a run planned for trainer.max_epochs={planned} (its LR schedule and switch epoch follow it), "
            f"not {asked}: resume with trainer.max_epochs={planned}, or train longer on purpose "
            f"as a new run from its weights: init_from={path} trainer.max_epochs={asked}"
        )
    if ckpt.fingerprint is not None and model.hparams.fingerprint is not None:
        diff = first_difference(ckpt.fingerprint, model.hparams.fingerprint)
        if diff:
            raise ConfigError(
                f"ckpt_path={path} is another experiment ({diff}): resume it with its own settings, "
                f"or start a new run from its weights with init_from={path}"
            )
    return ckpt


@hydra.main(version_base="1.3", config_path="conf/train", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point. Returns what Hydra sweepers that optimize (Optuna) minimize: `objective`."""
    if skip_if_duplicate(cfg):  # ERM at a second rho of a multirun grid: its job at the first rho is the same run
        return float("inf")

    def record(reason: str, status: str = "failed") -> None:
        try:
            write_failure(cfg.paths.output_dir, OmegaConf.to_container(cfg, resolve=False), reason, status)
        except OSError:  # the run directory itself is what failed; the message says so
            pass

    try:
        out = run_hydra_job(
            train, cfg, (ConfigError, CheckpointError, DataUnavailableError, TrainingDiverged, Preempted), record
        )
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
    main()
