"""Names shared by train.py (W&B group, job type, run name, tags) and sweep.py (table rows and groups).

In a multirun every job is its own W&B run:
    group    = <preset or swept keys>/<date>/<time>: the sweep's folder below multirun/ when it names
               its preset (rho_grid/2026-11-28/10-00-00, demo/...), else the preset (experiment=,
               +sweep=, hparams_search=) or the swept keys before the date (method,seed/2026-12-05/06-48-14)
               (logger.wandb.group=NAME sets it; single runs default to <data>-<model>)
    job_type = the method: erm, sam, sam_m128, sam_const, ... (logger.wandb.job_type=NAME sets it)
    name     = only what differs between the sweep's jobs, at most NAME_LIMIT characters:
               `sam rho=0.1 s2` (method label, swept keys by their last part, s<seed>)
    tags     = method, data, norm, preset and laptop / paper (`auto_tags`), then the top-level `tags` list
A single run is named <method label>-<data>-<model>-s<seed> and the overrides that set it apart
(sam_m128-cifar10-preact_resnet18-s0,laptop_fig1,rho=0.2: the preset by its name; `single_run_name`;
logger.wandb.name=NAME sets it).
No name, group or grouping key holds bookkeeping (`is_bookkeeping` in sam_lightning/settings/fingerprint.py:
data.root, paths.*, logger.*, ... ; the definition resume and job folders read too) or a key set to
the value that computes what leaving it out does (`at_default`: trainer.devices=1), and any other
override whose value is a machine path is left out of names. Every run's config
holds hydra.overrides and hydra.command (the command line that runs the job again); a multirun job's
config also carries hydra.group_key (the overrides minus the seed and bookkeeping keys), so that
"Group by hydra.group_key" in the W&B table averages over seeds as sweep.py does. `group_keys` is
the grouping rule of both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePath

import yaml
from omegaconf import OmegaConf

from sam_lightning.run.duplicates import RHO
from sam_lightning.settings import hydra_job
from sam_lightning.settings.fingerprint import at_default, is_bookkeeping

SEED_KEYS = frozenset({"seed"})


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
    """Bookkeeping, or the seed (runs that differ only in it are one group)."""
    return is_bookkeeping(key) or key in SEED_KEYS


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
    """{override key: canonical value} of the overrides that can define a group: the seed,
    bookkeeping keys and keys at the value that computes what leaving them out does left out, and
    keys the run's own config does not hold (a method that does not take `rho` is not split by it)."""
    kept = {}
    for override in overrides:
        key, value = split_override(str(override))
        value = canonical_value(value)
        if is_neutral(key) or at_default(key, value) or (config is not None and not _in_config(config, key)):
            continue
        kept[key] = value
    return dict(sorted(kept.items()))


def _settings(method) -> Mapping:
    return OmegaConf.to_container(method, resolve=True) if OmegaConf.is_config(method) else method


def method_label(method: Mapping) -> str:
    """erm, sam, sam_m128, sam_const, nsam, ...: what the method's class calls a run with these
    settings (`Method.label`, its class read from the config: sam_lightning.variants.lookup)."""
    from sam_lightning.variants.lookup import method_label as label

    return label(_settings(method))


def ascends(method: Mapping) -> bool:
    """Whether the method has an ascent step at all (`Method.ascends` of the config's class: ERM has none)."""
    from sam_lightning.variants.lookup import ascends as has_ascent

    return has_ascent(_settings(method))


def uses_rho(method: Mapping) -> bool:
    """Whether rho changes what the method computes (`Method.uses_rho` of the config's class)."""
    from sam_lightning.variants.lookup import uses_rho as used

    return used(_settings(method))


def sweep_name(sweep_dir: str) -> str:
    """multirun/rho_grid/2026-11-28/10-00-00 -> rho_grid/2026-11-28/10-00-00; /elsewhere/x -> x."""
    parts = PurePath(sweep_dir).parts
    if "multirun" in parts:
        below = parts[len(parts) - parts[::-1].index("multirun") :]
        if below:
            return "/".join(below)
    return PurePath(sweep_dir).name or str(sweep_dir)


