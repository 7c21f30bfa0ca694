"""Aggregate Hydra multiruns: one table row per group of runs (overrides minus the seed), mean test
error with a 95% bootstrap CI over seeds, the best rho per method; CSV, Markdown and PNG plots.

    python train.py +sweep=rho_grid method=sam_m128        # the paper's rho grid x 3 seeds
    python sweep.py multirun/rho_grid/2026-11-28/10-00-00  # table on stdout, files in <dir>/summary/
    python sweep.py --help                                 # several folders, --metric, --wandb

See docs/sweeps.md.
"""

import sys

from sam_lightning.reporting.cli import main

if __name__ == "__main__":
    sys.exit(main())
