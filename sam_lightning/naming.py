"""Names shared by train.py (W&B group, job type, run name) and sweep.py (table rows and groups).

In a multirun every job is its own W&B run:
    group    = the sweep's folder below multirun/, e.g. rho_grid/2026-11-28/10-00-00
               (logger.wandb.group=NAME sets it; single runs default to <data>-<model>)
    job_type = the method: erm, sam, sam_m128, sam_const, ... (logger.wandb.job_type=NAME sets it)
    name     = the job's overrides, e.g. method.rho=0.1,method=sam_m128,seed=2
A single run is named <method label>-<data>-<model>-s<seed> and the overrides that set it apart
(sam_m128-cifar10-preact_resnet18-s0,method.rho=0.2; `single_run_name`; logger.wandb.name=NAME sets
it). Every run's config holds
hydra.overrides and hydra.command (the command line that runs the job again); a multirun job's
config also carries hydra.group_key (the overrides minus the seed and
bookkeeping keys), so that "Group by hydra.group_key" in the W&B table averages over seeds as
sweep.py does. `group_keys` is the grouping rule of both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

import yaml
from omegaconf import OmegaConf

SEED_KEYS = frozenset({"seed"})
# Bookkeeping: where and how a run is logged or placed, never what it computes.
NEUTRAL_KEYS = frozenset(
    {
        "ckpt_path",
        "num_workers",
        "eval_batch_size",
        "channels_last",
        "trainer.devices",
        "trainer.enable_progress_bar",
        "trainer.enable_model_summary",
        "trainer.log_every_n_steps",
    }
)
NEUTRAL_PREFIXES = ("logger", "paths", "hydra", "sweep", "hparams_search")


def split_override(override: str) -> tuple[str, str]:
    """'+trainer.limit_train_batches=2' -> ('trainer.limit_train_batches', '2')."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def canonical_value(value: str):
    """So that rho=0.10 and rho=0.1 (or seed=01 and seed=1) land in one group; numbers stay numbers."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
        return value
    return parsed


def is_neutral(key: str) -> bool:
    return key in NEUTRAL_KEYS or key.split(".")[0].split("/")[0] in NEUTRAL_PREFIXES or key in SEED_KEYS


def _in_config(config: dict, key: str) -> bool:
    """False only for a dotted key whose section the run's config has without that entry (a
    method that takes no `rho`); config group choices (`experiment=smoke`) always count."""
    if "@" in key or "/" in key or "." not in key:
        return True
    node = config
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            return depth == 0
        node = node[part]
    return True


def group_keys(overrides, config: dict | None = None) -> dict:
    """{override key: canonical value} of the overrides that can define a group: the seed and
    bookkeeping keys left out, and keys the run's own config does not hold (a method that does
    not take `rho` is not split by it)."""
    kept = {}
    for override in overrides:
        key, value = split_override(str(override))
        if is_neutral(key) or (config is not None and not _in_config(config, key)):
            continue
        kept[key] = canonical_value(value)
    return dict(sorted(kept.items()))


def method_label(method: Mapping) -> str:
    """erm, sam, sam_m128, sam_const, nsam, ...: the method's name (or its class), _m<m> for m-SAM
    chunks and _const for unnormalized steps, where the method has them."""
    name = method.get("name") or str(method.get("_target_", "?")).rsplit(".", 1)[-1].lower()
    if name in ("erm", "gd"):
        return "erm"
    label = str(name)
    if method.get("m") is not None:
        label += f"_m{method['m']}"
    if method.get("normalize") is False:
        label += "_const"
    return label


def sweep_name(sweep_dir: str) -> str:
    """multirun/rho_grid/2026-11-28/10-00-00 -> rho_grid/2026-11-28/10-00-00; /elsewhere/x -> x."""
    parts = PurePath(sweep_dir).parts
    if "multirun" in parts:
        below = parts[len(parts) - parts[::-1].index("multirun") :]
        if below:
            return "/".join(below)
    return PurePath(sweep_dir).name or str(sweep_dir)


# Shown by the single-run name itself (<method label>-<data>-<model>-s<seed>), not repeated after it.
IN_NAME_KEYS = frozenset(
    {"method", "method.m", "method.normalize", "method.name", "data", "data.name", "model", "model.arch"}
)


def single_run_name(cfg, overrides) -> str:
    """The W&B name of a single run: <method label>-<data>-<model>-s<seed> (sam_m32, sam_m128,
    sam_const, ...: method_label), then the overrides that make it another run (method.rho=0.2,
    optim.lr=0.05; not the seed, logger.wandb.tags or other bookkeeping), comma-separated."""
    base = f"{method_label(cfg.method)}-{cfg.data.name}-{cfg.model.arch}-s{cfg.seed}"
    config = OmegaConf.to_container(cfg, resolve=False)
    extra = [f"{k}={v}" for k, v in group_keys(overrides, config).items() if k not in IN_NAME_KEYS]
    return ",".join([base, *extra])


def command_line(overrides) -> str:
    """The command that runs this job again: python <script> <its overrides>, each shell-quoted."""
    import shlex
    import sys

    script = PurePath(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"
    return " ".join(["python", script, *(shlex.quote(str(o)) for o in overrides)])


def _task_overrides() -> list[str]:
    """The job's command-line overrides (hydra.overrides.task); [] outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return [str(o) for o in HydraConfig.get().overrides.task] if HydraConfig.initialized() else []
    except (ImportError, ValueError):
        return []


def _hydra_job():
    """(sweep dir, job num, overrides, override_dirname) in a multirun, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return str(hc.sweep.dir), hc.job.num, list(hc.overrides.task), hc.job.override_dirname


def wandb_names(cfg, group: str | None = None, job_type: str | None = None, name: str | None = None) -> dict:
    """group, job_type, name and the hydra section to log for this job (see the module doc); the
    W&B logger entry's own group, job_type and name win when given."""
    job = _hydra_job()
    overrides = job[2] if job else _task_overrides()
    single = name or single_run_name(cfg, overrides)
    names = {
        "group": group or (sweep_name(job[0]) if job else f"{cfg.data.name}-{cfg.model.arch}"),
        "job_type": job_type or method_label(cfg.method),
        "name": (job[3] or single) if job else single,
        "hydra": {"overrides": overrides, "command": command_line(overrides)},
    }
    if job:
        sweep_dir, num, overrides, _ = job
        names["hydra"] = {
            **names["hydra"],
            "sweep_dir": sweep_dir,
            "job_num": num,
            "group_key": ",".join(
                f"{k}={v}" for k, v in group_keys(overrides, OmegaConf.to_container(cfg, resolve=False)).items()
            ),
        }
    return names
