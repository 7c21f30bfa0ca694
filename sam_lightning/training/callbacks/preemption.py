"""Preemption: SIGTERM (what SLURM and most schedulers send before they kill a job), or SIGUSR1,
saves `checkpoints/last.ckpt` at the next step boundary, records status `preempted` and exits 143.

Lightning's own machinery does the signal part: its signal connector sets `trainer.received_sigterm`
and the training loop raises `SIGTERMException` after the step in progress (under SLURM with auto-
requeue, Lightning also handles SIGUSR1 and requeues the job). Outside SLURM, SIGUSR1 is routed the
same way as SIGTERM. `on_exception` writes the checkpoint; train.py turns the exception into
`Preempted` (exit status 143, as a process ended by SIGTERM), which a scheduler reads as "not
done": resuming with ckpt_path=<run dir>/checkpoints/last.ckpt goes on from that very step, with
the epoch's batch order and random states (`ResumableEpoch`).

Ctrl-C (KeyboardInterrupt, which Lightning turns into status `interrupted` and exit status 1) saves
nothing, since it can land inside a step; it says where the run is and how to resume it from its
last saved checkpoint (checkpoints/last.ckpt, written at each epoch's end), as SIGTERM's line does.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sam_lightning.run.run_dir import last_checkpoint

PREEMPTED_EXIT = 143  # 128 + SIGTERM


class Preempted(Exception):
    """The run stopped on SIGTERM/SIGUSR1 after saving last.ckpt; results.json says `preempted`."""

    exit_code = PREEMPTED_EXIT
    ends_sweep = True  # in a multirun, no next job starts: the process ends with 143 (train.py -m again resumes)


class Preemption(pl.Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.path = last_checkpoint(run_dir)
        self.saved: Path | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # SIGUSR1 as SIGTERM, unless someone (Lightning's SLURM requeue) handles it already.
        if hasattr(signal, "SIGUSR1") and signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            connector = trainer._signal_connector

            def notify(signum, frame) -> None:
                connector.received_sigterm = True

            try:
                signal.signal(signal.SIGUSR1, notify)
            except ValueError:  # not the main thread
                pass

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(str(self.path))
            self.saved = self.path
        elif isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            print(interrupted_line(trainer.global_step, self.path), file=sys.stderr, flush=True)


def interrupted_line(step: int, last: Path) -> str:
    """What Ctrl-C leaves: the run folder and the command that resumes it (or why none can)."""
    where = f"interrupted (Ctrl-C) at step {step}; run folder: {last.parent.parent}"
    if last.is_file():
        return f"{where}\nresume from its last checkpoint with: python train.py ckpt_path={last}"
    return f"{where}\nno checkpoint saved yet ({last.name} is written at each epoch's end): nothing to resume, run it again"
