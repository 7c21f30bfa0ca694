"""What the entry points (train.py, eval.py, theory.py, sweep.py, the analysis commands, the bench) share.

Exit codes, the same everywhere: 0 done; 2 a user mistake (`ConfigError`: a bad setting, path or
file, refused in one line before anything runs, or found missing while it runs); 1 a run that
failed or diverged; 143 a preempted run (sam_lightning.training.callbacks.preemption).
"""

from __future__ import annotations

import dataclasses
import os
import sys

FAILED, BAD_INPUT = 1, 2


def is_multirun() -> bool:
    """True inside a Hydra multirun job (`-m`), where a failure must not stop the other jobs
    (`sam_lightning.settings.hydra_job.is_multirun`; False when called as a library)."""
    from sam_lightning.settings.hydra_job import is_multirun as running_multirun

    return running_multirun()


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


def hydra_error_line(err: Exception) -> str:
    """One line for Hydra's error in composing a command's config: the option or key that does not
    exist with the one closest to it, or Hydra's own message without its hints and search path."""
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from sam_lightning.settings.config import did_you_mean

    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:  # method=sam_m12
        group, _, option = err.missing_cfg_file.rpartition("/")
        return (
            f"{group}={option}: no such option{did_you_mean(option, err.options)} (options: {', '.join(err.options)})"
        )
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key and "not in struct" in str(cause):  # method.rhoo=
        parent = cause.parent_node
        close = did_you_mean(cause.key, parent.keys() if OmegaConf.is_dict(parent) else ())
        return f"cannot set {cause.full_key}: no such key" + (close or f" (+{cause.full_key}=... adds one)")
    lines = []
    for line in str(err).strip().splitlines():
        if not line.strip():
            break
        if not line.startswith("See https://"):
            lines.append(line.strip().rstrip("."))
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).strip().splitlines()[0])
    override = getattr(err, "override", None)  # OverrideParseException: the override it could not read
    if override and override not in str(err):
        lines.insert(0, f"cannot parse {override}")
    return "; ".join(lines) or type(err).__name__


def hydra_main(main) -> None:
    """Runs a Hydra entry point's `main()` (decorated with hydra.main) so that Hydra's own errors in
    composing the config from the command line (a key or option that does not exist, an override it
    cannot parse, a missing config folder) are one `error:` line and exit status 2, as every other
    bad input is; in a multirun of Hydra's basic sweeper before any job starts (it composes every
    job's config first).

    Hydra reports these errors itself, in several lines, and exits 1: the status of a failed run.
    With HYDRA_FULL_ERROR set (its documented switch for a full stack trace) it raises them instead,
    so their type tells a composition error from any other here, with a single composition. The
    alternative, composing the config once more before main() to find the error, would have to
    repeat Hydra's reading of the command line (--config-dir, -m and its sweeps, a preset's
    hydra.mode) and could disagree with it. Any other error keeps Hydra's exit status 1, with its
    traceback. A user who sets HYDRA_FULL_ERROR gets Hydra's full report, unchanged."""
    from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException

    from sam_lightning.run.paths import ROOT_ENV, anchor_root

    anchored = anchor_root()  # paths.root_dir: outputs and data where the repository is, from any folder
    try:
        if os.environ.get("HYDRA_FULL_ERROR"):
            main()
            return
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            main()
        except (ConfigCompositionException, OverrideParseException, SearchPathException) as err:
            fail(hydra_error_line(err), code=BAD_INPUT)
        finally:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    finally:
        if anchored:
            os.environ.pop(ROOT_ENV, None)


def run_command(job, cfg, required: str = "", record_failure=None):
    """`job(cfg)` for every Hydra entry point (train.py, eval.py, theory.py, the analysis commands,
    the bench). A user mistake (ConfigError, or a mandatory value left out) is one `error:` line and
    exit 2; an error that carries its own `exit_code` (TrainingDiverged: 1, Preempted: 143) is one
    line with that code; any other error is shown with its traceback, exit 1. `record_failure(reason)`,
    where given, keeps the failure first (results.json). In a multirun the other jobs go on: the
    failure is logged and None returned, unless the error ends the sweep (`ends_sweep`: a preempted
    job, whose scheduler wants the process gone: exit 143). `required` shows how to give the mandatory values, e.g. "ckpt=PATH"."""
    import logging
    import traceback

    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    from sam_lightning.settings.config import ConfigError

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
    if is_multirun() and not getattr(error, "ends_sweep", False):
        logging.getLogger("sam_lightning").error("job failed: %s", reason)  # sweep.py lists it
        return None
    fail(str(error) if code is not None else reason, code=FAILED if code is None else code)


def instantiate_method(node):
    """The method (ERM or a SAM variant) a `method` config names by its `_target_` (conf/train/method/),
    with bad keys and values reported in one line (ConfigError)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from sam_lightning.settings.config import ConfigError, check_fields

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

    from sam_lightning.settings.config import ConfigError

    try:
        return instantiate(entry, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"{key} ({entry['_target_']}): {first}") from err
