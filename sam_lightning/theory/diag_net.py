"""Diagonal linear networks on sparse regression (paper Sec. 4.2, App. B): model, data, training.

    model  beta = w_+^2 - w_-^2, prediction <beta, x>, initialized at w_+ = w_- = alpha
    loss   L(w) = 1/(4n) sum_i (<beta, x_i> - y_i)^2                          (paper Eq. 5)
    data   x_i ~ N(0, I_d), beta* with kappa nonzero entries, ||beta*||_2 = 1, y = X beta*
    test   E_x[(<beta, x> - <beta*, x>)^2] / 4 = ||beta - beta*||^2 / 4   (exact for x ~ N(0, I_d))

The paper's code trains the same network as beta = u * v on twice this loss; the map between the two
(u = w_+ + w_-, v = w_+ - w_-, 1-SAM's radius x 2) is `spec.rho_from_paper_code`.

Each step forms its gradient with the training runs' step code and the training runs' methods
(`sam_lightning.variants`), then takes a plain SGD step:

    ERM()                                       step_gradients -> erm_gradients (gradient descent)
    SAM(rho=rho, m=m, normalize=False, project=False)
                                                step_gradients -> sam_gradients; m=1: 1-SAM, m=None: n-SAM (Eq. 8)
    train.ascent=train with mini-batches: n-SAM's ascent point from the whole training set (`TrainingSetAscent`)

Python use (what `python theory.py experiment=diag_net method=sam_m1` runs):

    from sam_lightning.theory.diag_net import run_diag_net
    from sam_lightning.theory.spec import DiagProblem, DiagTraining
    from sam_lightning.variants import SAM
    out = run_diag_net(DiagProblem(), DiagTraining(), SAM(rho=5 / 30, m=1, normalize=False, project=False), seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from sam_lightning.core.method import Params, tree_add
from sam_lightning.core.step import sam_gradients, step_gradients
from sam_lightning.settings.config import ConfigError
from sam_lightning.theory.progress import progress
from sam_lightning.theory.spec import DiagProblem, DiagTraining, check_vectorizable, display_name
from sam_lightning.theory.vectorized import diag_msam_gradients
from sam_lightning.variants import SAM, Method

DTYPE = torch.float64  # losses fall to 1e-10 and below; float32 would round the tail away


class DiagonalLinearNet(nn.Module):
    """<w_+^2 - w_-^2, x>: a two-layer diagonal linear network in the paper's parametrization."""

    def __init__(self, d: int, alpha: float, dtype: torch.dtype = DTYPE) -> None:
        super().__init__()
        self.w_plus = nn.Parameter(torch.full((d,), float(alpha), dtype=dtype))
        self.w_minus = nn.Parameter(torch.full((d,), float(alpha), dtype=dtype))

    def beta(self) -> Tensor:
        return self.w_plus * self.w_plus - self.w_minus * self.w_minus

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.beta()


def quarter_squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """mean_i (pred_i - y_i)^2 / 4: Eq. 5 on the examples given, so a chunk's loss is its own L_c."""
    return (pred - target).pow(2).mean() / 4


def population_loss(beta: Tensor, beta_star: Tensor) -> float:
    """The exact test loss for x ~ N(0, I_d): E[<beta - beta*, x>^2] / 4 = ||beta - beta*||^2 / 4."""
    return float((beta - beta_star).pow(2).sum() / 4)


@dataclass
class SparseRegression:
    X: Tensor  # (n, d)
    y: Tensor  # (n,)
    beta_star: Tensor  # (d,)


def make_sparse_regression(problem: DiagProblem, seed: int, dtype: torch.dtype = DTYPE) -> SparseRegression:
    """One draw of the problem; `seed` fixes X, the support of beta* and its values (source=seeded)."""
    if problem.source == "paper":
        return paper_draw(problem, dtype)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(problem.n, problem.d, generator=gen, dtype=dtype)
    beta_star = torch.zeros(problem.d, dtype=dtype)
    support = torch.randperm(problem.d, generator=gen)[: problem.kappa]
    values = torch.randn(problem.kappa, generator=gen, dtype=dtype)
    beta_star[support] = values / values.norm()
    return SparseRegression(X, X @ beta_star, beta_star)


PAPER_TEST_POINTS = 1000  # the notebook draws a test set between X and beta*