NAME_LIMIT = 60  # characters of a run name: W&B's run table shows about this many
DATE = re.compile(r"\d{4}-\d{2}-\d{2}$")
# Shown by the single-run name itself (<method label>-<data>-<model>-s<seed>), not repeated after it.
IN_NAME_KEYS = frozenset(
    {"method", "method.m", "method.normalize", "method.name", "data", "data.name", "model", "model.arch"}
)
# Presets whose runs are tagged by their scale (docs/reproduction.md): laptop_* and the paper's fig*.
SCALE_TAGS = (("laptop", "laptop"), ("fig", "paper"), ("paper", "paper"))


def is_path(value) -> bool:
    """A value that names a place on this machine (a folder, a checkpoint): never part of a name."""
    text = str(value)
    return "/" in text or "\\" in text or text.startswith("~")


def _clip(name: str) -> str:
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "~"


def short_keys(keys) -> dict[str, str]:
    """{key: what a name calls it}: the last part of a dotted key (method.rho -> rho), the full key
    where two keys share their last part or the last part is `seed` (data.seed: seed is the run's s<n>)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 and (s != "seed" or k == "seed") else k) for k, s in zip(keys, last)}


def _named(key: str, value, short: str, cfg) -> str:
    if key == "seed":
        return f"s{value}"
    if key in ("method", "method.m", "method.normalize", "method.name"):
        return method_label(cfg.method)
    return f"{short}={value}"


def group_name(sweep_dir: str, preset: str | None, swept) -> str:
    """<preset or swept keys>/<date>/<time>: the sweep's folder name below multirun/ when it starts
    with a name (rho_grid/..., demo/...), else the preset, else the swept keys, before it."""
    name = sweep_name(sweep_dir)
    if not DATE.match(name.split("/")[0]):
        return name
    label = preset or ",".join(short_keys(sorted(k for k in swept if not is_neutral(k) or k in SEED_KEYS)).values())
    return f"{label or 'multirun'}/{name}"


def multirun_name(cfg, overrides, swept) -> str:
    """A multirun job's name: only what differs between the sweep's jobs (`sam rho=0.1 s2`): the
    method first, the seed last, the rest in the order of its overrides; the single-run name when
    nothing differs."""
    config = OmegaConf.to_container(cfg, resolve=False)
    inert = set() if uses_rho(cfg.method) else {RHO}  # ERM at any rho is one run
    shown = {}
    for override in overrides:
        key, value = split_override(str(override))
        if key in swept and (not is_neutral(key) or key in SEED_KEYS) and not is_path(value) and key not in inert:
            if _in_config(config, key):
                shown[key] = canonical_value(value)
    if not shown:
        return single_run_name(cfg, overrides)
    short = short_keys(list(shown))
    order = sorted(shown, key=lambda k: (k not in IN_NAME_KEYS, k in SEED_KEYS))  # stable: overrides' order within
    parts = list(dict.fromkeys(_named(k, shown[k], short[k], cfg) for k in order))
    return _clip(" ".join(parts))


def single_run_name(cfg, overrides) -> str:
    """The W&B name of a single run: <method label>-<data>-<model>-s<seed> (sam_m32, sam_m128,
    sam_const, ...: method_label), then the overrides that make it another run (rho=0.2, lr=0.05;
    not the seed, tags, machine paths or other bookkeeping), comma-separated, at most NAME_LIMIT characters."""
    base = f"{method_label(cfg.method)}-{cfg.data.name}-{cfg.model.arch}-s{cfg.seed}"
    config = OmegaConf.to_container(cfg, resolve=False)
    extra = {k: v for k, v in group_keys(overrides, config).items() if k not in IN_NAME_KEYS and not is_path(v)}
    short = short_keys(list(extra))
    parts = [str(v) if k == "experiment" else f"{short[k]}={v}" for k, v in extra.items()]  # the preset by its name
    return _clip(",".join([base, *parts]))


def preset_of(choices: Mapping | None) -> str | None:
    """The run's preset: its experiment=, +sweep= or hparams_search= choice (the first that is set)."""
    for group in ("experiment", "sweep", "hparams_search"):
        if choices and choices.get(group):
            return str(choices[group])
    return None


