"""One run, one folder, written only by the run that owns it.

* The default `hydra.run.dir` (conf/train/train.yaml, conf/theory/theory.yaml) ends with the
  microseconds of the start time (`${now:%f}`, Hydra's own resolver), so that two runs started in
  the same second get two folders. Multirun job folders keep Hydra's names (the sweep folder and
  the job's number).
* `ResumeInPlace`: a run resumed from <run folder>/checkpoints/*.ckpt continues in that folder, not
  in a new one (a Hydra callback: it sets hydra.run.dir before Hydra creates the folder).
* `check_run_dir`: a folder that already holds a run (its results.json or checkpoints) is refused,
  unless the run resumes that very run (ckpt_path inside the folder) or says `overwrite=true`.
* `claimed`: the folder is claimed for one process at a time (`.run.lock`, created with O_EXCL and
  removed at the end; a lock left by a process that no longer runs on this host is taken over).
  Every check comes before the claim and nothing is written before it: a refused command leaves
  the folder as it was. Hydra's own files (.hydra/, train.log) follow the same rule: train.yaml
  turns Hydra's saving of .hydra/ off (`write_hydra_files` writes it after the claim) and opens
  train.log lazily (its first line is logged after the claim).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sam_lightning.entry import BAD_INPUT, fail
from sam_lightning.run.jsonio import RESULTS_FILE
from sam_lightning.settings.config import ConfigError

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".run.lock"
HYDRA_DIR = ".hydra"
LOG_FILE = "train.log"
STARTED = time.time()  # this process's start: a folder made after it (by Hydra, for this run) is this run's
_CLAIMED: set[Path] = set()  # folders this process has claimed: its runs' own, where it may record their end


def claimed_here() -> frozenset[Path]:
    """The (resolved) folders this process has claimed for its runs."""
    return frozenset(_CLAIMED)


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    """<run dir>/checkpoints/last.ckpt: where a run keeps the step to resume from."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def holds_run(folder: str | os.PathLike) -> bool:
    """A run's record is in `folder`: its results.json, or checkpoints written by one."""
    folder = Path(folder)
    checkpoints = folder / CHECKPOINT_DIR
    return (folder / RESULTS_FILE).exists() or (checkpoints.is_dir() and any(checkpoints.glob("*.ckpt")))


def folder_of_run(ckpt_path) -> Path | None:
    """The run folder that holds `ckpt_path` (<folder>/checkpoints/*.ckpt beside <folder>/results.json), else None."""
    if not ckpt_path:
        return None
    path = Path(str(ckpt_path)).expanduser()
    folder = path.parent.parent if path.parent.name == CHECKPOINT_DIR else None
    return folder if folder is not None and (folder / RESULTS_FILE).is_file() else None


def is_rank_zero() -> bool:
    """False in a DDP worker, which starts in its rank 0's folder and writes nothing of its own there."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


class ResumeInPlace(Callback):
    """hydra.run.dir: a run resumed from a checkpoint in its run folder continues in that folder
    (results.json, metrics.csv and the W&B run go on), unless the command names hydra.run.dir itself."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        folder = folder_of_run(config.get("ckpt_path"))
        given = any(str(o).lstrip("+").startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra)
        if folder is None or given:
            return
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = str(folder)


# What a run writes into its folder, removed by overwrite=true.
RUN_FILES = (RESULTS_FILE, "noisy_labels.json", CHECKPOINT_DIR, "csv", "wandb", "tensorboard", HYDRA_DIR, LOG_FILE)


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    try:
        return Path(path).expanduser().resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_run_dir(
    run_dir: str | os.PathLike, ckpt_path: str | None, overwrite: object, key: str = "paths.output_dir"
) -> None:
    """Raises ConfigError when `run_dir` holds another run (see the module's doc). Writes nothing."""
    folder = Path(run_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}={folder} is a file, not a folder: choose a folder")
    if not holds_run(folder) or not is_rank_zero():
        return
    resumes_it = bool(ckpt_path) and _inside(ckpt_path, folder)
    if overwrite is True and resumes_it:
        raise ConfigError(
            f"overwrite=true with ckpt_path={ckpt_path} inside {folder}: overwrite replaces that run, resuming "
            "continues it; give one of them"
        )
    if overwrite is True or resumes_it:
        return
    raise ConfigError(
        f"{key}={folder} already holds a run: choose another folder, resume that run with "
        f"ckpt_path={last_checkpoint(folder)}, or replace it with overwrite=true"
    )