def paper_draw(problem: DiagProblem, dtype: torch.dtype = DTYPE) -> SparseRegression:
    """The draw of the paper's notebook (diagonal_linear_nets/diag_nets_sam.ipynb, its first cell):
    numpy's legacy generator at seed 0 gives X (n x d) and 1000 test points from N(0, I_d), then
    beta* = |N(0, 1)| on the first kappa coordinates, normalized. The test points are drawn only to
    reach beta* in the same stream: the test loss here is exact."""
    rng = np.random.RandomState(0)
    mean, cov = np.zeros(problem.d), np.eye(problem.d)
    X = rng.multivariate_normal(mean, cov, problem.n)
    rng.multivariate_normal(mean, cov, PAPER_TEST_POINTS)
    beta_star = rng.randn(problem.d)
    beta_star[problem.kappa :] = 0
    beta_star = np.abs(beta_star) / np.linalg.norm(beta_star)
    X_t, beta_t = torch.tensor(X, dtype=dtype), torch.tensor(beta_star, dtype=dtype)
    return SparseRegression(X_t, X_t @ beta_t, beta_t)


@dataclass(frozen=True, kw_only=True)
class TrainingSetAscent(SAM):
    """SAM whose one ascent point comes from the gradient of the whole training loss while the
    descent gradient is the step's batch's: n-SAM with mini-batches (paper Eq. 2, Fig. 13). The point
    does not depend on the batch, so the engines take it as they take a random perturbation: formed
    once before the batch's passes (uses_gradient=False): SAM's ascent, with `ascent_gradient(w + e)`
    in place of the chunk's gradient."""

    uses_gradient: ClassVar[bool] = False
    ascent_gradient: Callable[[Params], Params]

    def perturbation(self, w: Params, grad_fn, rho) -> Params:
        return super().perturbation(w, lambda e: self.ascent_gradient(w if e is None else tree_add(w, e)), rho)


def training_set_gradient(model: DiagonalLinearNet, X: Tensor, y: Tensor) -> Callable[[Params], Params]:
    """w -> grad L(w) on all of (X, y), at explicit weights (the model's own are left alone)."""
    loss = lambda weights: quarter_squared_error(functional_call(model, weights, (X,)), y)  # noqa: E731
    return grad(loss)


def method_gradients(
    model: DiagonalLinearNet,
    method: Method,
    X: Tensor,
    y: Tensor,
    step_code: str = "shared",
    ascent: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Put this step's gradient into `p.grad`; returns the batch loss at the current w (at the
    ascent point when it comes from elsewhere). ascent: the training set, for a method whose ascent
    point comes from it while (X, y) is a mini-batch."""
    params = [model.w_plus, model.w_minus]
    if step_code == "vectorized":
        rho, m = (method.rho, method.m) if method.ascends else (0.0, None)
        normalize = method.ascends and method.normalize
        return diag_msam_gradients(model, X, y, rho=rho, m=m, normalize=normalize, ascent=ascent)
    if ascent is not None:
        variant = TrainingSetAscent(**asdict(method), ascent_gradient=training_set_gradient(model, *ascent))
        return sam_gradients(model, params, quarter_squared_error, X, y, variant, rho=variant.rho).loss
    return step_gradients(model, params, quarter_squared_error, X, y, method, rho=method.rho).loss


@dataclass
class Trajectory:
    """What a run measured: a row every `log_every` iterations and at the end, keyed as the
    training runs' history (`step`, `train/loss`, `test/loss`) plus `beta_l1`."""

    history: list[dict] = field(default_factory=list)
    iterations: int = 0
    diverged: bool = False


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def measure(model: DiagonalLinearNet, data: SparseRegression, iteration: int) -> dict:
    with torch.no_grad():
        beta = model.beta()
        train = float(quarter_squared_error(data.X @ beta, data.y))
        return {
            "step": iteration,
            "train/loss": _finite(train),
            "test/loss": _finite(population_loss(beta, data.beta_star)),
            "beta_l1": _finite(float(beta.abs().sum())),
        }


