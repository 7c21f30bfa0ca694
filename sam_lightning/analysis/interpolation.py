"""Loss and error along the line between two checkpoints (paper Fig. 10).

    python -m sam_lightning.analysis.interpolation ckpt_a=ERM_RUN/checkpoints/last.ckpt ckpt_b=SAM_RUN/checkpoints/last.ckpt
    python -m sam_lightning.analysis.interpolation ckpt_a=A.ckpt ckpt_b=B.ckpt t='[-0.5,0,0.5,1,1.5]' recompute_bn=false

At each t: w(t) = (1 - t) w_A + t w_B for every floating tensor of the backbone (weights and BatchNorm
running statistics; integer counters are A's), then train and test loss and error of w(t) with
test-time BatchNorm. recompute_bn=true (the default, as in the paper's code) first replaces the
running statistics by their average over `bn_points` training images, because interpolated
statistics are not the statistics of the interpolated network. Both checkpoints must have the same
architecture. Writes interpolation.json (with each checkpoint's own losses, "endpoints") and
interpolation.png.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from sam_lightning.analysis.evaluation import (
    DataCache,
    Points,
    as_list,
    has_batchnorm,
    loss_and_error,
    recompute_bn_stats,
    resolve_device,
    select_points,
)
from sam_lightning.entry import hydra_main, run_command
from sam_lightning.reporting import plots
from sam_lightning.run.checkpoints import data_spec_for, load_checkpoint, require_same_architecture
from sam_lightning.run.jsonio import atomic_write_json
from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.strict import check_settings

log = logging.getLogger(__name__)


def interpolate_state(a: Mapping[str, Tensor], b: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
    """(1 - t) a + t b for floating tensors, a's value for integer ones; exactly a at t=0 and b at t=1."""
    out = {}
    for key, va in a.items():
        if not va.is_floating_point():
            out[key] = va.clone()
            continue
        # (1 - t) a + t b rather than a + t (b - a): the latter is not exactly b at t = 1.
        value = (1.0 - t) * va + t * b[key]
        if key.endswith("running_var"):
            value = value.clamp_min(0.0)  # extrapolating (t < 0 or t > 1) can push a variance below 0
        out[key] = value
    return out


