"""What defines a run, and what is bookkeeping: the one definition that resume, run names, W&B groups,
sweep tables and multirun job folders read.

    is_bookkeeping("data.root") -> True          where, how logged, with what resources: never what is computed
    at_default("trainer.devices", 1) -> True     a defining key at the value that computes what leaving it out does
    fingerprint(resolved_config) -> {"method.rho": 0.05, "data.label_noise": 0.6, "seed": 0, ...}

Every key that is not bookkeeping defines the run: a resume refuses to change it
(`sam_lightning.run.resume`), run names, W&B groups and sweep tables tell runs apart by it
(`sam_lightning.run.naming.group_keys`), and multirun job folders keep it in their names
(conf/train/train.yaml's `hydra.job.config.override_dirname.exclude_keys` lists the bookkeeping keys;
tests/test_config.py checks that the list is this one). The fingerprint, kept in checkpoints so that
a resume cannot continue another experiment, holds the defining keys of the sections that change
what is computed: the seed, the model, the method, the optimizer, the data (which images, split,
labels, inputs, augmentation) and the trainer settings that change the steps.
"""

from __future__ import annotations

from collections.abc import Mapping

# Where a run lives and writes, how it logs, shows progress and what it evaluates besides its
# metrics, and the resources it runs with (the same steps; compile and channels_last like
# cpu_threads: float sums perhaps in another order). A resume may set them anew; names, groups and
# job folders leave them out. An entry covers its sub-keys (logger: logger.wandb.mode, ...) and
# its config group (hydra/launcher).
BOOKKEEPING = (
    "ckpt_path",
    "paths",
    "hydra",
    "logger",
    "tags",
    "print_config",
    "sweep",  # presets of the sweep itself (hydra.sweeper): each job's own values say what it computes
    "hparams_search",
    "data.root",
    "data.cache_dir",
    "data.download",
    "data.eval_train",  # the training images evaluated too: the steps are the same
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "cpu_threads",
    "compile",
    "channels_last",
    "num_workers",
    "data_on_device",
    "eval_batch_size",
)


def is_bookkeeping(key: str) -> bool:
    """`key` (dotted, an override's key with its +/~, or a config group such as hydra/launcher) is
    bookkeeping: it never changes what a run computes."""
    key = key.lstrip("+~").replace("/", ".")
    return any(key == k or key.startswith(f"{k}.") for k in BOOKKEEPING)


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
# Defining keys at the value that computes what a run without the key computes: Lightning's
# defaults, one device (conf/train/trainer's; data.batch_size is per device, so more devices are
# another run), the whole test set. A key at its value is left out of the fingerprint (and of a
# checkpoint's before it is compared), so that checkpoints written before a key was recorded match
# the runs that record it, and an override that sets it splits no group.
AT_DEFAULT = {
    "trainer.accumulate_grad_batches": 1,
    "trainer.gradient_clip_val": None,
    "trainer.devices": 1,
    "trainer.num_nodes": 1,
    "trainer.limit_train_batches": None,
    # data.test_fraction changes no training step, but a run's history of test errors must come from one test set.
    "data.test_fraction": 1.0,
}
# Defining, but recorded by another key of the fingerprint: data.default_arch only names the network
# model=default builds, model.arch records the one built.
RECORDED_AS = {"data.default_arch": "model.arch"}


def at_default(key: str, value) -> bool:
    """`key` is set to the value that computes what leaving it out computes (AT_DEFAULT)."""
    key = key.lstrip("+~")
    if key not in AT_DEFAULT:
        return False
    default = AT_DEFAULT[key]
    return value == default and isinstance(value, bool) == isinstance(default, bool)  # true is no 1


def _flatten(node, prefix: str) -> dict:
    if isinstance(node, Mapping):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _defining(flat: Mapping) -> dict:
    return {
        k: v for k, v in sorted(flat.items()) if not is_bookkeeping(k) and k not in RECORDED_AS and not at_default(k, v)
    }


def fingerprint(config: Mapping) -> dict:
    flat = {}
    for section in SECTIONS:
        if section in config:
            flat.update(_flatten(config[section], section))
    trainer = config.get("trainer") or {}
    flat.update({f"trainer.{k}": trainer[k] for k in TRAINER_KEYS if k in trainer})
    return _defining(flat)


def first_difference(saved: Mapping, now: Mapping) -> str | None:
    """'key: A in the checkpoint, B now' for the first key (sorted) whose values differ, or None. Both
    are read by today's definition (a checkpoint may hold a key at its default, or bookkeeping)."""
    saved, now = _defining(saved), _defining(now)
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            return f"{key}={saved.get(key)!r} in the checkpoint, {now.get(key)!r} now"
    return None
