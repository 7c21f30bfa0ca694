"""Aggregation of Hydra multiruns: `python sweep.py <multirun dir>` (see docs/sweeps.md).

collect: find jobs and read results.json and the overrides into a pandas DataFrame;
table: groups (the overrides that vary, minus the seed), means with bootstrap CIs
(`sam_lightning.stats`), best rho, the console/Markdown/CSV tables; wandb_io: the W&B side;
cli: the command line and `summarize`, the whole aggregation; callback: the same at the end of
every Hydra multirun; progress: the `job k/N` line as each job of a multirun starts; duplicates: the jobs of a grid that repeat another (ERM at a second rho),
which train.py skips. The PNGs are drawn by `sam_lightning.plots`.
"""
