"""m-sharpness of trained checkpoints (paper Eq. 1 and App. D; Figs. 2, 3 and 19).

    python -m sam_lightning.analysis.sharpness ckpt=RUN/checkpoints/last.ckpt rho='[0.05,0.1,0.2]' m='[128]'
    python -m sam_lightning.analysis.sharpness ckpt='[RUN_A/checkpoints/last.ckpt,RUN_B/checkpoints/last.ckpt]' bn='[train,eval]'

For N training points (n=1024, drawn by `seed`, no augmentation) split into ceil(N/m) batches S of m
(the last one smaller when m does not divide N):

    s_m(w) = mean over S of  max_{||d||_2 <= rho}  L_S(w + d) - L_S(w),   L_S the mean cross-entropy,

each max solved from d = 0 by `sam.projected_ascent`: `steps` l2-normalized gradient steps of
ascent_step_mult * rho, each projected onto the rho-ball; the value is read at the last iterate. With
one_step=true the max is also solved with a single step of size rho (SAM's own perturbation) and
suboptimality_factor = s_m(steps) / s_m(1 step) (Fig. 3). bn=train normalizes with each batch's
statistics, as SAM's ascent does, and restores the running statistics afterwards; bn=eval uses the
checkpoint's running statistics (Fig. 19 contrasts the two). Writes sharpness.json and sharpness.png.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from sam_lightning.analysis.evaluation import (
    DataCache,
    as_list,
    resolve_device,
    select_points,
)
from sam_lightning.core.batchnorm import frozen_bn_running_stats
from sam_lightning.core.method import tree_norm
from sam_lightning.entry import hydra_main, run_command
from sam_lightning.reporting import plots
from sam_lightning.reporting.stats import format_mean_ci, interval_note, mean_ci
from sam_lightning.run.checkpoints import data_spec_for, load_checkpoint
from sam_lightning.run.jsonio import atomic_write_json
from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.strict import check_settings
from sam_lightning.variants import projected_ascent

log = logging.getLogger(__name__)

Criterion = Callable[[Tensor, Tensor], Tensor]
BN_MODES = ("train", "eval")


@dataclass
class Ascent:
    """One batch's inner maximization: losses at w and at w + d, d the last iterate."""

    loss: float
    perturbed_loss: float
    error: float | None
    perturbed_error: float | None
    max_delta_norm: float  # largest ||w_k - w|| over every iterate, the last one included
    delta: list[Tensor]

    @property
    def sharpness(self) -> float:
        return self.perturbed_loss - self.loss


def _error(logits: Tensor, y: Tensor) -> float | None:
    # Only class scores have an error rate; single-output models (e.g. margin losses) have none.
    if logits.ndim != 2 or logits.shape[1] < 2:
        return None
    return (logits.argmax(dim=1) != y).float().mean().item()


def ascend(
    model: nn.Module, criterion: Criterion, x: Tensor, y: Tensor, rho: float, *, steps: int, step_size: float
) -> Ascent:
    """max_{||d|| <= rho} criterion(model_{w+d}(x), y) by `projected_ascent`; the weights are restored
    bit for bit afterwards (copied back, not subtracted)."""
    named = {k: p for k, p in model.named_parameters() if p.requires_grad}
    params = list(named.values())
    origin = {k: p.detach().clone() for k, p in named.items()}
    at_w: dict[str, object] = {}
    largest = torch.zeros((), device=params[0].device)

    def move_to(e) -> None:  # the weights to w + e (w itself for e=None), by copy
        with torch.no_grad():
            torch._foreach_copy_(
                params,
                list(origin.values()) if e is None else torch._foreach_add(list(origin.values()), list(e.values())),
            )

    def gradient(e) -> dict[str, Tensor]:
        nonlocal largest
        move_to(e)
        logits = model(x)
        loss = criterion(logits, y)
        if not at_w:  # the first call is at d = 0
            at_w.update(loss=loss.detach(), error=_error(logits.detach(), y))
        if e is not None:
            largest = torch.maximum(largest, tree_norm(e))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(named.items(), grads)}

    try:
        delta = projected_ascent(origin, gradient, rho, steps=steps, step_size=step_size)
        move_to(delta)
        with torch.no_grad():
            logits = model(x)
            perturbed = criterion(logits, y)
            largest = torch.maximum(largest, tree_norm(delta))
    finally:
        move_to(None)
    return Ascent(
        loss=at_w["loss"].item(),
        perturbed_loss=perturbed.item(),
        error=at_w["error"],
        perturbed_error=_error(logits, y),
        max_delta_norm=largest.item(),
        delta=[d.detach() for d in delta.values()],
    )


