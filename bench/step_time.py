"""Training-step cost, as ratios measured in one run on one machine.

    make bench                                   # or: .venv/bin/python bench/step_time.py
    .venv/bin/python bench/step_time.py --device cuda --width 64 --steps 50

Measures a width-16 pre-activation ResNet-18 at batch 128 (CPU by default):
  * the gradient step alone: ERM vs SAM (m = 128) vs m-SAM (m = 32), all through sam_lightning.sam;
  * the whole training loop: Lightning (SAMClassifier + Trainer) vs an equivalent plain PyTorch loop
    (same data pipeline, same step function, same optimizer and metric updates).
Each measurement is the median time per step over `--steps` steps after warm-up; the variants are
interleaved over `--rounds` rounds so that machine-load drift hits them alike. Absolute times on a
shared machine mean little; the ratios are the result. Writes bench/results-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torchmetrics import MeanMetric

from sam_lightning.data import ImageDataModule
from sam_lightning.models import build_model
from sam_lightning.module import ErrorRate, SAMClassifier, l2_penalty
from sam_lightning.sam import erm_gradients, sam_gradients

L2 = 5e-4


def make_data(batch_size: int, steps: int, seed: int = 0) -> ImageDataModule:
    cfg = OmegaConf.create({"name": "synthetic", "n_train": batch_size * steps, "n_test": batch_size, "num_classes": 10, "seed": seed, "augment": True, "crop_padding": 4})
    dm = ImageDataModule(cfg, batch_size=batch_size)
    dm.setup()
    return dm


def step_fn(method: str):
    """(model, params, x, y) -> StepOutput, writing gradients into p.grad."""
    def run(model, params, x, y):
        reg = lambda: l2_penalty(params, L2)  # noqa: E731
        if method == "erm":
            return erm_gradients(model, params, F.cross_entropy, x, y, regularizer=reg)
        m = {"sam": None, "sam_m32": 32}[method]
        return sam_gradients(model, params, F.cross_entropy, x, y, rho=0.1, m=m, regularizer=reg)
    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_gradient_step(method: str, model, batch, device, steps: int) -> float:
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    run = step_fn(method)
    x, y = batch
    times = []
    for i in range(steps + 3):  # 3 warm-up steps
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        run(model, params, x, y)
        opt.step()
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_plain_loop(model, dm: ImageDataModule, device, steps: int) -> float:
    """The loop a researcher would write by hand around the same step."""
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    run = step_fn("sam")
    error, loss_mean = ErrorRate(10, average="micro").to(device), MeanMetric().to(device)
    stamps = []
    for x, y, _ in dm.train_dataloader():
        x, y = dm.transform((x.to(device, non_blocking=True), y.to(device, non_blocking=True)), train=True)
        opt.zero_grad(set_to_none=True)
        out = run(model, params, x, y)
        opt.step()
        error.update(out.logits, y)
        loss_mean.update(out.loss)
        sync(device)
        stamps.append(time.perf_counter())
    return statistics.median(b - a for a, b in zip(stamps[3:], stamps[4:]))


class StepClock(pl.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        self.stamps.append(time.perf_counter())


def time_lightning_loop(width: int, dm: ImageDataModule, device, steps: int) -> float:
    torch.manual_seed(0)
    module = SAMClassifier({"arch": "preact_resnet18", "width": width, "norm": "batch"}, {"name": "sam", "rho": 0.1}, {"l2": L2, "schedule": "constant"}, num_classes=10, max_epochs=1)
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator=device.type if device.type != "cuda" else "gpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[clock], log_every_n_steps=50,
    )
    trainer.fit(module, datamodule=dm)
    return statistics.median(b - a for a, b in zip(clock.stamps[3:], clock.stamps[4:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    dm = make_data(args.batch_size, args.steps + 4)
    x, y, _ = next(iter(dm.train_dataloader()))
    batch = dm.transform((x.to(device), y.to(device)), train=True)
    model = build_model("preact_resnet18", 10, width=args.width).to(device)

    step_times: dict[str, list[float]] = {"erm": [], "sam": [], "sam_m32": []}
    loop_times: dict[str, list[float]] = {"plain": [], "lightning": []}
    for r in range(args.rounds):
        for method in step_times:
            step_times[method].append(time_gradient_step(method, model, batch, device, args.steps))
        torch.manual_seed(0)
        plain_model = build_model("preact_resnet18", 10, width=args.width).to(device)
        loop_times["plain"].append(time_plain_loop(plain_model, dm, device, args.steps))
        loop_times["lightning"].append(time_lightning_loop(args.width, dm, device, args.steps))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    med = {k: statistics.median(v) for k, v in {**step_times, **loop_times}.items()}
    ratios = {
        "sam/erm": med["sam"] / med["erm"],
        "sam_m32/erm": med["sam_m32"] / med["erm"],
        "lightning/plain": med["lightning"] / med["plain"],
    }
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\nPreAct ResNet-18 width {args.width}, batch {args.batch_size}, {device.type} ({hardware}), torch {torch.__version__}")
    print(f"{'measurement':<34}{'ms/step':>10}")
    for name, label in [("erm", "ERM step"), ("sam", "SAM step (m = 128)"), ("sam_m32", "m-SAM step (m = 32)"), ("plain", "plain PyTorch loop (SAM)"), ("lightning", "Lightning loop (SAM)")]:
        print(f"{label:<34}{1000 * med[name]:>10.1f}")
    print(f"{'ratio':<34}{'':>10}")
    for name, value in ratios.items():
        print(f"{name:<34}{value:>10.3f}")
    out = Path(args.out or Path(__file__).parent / f"results-{device.type}.json")
    out.write_text(json.dumps({"device": device.type, "hardware": hardware, "torch": torch.__version__, "width": args.width, "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds, "median_s": med, "ratios": ratios, "raw_s": {**step_times, **loop_times}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
