"""The training system: a LightningModule with manual optimization around a SAM-unaware backbone.

All gradient math lives in `sam_lightning.core`; this class only wires it to Lightning: the
optimizer, the LR schedule, metrics and logging. One call of `training_step` makes exactly one
optimizer step, so `trainer.global_step` counts batches for every method.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from sam_lightning.core.chunks import chunk_slices
from sam_lightning.core.engine import choose_engine
from sam_lightning.core.step import step_gradients
from sam_lightning.data.label_noise import noise_fit
from sam_lightning.models import build_model
from sam_lightning.run.results import (
    EPOCH_TIME,
    STEP_GRAD_NORM,
    STEP_LOSS,
    STEP_LR,
    STEP_PERTURBATION_NORM,
    STEP_PERTURBED_LOSS,
    TRAIN_CLEAN_ERROR,
    TRAIN_ERROR,
    TRAIN_LOSS,
    TRAIN_LR,
    TRAIN_NOISY_FIT,
    TRAIN_OBJECTIVE,
    TRAIN_PERTURBED,
    TRAIN_RHO,
    TRAIN_SAM_GAP,
    eval_key,
)
from sam_lightning.settings.config import ConfigError, ModelSpec, OptimSpec
from sam_lightning.variants import Method

log = logging.getLogger("sam_lightning")

# Checkpoint entries that runs from before the method memory saved at the top level, under the key
# they keep in the memory (n-SAM's previous batch).
LEGACY_MEMORY_KEYS = ("nsam_previous_batch",)


def l2_penalty(params, l2: float) -> Tensor:
    """0.5 * l2 * ||w||^2 over all trainable parameters (BatchNorm affine and biases included)."""
    return 0.5 * l2 * sum(p.pow(2).sum() for p in params)


def method_hparams(method: Method) -> dict:
    """Plain data for checkpoints: the method's class, name and settings."""
    cls = type(method)
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **method.describe()}


def lr_schedule(optimizer: torch.optim.Optimizer, kind: str, max_epochs: int):
    """Epoch-wise schedules; `piecewise` is the paper's: x0.1 at 50% and 75% of the epochs."""
    if kind == "piecewise":
        milestones = sorted({max(1, round(0.5 * max_epochs)), max(1, round(0.75 * max_epochs))})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


class ErrorRate(MulticlassAccuracy):
    """1 - accuracy: the paper reports errors."""

    def compute(self) -> Tensor:
        return 1.0 - super().compute()