@contextlib.contextmanager
def batchnorm_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """bn=train: batch statistics, running statistics left exactly as they were; bn=eval: running ones."""
    if mode not in BN_MODES:
        raise ConfigError(f"bn={mode!r}: use train or eval")
    was_training = model.training
    model.train(mode == "train")
    try:
        with frozen_bn_running_stats(model, enabled=mode == "train"):
            yield
    finally:
        model.train(was_training)


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def m_sharpness(
    model: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    rho: float,
    *,
    ascent_steps: int = 100,
    ascent_step_mult: float = 0.1,
    one_step: bool = True,
    criterion: Criterion = F.cross_entropy,
    on_batch: Callable[[], object] | None = None,
) -> dict:
    """The mean over `batches` of each batch's sharpness (the batches are the sets S of size m),
    with the model in whatever train/eval mode the caller chose (see `batchnorm_mode`)."""
    runs, singles = [], []
    for x, y in batches:
        runs.append(ascend(model, criterion, x, y, rho, steps=ascent_steps, step_size=ascent_step_mult * rho))
        if one_step:
            singles.append(ascend(model, criterion, x, y, rho, steps=1, step_size=rho))
        if on_batch is not None:
            on_batch()
    out = {
        "sharpness": _mean([r.sharpness for r in runs]),
        "loss": _mean([r.loss for r in runs]),
        "perturbed_loss": _mean([r.perturbed_loss for r in runs]),
        "error": _mean([r.error for r in runs]),
        "perturbed_error": _mean([r.perturbed_error for r in runs]),
        "max_delta_norm": max(r.max_delta_norm for r in runs),
        "n_batches": len(runs),
        "per_batch": [r.sharpness for r in runs],
    }
    if one_step:
        single = _mean([r.sharpness for r in singles])
        out |= {
            "one_step_sharpness": single,
            "one_step_per_batch": [r.sharpness for r in singles],
            "suboptimality_factor": out["sharpness"] / single if single > 0 else None,
        }
    return out


# -- the command ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    ckpts: list[str]
    labels: list[str] | None
    rhos: list[float]
    ms: list[int]
    bns: list[str]
    n: int
    ascent_steps: int
    ascent_step_mult: float
    one_step: bool
    seed: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Settings:
        try:
            n, ascent_steps, ascent_step_mult, seed = (
                int(cfg.n),
                int(cfg.ascent_steps),
                float(cfg.ascent_step_mult),
                int(cfg.seed),
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"n={cfg.n}, ascent_steps={cfg.ascent_steps}, ascent_step_mult={cfg.ascent_step_mult}, seed={cfg.seed}: need numbers"
            ) from err
        s = cls(
            ckpts=as_list(cfg.ckpt, "ckpt", str),
            labels=None if cfg.labels is None else as_list(cfg.labels, "labels", str),
            rhos=as_list(cfg.rho, "rho", float),
            ms=as_list(cfg.m, "m", int),
            bns=as_list(cfg.bn, "bn", str),
            n=n,
            ascent_steps=ascent_steps,
            ascent_step_mult=ascent_step_mult,
            one_step=bool(cfg.one_step),
            seed=seed,
        )
        if any(r <= 0 for r in s.rhos):
            raise ConfigError(f"rho={s.rhos}: every radius must be > 0")
        if any(m < 1 for m in s.ms):
            raise ConfigError(f"m={s.ms}: every batch size must be >= 1")
        if any(bn not in BN_MODES for bn in s.bns):
            raise ConfigError(f"bn={s.bns}: each entry must be train or eval")
        if s.ascent_steps < 1 or s.ascent_step_mult <= 0:
            raise ConfigError(
                f"ascent_steps={s.ascent_steps}, ascent_step_mult={s.ascent_step_mult}: need ascent_steps >= 1 and ascent_step_mult > 0"
            )
        if s.labels is not None and len(s.labels) != len(s.ckpts):
            raise ConfigError(f"labels has {len(s.labels)} entries for {len(s.ckpts)} checkpoints")
        return s


def expand_checkpoints(entries: list[str], labels: list[str] | None) -> tuple[list[str], list[str] | None]:
    """Each `ckpt` entry is a path or a glob pattern (*, ?, [..], ** across folders); a pattern stands
    for its sorted matches and its label, when given, for all of them (the seeds of one method)."""
    paths, expanded = [], []
    for k, entry in enumerate(entries):
        matches = sorted(glob.glob(os.path.expanduser(entry), recursive=True)) if glob.has_magic(entry) else [entry]
        if not matches:
            raise ConfigError(f"ckpt pattern {entry!r} matches no file")
        paths += matches
        if labels is not None:
            expanded += [labels[k]] * len(matches)
    return paths, expanded if labels is not None else None


def unique(labels: list[str]) -> list[str]:
    return [f"{x} #{i + 1}" if labels.count(x) > 1 else x for i, x in enumerate(labels)]


