"""n-SAM (paper Eq. 21, Fig. 1): SAM whose ascent gradient comes from another batch than the descent.

ascent_batch=previous: the previous batch (the paper's code; the first step of a run has none and
makes a plain SAM step on its own batch; the batch is kept in the method's memory, so a resumed run
continues with it). ascent_batch=random: a batch drawn uniformly from the training set. Chunk c of
the other batch perturbs chunk c of this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from sam_lightning.core.method import Batch, RandomBatch, check
from sam_lightning.variants.sam import SAM

# The memory's key; also the checkpoint key under which runs from before the method memory kept it.
PREVIOUS_BATCH = "nsam_previous_batch"


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

    def ascent_batch_for(self, x: Tensor, y: Tensor, memory: dict[str, Any], random_batch: RandomBatch) -> Batch | None:
        if self.ascent_batch == "random":
            return random_batch(len(y), x.device)
        previous = memory.get(PREVIOUS_BATCH)
        memory[PREVIOUS_BATCH] = (x.detach(), y.detach())
        return previous if previous is not None and len(previous[1]) == len(y) else None
