"""Empirical risk minimization: one forward/backward per batch at w."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ERM:
    """rho has no effect: it exists so that one grid can cover ERM and SAM
    (`python train.py -m method=erm,sam method.rho=0.05,0.1`)."""

    name = "erm"
    rho: float = 0.0

    def check_batch_size(self, batch_size: int) -> None:
        """Any batch size works."""

    def describe(self) -> dict:
        return {"name": self.name, "rho": self.rho}
