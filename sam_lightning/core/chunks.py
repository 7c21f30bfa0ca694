"""A batch cut into chunks of m consecutive examples (paper Eq. 3): each chunk gets its own perturbation.

Whether m cuts a batch is decided by `sam_lightning.core.method.divides` alone; the settings check
(`Variant.check_batch_size`) asks it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sam_lightning.core.method import Params, divides


def chunk_slices(batch_size: int, m: int | None) -> list[slice]:
    """Split `batch_size` examples into consecutive chunks of `m` (None: one chunk)."""
    if m is None or m == batch_size:
        return [slice(0, batch_size)]
    if not divides(m, batch_size):
        raise ValueError(f"method.m={m} must be a positive divisor of the batch size {batch_size}")
    return [slice(i, i + m) for i in range(0, batch_size, m)]


def _stack(x: Tensor, n: int) -> Tensor:
    """(n * m, ...) -> (n, m, ...): n consecutive chunks of m examples, chunk first."""
    return x.reshape(n, x.shape[0] // n, *x.shape[1:])


@dataclass(frozen=True)
class ChunkedBatch:
    """A batch in n chunks of m examples, what each chunk's step takes: its inputs and targets, the
    chunk of the ascent batch that gives its ascent gradient (the same chunk, unless n-SAM takes it
    from another batch: Eq. 21), and its perturbation when that was drawn before any pass."""

    inputs: Tensor
    targets: Tensor
    ascent_inputs: Tensor
    ascent_targets: Tensor
    n: int
    drawn: list[Params] | None = None  # e_c per chunk, for a perturbation that ignores the loss

    @classmethod
    def split(
        cls,
        inputs: Tensor,
        targets: Tensor,
        ascent_inputs: Tensor | None,
        ascent_targets: Tensor | None,
        m: int | None,
        draw: Callable[[], Params] | None = None,
    ) -> ChunkedBatch:
        """Check the sizes and cut; `draw()` gives one chunk's perturbation, called chunk after chunk."""
        if ascent_inputs is None:
            ascent_inputs, ascent_targets = inputs, targets
        elif ascent_inputs.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"the ascent batch has {ascent_inputs.shape[0]} examples, the descent batch {inputs.shape[0]}"
            )
        n = len(chunk_slices(inputs.shape[0], m))
        drawn = None if draw is None else [draw() for _ in range(n)]
        return cls(inputs, targets, ascent_inputs, ascent_targets, n, drawn)

    @property
    def m(self) -> int:
        return self.inputs.shape[0] // self.n

    def chunk(self, c: int) -> tuple:
        """Chunk c: (x, y, ascent x, ascent y, drawn e or None)."""
        part = slice(c * self.m, (c + 1) * self.m)
        tensors = (self.inputs, self.targets, self.ascent_inputs, self.ascent_targets)
        return (*(t[part] for t in tensors), None if self.drawn is None else self.drawn[c])

    def stacked(self, start: int, stop: int) -> tuple:
        """Chunks start..stop-1 as chunk(c) gives them, each tensor stacked chunk first."""
        part, k = slice(start * self.m, stop * self.m), stop - start
        tensors = (self.inputs, self.targets, self.ascent_inputs, self.ascent_targets)
        e = None
        if self.drawn is not None:
            e = {name: torch.stack([chunk[name] for chunk in self.drawn[start:stop]]) for name in self.drawn[start]}
        return (*(_stack(t[part], k) for t in tensors), e)