def run_steps(
    model: DiagonalLinearNet,
    data: SparseRegression,
    method: Method,
    training: DiagTraining,
    iterations: int,
    generator: torch.Generator,
    trajectory: Trajectory | None = None,
) -> Trajectory:
    """`iterations` SGD steps with `method`'s gradient, appended to `trajectory` (a fresh one if None).

    Mini-batches (training.batch_size < n) are drawn without replacement from `generator`, so two
    runs with equal generators see the same batches.
    """
    traj = trajectory or Trajectory()
    n = data.X.shape[0]
    batch = n if training.batch_size is None else training.batch_size
    if batch > n:
        raise ConfigError(f"train.batch_size={batch} exceeds the number of training examples n={n}")
    method.check_batch_size(batch, "the batch size train.batch_size" if batch < n else "the number of examples data.n")
    if training.step_code == "vectorized":
        check_vectorizable(method, "train.step_code")
    # n-SAM's one ascent point comes from the whole training set; with full batches that is the batch
    ascent = (
        (data.X, data.y) if method.ascends and method.m is None and training.ascent == "train" and batch < n else None
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=training.lr)
    if not traj.history:
        traj.history.append(measure(model, data, traj.iterations))
    for _ in progress(range(iterations), display_name(method, training.batch_size, training.ascent)):
        if batch == n:
            X, y = data.X, data.y
        else:
            idx = torch.randperm(n, generator=generator)[:batch]
            X, y = data.X[idx], data.y[idx]
        optimizer.zero_grad(set_to_none=True)
        method_gradients(model, method, X, y, training.step_code, ascent)
        optimizer.step()
        traj.iterations += 1
        if traj.iterations % training.log_every == 0:
            row = measure(model, data, traj.iterations)
            traj.history.append(row)
            if row["train/loss"] is None or row["test/loss"] is None:  # non-finite: as train.py's divergence
                traj.diverged = True
                return traj
    if traj.history[-1]["step"] != traj.iterations:
        traj.history.append(measure(model, data, traj.iterations))
    traj.diverged = traj.history[-1]["train/loss"] is None or traj.history[-1]["test/loss"] is None
    return traj


def endpoint_metrics(traj: Trajectory) -> dict:
    last = traj.history[-1]
    return {
        "final_train_loss": last["train/loss"],
        "final_test_loss": last["test/loss"],
        "final_beta_l1": last["beta_l1"],
        "iterations": traj.iterations,
        "diverged": traj.diverged,
    }


def loss_along_line(
    w_a: Sequence[Tensor], w_b: Sequence[Tensor], data: SparseRegression, points: int = 21
) -> list[dict]:
    """Train and test loss at (1 - t) w_a + t w_b for t evenly spaced in [0, 1]; w = (w_+, w_-)."""
    rows = []
    for t in torch.linspace(0, 1, points, dtype=DTYPE).tolist():
        w_plus, w_minus = ((1 - t) * a + t * b for a, b in zip(w_a, w_b))
        beta = w_plus * w_plus - w_minus * w_minus
        rows.append(
            {
                "t": t,
                "train_loss": _finite(float(quarter_squared_error(data.X @ beta, data.y))),
                "test_loss": _finite(population_loss(beta, data.beta_star)),
            }
        )
    return rows


def _weights(model: DiagonalLinearNet) -> list[Tensor]:
    return [model.w_plus.detach().clone(), model.w_minus.detach().clone()]


def run_diag_net(
    problem: DiagProblem,
    training: DiagTraining,
    method: Method,
    seed: int,
    switch_at: int | None = None,
    switch_to: Method | None = None,
    line_points: int = 21,
) -> dict:
    """One run; with `switch_at`, `method` runs for the first `switch_at` iterations, `switch_to` after.

    A switched run also trains the reference (`method` for all iterations, from the same point at
    `switch_at` with the same batches) and reports the loss along the line between the two
    solutions (paper Fig. 15c). Returns the summary, the history and, if switched, `reference` and `line`.
    """
    if (switch_at is None) != (switch_to is None):
        raise ConfigError("switch.at and switch.to must be given together (or both null)")
    if switch_at is not None and not 0 <= switch_at <= training.iterations:
        raise ConfigError(f"switch.at must be in [0, train.iterations={training.iterations}], got {switch_at}")
    data = make_sparse_regression(problem, seed)
    model = DiagonalLinearNet(problem.d, training.alpha)
    gen = torch.Generator().manual_seed(seed + 1_000_003)  # batches: independent of the data draw
    if switch_at is None:
        traj = run_steps(model, data, method, training, training.iterations, gen)
        return {**endpoint_metrics(traj), "beta_star_l1": float(data.beta_star.abs().sum()), "history": traj.history}

    traj = run_steps(model, data, method, training, switch_at, gen)
    branch = DiagonalLinearNet(problem.d, training.alpha)
    branch.load_state_dict(model.state_dict())
    branch_traj = Trajectory([dict(r) for r in traj.history], traj.iterations, traj.diverged)
    branch_gen = torch.Generator().set_state(gen.get_state())
    rest = training.iterations - switch_at
    run_steps(model, data, method, training, rest, gen, traj)
    run_steps(branch, data, switch_to, training, rest, branch_gen, branch_traj)
    return {
        **endpoint_metrics(branch_traj),
        "beta_star_l1": float(data.beta_star.abs().sum()),
        "history": branch_traj.history,
        "reference": {**endpoint_metrics(traj), "history": traj.history},
        "line": loss_along_line(_weights(model), _weights(branch), data, line_points),
    }
