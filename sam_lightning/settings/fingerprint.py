"""What defines a run, kept in its checkpoints so that a resume cannot continue another experiment.

    fingerprint(resolved_config) -> {"method.rho": 0.05, "data.label_noise": 0.6, "seed": 0, ...}

Everything that changes what is computed: the seed, the model, the method, the optimizer, the data
(which images, split, labels, inputs, augmentation) and the trainer settings that change the steps.
Left out: where things live or are written, how often they are logged or evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping

SECTIONS = ("seed", "model", "method", "optim", "data")
TRAINER_KEYS = (
    "max_epochs",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "devices",
    "num_nodes",
    "limit_train_batches",
)
# Lightning's defaults of those: a key at its default is left out, so that checkpoints written before
# conf/train/trainer listed it match the runs that list it.
TRAINER_DEFAULTS = {
    "accumulate_grad_batches": 1,
    "gradient_clip_val": None,
    "num_nodes": 1,
    "limit_train_batches": None,
}
# data.default_arch only names the network model=default builds: model.arch records the one built.
NOT_DEFINING = {"data.root", "data.download", "data.cache_dir", "data.eval_train", "data.default_arch"}
# Data keys added later, left out at their default for the same reason. data.test_fraction changes no
# training step, but a run's history of test errors must come from one test set.
DATA_DEFAULTS = {"data.test_fraction": 1.0}
# What a resume (ckpt_path=<run>/checkpoints/...) may set anew: where the data live and the run
# writes, how it logs and shows progress, the resources it uses. Every other key is the run's own:
# a resume takes it from the run's saved config and refuses a command that would change it.
RESUME_MAY_CHANGE = (
    "ckpt_path",
    "data.root",
    "data.cache_dir",
    "data.download",
    "logger",
    "trainer.enable_progress_bar",
    "print_config",
    "cpu_threads",
    "compile",  # like cpu_threads: the same computation, float sums in another order
    "channels_last",
    "num_workers",
    "data_on_device",
    "eval_batch_size",
    "paths",
    "hydra",
)


def resume_may_change(key: str) -> bool:
    """`key` (dotted, or a config group such as hydra/launcher) is one a resume may set anew."""
    key = key.replace("/", ".")
    return any(key == k or key.startswith(f"{k}.") for k in RESUME_MAY_CHANGE)


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
    return {
        k: v
        for k, v in sorted(flat.items())
        if k not in NOT_DEFINING and not (k in DATA_DEFAULTS and v == DATA_DEFAULTS[k])
    }


def first_difference(saved: Mapping, now: Mapping) -> str | None:
    """'key: A in the checkpoint, B now' for the first key (sorted) whose values differ, or None."""
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            return f"{key}={saved.get(key)!r} in the checkpoint, {now.get(key)!r} now"
    return None
