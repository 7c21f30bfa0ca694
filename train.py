"""Train a CIFAR ResNet with ERM or m-SAM. Hydra composes the config from conf/.

    python train.py                                   # SAM, CIFAR-10, ResNet-18, 200 epochs
    python train.py method=sam_m128 data=cifar100     # 128-SAM, CIFAR-100, ResNet-34
    python train.py experiment=smoke                  # a CPU check in under a minute
    python train.py -m method.rho=0.05,0.1,0.2 seed=0,1,2   # a grid, one job per combination
    python train.py ckpt_path=outputs/.../checkpoints/last.ckpt   # resume

Each run directory holds results.json, train.log, checkpoints/ and the logger's files.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from sam_lightning.checkpoints import CheckpointError, load_checkpoint
from sam_lightning.callbacks.switch import MethodSwitch
from sam_lightning.cli import instantiate_method, run_hydra_job
from sam_lightning.config import ConfigError, ModelSpec, OptimSpec, check_data_settings
from sam_lightning.data import DataUnavailableError, ImageDataModule
from sam_lightning.module import SAMClassifier
from sam_lightning.naming import wandb_names
from sam_lightning.results import ResultsWriter, atomic_write_json, write_failure
from sam_lightning.wandb_mode import resolve_mode

log = logging.getLogger("train")
# Lightning's own deprecation chatter, not actionable from here.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def make_logger(cfg: DictConfig, run_dir: Path, config: dict):
    lc = cfg.logger
    if lc.name == "csv":
        return pl.loggers.CSVLogger(save_dir=str(run_dir), name="", version="csv")
    if lc.name != "wandb":
        raise ConfigError(f"logger.name must be wandb or csv, got {lc.name!r}")
    mode, why = resolve_mode(lc.mode)
    if why:
        print(f"W&B: offline mode ({why}); upload later with: wandb sync {run_dir / 'wandb'}/offline-run-*", flush=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    names = wandb_names(cfg)  # one group per sweep, job_type = method, name = the job's overrides
    return pl.loggers.WandbLogger(
        project=lc.project, entity=lc.entity, group=names["group"], job_type=names["job_type"],
        tags=list(lc.tags), name=names["name"], save_dir=str(run_dir), mode=mode,
        log_model=lc.log_model, config={**config, "hydra": names["hydra"]}, anonymous="never", reinit="finish_previous",
    )


def use_channels_last(cfg: DictConfig) -> bool:
    if cfg.channels_last == "auto":
        return cfg.trainer.accelerator in ("gpu", "cuda") or (cfg.trainer.accelerator == "auto" and torch.cuda.is_available())
    return bool(cfg.channels_last)


def train(cfg: DictConfig) -> dict:
    """Runs one training job and returns what results.json holds. Raises on failure."""
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    method = instantiate_method(cfg.method)
    # The variant's name is recorded beside its settings (results.json, W&B, sweep tables).
    OmegaConf.update(cfg, "method.name", method.name, force_add=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    model_spec, optim = ModelSpec.from_mapping(cfg.model), OptimSpec.from_mapping(cfg.optim)
    method.check_batch_size(cfg.data.batch_size)
    check_data_settings(cfg.data.get("label_noise", 0.0), cfg.data.get("train_fraction", 1.0))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = ImageDataModule(cfg.data, batch_size=cfg.data.batch_size, eval_batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers, on_device=cfg.data_on_device)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        datamodule.prepare_data()
    datamodule.setup("fit")
    arrays = datamodule.arrays
    sizes = {"train": len(arrays.train_y), "test": len(arrays.test_y), "num_classes": arrays.num_classes}
    log.info("data %s: %d train / %d test examples, %d classes", cfg.data.name, sizes["train"], sizes["test"], sizes["num_classes"])
    if len(datamodule.noisy_indices):
        sizes["noisy_train"] = len(datamodule.noisy_indices)
        save_noisy_labels(run_dir / "noisy_labels.json", datamodule)

    model = SAMClassifier(
        model=model_spec, method=method, optim=optim, num_classes=arrays.num_classes, max_epochs=cfg.trainer.max_epochs, channels_last=use_channels_last(cfg),
        track_label_noise=len(datamodule.noisy_indices) > 0,
    )
    if cfg.get("init_from"):
        load_backbone_weights(model, cfg.init_from)
    results = ResultsWriter(run_dir, config, extra={"data_sizes": sizes, "parameters": sum(p.numel() for p in model.parameters())})
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-epoch{epoch:03d}", monitor="test/error", mode="min",
        save_last=True, auto_insert_metric_name=False,
    )
    logger = make_logger(cfg, run_dir, config)
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer), logger=logger, callbacks=[results, checkpoints, MethodSwitch()], default_root_dir=str(run_dir))
    wandb_dir = None
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    finally:
        if isinstance(logger, pl.loggers.WandbLogger) and trainer.is_global_zero:
            run = logger.experiment
            run.summary.update({k: v for k, v in results.summary().items() if v is not None})
            wandb_dir = Path(run.dir).parent
            run.finish()
    payload = results.write("finished" if not trainer.interrupted else "interrupted")
    if trainer.is_global_zero:
        print(f"run directory: {run_dir}\nresults:       {results.path}", flush=True)
        if wandb_dir is not None:
            print(f"W&B run:       {wandb_dir}", flush=True)
    return payload


def save_noisy_labels(path: Path, datamodule: ImageDataModule) -> None:
    """Which training examples carry a flipped label, and which label (positions in the training
    set after data.train_fraction)."""
    idx = datamodule.noisy_indices
    atomic_write_json(path, {"indices": idx.tolist(), "noisy_labels": datamodule.arrays.train_y[idx].tolist(), "true_labels": datamodule.true_train_y[idx].tolist()})


def load_backbone_weights(model: SAMClassifier, path: str) -> None:
    """init_from: start from a checkpoint's weights only (no optimizer, epoch or schedule state)."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(f"init_from: {err}") from err
    expected = {**{k: model.hparams.model.get(k) for k in ("arch", "width", "norm")}, "num_classes": model.hparams.num_classes}
    found = {k: ckpt.architecture.get(k) for k in expected}
    if found != expected:
        raise ConfigError(f"init_from={path} holds {found}, the configured model is {expected}")
    model.backbone.load_state_dict(ckpt.state_dict)
    log.info("initialized the weights from %s (epoch %s)", path, ckpt.epoch)


@hydra.main(version_base="1.3", config_path="conf/train", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point. Returns the final test error for Hydra sweepers that optimize (Optuna);
    a failed, diverged or unfinished run returns inf, which a minimizing study records as its worst."""
    record = lambda reason: write_failure(cfg.paths.output_dir, OmegaConf.to_container(cfg, resolve=False), reason)  # noqa: E731
    out = run_hydra_job(train, cfg, (ConfigError, DataUnavailableError), record)
    value = out.get("final_test_error") if out and out.get("status") == "finished" else None
    return float("inf") if value is None else float(value)

if __name__ == "__main__":
    main()
