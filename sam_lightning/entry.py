"""What the entry points (train.py, eval.py, theory.py, sweep.py, the analysis commands, the bench) share.

Exit codes, the same everywhere: 0 done; 2 a user mistake (`ConfigError`: a bad setting, path or
file, refused in one line before anything runs, or found missing while it runs); 1 a run that
failed or diverged; 143 a preempted run (sam_lightning.callbacks.preemption).
"""

from __future__ import annotations

import dataclasses
import sys

FAILED, BAD_INPUT = 1, 2


def is_multirun() -> bool:
    """True inside a Hydra multirun job (`-m`), where a failure must not stop the other jobs."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra context: called as a library
        return False


def fail(message: str, code: int = FAILED) -> None:
    """One line on stderr, no traceback, a non-zero exit."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


# Hydra's mode flags, of which a command takes at most one (Hydra itself answers two of them with a
# ValueError traceback, before the task function runs).
MODE_FLAGS = {
    "-m": "--multirun",
    "--multirun": "--multirun",
    "-c": "--cfg",
    "--cfg": "--cfg",
    "-r": "--run",
    "--run": "--run",
    "-i": "--info",
    "--info": "--info",
    "-sc": "--shell-completion",
    "--shell-completion": "--shell-completion",
}


def check_mode_flags(argv: list[str] | None = None) -> None:
    """Before a Hydra entry point's main(): two of Hydra's mode flags together are one line, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    given = list(dict.fromkeys(MODE_FLAGS[a.split("=", 1)[0]] for a in argv if a.split("=", 1)[0] in MODE_FLAGS))
    if len(given) < 2:
        return
    if set(given) == {"--multirun", "--cfg"}:
        fail(
            "--cfg shows one job's config, not a multirun's: drop -m and give one value per swept key "
            "(e.g. seed=0), or see the sweep itself (hydra.sweeper.params) with --cfg hydra, without -m",
            code=BAD_INPUT,
        )
    fail(f"{' and '.join(given)} cannot be combined: give one of them", code=BAD_INPUT)


def run_command(job, cfg, required: str = "", record_failure=None):
    """`job(cfg)` for every Hydra entry point (train.py, eval.py, theory.py, the analysis commands,
    the bench). A user mistake (ConfigError, or a mandatory value left out) is one `error:` line and
    exit 2; an error that carries its own `exit_code` (TrainingDiverged: 1, Preempted: 143) is one
    line with that code; any other error is shown with its traceback, exit 1. `record_failure(reason)`,
    where given, keeps the failure first (results.json). In a multirun the other jobs go on: the
    failure is logged and None returned. `required` shows how to give the mandatory values, e.g. "ckpt=PATH"."""
    import logging
    import traceback

    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    from sam_lightning.config import ConfigError

    try:
        return job(cfg)
    except MissingMandatoryValue as err:
        error = ConfigError(f"{err.full_key} is required" + (f", e.g. {required}" if required else ""))
    except InterpolationToMissingValueError as err:  # e.g. a preset's ${sweep} left out
        missing = str(err).splitlines()[0].rsplit(": ", 1)[-1]
        error = ConfigError(f"{missing} is required: add {missing}=...")
    except Exception as err:  # noqa: BLE001 - recorded, then reported
        error = err
    code = BAD_INPUT if isinstance(error, ConfigError) else getattr(error, "exit_code", None)
    reason = f"{type(error).__name__}: {error}"
    if code is None:
        traceback.print_exception(error)
    if record_failure is not None:
        record_failure(reason)
    if is_multirun():
        logging.getLogger("sam_lightning").error("job failed: %s", reason)  # sweep.py lists it
        return None
    fail(str(error) if code is not None else reason, code=FAILED if code is None else code)


def instantiate_method(node):
    """The SAM variant a `method` config names by its `_target_` (conf/train/method/), with bad keys
    and values reported in one line (ConfigError)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from sam_lightning.config import ConfigError, check_fields

    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    target = values.get("_target_")
    if not target:
        raise ConfigError(
            "method._target_ is missing: a method config names its variant class, e.g. _target_: sam_lightning.variants.SAM"
        )
    try:
        cls = get_class(target)
    except Exception as err:  # noqa: BLE001 - any import failure is a bad _target_
        raise ConfigError(f"method._target_={target!r}: no such class can be imported") from err
    if dataclasses.is_dataclass(cls):
        check_fields(cls, "method", {k: v for k, v in values.items() if k != "_target_"})
    return instantiate_one_line(values, "method")


def instantiate_one_line(entry, key: str):
    """`hydra.utils.instantiate(entry)`, its failure turned into one ConfigError line naming `key`
    (a ConfigError raised by the class itself passes through as it is)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from sam_lightning.config import ConfigError

    try:
        return instantiate(entry, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"{key} ({entry['_target_']}): {first}") from err
