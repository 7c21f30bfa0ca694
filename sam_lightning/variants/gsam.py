"""GSAM, surrogate gap guided SAM (Zhuang et al., ICLR 2022): SAM's perturbation, and a descent
gradient that also lowers the surrogate gap L(w + e) - L(w):

    d = h - alpha * g_perp,   g_perp = g - (<g, h> / ||h||^2) h

with h the gradient at w + e and g the gradient at w (both of the chunk's objective): the
component of g orthogonal to h is removed with weight alpha. alpha = 0 is SAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam_lightning.core.method import Params, check, tree_dot
from sam_lightning.variants.sam import SAM


@dataclass(frozen=True, kw_only=True)
class GSAM(SAM):
    name = "gsam"
    alpha: float  # its default: conf/train/method/gsam.yaml

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.alpha >= 0, f"method.alpha={self.alpha!r}: must be >= 0")

    def descent(self, ascent_grad: Params, perturbed_grad: Params) -> Params:
        g, h = ascent_grad, perturbed_grad
        along = tree_dot(g, h) / (tree_dot(h, h) + 1e-12)
        return {k: h[k] - self.alpha * (g[k] - along * h[k]) for k in h}
