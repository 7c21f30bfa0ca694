"""`results.json`: one file per run that says what came out of it, written atomically.

Written at the end of every run and after every epoch, so that a killed job still leaves the last
complete state (never a half-written file: write to a temporary file in the same folder, then
rename over the old one). `status` is one of

    running      an epoch has finished, the run goes on (or was killed without a word)
    finished     trainer.max_epochs done
    stopped      ended before trainer.max_epochs: trainer.max_steps, trainer.max_time, early stopping or
                 another callback; `reason` says which, `stopped_at` the epoch and step (sweep tables
                 list it apart from finished runs)
    diverged     the training loss became NaN or infinite; `diverged_at` names the epoch and step
    interrupted  stopped by Ctrl-C (KeyboardInterrupt)
    preempted    stopped by SIGTERM or SIGUSR1 (a scheduler); checkpoints/last.ckpt holds the step it stopped at
    skipped      a job of a rho grid whose method ignores rho (ERM) and that repeats another job (sam_lightning.run.duplicates)
    failed       any other error; `reason` holds it
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sam_lightning.run.jsonio import RESULTS_FILE, atomic_write_json

# The metrics a training run logs, one name in logs, results.json's history, W&B and docs (their one
# home: the training system, the callbacks, sweep tables and plots read them here). Per epoch:
TRAIN_LOSS = "train/loss"
TRAIN_ERROR = "train/error"
TRAIN_OBJECTIVE = "train/objective"  # the loss plus the L2 term (optim.l2_mode=loss)
TRAIN_LR = "train/lr"
TRAIN_RHO = "train/rho"
TRAIN_PERTURBED = "train/perturbed"  # 1 in an epoch whose steps perturb the weights (erm_to_sam switches)
TRAIN_CLEAN_ERROR = "train/clean_error"  # under label noise only: the error on the intact labels
TRAIN_NOISY_FIT = "train/noisy_fit"  # under label noise only: the share of flipped labels fitted
TRAIN_SAM_GAP = (
    "train/sam_gap"  # the epoch's mean of L(w + e) - L(w) over perturbed steps (paper Fig. 19's gap, for free)
)
EPOCH_TIME = "time/epoch_s"  # the epoch's training time (SAMClassifier), evaluation left out
LABEL_NOISE_KEYS = (TRAIN_CLEAN_ERROR, TRAIN_NOISY_FIT)
TRAIN_KEYS = (
    TRAIN_LOSS,
    TRAIN_ERROR,
    TRAIN_OBJECTIVE,
    TRAIN_LR,
    TRAIN_RHO,
    TRAIN_PERTURBED,
    TRAIN_SAM_GAP,
    *LABEL_NOISE_KEYS,
    EPOCH_TIME,
)


def eval_key(eval_set: str, kind: str) -> str:
    """The metric of an evaluated set (test, val, train_eval: `DataSpec.eval_sets`), kind loss or error."""
    return f"{eval_set}/{kind}"


TEST_LOSS, TEST_ERROR = eval_key("test", "loss"), eval_key("test", "error")
VAL_LOSS, VAL_ERROR = eval_key("val", "loss"), eval_key("val", "error")
TRAIN_EVAL_LOSS, TRAIN_EVAL_ERROR = eval_key("train_eval", "loss"), eval_key("train_eval", "error")
EVAL_KEYS = (TEST_LOSS, TEST_ERROR, VAL_LOSS, VAL_ERROR, TRAIN_EVAL_LOSS, TRAIN_EVAL_ERROR)
EPOCH_KEYS = TRAIN_KEYS + EVAL_KEYS
# Per step (the logger's, not results.json's):
STEP_LOSS = "step/loss"
STEP_GRAD_NORM = "step/grad_norm"
STEP_PERTURBATION_NORM = "step/perturbation_norm"
STEP_LR = "step/lr"
STEP_PERTURBED_LOSS = "step/perturbed_loss"
# results.json's number besides final_* / best_*: the test error at the epoch of lowest validation error.
AT_BEST_VAL = "test_error_at_best_val"


def is_error(metric: str) -> bool:
    """An error rate (shown in percent), not a loss: a per-epoch key or results.json number whose
    name ends in error (test/error, final_test_error, ...), and test_error_at_best_val."""
    return metric.endswith("error") or metric == AT_BEST_VAL


# results.json's final_* keys are "final_" + the logged key with "/" as "_" (train/noisy_fit ->
# final_train_noisy_fit): one name in logs, results.json, W&B and docs. Files written before that
# rule used these names; `current_keys` reads them under today's.
RENAMED_KEYS = {"final_noisy_fit": "final_train_noisy_fit", "final_clean_train_error": "final_train_clean_error"}


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; results.json records status `diverged`."""

    exit_code = 1  # a run that failed, not bad input (sam_lightning.entry)

    def __init__(self, loss: float, epoch: int, step: int, what: str = "the loss") -> None:
        self.loss, self.epoch, self.step = loss, epoch, step
        super().__init__(
            f"training diverged: {what} is {loss} at epoch {epoch}, step {step}; try a smaller optim.lr (or method.rho)"
        )


