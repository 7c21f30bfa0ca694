"""The m-SAM step in plain PyTorch: chunking, perturbation, exact restore.

Nothing here knows about Lightning or Hydra. A hand-written loop uses it like this:

    params = [p for p in model.parameters() if p.requires_grad]
    out = sam_gradients(model, params, F.cross_entropy, x, y, rho=0.1, m=32)
    optimizer.step(); optimizer.zero_grad(set_to_none=True)

For a batch B split into chunks c of m examples (paper Eq. 3-4, App. D):

    g_c = grad L_c(w)                                   ascent gradient at w
    e_c = rho * g_c / ||g_c||   (normalize=True, Foret et al.)  or  rho * g_c (constant rho)
    d_c = grad L_c(w + e_c)                             descent gradient
    p.grad = mean_c d_c                                 one optimizer step per batch

L_c includes the regularizer (0.5 * lambda * ||w||^2 in the paper's code) when one is given, so it
enters both gradients, evaluated at w and at w + e_c respectively. The weights are restored by
copying a backup, never by subtracting e_c, so w is bit-for-bit unchanged after the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Loss = Callable[[Tensor, Tensor], Tensor]
ContextFactory = Callable[[], contextlib.AbstractContextManager]


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


def sam_perturbation(grads: Sequence[Tensor], rho: float, normalize: bool = True, eps: float = 1e-12) -> list[Tensor]:
    """e = rho * g / ||g|| (normalized SAM) or e = rho * g (constant rho, paper Sec. 5.2)."""
    scale = rho / (global_norm(grads) + eps) if normalize else rho
    return torch._foreach_mul(list(grads), scale)


def project_to_ball(e: Sequence[Tensor], rho: float) -> list[Tensor]:
    """The Euclidean projection of e (all tensors as one vector) onto {||e|| <= rho}."""
    norm = global_norm(e)
    return torch._foreach_mul(list(e), torch.clamp(rho / (norm + 1e-12), max=1.0))


def projected_ascent(
    params: Sequence[Tensor],
    grad_fn: Callable[[], Sequence[Tensor]],
    rho: float,
    *,
    steps: int = 1,
    step_size: float | None = None,
    normalize: bool = True,
    first_grads: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Approximately solve max_{||e|| <= rho} L(w + e) from e = 0; returns e, with params left at w + e.

    Each step: g = grad L(w + e) from `grad_fn()` (which reads the params as they are), then
    e <- P(e + step_size * g / ||g||), P the projection onto the rho-ball (App. D's sharpness
    solver, and multi-step SAM). With steps=1 and step_size=rho this is exactly SAM's e.
    With normalize=False the step is step_size * g and there is no projection (constant-rho SAM).
    `first_grads`, if given, is the gradient at w (saves one pass when the caller has it).
    """
    if steps < 1:
        raise ValueError(f"ascent steps must be >= 1, got {steps}")
    params = list(params)
    step_size = rho if step_size is None else step_size
    e = [torch.zeros_like(p) for p in params]
    for k in range(steps):
        grads = list(first_grads) if (k == 0 and first_grads is not None) else list(grad_fn())
        e = torch._foreach_add(e, sam_perturbation(grads, step_size, normalize))
        if normalize:
            e = project_to_ball(e, rho)
        with torch.no_grad():
            if k == 0:
                torch._foreach_add_(params, e)
            else:
                torch._foreach_add_(params, torch._foreach_sub(e, previous))
        previous = e
    return e


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


def _objective(loss: Tensor, regularizer: Callable[[], Tensor] | None) -> Tensor:
    return loss if regularizer is None else loss + regularizer()


def erm_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    *,
    regularizer: Callable[[], Tensor] | None = None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> StepOutput:
    """One forward/backward at w; the gradient of the objective lands in `p.grad`."""
    logits = model(inputs)
    loss = criterion(logits, targets)
    objective = _objective(loss, regularizer)
    backward(objective)
    grads = [p.grad for p in params if p.grad is not None]
    zero = loss.new_zeros(())
    return StepOutput(logits.detach(), loss.detach(), objective.detach(), global_norm(grads), zero)


def sam_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    *,
    rho: float,
    m: int | None = None,
    normalize: bool = True,
    regularizer: Callable[[], Tensor] | None = None,
    ascent_updates_bn_stats: bool = True,
    backward: Callable[[Tensor], None] = Tensor.backward,
    no_sync: ContextFactory = contextlib.nullcontext,
) -> StepOutput:
    """m-SAM: per-chunk ascent, per-chunk descent at w + e_c, mean descent gradient in `p.grad`.

    `backward` runs the descent backward passes (Lightning passes `manual_backward`). The ascent
    gradient is taken with `torch.autograd.grad`, so it never touches `p.grad` nor a DDP reducer:
    each device perturbs with its own gradient. `no_sync` wraps every descent pass but the last,
    so a data-parallel wrapper all-reduces once per batch.
    """
    params = list(params)
    slices = chunk_slices(inputs.shape[0], m)
    n = len(slices)
    backup = [p.detach().clone() for p in params]
    logits, losses, objectives, perturbed, g_norms, e_norms = [], [], [], [], [], []
    for i, sl in enumerate(slices):
        x, y = inputs[sl], targets[sl]
        with frozen_bn_running_stats(model, enabled=not ascent_updates_bn_stats):
            out = model(x)
            loss = criterion(out, y)
            objective = _objective(loss, regularizer)
            grads = torch.autograd.grad(objective, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        e = projected_ascent(params, None, rho, normalize=normalize, first_grads=grads)
        with no_sync() if i < n - 1 else contextlib.nullcontext():
            loss_at_e = criterion(model(x), y)
            backward(_objective(loss_at_e, regularizer) / n)
        with torch.no_grad():
            torch._foreach_copy_(params, backup)
        logits.append(out.detach())
        losses.append(loss.detach())
        objectives.append(objective.detach())
        perturbed.append(loss_at_e.detach())
        g_norms.append(global_norm(grads))
        e_norms.append(global_norm(e))
    mean = lambda xs: torch.stack(xs).mean()  # noqa: E731
    return StepOutput(torch.cat(logits), mean(losses), mean(objectives), mean(g_norms), mean(e_norms), mean(perturbed))
