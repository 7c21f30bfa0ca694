"""Strict booleans: every true/false setting of conf/ (train, analysis, theory, bench) in one place.

A command-line value Hydra does not read as a boolean (`data.augment=off`, `one_step=no`) stays a
string, and any non-empty string is true in Python: the option would silently stay on. Each
entry point calls `check_booleans(cfg, APP)` before anything else; a value other than true/false
(Hydra's spellings: true, false, True, False, ...) is one ConfigError line naming the key.
A few settings take one word besides true/false (channels_last: auto; trainer.deterministic: warn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from omegaconf import OmegaConf

from sam_lightning.config import ConfigError

# key -> the words it takes besides true and false
_TRAINER = {
    "trainer.benchmark": (),
    "trainer.deterministic": ("warn",),
    "trainer.enable_model_summary": (),
    "trainer.enable_progress_bar": (),
    "trainer.enable_checkpointing": (),
    "trainer.sync_batchnorm": (),
    "trainer.use_distributed_sampler": (),
    "trainer.inference_mode": (),
    "trainer.detect_anomaly": (),
}
BOOLEANS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "channels_last": ("auto",),
        "data_on_device": ("auto",),
        "data.augment": (),
        "data.download": (),
        "data.eval_train": (),
        "data.standardize": (),
        "method.normalize": (),
        "method.project": (),
        "method.bn_ascent_updates_stats": (),
        "optim.nesterov": (),
        "logger.log_model": ("all",),
        "overwrite": (),
        **_TRAINER,
    },
    "sharpness": {
        "one_step": (),
        "tf32": (),
        "progress": (),
        "data.augment": (),
        "data.download": (),
        "data.eval_train": (),
        "data.standardize": (),
    },
    "interpolation": {
        "recompute_bn": (),
        "tf32": (),
        "progress": (),
        "data.augment": (),
        "data.download": (),
        "data.eval_train": (),
        "data.standardize": (),
    },
    "theory": {"method.normalize": (), "switch.to.normalize": (), "relu.plot": ()},
    # lists of booleans: every element is checked
    "bench": {"loops": (), "loaders": (), "channels_last": (), "compile": ()},
}


def _get(cfg, key: str):
    """The value at the dotted `key`, or a sentinel when any part is absent or null."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) and not OmegaConf.is_dict(node):
            return _ABSENT
        if part not in node or node[part] is None:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()


def _check(key: str, value, words: Iterable[str]) -> None:
    if isinstance(value, bool) or value in tuple(words):
        return
    extra = "".join(f" or {w}" for w in words)
    raise ConfigError(f"{key}={value!r}: must be true or false{extra}")


def check_booleans(cfg, app: str) -> None:
    """Raises ConfigError at the first boolean setting of `app` (a key of BOOLEANS) that is not one."""
    for key, words in BOOLEANS[app].items():
        value = _get(cfg, key)
        if value is _ABSENT:
            continue
        if OmegaConf.is_list(value) or isinstance(value, list):
            for item in value:
                _check(key, item, words)
        else:
            _check(key, value, words)
    if app == "train":
        callbacks = _get(cfg, "callbacks")
        for name, entry in ({} if callbacks is _ABSENT else callbacks).items():
            for key, value, param in callback_arguments(entry):
                if is_boolean_parameter(param):
                    _check(f"callbacks.{name}.{key}", value, ())


def is_boolean_parameter(param) -> bool:
    """Whether a constructor parameter takes true/false: a bool default, or annotated bool / Optional[bool]."""
    if isinstance(param.default, bool):
        return True
    text = str(param.annotation).replace("typing.", "").replace(" ", "")
    return text in ("bool", "<class'bool'>", "Optional[bool]", "bool|None", "Union[bool,NoneType]")


def callback_arguments(entry):
    """(key, value, inspect.Parameter) for each argument a callbacks-group entry sets: the
    defaults and annotations say which arguments are booleans or numbers. Nothing for an entry whose class cannot
    be imported (instantiating it reports that)."""
    import inspect

    from hydra.utils import get_class

    if not (OmegaConf.is_dict(entry) or isinstance(entry, Mapping)) or "_target_" not in entry:
        return []
    try:
        params = inspect.signature(get_class(entry["_target_"]).__init__).parameters
    except Exception:  # noqa: BLE001 - any import failure: instantiate_callbacks names it
        return []
    return [
        (key, entry[key], params[key])
        for key in entry
        if key in params and not str(key).startswith("_") and entry[key] is not None
    ]
