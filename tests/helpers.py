"""Plain helpers that several test modules share (fixtures live in conftest.py): the hand-written
reference SAM step, the tiny Lightning system around it, and the entry points run in-process."""

from __future__ import annotations

import copy
import logging
import runpy
import sys

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import ROOT
from hydra.core.global_hydra import GlobalHydra
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

# -- the reference step -------------------------------------------------------------------------------
# It does not use sam_lightning.core: it evaluates the loss of a copy of the model at explicit weight
# vectors (torch.func.functional_call), forms every chunk's perturbation from the formula, and applies
# the first SGD-with-momentum step by hand: w1 = w0 - lr * mean_c grad L_c(w0 + e_c).
LR = 0.1


def mlp(norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if norm else []) + [nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


def fixed_batch(n: int = 16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def reference_update(model, x, y, *, rho, m, normalize, l2, ascent_updates_bn=True, return_buffers=False):
    """Hand-written m-SAM step, returns the new weights {name: tensor} (and BN buffers)."""
    net = copy.deepcopy(model)
    w0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    names = list(w0)

    def objective(w, xc, yc):
        loss = F.cross_entropy(functional_call(net, w, (xc,)), yc)
        return loss + 0.5 * l2 * sum((w[k] ** 2).sum() for k in names)

    def grad(w, xc, yc):
        w = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        return dict(zip(names, torch.autograd.grad(objective(w, xc, yc), [w[k] for k in names])))

    m = m or len(y)
    descent = {k: torch.zeros_like(v) for k, v in w0.items()}
    chunks = range(0, len(y), m)
    for start in chunks:
        xc, yc = x[start : start + m], y[start : start + m]
        saved = {k: b.clone() for k, b in net.named_buffers()}
        g = grad(w0, xc, yc)  # in train mode this forward updates BN running statistics...
        if not ascent_updates_bn:  # ...unless the ascent pass is told not to
            for k, b in net.named_buffers():
                b.copy_(saved[k])
        norm = torch.sqrt(sum((g[k] ** 2).sum() for k in names))
        # Constant rho (normalize=False): e = rho g, projected onto ||e|| <= rho as the paper's code does.
        scale = rho / norm if normalize else rho * min(1.0, 1.0 / float(norm))
        d = grad({k: w0[k] + scale * g[k] for k in names}, xc, yc)
        for k in names:
            descent[k] += d[k] / len(chunks)
    # First SGD step with momentum 0.9: the momentum buffer starts as the gradient itself.
    new = {k: w0[k] - LR * descent[k] for k in names}
    return (new, dict(net.named_buffers())) if return_buffers else new


# -- the Lightning system on a tiny ResNet ------------------------------------------------------------
def system(
    method,
    l2: float = 5e-4,
    l2_mode: str = "loss",
    schedule: str = "constant",
    max_epochs: int = 1,
    model=None,
    grad_clip=None,
):
    """A float64 SAMClassifier of a width-2 PreAct ResNet-18 (or `model`, a ModelSpec) on 3 classes."""
    from sam_lightning.settings.config import ModelSpec, OptimSpec
    from sam_lightning.training.module import SAMClassifier

    torch.manual_seed(0)
    model = model or ModelSpec("preact_resnet18", width=2, norm="batch")
    optim = OptimSpec(lr=LR, momentum=0.9, l2=l2, l2_mode=l2_mode, schedule=schedule, grad_clip=grad_clip)
    return SAMClassifier(model, method, optim, num_classes=3, max_epochs=max_epochs).double()


def batches(n_batches: int = 1, batch_size: int = 8):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n_batches * batch_size, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n_batches * batch_size,), generator=g)
    return x, y, DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def fit(module, loader, **trainer_kwargs) -> pl.Trainer:
    settings = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer = pl.Trainer(**{**settings, **trainer_kwargs})
    trainer.fit(module, train_dataloaders=loader)
    return trainer


# -- the entry points, in this process ----------------------------------------------------------------
SCRIPTS = {
    "train": ROOT / "train.py",
    "eval": ROOT / "eval.py",
    "theory": ROOT / "theory.py",
    "bench": ROOT / "bench" / "step_time.py",
}
MODULES = {"sharpness": "sam_lightning.analysis.sharpness", "interpolation": "sam_lightning.analysis.interpolation"}


def run_entry(module: str, args: list[str], monkeypatch) -> int:
    """The entry point as the command line runs it (`python train.py ARGS` is runpy of the script as
    __main__, which is also how Hydra finds its config folder); returns its exit code. Starting
    Python, torch and Lightning in a new process would cost seconds per call."""
    if module == "sweep":
        from sam_lightning.reporting.cli import main

        return main(args)
    script = SCRIPTS.get(module)
    monkeypatch.setattr(sys, "argv", [str(script or module), *args])
    GlobalHydra.instance().clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        if script is not None:
            runpy.run_path(str(script), run_name="__main__")
        else:
            runpy.run_module(MODULES[module], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except KeyboardInterrupt:  # escaped the entry point: report it, do not end the test session
        print("KeyboardInterrupt escaped", file=sys.stderr)
        return -2
    finally:
        # Hydra points the root logger at this test's captured streams and run folder: undo it.
        for handler in set(root.handlers) - set(handlers):
            handler.close()
        root.handlers[:], root.level = handlers, level
    return 0


def check_one_line(stderr: str, code: int, expected_code: int, names: str) -> None:
    """One `error:` line naming `names`, exit code `expected_code`, no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert names in errors[0], errors[0]
    assert code == expected_code, (code, errors[0])
    assert "HYDRA_FULL_ERROR" not in stderr


# -- label noise ----------------------------------------------------------------------------------------
def assert_noise_figures_add_up(row: dict, sizes: dict) -> None:
    """An epoch's training error is that of its clean points and of its flipped points not fitted to
    their flipped label, weighted by their counts: every point is one or the other, and each epoch
    (drop_last, a batch size dividing the training set) sees every point once."""
    import pytest

    n, noisy = sizes["train"], sizes["noisy_train"]
    expected = (row["train/clean_error"] * (n - noisy) + (1 - row["train/noisy_fit"]) * noisy) / n
    assert row["train/error"] == pytest.approx(expected, abs=1e-6), row


# -- histories ------------------------------------------------------------------------------------------
def computed(history: list[dict]) -> list[dict]:
    """A results.json history without its wall-clock keys (time/epoch_s): what a repeated or resumed
    run must reproduce exactly."""
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in history]
