"""The SAM step in plain PyTorch: the per-chunk formula, its engines and BatchNorm statistics. Imports no Lightning or Hydra."""