def auto_tags(cfg, preset: str | None) -> list[str]:
    """The run's tags: method label, data, norm, preset, laptop / paper (by the preset's name), then
    the top-level `tags` list, each once."""
    tags = [method_label(cfg.method), str(cfg.data.name), f"{cfg.model.get('norm', 'batch')}norm"]
    if preset:
        tags.append(preset)
        tags += [scale for prefix, scale in SCALE_TAGS if preset.startswith(prefix)][:1]
    tags += [str(t) for t in (cfg.get("tags") or [])]
    return list(dict.fromkeys(tags))


def command_line(overrides) -> str:
    """The command that runs this job again: python <script> <its overrides>, each shell-quoted."""
    import shlex
    import sys

    script = PurePath(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"
    return " ".join(["python", script, *(shlex.quote(str(o)) for o in overrides)])


def _hydra_job():
    """(sweep dir, job num, overrides, swept keys, preset) in a multirun, else None."""
    hc = hydra_job.job()
    if not hydra_job.is_multirun(hc):
        return None
    overrides = [str(o) for o in hc.overrides.task]
    return str(hc.sweep.dir), hc.job.num, overrides, swept_keys(hc, overrides), preset_of(hc.runtime.choices)


def swept_keys(hc, overrides) -> set[str]:
    """The override keys whose values differ between the multirun's jobs: Hydra's basic sweeper's
    grid as <sweep dir>/multirun.yaml states it (saved before any job starts), an optimizing
    sweeper's search space; where neither can be read, every key of the job's overrides."""
    from sam_lightning.run.multirun_progress import planned_jobs

    varying = None
    try:
        sweep = OmegaConf.load(Path(hc.sweep.dir) / "multirun.yaml")
        _, varying = planned_jobs(sweep)
    except Exception:  # noqa: BLE001 - no multirun.yaml (another launcher's process): the fallback below
        pass
    if varying is None:
        params = OmegaConf.select(hc, "sweeper.params") or {}
        varying = set(params) or {split_override(o)[0] for o in overrides}
    return {split_override(k)[0] for k in varying}


def wandb_names(cfg, group: str | None = None, job_type: str | None = None, name: str | None = None) -> dict:
    """group, job_type, name, tags and the hydra section to log for this job (see the module doc);
    the W&B logger entry's own group, job_type and name win when given."""
    job = _hydra_job()
    overrides = job[2] if job else (hydra_job.task_overrides() or [])
    preset = job[4] if job else _preset()
    names = {
        "group": group or (group_name(job[0], preset, job[3]) if job else f"{cfg.data.name}-{cfg.model.arch}"),
        "job_type": job_type or method_label(cfg.method),
        "name": name or (multirun_name(cfg, overrides, job[3]) if job else single_run_name(cfg, overrides)),
        "tags": auto_tags(cfg, preset),
        "hydra": {"overrides": overrides, "command": command_line(overrides)},
    }
    if job:
        sweep_dir, num = job[0], job[1]
        names["hydra"] = {
            **names["hydra"],
            "sweep_dir": sweep_dir,
            "job_num": num,
            "group_key": ",".join(
                f"{k}={v}" for k, v in group_keys(overrides, OmegaConf.to_container(cfg, resolve=False)).items()
            ),
        }
    return names


def _preset() -> str | None:
    hc = hydra_job.job()
    return None if hc is None else preset_of(hc.runtime.choices)
