"""A training run's settings, made once from its composed config and checked once: `build_run`.

    run = build_run(cfg)          # cfg: what Hydra composed from conf/train/ (build_run composes nothing)
    run.model, run.optim, run.data, run.trainer, run.method, run.logging, run.seed, run.config, ...

The config is converted to plain data once; every section becomes its typed spec (`ModelSpec`,
`OptimSpec`, `DataSpec`, `TrainerSpec`, the method (ERM or a SAM variant), `LoggingSpec`) and every value is checked in
exactly one place: by the spec that holds it, or here when it ties two sections together (m divides
the batch, the training images hold a full batch per device, the validation split and the label
noise take at least one image, the monitor and the criterion name metrics the run logs, a checkpoint
fits the model); a key no code reads is refused (`sam_lightning.settings.strict.check_declared`).
The dependent defaults are derived here too: the selection metric, the precision, channels_last and
compile (`sam_lightning/settings/speed.py`), the CPU threads, the number of classes, the fingerprint (GroupNorm's
groups: `ModelSpec`). Each bad value is one
ConfigError line that names the key and the value, before any image is decoded or model built
(the data's images are only counted, once the settings themselves are checked).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from sam_lightning.data.sources import num_classes_of, train_images_of
from sam_lightning.data.spec import DataSpec, require_full_batches
from sam_lightning.entry import instantiate_method
from sam_lightning.run.checkpoints import SavedCheckpoint, load_for_model, load_for_resume
from sam_lightning.run.results import (
    LABEL_NOISE_KEYS,
    TEST_ERROR,
    TRAIN_CLEAN_ERROR,
    TRAIN_KEYS,
    TRAIN_NOISY_FIT,
    VAL_ERROR,
    eval_key,
)
from sam_lightning.run.run_dir import check_run_dir
from sam_lightning.settings.config import (
    ConfigError,
    ModelSpec,
    OptimSpec,
    did_you_mean,
    is_int,
    is_number,
    require_bool,
    require_int,
)
from sam_lightning.settings.criterion import Criterion
from sam_lightning.settings.fingerprint import fingerprint
from sam_lightning.settings.speed import resolve_speed
from sam_lightning.settings.strict import check_declared
from sam_lightning.settings.threads import choose_threads
from sam_lightning.training.callbacks.from_config import instantiate_callbacks
from sam_lightning.variants import ERM, Variant, method_names

# pl.Trainer's true/false arguments -> the words each takes besides true and false
TRAINER_BOOLEANS = {
    "benchmark": (),
    "deterministic": ("warn",),
    "enable_model_summary": (),
    "enable_progress_bar": (),
    "enable_checkpointing": (),
    "sync_batchnorm": (),
    "use_distributed_sampler": (),
    "inference_mode": (),
    "detect_anomaly": (),
    "barebones": (),
}


def trainer_arguments() -> set[str]:
    """The pl.Trainer arguments the trainer node may set (the logger, callbacks and folder come from the run)."""
    return set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks", "default_root_dir"}


def check_trainer_argument(key: str) -> None:
    """trainer.<key> is a pl.Trainer argument, or one ConfigError line naming the argument meant."""
    known = trainer_arguments()
    if key not in known:
        raise ConfigError(
            f"trainer.{key} is not a pl.Trainer argument{did_you_mean(key, known)} (see the Lightning Trainer documentation)"
        )


def check_trainer_overrides(argv) -> None:
    """`trainer.<key>=value` on train.py's command line, without `+`, for a key conf/train/trainer
    does not list: Hydra would refuse it in several lines; here it is one, naming the argument meant.
    (With `+`, the key composes and TrainerSpec refuses it alike.)"""
    for arg in argv:
        if match := re.match(r"trainer\.([A-Za-z_]\w*)(?:$|[.=])", str(arg)):
            check_trainer_argument(match.group(1))


@dataclass(frozen=True)
class TrainerSpec:
    """pl.Trainer's keyword arguments (the `trainer` node), checked, and the `callbacks` group's
    callbacks (instantiated; the checkpoint entries left out with trainer.enable_checkpointing=false)."""

    args: dict
    callbacks: tuple[pl.Callback, ...] = ()

    def __post_init__(self) -> None:
        for key in self.args:
            check_trainer_argument(key)
        for key, words in TRAINER_BOOLEANS.items():
            if self.args.get(key) is not None:
                require_bool(f"trainer.{key}", self.args[key], words)
        require_int(
            "trainer.max_epochs",
            self.args.get("max_epochs"),
            1,
            " (the run's length; the LR schedule and the ERM->SAM switch are fractions of it)",
        )
        for key in ("limit_train_batches", "max_steps"):
            value = self.args.get(key)
            if is_number(value) and value == 0:
                raise ConfigError(f"trainer.{key}={value}: the run would train nothing (null or -1: no limit)")

    @property
    def max_epochs(self) -> int:
        return self.args["max_epochs"]

    @property
    def world_size(self) -> int:
        """Processes that each train on their share of the data: devices x num_nodes where both
        are counts (1 for "auto" or a list: Lightning decides, and the data module checks again)."""
        devices, nodes = self.args.get("devices"), self.args.get("num_nodes", 1)
        return (devices if is_int(devices) and devices > 0 else 1) * (nodes if is_int(nodes) and nodes > 0 else 1)

    @property
    def on_gpu(self) -> bool:
        import torch

        accelerator = self.args.get("accelerator", "auto")
        return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


@dataclass(frozen=True)
class LoggingSpec:
    """The `logger` group, checked: name -> `_target_` entry of a Lightning logger (logger=wandb,
    logger=[csv,tensorboard]); `sam_lightning.training.loggers` builds them (W&B's mode=auto: online with
    an API key and network, offline otherwise)."""

    entries: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from sam_lightning.training.loggers import check_entries

        check_entries(self.entries)

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> LoggingSpec:
        return cls(entries=dict(values or {}))


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run is made of; `build_run` makes it."""

    model: ModelSpec
    optim: OptimSpec
    data: DataSpec
    trainer: TrainerSpec
    method: Variant | ERM
    logging: LoggingSpec
    seed: int
    threads: int  # torch's CPU threads (cpu_threads, resolved: sam_lightning/settings/threads.py)
    channels_last: bool  # channels_last=auto, resolved (sam_lightning/settings/speed.py)
    compile: bool  # compile=auto, resolved: torch.compile the backbone's forward
    speed: str  # how the precision, layout and compile were chosen: one log line
    data_on_device: bool | str  # auto | true | false (sam_lightning.data.datamodule)
    eval_batch_size: int
    num_workers: int
    selection_metric: str  # what "best" means: checkpoint.monitor, resolved
    num_classes: int
    output_dir: Path
    overwrite: bool  # replace the run already in output_dir
    print_config: bool  # the composed config printed as a tree when the run starts (train.py's main)
    ckpt_path: str | None  # resume this checkpoint (checked: resume_from)
    resume_from: SavedCheckpoint | None
    init_from: SavedCheckpoint | None  # start from these weights only
    criterion: Criterion | None  # what the regime's baseline runs must reach (sam_lightning/settings/criterion.py)
    fingerprint: dict = field(repr=False)  # what defines the run (sam_lightning/settings/fingerprint.py)
    config: dict = field(repr=False)  # the resolved config, as results.json and the logger record it