def parameter_distance(model: nn.Module, a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """||w_A - w_B||_2 over the trainable parameters (running statistics excluded)."""
    names = [n for n, _ in model.named_parameters()]
    return torch.linalg.vector_norm(torch.stack([(a[n] - b[n]).float().norm() for n in names])).item()


def evaluate_state(
    model: nn.Module,
    state: Mapping[str, Tensor],
    train: Points,
    test: Points,
    batch_size: int,
    bn_points: Points | None,
) -> dict:
    """Train/test loss and error of `model` with `state` loaded (BN statistics recomputed if `bn_points`)."""
    model.load_state_dict(state)
    model.eval()
    if bn_points is not None:
        recompute_bn_stats(model, bn_points, batch_size)
    train_loss, train_error = loss_and_error(model, train, batch_size)
    test_loss, test_error = loss_and_error(model, test, batch_size)
    return {"train_loss": train_loss, "train_error": train_error, "test_loss": test_loss, "test_error": test_error}


def interpolation_curve(
    model: nn.Module,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    ts: Sequence[float],
    train: Points,
    test: Points,
    *,
    batch_size: int = 512,
    bn_points: Points | None = None,
    on_point: Callable[[], object] | None = None,
) -> list[dict]:
    """One dict per t: t, train_loss, train_error, test_loss, test_error."""
    curve = []
    for t in ts:
        curve.append(
            {
                "t": t,
                **evaluate_state(model, interpolate_state(state_a, state_b, t), train, test, batch_size, bn_points),
            }
        )
        if on_point is not None:
            on_point()
    return curve


def t_grid(cfg: DictConfig) -> list[float]:
    if cfg.t is not None:
        ts = as_list(cfg.t, "t", float)
    else:
        if int(cfg.t_num) < 2:
            raise ConfigError(f"t_num={cfg.t_num} must be >= 2 (or give t='[...]')")
        ts = torch.linspace(float(cfg.t_min), float(cfg.t_max), int(cfg.t_num), dtype=torch.float64).tolist()
    # Rounded so that a grid through 0 and 1 hits them exactly (linspace leaves 1e-17 residues).
    return [round(t, 10) for t in ts]


def run(cfg: DictConfig) -> dict:
    """Everything the command does; returns what interpolation.json holds."""
    check_settings(cfg, "interpolation")
    ts = t_grid(cfg)
    device = resolve_device(cfg.device)
    torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
    a, b = load_checkpoint(cfg.ckpt_a), load_checkpoint(cfg.ckpt_b)
    require_same_architecture(a, b)
    labels = as_list(cfg.labels, "labels", str) if cfg.labels is not None else ["A", "B"]
    if len(labels) != 2:
        raise ConfigError(f"labels={labels}: give two names, for ckpt_a and ckpt_b")
    override = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    data_a, data_b = data_spec_for(a, override), data_spec_for(b, override)
    if data_a.name != data_b.name:
        raise ConfigError(
            f"the checkpoints were trained on different data ({data_a.name} vs {data_b.name}); choose one with data=..."
        )
    if data_a != data_b:
        log.warning("the two runs' data configs differ; using ckpt_a's: %s", asdict(data_a))
    arrays = DataCache().get(data_a, a.num_classes)
    train = select_points(arrays, "train", cfg.train_points, cfg.seed, device, key="train_points", at_most=True)
    test = select_points(arrays, "test", cfg.test_points, cfg.seed, device, key="test_points", at_most=True)
    model = a.build_backbone(device)
    recompute = bool(cfg.recompute_bn) and has_batchnorm(model)
    if cfg.recompute_bn and not recompute:
        log.info("no BatchNorm layers: recompute_bn has nothing to do")
    # The statistics are averaged in a different order than the evaluated training points.
    bn_points = (
        select_points(arrays, "train", cfg.bn_points, cfg.seed + 1, device, key="bn_points", at_most=True)
        if recompute
        else None
    )
    state_a = {k: v.to(device) for k, v in a.state_dict.items()}
    state_b = {k: v.to(device) for k, v in b.state_dict.items()}
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tqdm(
        total=len(ts) + 2, desc="interpolation", unit="point", disable=not cfg.progress, dynamic_ncols=True
    ) as bar:
        endpoints = {}
        for name, state in (("a", state_a), ("b", state_b)):
            endpoints[name] = evaluate_state(model, state, train, test, cfg.batch_size, None)
            bar.update()
        curve = interpolation_curve(
            model,
            state_a,
            state_b,
            ts,
            train,
            test,
            batch_size=cfg.batch_size,
            bn_points=bn_points,
            on_point=bar.update,
        )
    payload = {
        "settings": {
            "recompute_bn": recompute,
            "bn_points": len(bn_points) if recompute else None,
            "train_points": len(train),
            "test_points": len(test),
            "seed": int(cfg.seed),
            "device": str(device),
            "data": data_a.name,
        },
        "a": {"label": labels[0], **a.describe()},
        "b": {"label": labels[1], **b.describe()},
        "distance": parameter_distance(model, state_a, state_b),
        "endpoints": endpoints,  # each checkpoint as saved (its own BN statistics)
        "curve": curve,
    }
    atomic_write_json(out_dir / "interpolation.json", payload)
    title = f"{data_a.name}, ||w_B - w_A|| = {payload['distance']:.2f}" + (", BN recomputed" if recompute else "")
    plots.interpolation(
        curve,
        out_dir / "interpolation.png",
        labels[0],
        labels[1],
        title=title,
        endpoints=endpoints if recompute else None,
    )
    for p in curve:
        log.info(
            "t=%+.3f train loss %.4f err %.4f | test loss %.4f err %.4f",
            p["t"],
            p["train_loss"],
            p["train_error"],
            p["test_loss"],
            p["test_error"],
        )
    print(f"interpolation.json and interpolation.png in {out_dir}", flush=True)
    return payload


@hydra.main(version_base="1.3", config_path="../../conf/analysis", config_name="interpolation")
def main(cfg: DictConfig) -> None:
    run_command(run, cfg, required="ckpt_a=PATH ckpt_b=PATH")


if __name__ == "__main__":
    hydra_main(main)  # Hydra's own composition errors: one line, exit 2
