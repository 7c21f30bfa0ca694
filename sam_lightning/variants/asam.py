"""ASAM (Kwon et al., 2021): e = rho T^2 g / ||T g||, T = |w| + eta elementwise.

T applies to the tensors named `weight` (conv, linear and norm-layer weights, as in Kwon et al.'s
code); biases get T = 1. Its rho lives on another scale than SAM's (0.5 for CIFAR ResNets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sam_lightning.core.method import GradFn, Params, Variant, check, tree_norm


@dataclass(frozen=True, kw_only=True)
class ASAM(Variant):
    name = "asam"
    rho: float = (
        field()
    )  # on another scale than SAM's (no default of Method's); both defaults: conf/train/method/asam.yaml
    eta: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.eta >= 0, f"method.eta={self.eta!r}: must be >= 0")

    def perturbation(self, w: Params, grad_fn: GradFn, rho) -> Params:
        g = grad_fn(None)
        t = {k: (v.abs() + self.eta if k.endswith("weight") else 1.0) for k, v in w.items()}
        tg = {k: t[k] * g[k] for k in g}
        scale = rho / (tree_norm(tg) + 1e-12)
        return {k: t[k] * tg[k] * scale for k in g}
