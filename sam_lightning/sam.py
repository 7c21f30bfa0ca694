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
) -> list[Tensor]:
    """Approximately solve max_{||e|| <= rho} L(w + e) from e = 0; returns e, with params left at w + e.

    Each step: g = grad L(w + e) from `grad_fn()` (which reads the params as they are), then
    e <- P(e + step_size * g / ||g||), P the projection onto the rho-ball (App. D's sharpness
    solver, and multi-step SAM). With steps=1 and step_size=rho this is exactly SAM's e.
    With normalize=False the step is step_size * g and there is no projection (constant-rho SAM).
    """
    if steps < 1:
        raise ValueError(f"ascent steps must be >= 1, got {steps}")
    params = list(params)
    step_size = rho if step_size is None else step_size
    e = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        grads = list(grad_fn())
        new_e = torch._foreach_add(e, sam_perturbation(grads, step_size, normalize))
        if normalize:
            new_e = project_to_ball(new_e, rho)
        with torch.no_grad():  # from w + e to w + new_e (exactly w + new_e on the first step)
            torch._foreach_add_(params, torch._foreach_sub(new_e, e))
        e = new_e
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


# -- perturbations: how e_c is formed from the chunk's gradient(s) ---------------------------------
GradFn = Callable[[], Sequence[Tensor]]  # the gradient of the ascent objective at the params as they are now


@dataclass(frozen=True)
class GradientAscent:
    """SAM's e: `steps` projected, l2-normalized ascent steps of size rho * step_mult (1 step of size
    rho: e = rho g / ||g||, Foret et al.); normalize=False: e = rho g (constant rho)."""

    rho: float
    normalize: bool = True
    steps: int = 1
    step_mult: float = 1.0
    uses_gradient = True

    def __call__(self, params: list[Tensor], grad_fn: GradFn) -> list[Tensor]:
        return projected_ascent(params, grad_fn, self.rho, steps=self.steps, step_size=self.rho * self.step_mult, normalize=self.normalize)


@dataclass(frozen=True)
class AdaptiveAscent:
    """ASAM (Kwon et al., 2021): e = rho T^2 g / ||T g||, T = |w| + eta elementwise.

    `scaled[i]` says whether parameter i gets T (Kwon et al.'s code: tensors named `weight`, i.e.
    conv, linear and norm-layer weights) or T = 1 (biases)."""

    rho: float
    eta: float
    scaled: tuple[bool, ...]
    uses_gradient = True

    def __call__(self, params: list[Tensor], grad_fn: GradFn) -> list[Tensor]:
        grads = list(grad_fn())
        t = [p.detach().abs() + self.eta if s else torch.ones_like(p) for p, s in zip(params, self.scaled)]
        tg = torch._foreach_mul(grads, t)
        e = torch._foreach_mul(torch._foreach_mul(tg, t), self.rho / (global_norm(tg) + 1e-12))
        with torch.no_grad():
            torch._foreach_add_(params, e)
        return e


@dataclass(frozen=True)
class RandomPerturbation:
    """A random e, independent of the loss: uniform on the sphere of radius rho (`sphere`), or
    Gaussian with standard deviation sigma per coordinate (`gaussian`). Drawn from the torch RNG."""

    rho: float
    kind: str = "sphere"
    sigma: float = 0.0
    uses_gradient = False

    def __call__(self, params: list[Tensor], grad_fn: GradFn) -> list[Tensor]:
        noise = [torch.randn_like(p) for p in params]
        if self.kind == "sphere":
            e = torch._foreach_mul(noise, self.rho / global_norm(noise))
        elif self.kind == "gaussian":
            e = torch._foreach_mul(noise, self.sigma)
        else:
            raise ValueError(f"random perturbation kind must be sphere or gaussian, got {self.kind!r}")
        with torch.no_grad():
            torch._foreach_add_(params, e)
        return e


Perturbation = GradientAscent | AdaptiveAscent | RandomPerturbation


def sam_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    *,
    rho: float = 0.0,
    m: int | None = None,
    normalize: bool = True,
    perturbation: Perturbation | None = None,
    ascent_inputs: Tensor | None = None,
    ascent_targets: Tensor | None = None,
    regularizer: Callable[[], Tensor] | None = None,
    ascent_updates_bn_stats: bool = True,
    backward: Callable[[Tensor], None] = Tensor.backward,
    no_sync: ContextFactory = contextlib.nullcontext,
) -> StepOutput:
    """m-SAM and its relatives: per chunk c, e_c from `perturbation`, the descent gradient at
    w + e_c on chunk c, w restored; the mean descent gradient over chunks lands in `p.grad`.

    perturbation: default GradientAscent(rho, normalize) (SAM); also multi-step ascent, ASAM or a
    random perturbation. ascent_inputs/targets: take the ascent gradient on another batch of the
    same size, chunk c of it for chunk c (n-SAM, paper Eq. 21); default the batch itself.
    `backward` runs the descent backward passes (Lightning passes `manual_backward`). Ascent
    gradients are taken with `torch.autograd.grad`, so they never touch `p.grad` nor a DDP
    reducer: each device perturbs with its own gradient. `no_sync` wraps every descent pass but
    the last, so a data-parallel wrapper all-reduces once per batch.

    The logits and loss reported are those of the first pass on the batch itself: at w for SAM,
    at w + e_c when the ascent used another batch or no gradient (n-SAM, random).
    """
    params = list(params)
    perturb = perturbation or GradientAscent(rho, normalize)
    other_batch = ascent_inputs is not None
    if other_batch and ascent_inputs.shape[0] != inputs.shape[0]:
        raise ValueError(f"the ascent batch has {ascent_inputs.shape[0]} examples, the descent batch {inputs.shape[0]}")
    slices = chunk_slices(inputs.shape[0], m)
    n = len(slices)
    backup = [p.detach().clone() for p in params]
    logits, losses, objectives, perturbed, g_norms, e_norms = [], [], [], [], [], []
    for i, sl in enumerate(slices):
        x, y = inputs[sl], targets[sl]
        xa, ya = (ascent_inputs[sl], ascent_targets[sl]) if other_batch else (x, y)
        first: dict[str, Tensor] = {}

        def grad_fn() -> list[Tensor]:
            with frozen_bn_running_stats(model, enabled=not ascent_updates_bn_stats):
                out = model(xa)
                loss = criterion(out, ya)
                objective = _objective(loss, regularizer)
                grads = torch.autograd.grad(objective, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            if not first:  # the pass at w
                first.update(logits=out.detach(), loss=loss.detach(), objective=objective.detach(), grad_norm=global_norm(grads))
            return grads

        e = perturb(params, grad_fn)
        with no_sync() if i < n - 1 else contextlib.nullcontext():
            out_at_e = model(x)
            loss_at_e = criterion(out_at_e, y)
            objective_at_e = _objective(loss_at_e, regularizer)
            backward(objective_at_e / n)
        with torch.no_grad():
            torch._foreach_copy_(params, backup)
        own = bool(first) and not other_batch  # the first pass saw this very chunk at w
        logits.append(first["logits"] if own else out_at_e.detach())
        losses.append(first["loss"] if own else loss_at_e.detach())
        objectives.append(first["objective"] if own else objective_at_e.detach())
        perturbed.append(loss_at_e.detach())
        g_norms.append(first.get("grad_norm", loss_at_e.new_zeros(())))
        e_norms.append(global_norm(e))
    mean = lambda xs: torch.stack(xs).mean()  # noqa: E731
    return StepOutput(torch.cat(logits), mean(losses), mean(objectives), mean(g_norms), mean(e_norms), mean(perturbed))