def logged_metrics(data: DataSpec) -> tuple[str, ...]:
    """The per-epoch metrics a run on `data` logs (results.json's history keys): the training ones
    (train/clean_error and train/noisy_fit only under label noise), then `<set>/error` and
    `<set>/loss` of each evaluated set (`DataSpec.eval_sets`)."""
    train = tuple(k for k in TRAIN_KEYS if data.label_noise > 0 or k not in LABEL_NOISE_KEYS)
    return train + tuple(eval_key(name, kind) for name in data.eval_sets for kind in ("error", "loss"))


# The metrics only some runs log (a key, or the prefix of an evaluated set's), and the setting that makes a run log them.
LOGGED_WITH = {
    eval_key("val", ""): "data.val_fraction > 0",
    eval_key("train_eval", ""): "data.eval_train=true",
    TRAIN_CLEAN_ERROR: "data.label_noise > 0",
    TRAIN_NOISY_FIT: "data.label_noise > 0",
}


def require_logged(key: str, metric, data: DataSpec, choices: str = "") -> None:
    """`metric` (the value of `key`) is one this run logs per epoch, or one ConfigError line: a metric
    never logged would stop the run after its first epoch (checkpoint.monitor) or leave nothing to
    check at its end (criterion.metric)."""
    known = logged_metrics(data)
    if metric in known:
        return
    needs = next((why for prefix, why in LOGGED_WITH.items() if str(metric).startswith(prefix)), None)
    hint = f" (it is logged only with {needs})" if needs else did_you_mean(metric, known)
    raise ConfigError(f"{key}={metric!r}: this run logs no such metric{hint}; use {choices}one of {', '.join(known)}")


def selection_metric(monitor, data: DataSpec) -> str:
    """checkpoint.monitor: what "best" means for checkpoints and early stopping (lowest is best).
    auto: the validation error when the run holds out a validation split, else the test error."""
    if monitor == "auto":
        return VAL_ERROR if data.val_fraction > 0 else TEST_ERROR
    require_logged("checkpoint.monitor", monitor, data, choices="auto or ")
    return monitor