def current_keys(payload: dict) -> dict:
    """A results.json payload with the keys of older files renamed to today's (RENAMED_KEYS)."""
    return {RENAMED_KEYS.get(k, k): v for k, v in payload.items()}


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def job_overrides() -> list[str] | None:
    """This Hydra job's command-line overrides (`hydra.overrides.task`, what .hydra/overrides.yaml
    holds), or None outside a Hydra job. Recorded in results.json so that the file alone says which
    group of a sweep the run belongs to (sweep.py reads it when .hydra/ is gone)."""
    from sam_lightning.settings.hydra_job import task_overrides

    return task_overrides()


def status_of(exception: BaseException) -> str:
    """The status a run ends with when `exception` stops it."""
    if isinstance(exception, TrainingDiverged):
        return "diverged"
    if isinstance(exception, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exception, SIGTERMException):
        return "preempted"
    return "failed"


def stopped_epoch(trainer: pl.Trainer) -> int:
    """The (0-based) epoch of the last step taken; Lightning's current_epoch has already moved past
    an epoch cut short by max_steps."""
    per_epoch = trainer.num_training_batches
    if not trainer.global_step or not math.isfinite(per_epoch) or per_epoch < 1:
        return trainer.current_epoch
    return (trainer.global_step - 1) // int(per_epoch)


def stop_reason(trainer: pl.Trainer) -> str | None:
    """Why fit ended before trainer.max_epochs, or None when every epoch ran."""
    from pytorch_lightning.callbacks import EarlyStopping, Timer

    # Every step of every epoch ran (one optimizer step per batch: manual optimization). Epochs alone
    # cannot tell: Lightning counts an epoch cut short by max_steps as completed.
    per_epoch = trainer.num_training_batches
    if trainer.max_epochs is None or trainer.max_epochs < 0 or not math.isfinite(per_epoch):
        return None
    if trainer.global_step >= trainer.max_epochs * per_epoch:
        return None
    where = f"in epoch {stopped_epoch(trainer) + 1} of {trainer.max_epochs}, at step {trainer.global_step}"
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return f"trainer.max_steps={trainer.max_steps} reached {where}"
    for callback in trainer.callbacks:
        if isinstance(callback, Timer) and callback.time_remaining() is not None and callback.time_remaining() <= 0:
            return f"trainer.max_time reached {where}"
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            return f"early stopping on {callback.monitor} (patience {callback.patience}) {where}"
    return f"a callback stopped training {where}"


