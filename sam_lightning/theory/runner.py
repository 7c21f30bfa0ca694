"""One theory job from a composed Hydra config: validate, run, print, write `results.json`.

`theory.py` calls `run_job(cfg)`; tests call it on configs made with Hydra's compose API.
`results.json` has the training runs' shape (`sam_lightning.run.results`), so `sweep.py` and the
end-of-multirun table read both alike: written atomically, with `status` (finished, diverged,
failed), `reason`, the final metrics (`final_train_loss`, `final_test_loss`, ...), `global_step`,
`wall_time_s`, `config` and a `history` of `step`, `train/loss`, `test/loss` rows. A failed job's
file is written by `sam_lightning.run.results.write_failure`, as for training runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from sam_lightning.reporting.stats import format_mean_ci
from sam_lightning.run.jsonio import RESULTS_FILE, atomic_write_json
from sam_lightning.settings.config import ConfigError, from_mapping
from sam_lightning.theory.diag_net import run_diag_net
from sam_lightning.theory.spec import PROBLEMS, DiagProblem, DiagTraining, display_name, theory_method
from sam_lightning.theory.units import in_project_units
from sam_lightning.variants import Method


def _container(node) -> dict | None:
    return None if node is None else OmegaConf.to_container(node, resolve=True)


def methods_of(cfg: DictConfig) -> tuple[Method, Method | None]:
    """The job's method and the one it switches to (None: no switch), as the training runs build them."""
    switch_to = (_container(cfg.switch) or {}).get("to") if cfg.problem == "diag_net" else None
    return theory_method(_container(cfg.method)), None if switch_to is None else theory_method(switch_to, "switch.to")


def label_of(cfg: DictConfig, method: Method, switch_to: Method | None) -> str:
    """The run's name: `label`, else the paper's (GD, n-SAM, 1-SAM, GD -> 1-SAM, ...)."""
    label = cfg.get("label")
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"label={label!r}: must be a string or null")
    if label:
        return label
    if cfg.problem == "relu_1d":
        return display_name(method)
    batch, ascent = cfg.train.batch_size, cfg.train.ascent  # batch None: the whole training set
    names = [display_name(m, batch, ascent) for m in (method, switch_to) if m is not None]
    return " -> ".join(names)


def run_metrics(cfg: DictConfig, run_dir: Path, method: Method, switch_to: Method | None = None) -> dict:
    """The job's measurements (no file written here); raises ConfigError on bad settings."""
    if cfg.problem == "relu_1d":
        from sam_lightning.theory.relu_1d import ReluSettings, run_relu_1d

        if cfg.relu is None:
            raise ConfigError("problem=relu_1d needs the relu settings: use experiment=relu_1d")
        settings = from_mapping(ReluSettings, "relu", _container(cfg.relu))
        return run_relu_1d(method, settings, seed=int(cfg.seed), out_dir=run_dir)
    problem = from_mapping(DiagProblem, "data", _container(cfg.data))
    training = from_mapping(DiagTraining, "train", _container(cfg.train))
    switch = _container(cfg.switch) or {}
    return run_diag_net(
        problem,
        training,
        method,
        seed=int(cfg.seed),
        switch_at=switch.get("at"),
        switch_to=switch_to,
        line_points=int(switch.get("line_points", 21)),
    )


def describe(payload: dict) -> str:
    """The lines printed at the end of a job."""
    if payload["problem"] == "relu_1d":
        lines = [
            f"{name}: slope total variation {format_mean_ci(s['slope_tv_mean'], s['slope_tv_ci_low'], s['slope_tv_ci_high'])} "
            f"(mean, 95% CI over {s['inits']} inits), train loss <= {s['train_loss_max']:.2e}, "
            f"|f(x_i) - y_i| <= {s['max_residual']:.2g} after gradient-flow time <= {s['time_max']:.3g}"
            for name, s in payload["methods"].items()
        ]
        return "\n".join(lines + [f"figure: {payload['figure']}"])

    def fmt(x):
        return "nan" if x is None else f"{x:.4g}"

    text = (
        f"{payload['method']}: train loss {fmt(payload['final_train_loss'])}  test loss {fmt(payload['final_test_loss'])}  "
        f"||beta||_1 {fmt(payload['final_beta_l1'])} (||beta*||_1 {payload['beta_star_l1']:.4g})  iterations {payload['iterations']}"
    )
    if payload.get("diverged"):
        text += "  DIVERGED"
    if "reference" in payload:
        ref = payload["reference"]
        top = max((r["train_loss"] for r in payload["line"] if r["train_loss"] is not None), default=float("nan"))
        text += (
            f"\nreference (no switch): train loss {fmt(ref['final_train_loss'])}  test loss {fmt(ref['final_test_loss'])}  "
            f"||beta||_1 {fmt(ref['final_beta_l1'])}\nhighest train loss on the line between the two solutions: {top:.3g}"
        )
    return text


def run_job(cfg: DictConfig) -> dict:
    """Runs the job, writes `results.json` in cfg.paths.output_dir, prints a summary; returns the payload."""
    # Tensors of a few hundred numbers: extra threads only add synchronization, and the CPU is shared.
    torch.set_num_threads(1)
    # Step sizes and radii as numbers in this project's units (the presets state the paper's: units.py);
    # everything below, results.json's config included, reads these.
    cfg = OmegaConf.create(in_project_units(OmegaConf.to_container(cfg, resolve=True)))
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.problem not in PROBLEMS:
        raise ConfigError(f"unknown problem {cfg.problem!r}; choose one of {', '.join(PROBLEMS)}")
    method, switch_to = methods_of(cfg)
    label = label_of(cfg, method, switch_to)
    config = OmegaConf.to_container(cfg, resolve=True)
    # The method's name beside its settings, as train.py records it (results.json, sweep tables).
    config["method"]["name"] = method.name
    if switch_to is not None:
        config["switch"]["to"]["name"] = switch_to.name
    started = time.time()
    metrics = run_metrics(cfg, run_dir, method, switch_to)
    diverged = bool(metrics.get("diverged"))
    payload = {
        "status": "diverged" if diverged else "finished",
        "reason": "the training loss became non-finite" if diverged else None,
        "problem": cfg.problem,
        "method": label,
        **{k: v for k, v in metrics.items() if k != "history"},
        "global_step": metrics.get("iterations"),
        "wall_time_s": round(time.time() - started, 3),
        "config": config,
        "history": metrics.get("history", []),
    }
    atomic_write_json(run_dir / RESULTS_FILE, payload)
    print(describe(payload), flush=True)
    print(f"results:       {run_dir / RESULTS_FILE}", flush=True)
    return payload
