"""Strict booleans of the commands whose settings have no typed spec: the analysis commands, theory
and the bench (train.py's and the data's are checked by their specs: `sam_lightning.run_spec`).

A command-line value Hydra does not read as a boolean (`one_step=no`) stays a string, and any
non-empty string is true in Python: the option would silently stay on. Each of these entry points
calls `check_booleans(cfg, APP)` before anything else; a value other than true/false (Hydra's
spellings: true, false, True, False, ...) is one ConfigError line naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import OmegaConf

from sam_lightning.config import require_bool

BOOLEANS: dict[str, tuple[str, ...]] = {
    "sharpness": ("one_step", "tf32", "progress"),
    "interpolation": ("recompute_bn", "tf32", "progress"),
    "theory": ("method.normalize", "switch.to.normalize", "relu.plot"),
    # lists of booleans: every element is checked
    "bench": ("loops", "loaders", "channels_last", "compile"),
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


def check_booleans(cfg, app: str) -> None:
    """Raises ConfigError at the first boolean setting of `app` (a key of BOOLEANS) that is not one."""
    for key in BOOLEANS[app]:
        value = _get(cfg, key)
        if value is _ABSENT:
            continue
        for item in value if OmegaConf.is_list(value) or isinstance(value, list) else [value]:
            require_bool(key, item)
