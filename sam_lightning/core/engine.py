"""The engines that run the per-chunk SAM step over a batch's chunks, and the choice between them.

Both engines have the interface `sam_gradients` calls:

    engine(chunk_step, batch, model, variant, params)
        -> yields, piece after piece of the batch, (sum of d_c over the piece's chunks, their reports
           stacked chunk first)

and call `chunk_step(gradient, buffers, ascent_buffers, x, y, ascent_x, ascent_y, drawn_e)` with
their own way to differentiate: gradient(objective, weights, buffers, x, y) -> (grad, measured).

    loop_engine (here)          one chunk per piece; plain autograd; the model's own BatchNorm
                                buffers, updated in place pass after pass
    vmap_engine (vmap_engine)   a group of chunks per piece in one torch.vmap call; torch.func.grad;
                                per-chunk copies of the buffers, folded into the loop's updates

Each chunk normalizes with its own batch statistics in both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from sam_lightning.core.batchnorm import ascent_statistics
from sam_lightning.core.chunks import ChunkedBatch
from sam_lightning.core.method import Params, Variant
from sam_lightning.core.vmap_engine import vmap_engine, vmap_unsupported

log = logging.getLogger(__name__)


def autograd_gradient(objective: Callable, weights: Params, buffers: dict[str, Tensor], x: Tensor, y: Tensor):
    """(gradient of the objective at `weights`, what it measured), by plain autograd: as fast as a
    module's backward (torch.func.grad costs ~20% more per pass on a CPU)."""
    leaves = {k: v.detach().requires_grad_() for k, v in weights.items()}
    total, measured = objective(leaves, buffers, x, y)
    grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}, measured


def loop_engine(
    chunk_step, batch: ChunkedBatch, model: nn.Module, variant: Variant, params: Sequence[Tensor]
) -> Iterator:
    """One chunk after the other, on the model's own buffers."""
    buffers = dict(model.named_buffers())
    for c in range(batch.n):
        ascent_buffers = ascent_statistics(buffers, variant.bn_ascent_updates_stats)
        descent, report = chunk_step(autograd_gradient, buffers, ascent_buffers, *batch.chunk(c))
        yield descent, tuple(r.unsqueeze(0) for r in report)


ENGINES = {"loop": loop_engine, "vmap": vmap_engine}

# On a CPU the chunk loop is faster for chunks of 32 examples and more, the vectorized pass for 8
# and fewer (make bench, 2 cores: m = 32 loop 1.13x vs vmap 1.22x of SAM, m = 8 2.05x vs 1.58x).
CPU_VMAP_MAX_M = 16


def channels_last(model: nn.Module) -> bool:
    """Whether the model's convolution weights are in the channels_last memory format."""
    convs = [p for p in model.parameters() if p.dim() == 4]
    return bool(convs) and convs[0].is_contiguous(memory_format=torch.channels_last) and not convs[0].is_contiguous()


def compiled(model: nn.Module) -> bool:
    """Whether the model's forward is torch.compile'd (in place by nn.Module.compile, or wrapped)."""
    return getattr(model, "_compiled_call_impl", None) is not None or hasattr(model, "_orig_mod")


def choose_engine(variant: Variant, model: nn.Module, n_chunks: int, chunk_size: int) -> str:
    """The engine for `variant.engine`. auto: vmap where the variant and model allow it, there is
    more than one chunk and, on a CPU, chunks hold at most CPU_VMAP_MAX_M examples and the weights
    are not channels_last (vmap's batching rules copy strided tensors on a slow path there: make
    bench, one thread, 4-SAM with channels_last: vmap 1.10-1.16x the loop's time); else the loop.
    A compiled model takes the loop: torch.func.grad and vmap cannot run a compiled forward (dynamo
    skips it and runs it eagerly)."""
    if variant.engine == "loop" or n_chunks == 1:
        return "loop"
    on_cpu = next(model.parameters()).device.type == "cpu"
    if variant.engine == "auto" and on_cpu and (chunk_size > CPU_VMAP_MAX_M or channels_last(model)):
        return "loop"
    why = None if variant.vectorizable else f"the {variant.name} variant is not vectorizable"
    why = why or vmap_unsupported(model) or ("the model is compiled (torch.compile)" if compiled(model) else None)
    if why is None:
        return "vmap"
    if variant.engine == "vmap":
        log.warning("method.engine=vmap: %s; using the chunk loop", why)
    return "loop"