class SAMClassifier(pl.LightningModule):
    """Image classifier trained with any method of `sam_lightning.variants` (ERM, SAM, ...).

    model, method, optim: the typed settings (`ModelSpec`, a `sam_lightning.variants.Method`,
    `OptimSpec`); checkpoints keep them as plain data. max_epochs sets the LR schedule's length.
    What differs between methods is asked of the method: whether an epoch perturbs (told by the
    `MethodSwitch` callback), the ascent batch, the step's rho, and the step itself
    (`sam_lightning.core.step.step_gradients`).
    """

    EVAL_SETS = ("test", "val", "train_eval")  # what the datamodule's evaluation loaders may be (its eval_sets)

    def __init__(
        self,
        model: ModelSpec,
        method: Method,
        optim: OptimSpec,
        num_classes: int,
        max_epochs: int,
        channels_last: bool = False,
        track_label_noise: bool = False,
        fingerprint: dict | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # logger=False: the loggers get the resolved Hydra config from train.py, not this copy of it.
        # fingerprint: what defines the run (sam_lightning/settings/fingerprint.py), checked when resuming.
        self.save_hyperparameters(
            {
                "model": asdict(model),
                "method": method_hparams(method),
                "optim": asdict(optim),
                "num_classes": num_classes,
                "max_epochs": max_epochs,
                "channels_last": channels_last,
                "track_label_noise": track_label_noise,
                "fingerprint": fingerprint,
            },
            logger=False,
        )
        self.method, self.optim = method, optim
        self.backbone = build_model(num_classes=num_classes, **asdict(model))
        self.channels_last = channels_last
        if channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        # In place (nn.Module.compile): parameter names, state_dict and checkpoints stay those of the
        # eager model, and functional_call at explicit weights (the SAM step) runs the compiled forward.
        self.compiled = compile
        if compile:
            self.backbone.compile()
        self._compile_clock: list[float] = []  # the first two training steps' seconds (compile=true)
        self._epoch_started = 0.0
        self.automatic_optimization = False
        self.train_error = ErrorRate(num_classes, average="micro")
        self.train_loss, self.train_objective = MeanMetric(), MeanMetric()
        self.train_sam_gap = MeanMetric()  # L(w + e) - L(w), over the steps that perturb
        # One error and loss per evaluation set, in the order of the datamodule's val_dataloader.
        self.eval_error = torch.nn.ModuleDict({k: ErrorRate(num_classes, average="micro") for k in self.EVAL_SETS})
        self.eval_loss = torch.nn.ModuleDict({k: MeanMetric() for k in self.EVAL_SETS})
        if track_label_noise:  # running, at w, on the augmented training batches
            self.train_clean_error, self.train_noisy_fit = ErrorRate(num_classes, average="micro"), MeanMetric()
        # False: this epoch's steps are ERM's. The MethodSwitch callback asks the method at every epoch's start.
        self.perturbing = method.perturbs_at(0, method.switch_epoch(max_epochs))
        # What the method keeps across steps (n-SAM: the previous batch); saved in checkpoints.
        self.method_memory: dict = {}
        self._engine_reported = False

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def configure_optimizers(self):
        o = self.optim
        decay = o.l2 if o.l2_mode == "weight_decay" else 0.0
        opt = torch.optim.SGD(
            self.backbone.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=decay
        )
        return [opt], [lr_schedule(opt, o.schedule, self.hparams.max_epochs)]

    def on_train_start(self) -> None:
        from sam_lightning.training.callbacks.switch import MethodSwitch

        switches = self.method.switch_epoch(self.hparams.max_epochs) is not None
        if switches and not any(isinstance(c, MethodSwitch) for c in self.trainer.callbacks):
            raise ConfigError(
                f"method {self.method.name} needs the MethodSwitch callback (sam_lightning.training.callbacks.switch) in the Trainer's callbacks"
            )

    # -- the method's memory in checkpoints ------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # e.g. n-SAM's next ascent batch: without it a resumed run's first step differs from the uninterrupted run's.
        checkpoint["method_memory"] = self.method_memory

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        memory = checkpoint.get("method_memory")
        if memory is None:
            memory = {k: checkpoint[k] for k in LEGACY_MEMORY_KEYS if checkpoint.get(k) is not None}
        self.method_memory = dict(memory)

    # -- the step ------------------------------------------------------------------------------
    def _step_rho(self, lr: float) -> float:
        """This step's rho, as the method decides it at learning rate `lr` (its rho schedule); 0 for an
        ERM step. Asked once per step: the step and train/rho both get this number."""
        return self.method.current_rho(lr, self.optim.lr) if self.perturbing else 0.0

    def _ascent_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor] | None:
        """The batch the method takes its ascent gradient on (None: this one), asked of the method."""
        return self.method.ascent_batch_for(x, y, self.method_memory, self._random_train_batch)

    def _random_train_batch(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "random_train_batch"):
            raise RuntimeError(
                f"method {self.method.name} draws random training batches: it needs the ImageDataModule "
                "(trainer.fit(..., datamodule=...))"
            )
        return datamodule.random_train_batch(n, device)

    def _report_engine(self, batch_size: int) -> None:
        if not self._engine_reported and self.trainer.is_global_zero:
            n = len(chunk_slices(batch_size, self.method.m))
            log.info(
                "m-SAM engine: %s (%d chunk(s) of %d examples per batch, method.engine=%s)",
                choose_engine(self.method, self.backbone, n, batch_size // n),
                n,
                batch_size // n,
                self.method.engine,
            )
        self._engine_reported = True

    def _gradients(self, x: Tensor, y: Tensor, rho: float):
        params = [p for p in self.backbone.parameters() if p.requires_grad]
        regularizer = None
        if self.optim.l2_mode == "loss" and self.optim.l2 > 0:
            regularizer = lambda weights: l2_penalty(weights, self.optim.l2)  # noqa: E731
        xa, ya = None, None
        if self.perturbing:
            self._report_engine(len(y))
            xa, ya = self._ascent_batch(x, y) or (None, None)
        return step_gradients(
            self.backbone,
            params,
            F.cross_entropy,
            x,
            y,
            self.method,
            perturb=self.perturbing,
            rho=rho,
            ascent_inputs=xa,
            ascent_targets=ya,
            regularizer=regularizer,
            backward=self.manual_backward,
        )

    def _images(self, x: Tensor) -> Tensor:
        """The batch in the weights' dtype (float64 under trainer.precision=64-true) and memory format."""
        return x.to(
            dtype=self.dtype, memory_format=torch.channels_last if self.channels_last else torch.preserve_format
        )

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Seconds since the epoch's start, logged at every batch and reduced by max: the epoch's value is
        # its training time up to its last batch (its evaluation, which comes after, is left out).
        elapsed = time.perf_counter() - self._epoch_started
        self.log(EPOCH_TIME, elapsed, on_step=False, on_epoch=True, reduce_fx="max")

    def _clock_compile(self, seconds: float) -> None:
        """compile=true: the first step compiles the backbone's training graph; the second runs it."""
        self._compile_clock.append(seconds)
        if len(self._compile_clock) == 2 and self.trainer.is_global_zero:
            first, second = self._compile_clock
            log.info(
                "torch.compile of the backbone: first training step %.1f s, the second %.2f s: about %.0f s of "
                "compiling (evaluation compiles once more at its first batch)",
                *(first, second, first - second),
            )

    def training_step(self, batch, batch_idx: int) -> Tensor:
        started = time.perf_counter()
        x, y = self._images(batch[0]), batch[1]
        opt = self.optimizers()
        lr = opt.param_groups[0]["lr"]
        rho = self._step_rho(lr)
        opt.zero_grad(set_to_none=True)
        out = self._gradients(x, y, rho)
        if self.optim.grad_clip is not None:  # the final descent gradient, after the SAM step
            self.clip_gradients(opt, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        n = y.shape[0]
        self.train_error.update(out.logits, y)
        self.train_loss.update(out.loss, weight=n)
        self.train_objective.update(out.objective, weight=n)
        # Metric objects are reduced over the epoch (and across devices) by Lightning itself.
        epoch = dict(on_step=False, on_epoch=True)
        self.log(TRAIN_LOSS, self.train_loss, prog_bar=True, **epoch)
        self.log(TRAIN_ERROR, self.train_error, prog_bar=True, **epoch)
        self.log(TRAIN_OBJECTIVE, self.train_objective, **epoch)
        # Equal on every device; sync_dist only averages them once, at the epoch's end.
        self.log_dict(
            {TRAIN_LR: lr, TRAIN_RHO: rho, TRAIN_PERTURBED: float(self.perturbing)},
            sync_dist=True,
            **epoch,
        )
        if self.hparams.track_label_noise and len(batch) > 2:
            self._log_label_noise(out.logits, y, batch[2])
        steps = {
            STEP_LOSS: out.loss,
            STEP_GRAD_NORM: out.grad_norm,
            STEP_PERTURBATION_NORM: out.perturbation_norm,
            STEP_LR: lr,
        }
        if out.perturbed_loss is not None:
            steps[STEP_PERTURBED_LOSS] = out.perturbed_loss
            # The second pass already computed L(w + e): the sharpness SAM sees, logged at no cost.
            self.train_sam_gap.update(out.perturbed_loss - out.loss, weight=n)
            self.log(TRAIN_SAM_GAP, self.train_sam_gap, **epoch)
        self.log_dict(steps, on_step=True, on_epoch=False)
        if self.compiled and len(self._compile_clock) < 2:
            self._clock_compile(time.perf_counter() - started)
        return out.loss

    def _log_label_noise(self, logits: Tensor, y: Tensor, y_true: Tensor) -> None:
        """Error on the points whose label is intact; share of flipped points fitted to their flipped label."""
        clean, fitted = noise_fit(logits.argmax(1), y, y_true)
        if clean.any():
            self.train_clean_error.update(logits[clean], y[clean])
        n_noisy = int((~clean).sum())
        if n_noisy:
            self.train_noisy_fit.update(fitted.sum() / n_noisy, weight=n_noisy)
        self.log(TRAIN_CLEAN_ERROR, self.train_clean_error, on_step=False, on_epoch=True)
        self.log(TRAIN_NOISY_FIT, self.train_noisy_fit, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()

    # -- evaluation: the test set (the paper reports test error) and the validation split, if any --
    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = self._images(batch[0]), batch[1]
        logits = self.backbone(x)
        datamodule = getattr(self.trainer, "datamodule", None)
        name = datamodule.eval_sets[dataloader_idx] if datamodule is not None else "test"
        loss, error = self.eval_loss[name], self.eval_error[name]
        loss.update(F.cross_entropy(logits, y), weight=y.shape[0])
        error.update(logits, y)
        shown = dict(on_step=False, on_epoch=True, prog_bar=True, add_dataloader_idx=False)
        self.log(eval_key(name, "loss"), loss, **shown)
        self.log(eval_key(name, "error"), error, **shown)
