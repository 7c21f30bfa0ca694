"""n-SAM (paper Eq. 21, Fig. 1): SAM whose ascent gradient comes from another batch than the descent.

ascent_batch=previous: the previous batch (the paper's code; the first step of a run, or of a resumed
run, has none and makes a plain SAM step on its own batch). ascent_batch=random: a batch drawn
uniformly from the training set. Chunk c of the other batch perturbs chunk c of this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam_lightning.variants.base import check
from sam_lightning.variants.sam import SAM


@dataclass(frozen=True, kw_only=True)
class NSAM(SAM):
    name = "nsam"
    ascent_batch: str = "previous"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.ascent_batch in ("previous", "random"),
            f"method.ascent_batch={self.ascent_batch!r}: must be previous or random",
        )
