"""BatchNorm running statistics during a SAM step.

Every pass normalizes with its own chunk's batch statistics. The running statistics follow the
chunk loop: they are updated pass after pass (the ascent passes, then the descent pass, chunk after
chunk), the ascent passes on a throwaway copy when the variant says they must not update them. The
vectorized engine gives every chunk its own copy and folds the copies afterwards into that same
sequence of exponential-moving-average updates (equal to the loop up to rounding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

BatchNorm = nn.modules.batchnorm._BatchNorm


@contextlib.contextmanager
def frozen_bn_running_stats(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Leave BatchNorm running statistics exactly as they were; batch statistics are still used."""
    if not enabled:
        yield
        return
    buffers = [
        buf
        for mod in model.modules()
        if isinstance(mod, BatchNorm)
        for buf in (mod.running_mean, mod.running_var, mod.num_batches_tracked)
        if buf is not None
    ]
    backup = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, old in zip(buffers, backup):
                buf.copy_(old)


def batchnorm_momenta(model: nn.Module) -> dict[str, float | None]:
    """{buffer prefix: momentum} of every BatchNorm layer that tracks running statistics."""
    return {
        f"{name}." if name else "": mod.momentum
        for name, mod in model.named_modules()
        if isinstance(mod, BatchNorm) and mod.track_running_stats
    }


def ascent_statistics(buffers: dict[str, Tensor], ascent_updates_stats: bool) -> dict[str, Tensor]:
    """The buffers an ascent pass runs with: `buffers` themselves, or a copy it may update freely."""
    if ascent_updates_stats or not buffers:
        return buffers
    return {k: b.clone() for k, b in buffers.items()}


def per_chunk_copies(buffers: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """n copies of every buffer, stacked chunk first (the vectorized engine's per-chunk statistics)."""
    return {k: b.unsqueeze(0).repeat(n, *([1] * b.dim())) for k, b in buffers.items()}


@torch.no_grad()
def fold_chunk_statistics(model: nn.Module, buffers: dict[str, Tensor], copies: dict[str, Tensor]) -> None:
    """Fold per-chunk copies of the running statistics into the model's buffers as if the chunks had
    updated them one after the other.

    Every copy started from r0 and took j EMA updates r <- (1 - mu) r + mu s, so copy c is
    a^j r0 + u_c with a = 1 - mu; applied in sequence the n chunks give a^(jn) r0 + sum_c a^(j(n-1-c)) u_c.
    """
    for prefix, mu in batchnorm_momenta(model).items():
        count = buffers[f"{prefix}num_batches_tracked"]
        n = copies[f"{prefix}num_batches_tracked"].shape[0]
        j = int(copies[f"{prefix}num_batches_tracked"][0] - count)
        if j == 0:
            continue
        decay = (1.0 - mu) ** j
        weights = decay ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
        for stat in ("running_mean", "running_var"):
            r0, stacked = buffers[prefix + stat], copies[prefix + stat]
            u = stacked - decay * r0
            w = weights.to(device=u.device, dtype=u.dtype).view(-1, *([1] * r0.dim()))
            r0.copy_(decay**n * r0 + (w * u).sum(0))
        count.add_(j * n)


@contextlib.contextmanager
def batchnorm_inputs_in_statistics_dtype(model: nn.Module) -> Iterator[None]:
    """Under autocast, BatchNorm layers get their input in the statistics' dtype (float32).

    Why: torch.vmap's BatchNorm rule with per-chunk running statistics requires the input in their
    dtype, while autocast hands BatchNorm the bfloat16/float16 output of the layer before it
    ("expected scalar type BFloat16 but found Float"). The loop's BatchNorm computes in float32 from
    those same values, so upcasting them changes nothing but the output's dtype, which the next
    autocast layer casts back."""

    def upcast(mod, args):
        stats = mod.running_mean
        if stats is not None and args[0].dtype != stats.dtype:
            return (args[0].to(stats.dtype), *args[1:])
        return None

    handles = [
        mod.register_forward_pre_hook(upcast)
        for mod in model.modules()
        if isinstance(mod, BatchNorm) and mod.track_running_stats
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
