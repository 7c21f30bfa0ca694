"""The training system: a LightningModule with manual optimization around a SAM-unaware backbone.

All gradient math lives in `sam_lightning.sam`; this class only wires it to Lightning: the
optimizer, the LR schedule, metrics and logging. One call of `training_step` makes exactly one
optimizer step, so `trainer.global_step` counts batches for every method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from sam_lightning.config import MethodSpec, OptimSpec
from sam_lightning.data.label_noise import noise_fit
from sam_lightning.models import build_model
from sam_lightning.sam import (
    AdaptiveAscent,
    GradientAscent,
    RandomPerturbation,
    erm_gradients,
    sam_gradients,
)


def l2_penalty(params, l2: float) -> Tensor:
    """0.5 * l2 * ||w||^2 over all trainable parameters (BatchNorm affine and biases included)."""
    return 0.5 * l2 * sum(p.pow(2).sum() for p in params)


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
    """Image classifier trained with ERM or m-SAM.

    model: kwargs of `build_model` (arch, width, norm, gn_groups); method / optim: mappings
    accepted by `MethodSpec` / `OptimSpec`; max_epochs sets the LR schedule's length.
    """

    def __init__(self, model: Mapping, method: Mapping, optim: Mapping, num_classes: int, max_epochs: int, channels_last: bool = False, track_label_noise: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.method = MethodSpec.from_mapping(method)
        self.optim = OptimSpec.from_mapping(optim)
        self.backbone = build_model(num_classes=num_classes, **model)
        self.channels_last = channels_last
        if channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self.automatic_optimization = False
        self.train_error = ErrorRate(num_classes, average="micro")
        self.test_error = ErrorRate(num_classes, average="micro")
        self.train_loss, self.train_objective, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        if track_label_noise:  # running, at w, on the augmented training batches
            self.train_clean_error, self.train_noisy_fit = ErrorRate(num_classes, average="micro"), MeanMetric()
        # Fixed once from the planned epochs and kept in checkpoints, so a resumed run (even one
        # given another max_epochs) switches at the same epoch.
        self.switch_epoch = self.method.switch_epoch(max_epochs)
        self._previous_batch: tuple[Tensor, Tensor] | None = None  # n-SAM's ascent batch
        self._weight_tensors = tuple(name.endswith("weight") for name, _ in self.backbone.named_parameters())

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def configure_optimizers(self):
        o = self.optim
        decay = o.l2 if o.l2_mode == "weight_decay" else 0.0
        opt = torch.optim.SGD(self.backbone.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=decay)
        return [opt], [lr_schedule(opt, o.schedule, self.hparams.max_epochs)]

    # -- the step ------------------------------------------------------------------------------
    def _no_sync(self):
        block = getattr(self.trainer.strategy, "block_backward_sync", None) if self._trainer is not None else None
        return block() if block is not None else contextlib.nullcontext()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["switch_epoch"] = self.switch_epoch
        # n-SAM's next ascent batch: without it a resumed run's first step differs from the uninterrupted run's.
        checkpoint["nsam_previous_batch"] = self._previous_batch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.switch_epoch = checkpoint.get("switch_epoch", self.switch_epoch)
        self._previous_batch = checkpoint.get("nsam_previous_batch", self._previous_batch)

    @property
    def active_method(self) -> str:
        """erm, sam, nsam, random or asam: what this epoch trains with."""
        return self.method.active(self.current_epoch, self.switch_epoch)

    def current_rho(self, lr: float) -> float:
        scale = lr / self.optim.lr if self.method.rho_schedule == "lr" else 1.0
        return self.method.rho * scale

    def _perturbation(self, active: str, rho: float):
        m = self.method
        if active == "random":
            return RandomPerturbation(rho, m.noise, m.sigma)
        if active == "asam":
            return AdaptiveAscent(rho, m.eta, self._weight_tensors)
        return GradientAscent(rho, m.normalize, m.ascent_steps, m.ascent_step_mult)

    def _ascent_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """n-SAM's other batch: the previous one, or a random one drawn from the training set."""
        if self.method.ascent_batch == "random":
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None or not hasattr(datamodule, "random_train_batch"):
                raise RuntimeError("method.ascent_batch=random needs the ImageDataModule (trainer.fit(..., datamodule=...))")
            return datamodule.random_train_batch(len(y), x.device)
        previous, self._previous_batch = self._previous_batch, (x.detach(), y.detach())
        return previous if previous is not None and len(previous[1]) == len(y) else (None, None)

    def _gradients(self, x: Tensor, y: Tensor, lr: float):
        params = [p for p in self.backbone.parameters() if p.requires_grad]
        regularizer = None
        if self.optim.l2_mode == "loss" and self.optim.l2 > 0:
            regularizer = lambda: l2_penalty(params, self.optim.l2)  # noqa: E731
        common = dict(regularizer=regularizer, backward=self.manual_backward)
        active = self.active_method
        if active == "erm":
            return erm_gradients(self.backbone, params, F.cross_entropy, x, y, **common)
        xa, ya = self._ascent_batch(x, y) if active == "nsam" else (None, None)
        return sam_gradients(
            self.backbone, params, F.cross_entropy, x, y, m=self.method.m,
            perturbation=self._perturbation(active, self.current_rho(lr)), ascent_inputs=xa, ascent_targets=ya,
            ascent_updates_bn_stats=self.method.bn_ascent_updates_stats, no_sync=self._no_sync, **common,
        )

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt = self.optimizers()
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        out = self._gradients(x, y, lr)
        opt.step()
        n = y.shape[0]
        self.train_error.update(out.logits, y)
        self.train_loss.update(out.loss, weight=n)
        self.train_objective.update(out.objective, weight=n)
        # Metric objects are reduced over the epoch (and across devices) by Lightning itself.
        epoch = dict(on_step=False, on_epoch=True)
        self.log("train/loss", self.train_loss, prog_bar=True, **epoch)
        self.log("train/error", self.train_error, prog_bar=True, **epoch)
        self.log("train/objective", self.train_objective, **epoch)
        # Equal on every device; sync_dist only averages them once, at the epoch's end.
        self.log_dict({"train/lr": lr, "train/rho": self.current_rho(lr), "train/perturbed": float(self.active_method != "erm")}, sync_dist=True, **epoch)
        if self.hparams.track_label_noise and len(batch) > 2:
            self._log_label_noise(out.logits, y, batch[2])
        steps = {"step/grad_norm": out.grad_norm, "step/perturbation_norm": out.perturbation_norm, "step/lr": lr}
        if out.perturbed_loss is not None:
            steps["step/perturbed_loss"] = out.perturbed_loss
        self.log_dict(steps, on_step=True, on_epoch=False)
        return out.loss

    def _log_label_noise(self, logits: Tensor, y: Tensor, y_true: Tensor) -> None:
        """Error on the points whose label is intact; share of flipped points fitted to their flipped label."""
        clean, fitted = noise_fit(logits.argmax(1), y, y_true)
        if clean.any():
            self.train_clean_error.update(logits[clean], y[clean])
        n_noisy = int((~clean).sum())
        if n_noisy:
            self.train_noisy_fit.update(fitted.sum() / n_noisy, weight=n_noisy)
        self.log("train/clean_error", self.train_clean_error, on_step=False, on_epoch=True)
        self.log("train/noisy_fit", self.train_noisy_fit, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()

    # -- evaluation on the test set (the paper reports test error; there is no validation split) --
    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.backbone(x)
        self.test_loss.update(F.cross_entropy(logits, y), weight=y.shape[0])
        self.test_error.update(logits, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("test/error", self.test_error, on_step=False, on_epoch=True, prog_bar=True)
