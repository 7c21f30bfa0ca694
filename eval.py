"""Evaluate a checkpoint of train.py: test error and loss, and validation ones when its run held out
a validation split, with the run's own data (subset, split, inputs) and BatchNorm's running statistics.

    python eval.py ckpt_path=outputs/<run>/checkpoints/last.ckpt
    python eval.py ckpt_path=<run>/checkpoints/last.ckpt data.root=/elsewhere device=cuda

Prints one line per split and writes results.json (the checkpoint, its epoch, the errors and losses)
into out_dir (default outputs/eval/<date>/<time>). Exit status: 0, 1 on failure, 2 for bad input.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from sam_lightning.analysis.evaluation import DataCache, loss_and_error, resolve_device, select_points
from sam_lightning.entry import hydra_main, run_command
from sam_lightning.run.checkpoints import data_spec_for, load_checkpoint
from sam_lightning.run.jsonio import RESULTS_FILE, atomic_write_json
from sam_lightning.settings.strict import check_settings


def evaluate(cfg: DictConfig) -> dict:
    """Everything the command does; returns what results.json holds."""
    check_settings(cfg, "evaluate")  # batch_size >= 1, no key it does not read
    device = resolve_device(cfg.device)
    ckpt = load_checkpoint(cfg.ckpt_path)
    override = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    data = data_spec_for(ckpt, override)
    splits = DataCache().get(data, ckpt.num_classes)
    model = ckpt.build_backbone(device)
    errors = {}
    for split in ("test", "val"):
        if split == "val" and not len(splits.val_y):
            continue
        points = select_points(splits, split, None, 0, device, key=split)
        loss, error = loss_and_error(model, points, cfg.batch_size)
        errors[f"{split}_error"], errors[f"{split}_loss"] = error, loss
        print(f"{split}: error {100 * error:.2f}%, loss {loss:.4f} on {len(points)} images", flush=True)
    payload = {
        "status": "finished",
        **errors,
        "checkpoint": ckpt.describe(),
        "data": asdict(data),
    }
    out = Path(cfg.out_dir) / RESULTS_FILE
    atomic_write_json(out, payload)
    print(f"results: {out}", flush=True)
    return payload


@hydra.main(version_base="1.3", config_path="conf/analysis", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_command(evaluate, cfg, required="ckpt_path=PATH")


if __name__ == "__main__":
    hydra_main(main)  # Hydra's own composition errors: one line, exit 2
