"""The vectorized engine: the per-chunk step for many chunks at once, with torch.vmap over chunks.

It has the chunk loop's interface (`sam_lightning.core.engine`) and gives the same results in
float64 up to rounding: the per-chunk step is the same code, gradients come from torch.func.grad
instead of autograd, and each chunk runs with its own copy of the BatchNorm running statistics,
folded afterwards into the loop's sequence of updates (`sam_lightning.core.batchnorm`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from sam_lightning.core.batchnorm import (
    ascent_statistics,
    batchnorm_inputs_in_statistics_dtype,
    batchnorm_momenta,
    fold_chunk_statistics,
    per_chunk_copies,
)
from sam_lightning.core.chunks import ChunkedBatch
from sam_lightning.core.method import Params, Variant


def func_gradient(objective: Callable, weights: Params, buffers: dict[str, Tensor], x: Tensor, y: Tensor):
    """(gradient of the objective at `weights`, what it measured), by torch.func.grad: vmap can batch it."""
    return grad(objective, has_aux=True)(weights, buffers, x, y)


def vmap_unsupported(model: nn.Module) -> str | None:
    """Why the vectorized engine cannot run this model (None: it can)."""
    momenta = batchnorm_momenta(model)
    if any(m is None for m in momenta.values()):
        return "BatchNorm with momentum=None (cumulative averages)"
    for name, _ in model.named_buffers():
        if not any(name.startswith(prefix) for prefix in momenta):
            return f"buffer {name!r} is not a BatchNorm statistic"
    return None


def chunks_per_pass(variant: Variant, params: Sequence[Tensor], n_chunks: int) -> int:
    """How many chunks one vectorized pass takes: `variant.chunks_per_pass`, or by default all of
    them on a CPU and, on a GPU, as many as keep their three parameter-sized tensors (w + e_c, g_c,
    h_c) within a quarter of the free device memory."""
    if variant.chunks_per_pass is not None:
        return variant.chunks_per_pass
    device = params[0].device
    if device.type != "cuda":
        return n_chunks
    free, _ = torch.cuda.mem_get_info(device)
    per_chunk = 3 * sum(p.numel() * p.element_size() for p in params)
    return max(1, min(n_chunks, int(0.25 * free // per_chunk)))


def vmap_engine(
    chunk_step, batch: ChunkedBatch, model: nn.Module, variant: Variant, params: Sequence[Tensor]
) -> Iterator:
    """Groups of `chunks_per_pass` chunks, each group in one vectorized call of `chunk_step`."""
    buffers = dict(model.named_buffers())
    group = chunks_per_pass(variant, params, batch.n)
    e_dim = None if batch.drawn is None else 0

    def chunks_step(*chunk_args):  # a named function: vmap names a nameless callable by its repr, which
        return chunk_step(func_gradient, *chunk_args)  # would print every weight tensor on every call

    step = vmap(chunks_step, in_dims=(0, 0, 0, 0, 0, 0, e_dim), randomness="different")
    for start in range(0, batch.n, group):
        stop = min(batch.n, start + group)
        copies = per_chunk_copies(buffers, stop - start)
        ascent_copies = ascent_statistics(copies, variant.bn_ascent_updates_stats)
        # vmap's BatchNorm rule wants its input in the per-chunk statistics' dtype, also under autocast.
        with batchnorm_inputs_in_statistics_dtype(model):
            descents, reports = step(copies, ascent_copies, *batch.stacked(start, stop))
        fold_chunk_statistics(model, buffers, copies)
        yield {k: d.sum(0) for k, d in descents.items()}, reports
