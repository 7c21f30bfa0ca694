"""m-SAM for the diagonal network with all chunks at once: the same gradient as `sam_gradients`
(`train.step_code=vectorized`).

Why it exists: `sam_gradients` runs the general per-chunk step, with autograd, through one of its
engines (`method.engine`): chunk after chunk (loop) or with torch.vmap over the chunks (vmap, which
auto picks for 1-SAM). Either costs milliseconds per step for 1-SAM on n = 20 examples (one CPU
thread, d = 30: loop ~10 ms, vmap ~7 ms; this module ~0.13 ms), so the paper's 2e4 steps take
minutes per run. Written out for beta = w_+^2 - w_-^2 and L_c = mean_{i in c} r_i^2 / 4 (r = <beta, x> - y):

    h_c = dL_c/dbeta = (1 / (2 |c|)) sum_{i in c} r_i x_i
    g_c = (2 w_+ h_c, -2 w_- h_c)                       gradient of L_c at w
    e_c = rho g_c  or  rho g_c / ||g_c||                 (normalize=False / True)
    p.grad = mean_c grad L_c(w + e_c)                    the same formula at w + e_c

one step is ~20 batched tensor operations, whatever m is. tests/test_theory.py checks that its
iterates equal those of `sam_gradients` (and `erm_gradients` for rho = 0, m = None).

    python theory.py experiment=diag_net method=sam_m1 train.step_code=vectorized
"""

from __future__ import annotations

import torch
from torch import Tensor

from sam_lightning.core.chunks import chunk_slices


def _chunk_gradients(w: Tensor, Xc: Tensor, yc: Tensor) -> tuple[Tensor, Tensor]:
    """grad L_c at w (2d,) or at per-chunk w (k, 2d), for all chunks c; and the residuals (k, m).

    w = (w_+, w_-) and Xc holds x~ = (x, -x), so beta = w_+^2 - w_-^2 gives <beta, x> = <w^2, x~>
    and grad L_c = 2 w * (1 / (2m)) sum_i r_i x~_i: one formula for both halves.
    """
    residual = (Xc * (w * w).unsqueeze(-2)).sum(-1) - yc
    h = (residual.unsqueeze(-1) * Xc).sum(1) / (2 * Xc.shape[1])
    return 2 * w * h, residual


def diag_msam_gradients(
    model,
    X: Tensor,
    y: Tensor,
    *,
    rho: float,
    m: int | None,
    normalize: bool = False,
    eps: float = 1e-12,
    ascent: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Set `p.grad` of `model.w_plus`, `model.w_minus` to the m-SAM gradient; returns the loss at w.

    `model` is a `DiagonalLinearNet`; chunks are consecutive, as in `chunk_slices`. rho = 0 with
    m = None is plain gradient descent. ascent: (X, y) of the whole training set, whose gradient gives
    every chunk its ascent point (n-SAM on a mini-batch, `diag_net.TrainingSetAscent`).
    """
    k = len(chunk_slices(X.shape[0], m))  # same validation and chunking as the shared step
    d = X.shape[1]
    with torch.no_grad():
        Xc = torch.cat([X, -X], dim=1).reshape(k, -1, 2 * d)
        yc = y.reshape(k, -1)
        w = torch.cat([model.w_plus.detach(), model.w_minus.detach()])
        g, residual = _chunk_gradients(w, Xc, yc)
        if ascent is not None:
            Xa, ya = ascent
            g = _chunk_gradients(w, torch.cat([Xa, -Xa], dim=1).unsqueeze(0), ya.unsqueeze(0))[0].expand(k, -1)
        if normalize:
            scale = rho / (torch.linalg.vector_norm(g, dim=1, keepdim=True) + eps)
        else:
            scale = rho
        descent, _ = _chunk_gradients(w + scale * g, Xc, yc)
        grad = descent.mean(0)
        model.w_plus.grad, model.w_minus.grad = grad[:d].clone(), grad[d:].clone()
        return residual.pow(2).mean() / 4
