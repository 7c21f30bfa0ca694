"""What defines a run, kept in its checkpoints so that a resume cannot continue another experiment.

    fingerprint(resolved_config) -> {"method.rho": 0.05, "data.label_noise": 0.6, "seed": 0, ...}

Everything that changes what is computed: the seed, the model, the method, the optimizer, the data
(which images, split, labels, inputs, augmentation) and the trainer settings that change the steps.
Left out: where things live or are written, how often they are logged or evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping

SECTIONS = ("seed", "model", "method", "optim", "data")
TRAINER_KEYS = ("max_epochs", "precision", "accumulate_grad_batches", "gradient_clip_val", "devices", "num_nodes")
# Lightning's defaults of those: a key at its default is left out, so that checkpoints written before
# conf/train/trainer listed it match the runs that list it.
TRAINER_DEFAULTS = {"accumulate_grad_batches": 1, "gradient_clip_val": None, "num_nodes": 1}
# data.default_arch only names the network model=default builds: model.arch records the one built.
NOT_DEFINING = {"data.root", "data.download", "data.cache_dir", "data.eval_train", "data.default_arch"}


def _flatten(node, prefix: str) -> dict:
    if isinstance(node, Mapping):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def fingerprint(config: Mapping) -> dict:
    flat = {}
    for section in SECTIONS:
        if section in config:
            flat.update(_flatten(config[section], section))
    trainer = config.get("trainer") or {}
    flat.update(
        {
            f"trainer.{k}": trainer[k]
            for k in TRAINER_KEYS
            if k in trainer and (k not in TRAINER_DEFAULTS or trainer[k] != TRAINER_DEFAULTS[k])
        }
    )
    return {k: v for k, v in sorted(flat.items()) if k not in NOT_DEFINING}


def first_difference(saved: Mapping, now: Mapping) -> str | None:
    """'key: A in the checkpoint, B now' for the first key (sorted) whose values differ, or None."""
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            return f"{key}={saved.get(key)!r} in the checkpoint, {now.get(key)!r} now"
    return None
