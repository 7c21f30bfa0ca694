"""Aggregation of Hydra multiruns: `python sweep.py <multirun dir>` (see docs/sweeps.md).

collect: find jobs and read results.json; keys: group runs by overrides minus the seed;
stats: bootstrap CIs; table: rows, best rho, CSV/Markdown; plots: PNGs; wandb_io: the W&B side;
cli: the command line.
"""
