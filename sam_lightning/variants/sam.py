"""SAM (Foret et al., 2021) and m-SAM (paper Eq. 3): e_c = rho g_c / ||g_c||, descent gradient at w + e_c.

normalize=false    e_c = rho g_c projected onto the rho-ball (constant rho, paper Sec. 5.2; the
                   projection is the paper's code's: e = rho g only while ||rho g|| <= rho)
project=false      no projection onto the rho-ball (the theory models' Eq. 8)
ascent_steps=k     k projected ascent steps of size rho * ascent_step_mult (paper Fig. 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sam_lightning.core.method import GradFn, Params, Variant, check, tree_add, tree_norm, tree_scale


def projected_ascent(
    w: Params, grad_fn: GradFn, rho, *, steps: int = 1, step_size=None, normalize: bool = True, project: bool = True
) -> Params:
    """Approximately solve max_{||e|| <= rho} L(w + e) from e = 0 and return e.

    Each step: g = grad L(w + e) from `grad_fn(e)`, e <- P(e + step_size * g / ||g||), P the projection
    onto the rho-ball (App. D's sharpness solver and multi-step SAM). steps=1, step_size=rho: SAM's e.
    normalize=False: steps of step_size * g, projected the same way (constant-rho SAM, as the
    paper's code's `weight_ascent_step` does with its no_grad_norm option). project=False: no
    projection (the theory's Eq. 8, where e = rho g may leave the ball).
    """
    step_size = rho if step_size is None else step_size
    e = None
    for _ in range(steps):
        g = grad_fn(e)
        step = tree_scale(g, step_size / (tree_norm(g) + 1e-12)) if normalize else tree_scale(g, step_size)
        e = step if e is None else tree_add(e, step)
        if project:
            e = tree_scale(e, torch.clamp(rho / (tree_norm(e) + 1e-12), max=1.0))
    return e


@dataclass(frozen=True, kw_only=True)
class SAM(Variant):
    """m-SAM: per chunk, e_c from `ascent_steps` projected steps along the chunk's own gradient."""

    name = "sam"
    normalize: bool = True
    project: bool = True
    ascent_steps: int = 1
    ascent_step_mult: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            isinstance(self.ascent_steps, int) and self.ascent_steps >= 1,
            f"method.ascent_steps={self.ascent_steps!r}: must be an integer >= 1",
        )
        check(self.ascent_step_mult > 0, f"method.ascent_step_mult={self.ascent_step_mult!r}: must be > 0")

    @classmethod
    def label(cls, settings: Mapping[str, Any]) -> str:
        """The name and chunks, then _const for unnormalized steps: sam_m32_const."""
        return super().label(settings) + ("_const" if settings.get("normalize") is False else "")

    def perturbation(self, w: Params, grad_fn: GradFn, rho) -> Params:
        return projected_ascent(
            w,
            grad_fn,
            rho,
            steps=self.ascent_steps,
            step_size=rho * self.ascent_step_mult,
            normalize=self.normalize,
            project=self.project,
        )
