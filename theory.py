"""The paper's theory experiments (Sec. 4.2-4.3, App. B) on a CPU. Hydra composes conf/theory/.

    python theory.py experiment=diag_net method=erm           # Fig. 6 setting: gradient descent
    python theory.py experiment=diag_net method=sam           #   full-batch n-SAM (m = the whole batch)
    python theory.py experiment=diag_net method=sam_m1        #   1-SAM (~6 min; add train.step_code=vectorized: ~10 s)
    python theory.py experiment=fig6                          # the Fig. 6 table: 3 methods x 3 seeds, a multirun
    python theory.py experiment=diag_net_sgd method=sam_m1    # Fig. 13: stochastic variants (batch of 5)
    python theory.py experiment=diag_net_rho_grid             # Fig. 14: n-SAM over the paper's rho grid
    python theory.py experiment=diag_net_rho_grid_1sam        #   1-SAM over it (docs/theory.md: both in one folder)
    python theory.py experiment=diag_net_switch               # Fig. 15: GD -> 1-SAM, loss along the line
    python theory.py experiment=relu_1d                       # Fig. 7: ERM vs SAM, 1-D ReLU net, PNG (~5 min)
    python theory.py -m experiment=diag_net method=sam_m1 method.rho=0.1,0.2 seed=0,1,2

A sibling of train.py rather than a train.py experiment: the Lightning loop costs milliseconds per
step in callbacks and logging, more than the step itself on a 60-parameter model, and these runs
take 2e4 full-batch steps. The step and the methods are the same: `sam_lightning.core.step`, `sam_lightning.variants`. Each run directory holds
results.json in the training runs' shape (status, final_train_loss, final_test_loss, config,
history, ...); a multirun ends with the table of `python sweep.py <sweep dir>`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sam_lightning.entry import FAILED, check_mode_flags, fail, hydra_main, is_multirun, run_command
from sam_lightning.run.results import write_failure
from sam_lightning.settings.config import ConfigError
from sam_lightning.settings.strict import check_settings
from sam_lightning.theory.runner import run_job
from sam_lightning.theory.units import in_project_units


def check_dimension(cfg: DictConfig) -> None:
    """data.d first: the presets give step sizes and radii in units of 1/d (`1/d`, `2.5/d`), which
    d=0 would turn into a division by zero before the settings' own checks could name it."""
    d = cfg.get("data", {}).get("d") if cfg.get("problem") == "diag_net" else 1
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ConfigError(
            f"data.d={d!r}: must be an integer >= 1 (the dimension; step sizes and radii are in units of 1/d)"
        )


def job(cfg: DictConfig) -> dict:
    check_settings(cfg, "theory")
    check_dimension(cfg)
    return run_job(cfg)


@hydra.main(version_base="1.3", config_path="conf/theory", config_name="theory")
def main(cfg: DictConfig) -> float:
    """Hydra entry point. Returns the final test loss for Hydra sweepers that optimize; inf for a
    failed or diverged run. Exit codes as train.py's: 2 for bad input, 1 for a failed or diverged run."""
    record = lambda reason: write_failure(cfg.paths.output_dir, cfg, reason, convert=in_project_units)  # noqa: E731
    out = run_command(job, cfg, record_failure=record)
    if out and out.get("status") == "diverged" and not is_multirun():
        fail(f"training diverged: {out.get('reason')}", code=FAILED)
    value = out.get("final_test_loss") if out and out.get("status") == "finished" else None
    return float("inf") if value is None else float(value)


if __name__ == "__main__":
    check_mode_flags()  # -m with --cfg: one line, not Hydra's traceback
    hydra_main(main)  # Hydra's own composition errors (method=sam_m12, method.rhoo=...): one line, exit 2