class ResultsWriter(pl.Callback):
    """Collects per-epoch metrics and keeps `results.json` up to date.

    The history travels in checkpoints (state_dict), so a resumed run keeps its earlier epochs.
    """

    # results.json files that a run of this process has closed with its own end (and history):
    # `write_failure`, called afterwards by the entry point, leaves them as they are.
    closed: set[Path] = set()

    def __init__(self, run_dir: str | os.PathLike, config: dict, extra: dict | None = None) -> None:
        self.path = Path(run_dir) / RESULTS_FILE
        self.config = config
        self.extra = dict(extra or {})
        if "overrides" not in self.extra and (overrides := job_overrides()) is not None:
            self.extra["overrides"] = overrides
        self.history: list[dict] = []
        self.started = time.time()
        self.wall_time_before = 0.0  # from earlier, resumed segments of the same run

    # -- state carried in checkpoints --
    def state_dict(self) -> dict:
        return {"history": self.history, "wall_time": self.wall_time()}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
        self.wall_time_before = float(state.get("wall_time", 0.0))

    def wall_time(self) -> float:
        return self.wall_time_before + time.time() - self.started

    # -- hooks --
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """After the datamodule's setup: what the run trains on, and which labels were flipped."""
        splits = getattr(trainer.datamodule, "splits", None)
        if splits is None or not trainer.is_global_zero:
            return
        self.extra["data_sizes"] = splits.sizes()
        if len(splits.noisy_indices):
            atomic_write_json(self.path.parent / "noisy_labels.json", splits.noisy_labels())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._tested_epoch = trainer.current_epoch

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":  # this run's peak, not an earlier job's of the same process (multirun)
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The epoch's evaluation has run by now (if it was due); callback_metrics hold both, and
        # test metrics of an earlier epoch are not repeated for an epoch without evaluation.
        metrics = trainer.callback_metrics
        keys = EPOCH_KEYS if getattr(self, "_tested_epoch", None) == trainer.current_epoch else TRAIN_KEYS
        row = {k: _float(metrics[k]) for k in keys if k in metrics}
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **row})
        if pl_module.device.type == "cuda":  # so far in this run (under DDP: rank 0's device); not in the
            # history, which a repeated or resumed run reproduces exactly
            self.extra["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(pl_module.device) / 2**20, 1)
        if trainer.is_global_zero:
            self.write("running")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.write_end(trainer)

    def write_end(self, trainer: pl.Trainer) -> dict:
        """results.json at the end of fit: finished, stopped (and why) or interrupted."""
        if trainer.interrupted:
            return self.write("interrupted")
        reason = stop_reason(trainer)
        if reason is None:
            self.extra.pop("stopped_at", None)
            return self.write("finished")
        self.extra["stopped_at"] = {"epoch": stopped_epoch(trainer), "step": trainer.global_step}
        return self.write("stopped", reason=reason)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, TrainingDiverged):
            self.extra["diverged_at"] = {"epoch": exception.epoch, "step": exception.step, "loss": str(exception.loss)}
        if trainer.is_global_zero:
            self.write(status_of(exception), reason=f"{type(exception).__name__}: {exception}")
            ResultsWriter.closed.add(self.path.resolve())

    def final_metrics(self) -> dict:
        tested = [h for h in self.history if h.get(TEST_ERROR) is not None]
        best = min(tested, key=lambda h: h[TEST_ERROR]) if tested else None
        validated = [h for h in self.history if h.get(VAL_ERROR) is not None]
        best_val = min(validated, key=lambda h: h[VAL_ERROR]) if validated else None
        evaluated = [h for h in self.history if h.get(TRAIN_EVAL_ERROR) is not None]  # data.eval_train
        last = self.history[-1] if self.history else {}
        trained = [h for h in self.history if h.get(TRAIN_ERROR) is not None]
        return {
            "final_test_error": tested[-1][TEST_ERROR] if tested else None,
            "final_test_loss": tested[-1].get(TEST_LOSS) if tested else None,
            "final_test_epoch": tested[-1]["epoch"] if tested else None,  # a stopped run's last evaluation
            "best_test_error": best[TEST_ERROR] if best else None,
            "best_epoch": best["epoch"] if best else None,
            # Early stopping chosen on the validation split (data.val_fraction), never on test:
            "final_val_error": validated[-1][VAL_ERROR] if validated else None,
            "final_val_loss": validated[-1].get(VAL_LOSS) if validated else None,
            "best_val_error": best_val[VAL_ERROR] if best_val else None,
            "best_val_epoch": best_val["epoch"] if best_val else None,
            AT_BEST_VAL: best_val.get(TEST_ERROR) if best_val else None,
            "final_train_eval_error": evaluated[-1][TRAIN_EVAL_ERROR] if evaluated else None,
            "final_train_error": trained[-1][TRAIN_ERROR] if trained else None,
            "final_train_loss": trained[-1].get(TRAIN_LOSS) if trained else None,
            "final_train_objective": trained[-1].get(TRAIN_OBJECTIVE) if trained else None,
            "final_train_clean_error": trained[-1].get(TRAIN_CLEAN_ERROR) if trained else None,
            "final_train_noisy_fit": trained[-1].get(TRAIN_NOISY_FIT) if trained else None,
            "epochs_done": len(trained),
            "global_step": last.get("step", 0),
        }

    def write(self, status: str, reason: str | None = None, epochs_done: int | None = None) -> dict:
        payload = {
            "status": status,
            "reason": reason,
            **self.final_metrics(),
            "wall_time_s": round(self.wall_time(), 3),
            **self.extra,
            "config": self.config,
            "history": self.history,
        }
        atomic_write_json(self.path, payload)
        return payload


def recorded_config(cfg, convert=None) -> tuple[dict, str | None]:
    """The config as results.json records it, the same in every status: resolved (then `convert`ed,
    as the entry point's run records it, when `convert` is given and takes it). Only when resolving
    is what fails is the config recorded as composed (interpolations left as written); the second
    value then says why, for the file's `config_unresolved`."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_config(cfg):
        return dict(cfg), None
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001 - any interpolation that cannot be resolved
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return OmegaConf.to_container(cfg, resolve=False), f"{type(err).__name__}: {why}"
    if convert is not None:
        try:
            config = convert(config)
        except Exception:  # noqa: BLE001 - the bad value is the run's failure, named in its reason
            pass
    return config, None


def write_failure(run_dir: str | os.PathLike, cfg, reason: str, status: str = "failed", convert=None) -> None:
    """For failures before training starts (bad config, missing data, Ctrl-C while the data load):
    same file, same keys, the config as `recorded_config` gives it. A run that got as far as
    training has already written its own end, with its history: kept."""
    config, unresolved = recorded_config(cfg, convert)
    writer = ResultsWriter(run_dir, config, extra={"config_unresolved": unresolved} if unresolved else None)
    if writer.path.resolve() not in ResultsWriter.closed:
        writer.write(status, reason=reason)
