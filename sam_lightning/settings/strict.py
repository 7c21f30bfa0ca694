"""Strict settings of the commands whose settings have no typed spec (the analysis commands, eval,
theory and the bench; train.py's and the data's are checked by their specs: `sam_lightning.training.run_spec`),
and the one check of keys that no code reads, for every command.

Booleans: a command-line value Hydra does not read as a boolean (`one_step=no`) stays a string, and
any non-empty string is true in Python: the option would silently stay on. Each of these entry
points calls `check_settings(cfg, APP)` (the bench: `check_booleans`) before anything else; a value
other than true/false (Hydra's spellings: true, false, True, False, ...) is one ConfigError line
naming the key, and so is a batch size below 1.

Keys: `+key=value` adds a key Hydra knows nothing of, and a key no code reads is silently ignored
(`+seeed=1` runs seed 0, `+ckpt_pth=...` trains a fresh run instead of resuming). `check_declared`
refuses a top-level key that the command's primary config (conf/<tree>/<app>.yaml) does not declare
and that is not one of its groups' sections (those check their own keys: a spec's fields, pl.Trainer's
arguments, named `_target_` entries), and a key of a settings mapping the primary config declares
(checkpoint, paths) that it does not list. The primary config is the one home of these settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from sam_lightning.settings.config import check_keys, require_bool, require_int

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
    for key in BOOLEANS.get(app, ()):
        value = _get(cfg, key)
        if value is _ABSENT:
            continue
        for item in value if OmegaConf.is_list(value) or isinstance(value, list) else [value]:
            require_bool(key, item)


CONF = Path(__file__).resolve().parents[2] / "conf"

# Each command's primary config, and the sections of its own settings that are checked where they
# are read (the training data's spec, theory's data and train by their dataclasses; sharpness's
# `sweep` and `run`: the folders its laptop_fig2 and laptop_fig19 presets read the checkpoints from)
# besides its groups' nodes.
PRIMARY: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("train/train.yaml", ("criterion",)),
    "evaluate": ("analysis/evaluate.yaml", ()),
    "sharpness": ("analysis/sharpness.yaml", ("sweep", "run")),
    "interpolation": ("analysis/interpolation.yaml", ()),
    "theory": ("theory/theory.yaml", ("data", "train", "relu")),
}


def group_nodes(defaults, tree: Path) -> set[str]:
    """The top-level nodes a primary config's defaults list adds: its groups' (`data`, `/data@data`:
    data), each checked by what reads it (a spec's fields, pl.Trainer's arguments, named `_target_`
    entries). A group whose options say `# @package _global_` (or another node) adds none of its name."""
    nodes = set()
    for entry in defaults or ():
        for key in entry if isinstance(entry, dict) else ():
            words = str(key).split()
            if words[0] == "override":  # another group's choice, not a group of this config
                continue
            group = words[-1].lstrip("/")
            if "@" in group:
                nodes.add(group.rsplit("@", 1)[-1])
            elif all(_package(option) in (None, group) for option in (tree / group).glob("*.yaml")):
                nodes.add(group.split("/")[0])
    return nodes


def _package(option: Path) -> str | None:
    """The package a config file's `# @package` header names, or None."""
    with open(option) as f:
        first = f.readline().split()
    return first[2] if first[:2] == ["#", "@package"] and len(first) > 2 else None


# Group nodes without a spec, and the one option that lists their keys (paths: where things live).
SECTION_FILES: dict[str, str] = {"paths": "train/paths/default.yaml"}

# Batch sizes: a batch of no image evaluates nothing, and a loop over it never ends or fails late.
POSITIVE: dict[str, tuple[str, ...]] = {
    "evaluate": ("batch_size",),
    "interpolation": ("batch_size",),
}


def check_declared(values: Mapping, app: str) -> None:
    """Raises ConfigError, with the declared key closest to it, at the first key of `values` (the
    composed config of `app`, a key of PRIMARY) that no code reads (see the module's doc)."""
    file, own_sections = PRIMARY[app]
    declared = OmegaConf.to_container(OmegaConf.load(CONF / file))
    sections = group_nodes(declared.pop("defaults", None), (CONF / file).parent) | set(own_sections)
    declared.pop("hydra", None)
    check_keys("", values, {*declared, *sections})
    for key, default in declared.items():
        if key not in sections and isinstance(default, dict) and default and isinstance(values.get(key), Mapping):
            check_keys(key, values[key], default)
    for key, file in SECTION_FILES.items():
        if key in sections and isinstance(values.get(key), Mapping):
            check_keys(key, values[key], OmegaConf.to_container(OmegaConf.load(CONF / file)))


def check_settings(cfg, app: str) -> None:
    """Everything this module checks of `app`'s composed config, before the command does anything."""
    check_booleans(cfg, app)
    check_declared(cfg, app)
    for key in POSITIVE.get(app, ()):
        value = _get(cfg, key)
        require_int(key, None if value is _ABSENT else value, 1)
