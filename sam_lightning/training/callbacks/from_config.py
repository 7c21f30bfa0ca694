"""The conf/train/callbacks group -> Lightning callbacks (the lightning-hydra-template way), checked.

`callbacks` is a mapping of name -> `_target_` entry, so that a preset or the command line can add,
change or drop one entry by name (callbacks.best_checkpoint.save_top_k=3, callbacks.lr_monitor=null).
An entry's `monitor: auto` (what `${checkpoint.monitor}` gives by default) is the run's selection
metric: the validation error with a validation split, else the test error.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping

import pytorch_lightning as pl
from hydra.utils import get_class
from pytorch_lightning.callbacks import Checkpoint, StochasticWeightAveraging

from sam_lightning.entry import instantiate_one_line
from sam_lightning.settings.config import ConfigError, is_number, require_bool

log = logging.getLogger(__name__)


def is_boolean_parameter(param: inspect.Parameter) -> bool:
    """Whether a constructor parameter takes true/false: a bool default, or annotated bool / Optional[bool]."""
    if isinstance(param.default, bool):
        return True
    text = str(param.annotation).replace("typing.", "").replace(" ", "")
    return text in ("bool", "<class'bool'>", "Optional[bool]", "bool|None", "Union[bool,NoneType]")


def _callback_class(entry: Mapping):
    try:
        return get_class(entry["_target_"])
    except Exception:  # noqa: BLE001 - any import failure: instantiating the entry names it
        return None


def check_entry(name: str, entry: Mapping) -> None:
    """Before anything trains: numeric and true/false arguments are numbers and booleans (the
    constructor's defaults and annotations say which; callbacks.early_stopping.patience=abc would
    train, then fail at the first comparison), and no StochasticWeightAveraging (its BatchNorm epoch
    and learning-rate phase assume Lightning's automatic optimization; the SAM step is manual)."""
    cls = _callback_class(entry)
    if cls is None:
        return
    params = inspect.signature(cls.__init__).parameters
    for key, value in entry.items():
        if key not in params or str(key).startswith("_") or value is None:
            continue
        if is_boolean_parameter(params[key]):
            require_bool(f"callbacks.{name}.{key}", value)
        elif is_number(params[key].default) and not is_number(value):
            raise ConfigError(f"callbacks.{name}.{key}={value!r}: must be a number")
    if isinstance(cls, type) and issubclass(cls, StochasticWeightAveraging):
        raise ConfigError(
            f"callbacks.{name}: StochasticWeightAveraging does not work with the manual SAM step (its BatchNorm epoch would take SAM steps); average checkpoints instead"
        )


def instantiate_callbacks(
    entries: Mapping | None, selection_metric: str, checkpointing: bool = True
) -> list[pl.Callback]:
    """One callback per non-null entry, in the group's order. With `checkpointing` false
    (trainer.enable_checkpointing=false) the checkpoint entries are left out. An entry's
    `monitor: auto` is set to `selection_metric` in `entries` itself (results.json records it)."""
    callbacks = []
    for name, entry in (entries or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or "_target_" not in entry:
            raise ConfigError(
                f"callbacks.{name} must be a mapping with a _target_ (a Lightning callback class), got {entry!r}"
            )
        check_entry(name, entry)
        if entry.get("monitor") == "auto":
            entry["monitor"] = selection_metric
        callback = instantiate_one_line(entry, f"callbacks.{name}")
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"callbacks.{name}: {entry['_target_']} is not a Lightning callback")
        if isinstance(callback, Checkpoint) and not checkpointing:
            log.info("trainer.enable_checkpointing=false: callbacks.%s left out", name)
            continue
        callbacks.append(callback)
    return callbacks
