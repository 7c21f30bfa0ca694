"""Which command-line overrides make two runs "the same experiment up to the seed".

A run's overrides (Hydra's `.hydra/overrides.yaml`, e.g. ["method=erm", "method.rho=0.1",
"seed=2"]) minus the replication axis (seed), minus settings that do not change the numbers
(logging, devices, paths), minus parameters the method ignores (rho and m for ERM) form its
group key. Runs with the same key are averaged over seeds by `sweep.py`; train.py logs the same
key to W&B as `hydra.group_key`, so that the dashboard groups exactly as the tables do.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml

SEED_KEYS = frozenset({"seed"})
# Bookkeeping: where and how a run is logged or placed, never what it computes. A sweep preset
# (+sweep=...) only sets Hydra options; what it changes in a job is in the job's own overrides.
NEUTRAL_KEYS = frozenset({
    "ckpt_path", "num_workers", "eval_batch_size", "channels_last",
    "trainer.devices", "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
})
NEUTRAL_PREFIXES = ("logger", "paths", "hydra", "sweep")
# What each method leaves unused: ERM takes one plain gradient per batch and reads nothing of the
# method section but its name (rho, m, ascent steps, ...).
IGNORED_PREFIX_BY_METHOD = {"erm": "method."}


def ignored_by(key: str, method_name: str | None) -> bool:
    prefix = IGNORED_PREFIX_BY_METHOD.get(method_name or "")
    return bool(prefix) and key.startswith(prefix) and key != "method.name"


def split_override(override: str) -> tuple[str, str]:
    """'+trainer.limit_train_batches=2' -> ('trainer.limit_train_batches', '2')."""
    key, sep, value = override.partition("=")
    if not sep:
        return override.lstrip("+~"), ""
    return key.lstrip("+~"), value


def canonical_value(value: str) -> str:
    """So that rho=0.10 and rho=0.1 (or seed=01 and seed=1) land in one group."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
        return value
    return repr(float(parsed)) if isinstance(parsed, float) else str(parsed)


def is_neutral(key: str) -> bool:
    return key in NEUTRAL_KEYS or key.split(".")[0] in NEUTRAL_PREFIXES or key.split("/")[0] == "hydra"


def group_overrides(overrides: Iterable[str], method_name: str | None) -> tuple[str, ...]:
    """The overrides that define a run's group, canonical and sorted (seed and neutral keys dropped)."""
    kept = {}
    for override in overrides:
        key, value = split_override(override)
        if key in SEED_KEYS or ignored_by(key, method_name) or is_neutral(key):
            continue
        kept[key] = canonical_value(value)
    return tuple(f"{k}={v}" for k, v in sorted(kept.items()))

