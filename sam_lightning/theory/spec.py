"""Validated settings of the theory experiments (plain dataclasses) and their methods.

The methods are the training runs' (`sam_lightning.variants`, selected in conf/theory/method/ by
`_target_` as in conf/train/method/): `ERM` and `SAM`, with SAM's settings as they are (`m`,
`normalize`, `project`). What only the theory needs lives in its own settings: `train.ascent`
(where full-batch n-SAM's ascent gradient comes from on mini-batches) and the job's `label`.

`rho_from_paper_code` is the one place that maps a radius as the paper states it to this project's
units for the method's chunk size m (null for ERM, which has no m); the presets' `method.rho_paper`
and `<number>/d` values are turned into numbers by `units.in_project_units`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sam_lightning.settings.config import ConfigError
from sam_lightning.variants import ERM, SAM, Method


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


ASCENTS = ("train", "batch")
SOURCES = ("seeded", "paper")
STEP_CODES = ("shared", "vectorized")
PROBLEMS = ("diag_net", "relu_1d")
THEORY_METHODS = (ERM, SAM)  # the paper's theory (Sec. 4) compares these two


def theory_method(values: Mapping, key: str = "method") -> Method:
    """The method a theory config names by its `_target_`, built as train.py builds its method;
    ConfigError (one line naming `key`) for a bad key, value or class."""
    from sam_lightning.entry import instantiate_method

    try:
        method = instantiate_method(values)
    except ConfigError as err:
        if key == "method":
            raise
        raise ConfigError(f"{key}: {err}") from err
    if type(method) not in THEORY_METHODS:
        names = " or ".join(f"{c.__module__.rsplit('.', 1)[0]}.{c.__name__}" for c in THEORY_METHODS)
        raise ConfigError(f"{key}._target_={values.get('_target_')!r}: the theory models take {names}")
    if method.ascends and method.rho_schedule != "constant":
        raise ConfigError(f"{key}.rho_schedule={method.rho_schedule!r}: the theory runs keep rho constant")
    return method


def check_vectorizable(method: Method, setting: str) -> None:
    """The vectorized step code is the closed form of ERM and of SAM's one unprojected ascent step."""
    if method.ascends and (method.project or method.ascent_steps != 1 or method.ascent_step_mult != 1):
        raise ConfigError(
            f"{setting}=vectorized computes SAM's one unprojected ascent step (method.project=false, "
            f"method.ascent_steps=1, method.ascent_step_mult=1): use {setting}=shared"
        )


def display_name(method: Method, batch_size: int | None = None, ascent: str = "train") -> str:
    """The paper's name of a run of `method`. batch_size: examples per step, None for the whole
    training set. ascent: with mini-batches, m=null ascending on the whole training set is n-SAM,
    on the batch itself b-SAM."""
    if not method.ascends:
        return "GD" if batch_size is None else "SGD"
    if method.m is not None:
        return f"{method.m}-SAM"
    return "n-SAM" if batch_size is None or ascent == "train" else f"{batch_size}-SAM"


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
    batch, b for b random examples per step (the stochastic variants of Fig. 13).
    ascent: with mini-batches, where a full-batch SAM (method.m=null) takes its one ascent gradient.
    train: the whole training set, n-SAM as the paper defines it (Eq. 2: the max is over the sum of
    all n losses; Fig. 13); batch: the step's own examples, which is b-SAM. With method.m set every
    chunk ascends on its own examples (m-SAM).
    step_code: which code computes each step: shared (the training runs' `step_gradients`, through
    `sam_gradients` / `erm_gradients`) or vectorized (the closed form of all chunks at once, the
    same iterates)."""

    alpha: float = 0.1
    lr: float = 1.0 / 30
    iterations: int = 20000
    batch_size: int | None = None
    log_every: int = 1000
    ascent: str = "train"
    step_code: str = "shared"

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
        if self.ascent not in ASCENTS:
            raise ConfigError(f"unknown train.ascent {self.ascent!r}; choose one of {', '.join(ASCENTS)}")
        if self.step_code not in STEP_CODES:
            raise ConfigError(f"unknown train.step_code {self.step_code!r}; choose one of {', '.join(STEP_CODES)}")
