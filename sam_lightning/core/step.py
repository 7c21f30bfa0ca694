"""One optimizer step's gradient, into `p.grad`, for ERM, SAM and SAM's relatives. Plain PyTorch.

A hand-written loop uses it like this:

    params = [p for p in model.parameters() if p.requires_grad]
    out = step_gradients(model, params, F.cross_entropy, x, y, SAM(rho=0.1, m=32), rho=0.1)  # or ERM(), ...
    optimizer.step(); optimizer.zero_grad(set_to_none=True)

`step_gradients` takes any method (`sam_lightning.variants`): one without an ascent step (ERM), or a
step told not to perturb (an ERM epoch of erm_to_sam), gets `erm_gradients`; a variant gets
`sam_gradients`, whose docstring states the algorithm. rho is always the caller's: the training
system asks the method for the step's rho (its schedule) once per step and passes it in.

The rest of `sam_lightning.core` serves `sam_gradients`: `chunks` cuts the batch, `engine` runs the
per-chunk step chunk after chunk or, in `vmap_engine`, many chunks at once, `batchnorm` keeps the
BatchNorm running statistics as the chunk loop leaves them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from sam_lightning.core.chunks import ChunkedBatch
from sam_lightning.core.engine import ENGINES, choose_engine
from sam_lightning.core.method import Method, Params, Variant, tree_add, tree_norm

Loss = Callable[[Tensor, Tensor], Tensor]
Regularizer = Callable[[Iterable[Tensor]], Tensor]  # the weights -> a scalar added to the loss


@dataclass
class StepOutput:
    """What one training step measured, all at the unperturbed weights w unless named otherwise."""

    logits: Tensor  # (B, C), detached; for the running train error
    loss: Tensor  # mean data loss over the batch
    objective: Tensor  # loss + regularizer
    grad_norm: Tensor  # ||g||, averaged over chunks for SAM
    perturbation_norm: Tensor  # ||e_c||, averaged over chunks (0 for ERM)
    perturbed_loss: Tensor | None = None  # mean data loss at w + e_c


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
    rho: float,
    perturb: bool = True,
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


# -- SAM ----------------------------------------------------------------------------------------------
class Measured(NamedTuple):
    """What one pass measured at the weights it ran at, detached."""

    loss: Tensor  # the data loss
    objective: Tensor  # loss + regularizer
    logits: Tensor


class ChunkReport(NamedTuple):
    """What a SAM step reports of each chunk (StepOutput averages it over chunks)."""

    logits: Tensor
    loss: Tensor
    objective: Tensor
    perturbed_loss: Tensor  # the data loss at w + e_c
    grad_norm: Tensor  # ||g_c|| (0 when the variant took no gradient at w)
    perturbation_norm: Tensor  # ||e_c||


def objective(model, criterion, regularizer, weights: Params, buffers, x: Tensor, y: Tensor):
    """L_c at explicit weights (data loss + regularizer), and what the pass measured."""
    logits = functional_call(model, (weights, buffers), (x,))
    loss = criterion(logits, y)
    total = loss if regularizer is None else loss + regularizer(weights.values())
    return total, Measured(loss.detach(), total.detach(), logits.detach())


def sam_gradients(
    model: nn.Module,
    params: Sequence[Tensor],
    criterion: Loss,
    inputs: Tensor,
    targets: Tensor,
    variant: Variant,
    *,
    rho: float,
    ascent_inputs: Tensor | None = None,
    ascent_targets: Tensor | None = None,
    regularizer: Regularizer | None = None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> StepOutput:
    """m-SAM (paper Eq. 3-4, App. D) and its relatives. For each chunk c of `variant.m` examples:

        g_c = grad L_c(w)              ascent gradient (on chunk c of ascent_inputs if given: n-SAM)
        e_c = rho g_c / ||g_c||        perturbation: variant.perturbation (SAM's shown)
        h_c = grad L_c(w + e_c)        gradient at the perturbed weights
        d_c = h_c                      descent gradient: variant.descent (SAM's shown)
        p.grad = mean_c d_c            one optimizer step per batch

    L_c is the chunk's loss plus regularizer(w). Every gradient is taken at explicit weights, so w
    is never perturbed in place and nothing needs restoring. rho: this step's radius, as the caller
    decided it. Logits and loss are reported at w, or at w + e_c where no ascent pass ran on the
    chunk itself at w (n-SAM's other batch, random perturbations).
    """
    params = list(params)
    name_of = {id(p): name for name, p in model.named_parameters()}
    names = [name_of[id(p)] for p in params]
    w = {name: p.detach() for name, p in zip(names, params)}
    # A perturbation that ignores the loss is drawn first, chunk after chunk: both engines draw alike.
    draw = None if variant.uses_gradient else partial(variant.perturbation, w, None, rho)
    batch = ChunkedBatch.split(inputs, targets, ascent_inputs, ascent_targets, variant.m, draw)
    chunk_step = ChunkStep(variant, rho, w, partial(objective, model, criterion, regularizer), ascent_inputs is None)
    engine = ENGINES[choose_engine(variant, model, batch.n, batch.m)]
    descent = {k: torch.zeros_like(v) for k, v in w.items()}  # sum_c d_c
    reports = []
    for piece_descent, piece_reports in engine(chunk_step, batch, model, variant, params):
        torch._foreach_add_(list(descent.values()), [piece_descent[k] for k in descent])
        reports.append(piece_reports)
    # The gradient of sum_p <p, mean d> (d detached) is mean d. Going through `backward` (Lightning's
    # manual_backward) lets data parallelism all-reduce it once per batch; ascent gradients stay local.
    backward(sum((p * (descent[k] / batch.n)).sum() for k, p in zip(names, params)))
    chunk = ChunkReport(*(torch.cat(field).detach() for field in zip(*reports)))  # chunk first
    means = (chunk.loss, chunk.objective, chunk.grad_norm, chunk.perturbation_norm, chunk.perturbed_loss)
    return StepOutput(chunk.logits.reshape(-1, chunk.logits.shape[-1]), *(t.mean() for t in means))


@dataclass(frozen=True, repr=False)  # its repr would print every weight tensor
class ChunkStep:
    """The formula of `sam_gradients` for one chunk: d_c and what is reported. Pure, so that torch.vmap
    can run it for many chunks at once; the engine supplies how to differentiate and the buffers."""

    variant: Variant
    rho: float
    w: Params
    objective: Callable  # (weights, buffers, x, y) -> (L_c, Measured)
    ascent_on_own_chunk: bool  # False: chunk c of another batch gives the ascent gradient (n-SAM)

    def __call__(self, gradient, buffers, ascent_buffers, x, y, ascent_x, ascent_y, drawn_e):
        w, variant = self.w, self.variant
        ascent_passes = []  # (gradient, Measured) of each pass the variant asks for; the first is at w

        def ascent_gradient(e: Params | None) -> Params:  # grad L_c(w + e), the variant's grad_fn
            at = w if e is None else tree_add(w, e)
            ascent_passes.append(gradient(self.objective, at, ascent_buffers, ascent_x, ascent_y))
            return ascent_passes[-1][0]

        e = drawn_e if drawn_e is not None else variant.perturbation(w, ascent_gradient, self.rho)
        h, at_e = gradient(self.objective, tree_add(w, e), buffers, x, y)
        g, at_w = ascent_passes[0] if ascent_passes else (None, None)
        # The reported logits and loss are those at w when the first ascent pass ran on this very chunk.
        shown = at_w if at_w is not None and self.ascent_on_own_chunk else at_e
        g_norm = at_e.loss.new_zeros(()) if g is None else tree_norm(g)
        report = ChunkReport(shown.logits, shown.loss, shown.objective, at_e.loss, g_norm, tree_norm(e))
        return variant.descent(g, h), report
