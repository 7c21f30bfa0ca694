"""ERM -> SAM and SAM -> ERM (paper Figs. 8, 9, 15): SAM for part of the epochs, ERM for the rest.

The `MethodSwitch` callback (sam_lightning/training/callbacks/switch.py) fixes the epoch
round(switch_at * max_epochs) at the start of training, keeps it in checkpoints, and asks
`perturbs_at` at the start of every epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sam_lightning.core.method import check
from sam_lightning.variants.sam import SAM

ORDERS = ("erm_to_sam", "sam_to_erm")


@dataclass(frozen=True, kw_only=True)
class SwitchedSAM(SAM):
    """order=erm_to_sam: ERM, then SAM from the switch epoch on; sam_to_erm: the reverse. Both
    settings have their defaults in conf/train/method/sam_to_erm.yaml and erm_to_sam.yaml only."""

    order: str
    switch_at: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.order in ORDERS, f"method.order={self.order!r}: must be erm_to_sam or sam_to_erm")
        check(0 <= self.switch_at <= 1, f"method.switch_at={self.switch_at!r}: must be in [0, 1]")

    @property
    def name(self) -> str:  # erm_to_sam or sam_to_erm, as the paper names them
        return self.order

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return ORDERS

    @classmethod
    def label(cls, settings: Mapping[str, Any]) -> str:
        return super().label({**settings, "name": settings.get("name") or settings.get("order")})

    def switch_epoch(self, max_epochs: int) -> int:
        return round(self.switch_at * max_epochs)

    def perturbs_at(self, epoch: int, switch_epoch: int | None) -> bool:
        return (epoch >= switch_epoch) == (self.order == "erm_to_sam")