def summary_table(records: list[dict]) -> pd.DataFrame:
    """One row per label, BN mode, m and rho: the m-sharpness (and suboptimality factor) as mean
    [interval] over the checkpoints that share the label (their range for 2-3, else the 95% CI)."""
    frame = pd.DataFrame(records)
    if "suboptimality_factor" not in frame:
        frame["suboptimality_factor"] = np.nan
    rows = []
    for (label, bn, m, rho), group in frame.groupby(["checkpoint", "bn", "m", "rho"], sort=False):
        factor = group["suboptimality_factor"].astype(float).dropna()
        rows.append(
            {
                "checkpoint": label,
                "bn": bn,
                "m": m,
                "rho": rho,
                "n_checkpoints": len(group),
                "sharpness": format_mean_ci(*mean_ci(group["sharpness"].tolist())),
                "suboptimality_factor": format_mean_ci(*mean_ci(factor.tolist())) if len(factor) else "-",
            }
        )
    return pd.DataFrame(rows)


def run(cfg: DictConfig) -> dict:
    """Everything the command does; returns what sharpness.json holds."""
    check_settings(cfg, "sharpness")
    s = Settings.from_config(cfg)
    device = resolve_device(cfg.device)
    torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)  # a max of loss differences wants full fp32 convs
    paths, given_labels = expand_checkpoints(s.ckpts, s.labels)
    ckpts = [load_checkpoint(p) for p in paths]  # every file is checked before any work starts
    # a label shared by several checkpoints makes them repeats of one model (a table row over them)
    labels = given_labels or unique([c.default_label() for c in ckpts])
    override = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    data_specs = [data_spec_for(c, override) for c in ckpts]
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    n_batches = sum(math.ceil(s.n / m) for m in s.ms)
    total = len(ckpts) * len(s.bns) * len(s.rhos) * n_batches
    cache, records = DataCache(), []
    with tqdm(total=total, desc="sharpness", unit="batch", disable=not cfg.progress, dynamic_ncols=True) as bar:
        for k, (ckpt, label, data) in enumerate(zip(ckpts, labels, data_specs), start=1):
            points = select_points(cache.get(data, ckpt.num_classes), "train", s.n, s.seed, device, key="n")
            model = ckpt.build_backbone(device)
            for bn in s.bns:
                for m in s.ms:
                    batches = list(points.batches(m))
                    for rho in s.rhos:
                        bar.set_postfix_str(f"checkpoint {k}/{len(ckpts)} bn={bn} m={m} rho={rho}")
                        with batchnorm_mode(model, bn):
                            result = m_sharpness(
                                model,
                                batches,
                                rho,
                                ascent_steps=s.ascent_steps,
                                ascent_step_mult=s.ascent_step_mult,
                                one_step=s.one_step,
                                on_batch=bar.update,
                            )
                        records.append(
                            {
                                "checkpoint": label,
                                "bn": bn,
                                "m": m,
                                "rho": rho,
                                "ascent_steps": s.ascent_steps,
                                "step_size": round(s.ascent_step_mult * rho, 12),
                                **result,
                            }
                        )
                        log.info(
                            "%s bn=%s m=%d rho=%g: sharpness %.5f%s",
                            label,
                            bn,
                            m,
                            rho,
                            result["sharpness"],
                            f", 1-step {result['one_step_sharpness']:.5f}" if s.one_step else "",
                        )
    table = summary_table(records)
    payload = {
        "settings": {
            "n": s.n,
            "seed": s.seed,
            "ascent_steps": s.ascent_steps,
            "ascent_step_mult": s.ascent_step_mult,
            "one_step": s.one_step,
            "device": str(device),
        },
        "checkpoints": [{"label": lb, "data": d.name, **c.describe()} for c, lb, d in zip(ckpts, labels, data_specs)],
        "results": records,
        "summary": table.to_dict("records"),
    }
    atomic_write_json(out_dir / "sharpness.json", payload)
    epochs = {lb: None if c.epoch is None else c.epoch + 1 for c, lb in zip(ckpts, labels)}  # epochs done
    one_run = len({c.run_dir for c in ckpts}) == 1 and None not in epochs.values()
    if len(s.rhos) == 1 and one_run and len(set(epochs.values())) == len(ckpts) > 1:
        plots.sharpness_over_training(records, epochs, out_dir / "sharpness.png")  # one run over training
    else:
        plots.sharpness(records, out_dir / "sharpness.png")
    print(
        table.to_markdown(index=False),
        interval_note(table["n_checkpoints"], over="checkpoints").replace(
            "over checkpoints", "over the checkpoints of a label"
        ),
        sep="\n",
        flush=True,
    )
    print(f"sharpness.json and sharpness.png in {out_dir}", flush=True)
    return payload


@hydra.main(version_base="1.3", config_path="../../conf/analysis", config_name="sharpness")
def main(cfg: DictConfig) -> None:
    run_command(run, cfg, required="ckpt=PATH")


if __name__ == "__main__":
    hydra_main(main)  # Hydra's own composition errors: one line, exit 2
