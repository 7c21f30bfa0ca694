"""Random weight perturbations (paper Fig. 1): e independent of the loss, gradient taken at w + e.

noise=gaussian (the paper's code, its add_weight_perturb_scale): std sigma per coordinate, rho
unused; noise=sphere: uniform on the sphere of radius rho. Drawn from the torch RNG, chunk after
chunk, before any pass (so both engines draw the same e_c).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sam_lightning.core.method import GradFn, Params, Variant, check, tree_norm, tree_scale


@dataclass(frozen=True, kw_only=True)
class RandomPerturbation(Variant):
    name = "random"
    uses_gradient = False
    rho: float = 0.0  # the radius of noise=sphere; the default gaussian noise does not use it
    noise: str = "gaussian"
    sigma: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.noise in ("sphere", "gaussian"), f"method.noise={self.noise!r}: must be sphere or gaussian")
        check(self.sigma >= 0, f"method.sigma={self.sigma!r}: must be >= 0")

    @classmethod
    def uses_rho(cls, settings: Mapping[str, Any]) -> bool:
        """Only the sphere's radius is rho: gaussian noise (the default) draws with sigma alone."""
        return settings.get("noise", cls.noise) == "sphere"

    def perturbation(self, w: Params, grad_fn: GradFn | None, rho) -> Params:
        noise = {k: torch.randn_like(t) for k, t in w.items()}
        if self.noise == "sphere":
            return tree_scale(noise, rho / tree_norm(noise))
        return tree_scale(noise, self.sigma)