def clear_run_dir(run_dir: str | os.PathLike) -> None:
    """overwrite=true: the earlier run's files go, so that none of them mixes with the new run's."""
    folder = Path(run_dir)
    for name in RUN_FILES:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _owner(lock: Path) -> dict:
    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _gone(owner: dict) -> bool:
    """The lock's process ran on this host and runs no more (killed without a chance to clean up)."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by another user
        return False
    return False


def _take(folder: Path, key: str) -> Path:
    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if attempt == 0 and _gone(owner):
                lock.unlink(missing_ok=True)
                continue
            who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('since', '?')}"
            raise ConfigError(
                f"{key}={folder} is in use by another run ({who}); wait for it to end or choose another folder "
                f"(if no such process runs, remove {lock})"
            ) from None
        except OSError as err:
            raise ConfigError(
                f"{key}={folder} is not writable ({err.strerror or err}); choose a writable folder"
            ) from err
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock
    raise AssertionError("unreachable")


@contextlib.contextmanager
def claimed(run_dir: str | os.PathLike, key: str = "paths.output_dir", clear: bool = False):
    """The folder, created if need be and claimed for this process until the block ends (see the
    module's doc); `clear`: the earlier run's files removed once the folder is ours (overwrite=true).
    A DDP worker claims nothing: its rank 0 holds the folder."""
    folder = Path(run_dir)
    if not is_rank_zero():
        yield folder
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{key}={folder} cannot be created ({err.strerror or err}); choose a writable folder"
        ) from err
    lock = _take(folder, key)
    _CLAIMED.add(folder.resolve())
    try:
        if clear:
            clear_run_dir(folder)
        yield folder
    finally:
        if _owner(lock).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)


def discard_if_unused(run_dir: str | os.PathLike) -> None:
    """The empty folders Hydra made for a command that was then refused (`outputs/<date>/<run>`: the
    run folder and at most the two above it): removed, so that a refusal leaves nothing behind. A
    folder that existed before this process started, or holds anything, is left as it was."""
    folder = Path(run_dir).absolute()
    with contextlib.suppress(OSError):
        for _ in range(3):
            if folder == Path.cwd() or not folder.is_dir() or folder.stat().st_ctime < STARTED - 1:
                return
            if any(folder.iterdir()):
                return
            folder.rmdir()
            folder = folder.parent


def write_hydra_files(run_dir: str | os.PathLike, cfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them, once the folder is
    this run's (train.yaml sets hydra.output_subdir to null so that Hydra does not write them first).
    Nothing outside a Hydra job."""
    from sam_lightning.settings.hydra_job import saved_config

    hydra_cfg = saved_config()
    if hydra_cfg is None:
        return
    out = Path(run_dir) / HYDRA_DIR
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    OmegaConf.save(hydra_cfg, out / "hydra.yaml")
    OmegaConf.save(hydra_cfg.hydra.overrides.task, out / "overrides.yaml")


class FreshRunDir(Callback):
    """hydra.run.dir checked before Hydra creates anything (on_run_start)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            run_dir = str(config.hydra.run.dir)
        except Exception:  # noqa: BLE001 - the default folder names Hydra's runtime, not known yet: it is a fresh one
            return
        try:
            check_run_dir(run_dir, config.get("ckpt_path"), config.get("overwrite", False), key="hydra.run.dir")
        except ConfigError as err:
            fail(str(err), BAD_INPUT)


class NotIntoARun(Callback):
    """For commands that are not training runs (eval.py, the analysis commands, theory.py): their
    folder (hydra.run.dir) may not be a training run's, nor hold the `product` of an earlier command
    of the same kind, since either would be overwritten. Checked before Hydra creates anything."""

    def __init__(self, product: str = RESULTS_FILE, key: str = "out_dir") -> None:
        self.product, self.key = product, key

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from sam_lightning.settings.hydra_job import set_early

        set_early(config)  # as WritableOutputDir: ${hydra:...} in the folder's name resolve
        folder = Path(str(config.hydra.run.dir))
        if folder.exists() and not folder.is_dir():
            fail(f"{self.key}={folder} is a file, not a folder: choose a folder", BAD_INPUT)
        if holds_run(folder):
            fail(
                f"{self.key}={folder} holds a training run, which this command must not change: choose another folder",
                BAD_INPUT,
            )
        if (folder / self.product).exists():
            fail(
                f"{self.key}={folder} already holds {self.product} of an earlier command: choose another folder",
                BAD_INPUT,
            )
        from sam_lightning.run.output_dir_check import check_creatable

        check_creatable(str(folder), self.key)  # e.g. under a file: one line, not Hydra's traceback
