"""Validated settings of the theory experiments (plain dataclasses) and two config resolvers.

`${div:5,${data.d}}` in a YAML file is 5 / d: the paper states step sizes and radii in units of
1/d (App. B.3), and a resolver keeps the presets literal while command-line overrides stay plain
numbers (`method.rho=0.2`).

`${paper_rho:0.175,${method.m}}` is a radius as the paper states it, in this project's units for
the method's chunk size m: see `rho_from_paper_code`, the one place that holds that mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import OmegaConf

from sam_lightning.config import ConfigError, from_mapping


def rho_from_paper_code(rho: float, m: int | None) -> float:
    """The paper's radius for the diagonal network (its figures and App. B.3 quote the `rho`
    argument of its code, diagonal_linear_nets/diag_nets.py) as `method.rho` here, for chunk size m.

    The code trains beta = u * v on (1/(2n)) ||X beta - y||^2; this project trains beta = w_+^2 - w_-^2
    on half that loss (Eq. 5). With u = w_+ + w_-, v = w_+ - w_- (so the paper's init w_+ = w_- = alpha
    is the code's u = 2 alpha, v = 0) the step sizes are the same, and so is n-SAM's radius: both
    ascend along the gradient of the whole loss. The code's 1-SAM ascends along twice the gradient of
    its per-example loss (u + 2 rho r_i x_i v), so its rho is half the rho of Eq. 8: 1-SAM's radius
    here is 2 x the paper's. tests/test_theory.py checks the iterates of both against a
    re-implementation of the code's updates. The code has no other m; any other m takes rho as it is.
    """
    return 2.0 * float(rho) if m == 1 else float(rho)


OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)
OmegaConf.register_new_resolver("paper_rho", rho_from_paper_code, replace=True)

METHOD_NAMES = ("erm", "sam")
ASCENTS = ("batch", "train")
SOURCES = ("seeded", "paper")
ENGINES = ("shared", "vectorized")
PROBLEMS = ("diag_net", "relu_1d")


@dataclass(frozen=True)
class TheoryMethod:
    """How one step forms its gradient.

    name: erm (gradient descent on the loss, as `method=erm` of the training runs) | sam (m-SAM
    through `sam_gradients`, as the training runs' `sam`).
    rho: inner step size; with normalize=False (the theory's setting, paper Eq. 8) the ascent
    point of chunk c is w + rho * grad L_c(w). m: chunk size; 1 is 1-SAM, null the whole batch
    (full-batch n-SAM when the batch is the training set). label: the name used in tables (null:
    from the settings, see `display_name`).
    ascent: with m=null, where the one ascent gradient comes from. train: the whole training set,
    n-SAM as the paper defines it (Eq. 2: the max is over the sum of all n losses); batch: the step's
    own examples. They differ only when the step sees a mini-batch (the stochastic n-SAM of Fig. 13;
    `batch` is then b-SAM). With m set, every chunk ascends on its own examples (m-SAM).
    """

    name: str = "erm"
    rho: float = 0.0
    m: int | None = None
    normalize: bool = False
    label: str | None = None
    ascent: str = "batch"

    def __post_init__(self) -> None:
        if self.name not in METHOD_NAMES:
            raise ConfigError(f"unknown method.name {self.name!r}; choose one of {', '.join(METHOD_NAMES)}")
        if self.rho < 0:
            raise ConfigError(f"method.rho must be >= 0, got {self.rho}")
        if self.m is not None and self.m < 1:
            raise ConfigError(f"method.m must be a positive integer or null, got {self.m}")
        if self.ascent not in ASCENTS:
            raise ConfigError(f"unknown method.ascent {self.ascent!r}; choose one of {', '.join(ASCENTS)}")

    @classmethod
    def from_mapping(cls, values: Mapping, section: str = "method") -> TheoryMethod:
        return from_mapping(cls, section, values)

    def display_name(self, batch_size: int | None = None) -> str:
        """The label, else the paper's name. batch_size: examples per step, None for the whole
        training set. With mini-batches, m=null ascending on the batch itself is b-SAM, not n-SAM."""
        if self.label:
            return self.label
        if self.name == "erm":
            return "GD" if batch_size is None else "SGD"
        if self.m is not None:
            return f"{self.m}-SAM"
        return "n-SAM" if batch_size is None or self.ascent == "train" else f"{batch_size}-SAM"

    def check_batch_size(self, batch_size: int) -> None:
        if self.name == "sam" and self.m is not None and batch_size % self.m:
            raise ConfigError(f"method.m={self.m} must divide the batch size {batch_size}")


@dataclass(frozen=True)
class DiagProblem:
    """Sparse regression for the diagonal network: x ~ N(0, I_d), y = <beta*, x>, ||beta*||_0 = kappa.

    source: seeded (`seed` draws X and beta*: random support, Gaussian values) | paper (the one draw
    of the paper's notebook, numpy's seed 0: beta* = |N(0, 1)| on the first kappa coordinates; the
    seed then only draws mini-batches). See `make_sparse_regression`.
    """

    d: int = 30
    n: int = 20
    kappa: int = 3
    source: str = "seeded"

    def __post_init__(self) -> None:
        if self.d < 1 or self.n < 1:
            raise ConfigError(f"data.d and data.n must be >= 1, got d={self.d}, n={self.n}")
        if not 1 <= self.kappa <= self.d:
            raise ConfigError(f"data.kappa must be in [1, d={self.d}], got {self.kappa}")
        if self.source not in SOURCES:
            raise ConfigError(f"unknown data.source {self.source!r}; choose one of {', '.join(SOURCES)}")


@dataclass(frozen=True)
class DiagTraining:
    """alpha: initialization w_+ = w_- = alpha. lr: step size gamma. batch_size: null for full
    batch, b for b random examples per step (the stochastic variants of Fig. 13). engine: shared
    (`sam_gradients` / `erm_gradients`) or vectorized (all chunks at once, same iterates)."""

    alpha: float = 0.1
    lr: float = 1.0 / 30
    iterations: int = 20000
    batch_size: int | None = None
    log_every: int = 1000
    engine: str = "shared"

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ConfigError(f"train.alpha must be > 0, got {self.alpha}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.iterations < 1:
            raise ConfigError(f"train.iterations={self.iterations}: must be >= 1 (a run of no step trains nothing)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be a positive integer or null, got {self.batch_size}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown train.engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
