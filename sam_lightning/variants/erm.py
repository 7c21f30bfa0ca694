"""Empirical risk minimization: one forward/backward per batch at w, no ascent step."""

from __future__ import annotations

from dataclasses import dataclass

from sam_lightning.variants.base import Method


@dataclass(frozen=True, kw_only=True)
class ERM(Method):
    """rho has no effect: it exists so that one grid can cover ERM and SAM
    (`python train.py -m method=erm,sam method.rho=0.05,0.1`)."""

    name = "erm"
    ascends = False
    rho: float = 0.0
