"""The m-SAM step in plain PyTorch: chunking, the two engines, BatchNorm statistics.

Nothing here knows about Lightning or Hydra. A hand-written loop uses it like this:

    params = [p for p in model.parameters() if p.requires_grad]
    out = step_gradients(model, params, F.cross_entropy, x, y, SAM(rho=0.1, m=32))   # or ERM(), ...
    optimizer.step(); optimizer.zero_grad(set_to_none=True)

`step_gradients` takes any method (`sam_lightning.variants`): one without an ascent step (ERM), or a
step told not to perturb (an ERM epoch of erm_to_sam), gets `erm_gradients`; a variant gets
`sam_gradients`.

For a batch B split into chunks c of m examples (paper Eq. 3-4, App. D), with a variant's hooks
(`sam_lightning.variants`; SAM's shown):

    g_c = grad L_c(w)                                   ascent gradient at w
    e_c = variant.perturbation(...)                     SAM: rho * g_c / ||g_c||
    h_c = grad L_c(w + e_c)                             gradient at the perturbed weights
    d_c = variant.descent(g_c, h_c)                     SAM: h_c
    p.grad = mean_c d_c                                 one optimizer step per batch

L_c includes the regularizer (0.5 * lambda * ||w||^2 in the paper's code) when one is given, so it
enters both gradients. Every gradient is taken functionally (`torch.func`) at explicit weights, so
the model's parameters are never modified: w is bit-for-bit unchanged after the step.

Two engines run the same per-chunk function: `loop` calls it chunk after chunk, `vmap` runs it for
all chunks at once with `torch.vmap` (groups of `chunks_per_pass` chunks). Each chunk normalizes
with its own batch statistics in both. BatchNorm running statistics: the loop updates them pass
after pass (ascent passes, then the descent pass, chunk after chunk); the vectorized engine gives
every chunk its own copy, then folds the copies into the same sequence of exponential-moving-average
updates (equal to the loop up to rounding).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from sam_lightning.variants import Method, Variant
from sam_lightning.variants.base import tree_add, tree_norm

Loss = Callable[[Tensor, Tensor], Tensor]
Regularizer = Callable[[Iterable[Tensor]], Tensor]  # the weights -> a scalar added to the loss
log = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What one training step measured, all at the unperturbed weights w unless named otherwise."""

    logits: Tensor  # (B, C), detached; for the running train error
    loss: Tensor  # mean data loss over the batch
    objective: Tensor  # loss + regularizer
    grad_norm: Tensor  # ||g||, averaged over chunks for SAM
    perturbation_norm: Tensor  # ||e_c||, averaged over chunks (0 for ERM)
    perturbed_loss: Tensor | None = None  # mean data loss at w + e_c


def chunk_slices(batch_size: int, m: int | None) -> list[slice]:
    """Split `batch_size` examples into consecutive chunks of `m` (None: one chunk)."""
    if m is None or m == batch_size:
        return [slice(0, batch_size)]
    if m < 1 or batch_size % m != 0:
        raise ValueError(f"method.m={m} must be a positive divisor of the batch size {batch_size}")
    return [slice(i, i + m) for i in range(0, batch_size, m)]


def global_norm(tensors: Sequence[Tensor]) -> Tensor:
    """The l2 norm of all tensors taken together as one vector."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


def erm_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    *,
    regularizer: Regularizer | None = None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> StepOutput:
    """One forward/backward at w; the gradient of the objective lands in `p.grad`."""
    logits = model(inputs)
    loss = criterion(logits, targets)
    objective = loss if regularizer is None else loss + regularizer(params)
    backward(objective)
    grads = [p.grad for p in params if p.grad is not None]
    zero = loss.new_zeros(())
    return StepOutput(logits.detach(), loss.detach(), objective.detach(), global_norm(grads), zero)


def step_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    method: Method,
    *,
    perturb: bool = True,
    rho: float | None = None,
    ascent_inputs: Tensor | None = None,
    ascent_targets: Tensor | None = None,
    regularizer: Regularizer | None = None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> StepOutput:
    """One step's gradient for any method, into `p.grad`: ERM's (one pass at w) when the method has
    no ascent step or `perturb` is False (the method says so per epoch: `perturbs_at`), else the
    variant's m-SAM step (`sam_gradients`, with rho and the ascent batch as there)."""
    if not (perturb and method.ascends):
        return erm_gradients(model, params, criterion, inputs, targets, regularizer=regularizer, backward=backward)
    return sam_gradients(
        model,
        params,
        criterion,
        inputs,
        targets,
        method,
        rho=rho,
        ascent_inputs=ascent_inputs,
        ascent_targets=ascent_targets,
        regularizer=regularizer,
        backward=backward,
    )