def _trainer(values: dict, data: DataSpec) -> TrainerSpec:
    """The callbacks group (with the `checkpoint` settings it interpolates), then the trainer node."""
    checkpoint = values.setdefault("checkpoint", {})
    if "top_k" in checkpoint:
        require_int("checkpoint.top_k", checkpoint["top_k"], -1, " (-1: all)")
    if "every_n_epochs" in checkpoint:
        require_int("checkpoint.every_n_epochs", checkpoint["every_n_epochs"], 0, " (0: none)")
    checkpoint["monitor"] = selection_metric(checkpoint.get("monitor", "auto"), data)
    args = values["trainer"]
    callbacks = instantiate_callbacks(
        values.get("callbacks"), checkpoint["monitor"], checkpointing=args.get("enable_checkpointing") is not False
    )
    return TrainerSpec(args=args, callbacks=tuple(callbacks))


def build_run(cfg: DictConfig) -> RunSpec:
    """The typed, checked settings of the training run `cfg` describes; raises ConfigError at the
    first bad value. The method's name is recorded in `cfg` too (method.name: results.json, W&B
    and sweep tables name runs by it)."""
    values = OmegaConf.to_container(cfg, resolve=True)  # the one conversion; everything below reads `values`
    check_declared(values, "train")  # +seeed=1, +checkpoint.topk=2: a key no code reads
    overwrite, ckpt_path, init_from = values.get("overwrite", False), values.get("ckpt_path"), values.get("init_from")
    require_bool("overwrite", overwrite)
    require_bool("print_config", values.get("print_config", False))
    output_dir = Path(values["paths"]["output_dir"])
    check_run_dir(output_dir, ckpt_path, overwrite)
    seed = values.get("seed")
    if not is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r}: must be an integer in [0, 2^32)")
    data = DataSpec.from_mapping(values["data"])
    trainer = _trainer(values, data)
    logging = LoggingSpec.from_mapping(values.get("logger"))

    setting = values.get("cpu_threads", "auto")
    if setting != "auto":
        require_int("cpu_threads", setting, 1, " (or auto)")
    on_device = values.get("data_on_device", "auto")
    require_bool("data_on_device", on_device, ("auto",))
    require_int("eval_batch_size", values.get("eval_batch_size"), 1)
    require_int("num_workers", values.get("num_workers"), 0)

    method = instantiate_method(values["method"])
    # m divides the per-device batch: refused here, before any data is read (the rule itself,
    # `core.method.divides`, is the one the step's chunking asks at every batch)
    method.check_batch_size(data.batch_size)
    values["method"]["name"] = method.name
    OmegaConf.update(cfg, "method.name", method.name, force_add=True)
    model, optim = ModelSpec.from_mapping(values["model"]), OptimSpec.from_mapping(values["optim"])
    speed = resolve_speed(
        trainer.args.get("precision"),
        values.get("channels_last", "auto"),
        values.get("compile", False),
        on_gpu=trainer.on_gpu,
        norm=model.norm,
        engine=getattr(method, "engine", None),
    )
    # The precision computed, not the word auto: results.json, the loggers and the fingerprint that
    # guards a resume record it (trainer.args is this same dict, so pl.Trainer gets it too).
    values["trainer"]["precision"] = speed.precision
    OmegaConf.update(cfg, "trainer.precision", speed.precision)

    if init_from and ckpt_path:
        raise ConfigError(
            "init_from and ckpt_path together: ckpt_path resumes a run (weights, optimizer, epoch), init_from starts "
            "a new one from weights only; give one of them"
        )
    criterion = Criterion.from_mapping(values.get("criterion"))
    if criterion is not None:  # a typo would train to the end, then find nothing to check
        require_logged("criterion.metric", criterion.metric, data, choices="criterion=null or ")
        criterion.check_methods(method_names() | {method.name})
    num_classes = num_classes_of(data)  # a missing data folder is refused here, before anything starts
    # The images counted, none decoded: a split or label noise of no image, or fewer training images
    # than a batch per device, is refused before anything starts (the datamodule checks the batches
    # again with the real device count).
    require_full_batches(data.check_sizes(train_images_of(data)), data.batch_size, trainer.world_size)
    defining = fingerprint(values)
    return RunSpec(
        model=model,
        optim=optim,
        data=data,
        trainer=trainer,
        method=method,
        logging=logging,
        seed=seed,
        threads=choose_threads(setting),
        channels_last=speed.channels_last,
        compile=speed.compile,
        speed=speed.why,
        data_on_device=on_device,
        eval_batch_size=values["eval_batch_size"],
        num_workers=values["num_workers"],
        selection_metric=values["checkpoint"]["monitor"],
        num_classes=num_classes,
        output_dir=output_dir,
        overwrite=overwrite,
        print_config=values.get("print_config", False),
        ckpt_path=ckpt_path,
        resume_from=load_for_resume(ckpt_path, model, num_classes, trainer.max_epochs, defining) if ckpt_path else None,
        init_from=load_for_model(init_from, "init_from", model, num_classes) if init_from else None,
        criterion=criterion,
        fingerprint=defining,
        config=values,
    )
