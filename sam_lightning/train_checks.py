"""The checks train.py makes on a composed config before it reads any data or builds a model.

Each bad value is one ConfigError line that names the key and the value (seed=abc, data.batch_size=0,
trainer.max_epochs=0, ...), instead of a traceback from deep inside torch or Lightning.
The model, method and optimizer settings are checked by their own dataclasses (`ModelSpec`,
`OptimSpec`, the SAM variants).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sam_lightning.config import ConfigError, check_data_settings
from sam_lightning.run_dir import check_run_dir
from sam_lightning.strict import callback_arguments, check_booleans
from sam_lightning.wandb_mode import MODES, api_key_known


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_int(key: str, value, minimum: int, why: str = "") -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}{why}")


DATA_OPTIONS = Path(__file__).resolve().parents[1] / "conf" / "train" / "data"


def did_you_mean(word: str, known) -> str:
    """ "; did you mean X?" for the known word closest to a typo (difflib), else ""."""
    close = difflib.get_close_matches(str(word), sorted(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


@functools.cache
def data_keys() -> frozenset[str]:
    """Every key a data option of conf/train/data/ sets (the union over the options)."""
    keys: set[str] = set()
    for path in DATA_OPTIONS.glob("*.yaml"):
        keys |= set(OmegaConf.load(path)) - {"defaults"}
    return frozenset(keys)


def check_data_keys(cfg: DictConfig) -> None:
    """A key added to the data node (`+data.batch_sise=64`) that no data option knows: refused, not ignored."""
    known = data_keys()
    for key in cfg.data:
        if key not in known:
            raise ConfigError(
                f"data.{key} is not a data setting{did_you_mean(key, known)} (the keys of conf/train/data/*.yaml)"
            )


def trainer_arguments() -> set[str]:
    """The pl.Trainer arguments the trainer node may set (the logger, callbacks and folder come from the run)."""
    import pytorch_lightning as pl

    return set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks", "default_root_dir"}


def check_trainer_keys(cfg: DictConfig) -> None:
    known = trainer_arguments()
    for key in cfg.trainer:
        if key not in known:
            raise ConfigError(
                f"trainer.{key} is not a pl.Trainer argument{did_you_mean(key, known)} (see the Lightning Trainer documentation)"
            )


def check_data(cfg: DictConfig) -> None:
    check_data_keys(cfg)
    data = cfg.data
    require_int("data.batch_size", data.get("batch_size"), 1)
    require_int("eval_batch_size", cfg.get("eval_batch_size"), 1)
    require_int("num_workers", cfg.get("num_workers"), 0)
    label_noise, fraction, val = (
        data.get("label_noise", 0.0),
        data.get("train_fraction", 1.0),
        data.get("val_fraction", 0.0),
    )
    for key, value in (
        ("data.label_noise", label_noise),
        ("data.train_fraction", fraction),
        ("data.val_fraction", val),
    ):
        if not _is_number(value):
            raise ConfigError(f"{key}={value!r}: must be a number")
    check_data_settings(label_noise, fraction, val)
    if not isinstance(data.get("standardize", False), bool):
        raise ConfigError(f"data.standardize={data.get('standardize')!r}: must be true or false")
    if data.get("name") == "synthetic":
        for key in ("n_train", "n_test", "num_classes"):
            require_int(f"data.{key}", data.get(key), 1 if key != "num_classes" else 2)
        noise = data.get("noise", 0.6)
        if not _is_number(noise) or noise < 0:
            raise ConfigError(
                f"data.noise={noise!r}: must be a number >= 0 (the per-pixel noise of the synthetic images)"
            )
        kept = max(1, round(fraction * data.n_train))  # as sam_lightning.data.splits
        check_batches_per_device(cfg, kept - round(val * kept))


def check_batches_per_device(cfg: DictConfig, n_train: int) -> None:
    """Each device trains on its share of the training set with full batches only (the incomplete
    last batch is dropped): a share below data.batch_size would train nothing. The data module
    checks it again on the loaded data (any source); this is the early check for synthetic data."""
    devices = cfg.trainer.get("devices")
    world = devices if _is_int(devices) and devices > 0 else 1
    world *= cfg.trainer.get("num_nodes", 1) if _is_int(cfg.trainer.get("num_nodes", 1)) else 1
    if n_train // world < cfg.data.batch_size:
        per = f" ({n_train // world} per device on {world} devices)" if world > 1 else ""
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} exceeds the {n_train} training images{per}: lower data.batch_size"
        )


def check_trainer(cfg: DictConfig) -> None:
    check_trainer_keys(cfg)
    require_int(
        "trainer.max_epochs",
        cfg.trainer.get("max_epochs"),
        1,
        " (the run's length; the LR schedule and the ERM->SAM switch are fractions of it)",
    )
    for key in ("limit_train_batches", "max_steps"):
        value = cfg.trainer.get(key)
        if value is not None and _is_number(value) and value == 0:
            raise ConfigError(f"trainer.{key}={value}: the run would train nothing (null or -1: no limit)")
    checkpoint = cfg.get("checkpoint") or {}
    if "top_k" in checkpoint:
        require_int("checkpoint.top_k", checkpoint.top_k, -1, " (-1: all)")
    if "every_n_epochs" in checkpoint:
        require_int("checkpoint.every_n_epochs", checkpoint.every_n_epochs, 0, " (0: none)")


def check_callbacks(cfg: DictConfig) -> None:
    """The callbacks group: numeric arguments are numbers (callbacks.early_stopping.patience=abc would
    train, then fail at the first comparison), and no StochasticWeightAveraging (its BatchNorm
    epoch and learning-rate phase assume Lightning's automatic optimization; the SAM step is manual)."""
    from hydra.utils import get_class
    from pytorch_lightning.callbacks import StochasticWeightAveraging

    for name, entry in (cfg.get("callbacks") or {}).items():
        for key, value, param in callback_arguments(entry):
            if _is_number(param.default) and not _is_number(value):
                raise ConfigError(f"callbacks.{name}.{key}={value!r}: must be a number")
        try:
            cls = get_class(entry["_target_"]) if entry is not None and "_target_" in entry else None
        except Exception:  # noqa: BLE001 - reported when instantiated
            cls = None
        if isinstance(cls, type) and issubclass(cls, StochasticWeightAveraging):
            raise ConfigError(
                f"callbacks.{name}: StochasticWeightAveraging does not work with the manual SAM step (its BatchNorm epoch would take SAM steps); average checkpoints instead"
            )


def check_logger(cfg: DictConfig) -> None:
    name = cfg.logger.get("name")
    if name not in ("wandb", "csv"):
        raise ConfigError(f"logger.name={name!r}: must be wandb or csv (logger=wandb, logger=csv)")
    if name == "wandb" and cfg.logger.get("mode") not in MODES:
        raise ConfigError(f"logger.mode={cfg.logger.get('mode')!r}: must be one of {', '.join(MODES)}")
    if name == "wandb" and cfg.logger.get("mode") == "online" and not api_key_known():
        raise ConfigError(
            "logger.mode=online needs a W&B API key (WANDB_API_KEY, or `wandb login`); "
            "logger.mode=offline logs here (wandb sync uploads later), logger.mode=auto chooses"
        )


def check_train_config(cfg: DictConfig) -> None:
    """Every check above; raises ConfigError at the first bad value."""
    check_booleans(cfg, "train")
    check_run_dir(cfg.paths.output_dir, cfg.get("ckpt_path"), cfg.get("overwrite", False))
    seed = cfg.get("seed")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r}: must be an integer in [0, 2^32)")
    check_trainer(cfg)
    check_data(cfg)
    check_callbacks(cfg)
    check_logger(cfg)
