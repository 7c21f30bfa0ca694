"""What the Hydra entry points (train.py, theory.py, the analysis commands) share."""

from __future__ import annotations

import dataclasses
import sys

# The exit codes of every entry point: a run that failed or diverged, and input refused before it ran.
FAILED, BAD_INPUT = 1, 2


def is_multirun() -> bool:
    """True inside a Hydra multirun job (`-m`), where a failure must not stop the other jobs."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra context: called as a library
        return False


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, no traceback, a non-zero exit."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def run_or_fail(run, cfg, errors: tuple[type[BaseException], ...], required: str):
    """`run(cfg)`, turning a missing mandatory value or one of `errors` into one line and exit 2.
    `required` shows how to give the mandatory values, e.g. "ckpt=PATH"."""
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    try:
        return run(cfg)
    except MissingMandatoryValue as err:
        fail(f"{err.full_key} is required, e.g. {required}", code=2)
    except InterpolationToMissingValueError as err:  # e.g. a preset's ${sweep} left out
        missing = str(err).splitlines()[0].rsplit(": ", 1)[-1]
        fail(f"{missing} is required: add {missing}=...", code=2)
    except errors as err:
        fail(str(err), code=2)


def run_hydra_job(job, cfg, known: tuple[type[BaseException], ...], record_failure):
    """`job(cfg)` for a Hydra entry point. A known error (bad config, missing data) is reported in
    one line, any other with its traceback; either way `record_failure(reason)` keeps it (in
    results.json). In a multirun the other jobs go on (returns None); otherwise the exit code says
    which: 2 for bad input (a known error), 1 for a run that failed or diverged (an error's
    `exit_code` attribute wins: TrainingDiverged has 1)."""
    import logging
    import traceback

    try:
        return job(cfg)
    except known as err:
        reason, short, code = f"{type(err).__name__}: {err}", str(err), getattr(err, "exit_code", BAD_INPUT)
    except Exception as err:  # noqa: BLE001 - recorded, then reported
        reason, short, code = f"{type(err).__name__}: {err}", None, FAILED
        traceback.print_exc()
    record_failure(reason)
    if is_multirun():
        logging.getLogger("sam_lightning").error("job failed: %s", reason)  # sweep.py lists it
        return None
    fail(short or reason, code=code)


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
