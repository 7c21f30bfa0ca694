"""Empirical risk minimization: one forward/backward per batch at w, no ascent step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sam_lightning.core.method import Method


@dataclass(frozen=True, kw_only=True)
class ERM(Method):
    """rho has no effect (`uses_rho` is False: no ascent step): it exists so that one grid can cover
    ERM and SAM (`python train.py -m method=erm,sam method.rho=0.05,0.1`)."""

    name = "erm"
    former_names: ClassVar[tuple[str, ...]] = ("gd",)  # the theory runs' name for it before they shared the methods
    ascends = False
    rho: float = 0.0