# -- BatchNorm running statistics -----------------------------------------------------------------
@contextlib.contextmanager
def frozen_bn_running_stats(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Leave BatchNorm running statistics exactly as they were; batch statistics are still used."""
    if not enabled:
        yield
        return
    buffers = [
        buf
        for mod in model.modules()
        if isinstance(mod, nn.modules.batchnorm._BatchNorm)
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


def _batchnorm_momenta(model: nn.Module) -> dict[str, float]:
    """{buffer prefix: momentum} of every BatchNorm layer that tracks running statistics."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            out[f"{name}." if name else ""] = mod.momentum
    return out


def vmap_unsupported(model: nn.Module) -> str | None:
    """Why the vectorized engine cannot run this model (None: it can)."""
    momenta = _batchnorm_momenta(model)
    if any(m is None for m in momenta.values()):
        return "BatchNorm with momentum=None (cumulative averages)"
    for name, _ in model.named_buffers():
        if not any(name.startswith(prefix) for prefix in momenta):
            return f"buffer {name!r} is not a BatchNorm statistic"
    return None


@torch.no_grad()
def fold_chunk_statistics(model: nn.Module, buffers: dict[str, Tensor], copies: dict[str, Tensor]) -> None:
    """Fold per-chunk copies of the running statistics into the model's buffers as if the chunks had
    updated them one after the other.

    Every copy started from r0 and took j EMA updates r <- (1 - mu) r + mu s, so copy c is
    a^j r0 + u_c with a = 1 - mu; applied in sequence the n chunks give a^(jn) r0 + sum_c a^(j(n-1-c)) u_c.
    """
    for prefix, mu in _batchnorm_momenta(model).items():
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
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# -- the step -----------------------------------------------------------------------------------
def _stack(x: Tensor, n: int) -> Tensor:
    """(n * m, ...) -> (n, m, ...): n consecutive chunks of m examples, chunk first."""
    return x.reshape(n, x.shape[0] // n, *x.shape[1:])


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


def sam_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    variant: Variant,
    *,
    rho: float | None = None,
    ascent_inputs: Tensor | None = None,
    ascent_targets: Tensor | None = None,
    regularizer: Regularizer | None = None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> StepOutput:
    """m-SAM and its relatives: the mean over chunks of the variant's descent gradient lands in `p.grad`.

    variant: a `sam_lightning.variants` object (its m, engine, chunks_per_pass and hooks). rho: the
    radius for this step (default the variant's; a schedule passes the current one).
    ascent_inputs/targets: take the ascent gradient on another batch of the same size, chunk c of it
    for chunk c (n-SAM, paper Eq. 21).

    The gradient reaches `p.grad` through one `backward` of sum_p <p, d_p> (d detached), whose
    gradient is d exactly: Lightning passes `manual_backward`, so a data-parallel wrapper
    all-reduces the gradient once per batch. Ascent gradients never touch `p.grad`: each device
    perturbs with its own gradient.

    The logits and loss reported are those of the first pass on the batch itself: at w for SAM,
    at w + e_c when the ascent used another batch or no gradient (n-SAM, random).
    """
    rho = variant.rho if rho is None else rho
    params = list(params)
    name_of = {id(p): name for name, p in model.named_parameters()}
    names = [name_of[id(p)] for p in params]
    w = {name: p.detach() for name, p in zip(names, params)}
    other_batch = ascent_inputs is not None
    if other_batch and ascent_inputs.shape[0] != inputs.shape[0]:
        raise ValueError(f"the ascent batch has {ascent_inputs.shape[0]} examples, the descent batch {inputs.shape[0]}")
    slices = chunk_slices(inputs.shape[0], variant.m)
    n = len(slices)
    engine = choose_engine(variant, model, n, inputs.shape[0] // n)
    buffers = dict(model.named_buffers())
    separate_ascent_stats = not variant.bn_ascent_updates_stats and bool(buffers)

    def objective(weights, bufs, x, y):
        logits = functional_call(model, (weights, bufs), (x,))
        loss = criterion(logits, y)
        total = loss if regularizer is None else loss + regularizer(weights.values())
        return total, (loss, total, logits)

    def autograd_gradient(weights, bufs, x, y):
        """The loop's gradient: plain autograd at explicit weights, as fast as a module's backward
        (torch.func.grad costs ~20% more per pass on a CPU)."""
        leaves = {k: v.detach().requires_grad_() for k, v in weights.items()}
        total, (loss, _, logits) = objective(leaves, bufs, x, y)
        grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
        g = {k: torch.zeros_like(v) if gk is None else gk for (k, v), gk in zip(leaves.items(), grads)}
        return g, (loss.detach(), total.detach(), logits.detach())

    gradient = grad(objective, has_aux=True) if engine == "vmap" else autograd_gradient

    def chunk_step(bufs, ascent_bufs, x, y, xa, ya, e_given):
        """One chunk: e_c, h_c, d_c and what is reported. Pure, so that vmap can batch it."""
        first: dict[str, Tensor] = {}

        def grad_fn(e):
            g, (loss, total, logits) = gradient(w if e is None else tree_add(w, e), ascent_bufs, xa, ya)
            if not first:  # the pass at w
                first.update(grad=g, loss=loss, total=total, logits=logits)
            return g

        e = e_given if e_given is not None else variant.perturbation(w, grad_fn, rho)
        h, (loss_e, total_e, logits_e) = gradient(tree_add(w, e), bufs, x, y)
        d = variant.descent(first.get("grad"), h)
        own = bool(first) and not other_batch  # the first pass saw this very chunk at w
        loss, total, logits = (first["loss"], first["total"], first["logits"]) if own else (loss_e, total_e, logits_e)
        g_norm = tree_norm(first["grad"]) if first else loss_e.new_zeros(())
        return d, (logits, loss, total, loss_e, g_norm, tree_norm(e))

    xa_all, ya_all = (ascent_inputs, ascent_targets) if other_batch else (inputs, targets)
    # Loss-independent perturbations are drawn first, chunk after chunk, so both engines see the
    # same random numbers.
    drawn = None if variant.uses_gradient else [variant.perturbation(w, None, rho) for _ in range(n)]
    descent = {k: torch.zeros_like(v) for k, v in w.items()}  # the sum over chunks of d_c
    reports = []  # per piece: (logits, loss, objective, perturbed loss, ||g||, ||e||), chunks first
    step = 1 if engine == "loop" else chunks_per_pass(variant, params, n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        if engine == "loop":  # the model's own buffers, updated in place pass after pass
            ascent_bufs = {k: b.clone() for k, b in buffers.items()} if separate_ascent_stats else buffers
            e = None if drawn is None else drawn[start]
            sl = slices[start]
            d, report = chunk_step(buffers, ascent_bufs, inputs[sl], targets[sl], xa_all[sl], ya_all[sl], e)
            torch._foreach_add_(list(descent.values()), [d[k] for k in descent])
            reports.append(tuple(r.unsqueeze(0) for r in report))
            continue
        size = stop - start  # one copy of the running statistics per chunk, folded in afterwards
        copies = {k: b.unsqueeze(0).repeat(size, *([1] * b.dim())) for k, b in buffers.items()}
        ascent_copies = {k: c.clone() for k, c in copies.items()} if separate_ascent_stats else copies
        e = None if drawn is None else {k: torch.stack([chunk[k] for chunk in drawn[start:stop]]) for k in w}
        part = slice(slices[start].start, slices[stop - 1].stop)  # chunks start..stop-1, stacked below
        with batchnorm_inputs_in_statistics_dtype(model):
            d, report = vmap(chunk_step, in_dims=(0, 0, 0, 0, 0, 0, None if e is None else 0), randomness="different")(
                copies, ascent_copies, *(_stack(t[part], size) for t in (inputs, targets, xa_all, ya_all)), e
            )
        fold_chunk_statistics(model, buffers, copies)
        torch._foreach_add_(list(descent.values()), [d[k].sum(0) for k in descent])
        reports.append(report)

    backward(sum((p * (descent[k] / n)).sum() for k, p in zip(names, params)))
    logits, loss, objective_value, loss_e, g_norm, e_norm = (
        torch.cat([r[i] for r in reports]).detach() for i in range(6)
    )
    return StepOutput(
        logits.reshape(-1, logits.shape[-1]),
        loss.mean(),
        objective_value.mean(),
        g_norm.mean(),
        e_norm.mean(),
        loss_e.mean(),
    )
