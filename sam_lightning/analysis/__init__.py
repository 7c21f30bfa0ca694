"""Analysis of trained checkpoints: m-sharpness (paper Eq. 1, App. D) and loss interpolation.

Commands (Hydra; configs in conf/analysis/):

    python -m sam_lightning.analysis.sharpness ckpt=RUN/checkpoints/last.ckpt rho='[0.05,0.1,0.2]' m='[128]'
    python -m sam_lightning.analysis.interpolation ckpt_a=RUN_A/checkpoints/last.ckpt ckpt_b=RUN_B/checkpoints/last.ckpt

The modules are not imported here, so that `python -m` runs each of them exactly once.
"""
