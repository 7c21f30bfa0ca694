"""Validated settings of the theory experiments (plain dataclasses) and the `div` config resolver.

`${div:5,${data.d}}` in a YAML file is 5 / d: the paper states step sizes and radii in units of
1/d (App. B.3), and a resolver keeps the presets literal while command-line overrides stay plain
numbers (`method.rho=0.2`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import OmegaConf

from sam_lightning.config import ConfigError, from_mapping

OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)

METHOD_NAMES = ("erm", "sam")
ENGINES = ("shared", "vectorized")
PROBLEMS = ("diag_net", "relu_1d")


@dataclass(frozen=True)
class TheoryMethod:
    """How one step forms its gradient.

    name: erm (gradient descent on the loss, as `method=erm` of the training runs) | sam (m-SAM
    through `sam_gradients`, as the training runs' `sam`).
    rho: inner step size; with normalize=False (the theory's setting, paper Eq. 8) the ascent
    point of chunk c is w + rho * grad L_c(w). m: chunk size; 1 is 1-SAM, null the whole batch
    (full-batch n-SAM when the batch is the training set). label: the name used in tables.
    """

    name: str = "erm"
    rho: float = 0.0
    m: int | None = None
    normalize: bool = False
    label: str | None = None

    def __post_init__(self) -> None:
        if self.name not in METHOD_NAMES:
            raise ConfigError(f"unknown method.name {self.name!r}; choose one of {', '.join(METHOD_NAMES)}")
        if self.rho < 0:
            raise ConfigError(f"method.rho must be >= 0, got {self.rho}")
        if self.m is not None and self.m < 1:
            raise ConfigError(f"method.m must be a positive integer or null, got {self.m}")

    @classmethod
    def from_mapping(cls, values: Mapping, section: str = "method") -> TheoryMethod:
        return from_mapping(cls, section, values)

    def display_name(self) -> str:
        if self.label:
            return self.label
        if self.name == "erm":
            return "GD"
        return "n-SAM" if self.m is None else f"{self.m}-SAM"

    def check_batch_size(self, batch_size: int) -> None:
        if self.name == "sam" and self.m is not None and batch_size % self.m:
            raise ConfigError(f"method.m={self.m} must divide the batch size {batch_size}")


@dataclass(frozen=True)
class DiagProblem:
    """Sparse regression for the diagonal network: x ~ N(0, I_d), y = <beta*, x>, ||beta*||_0 = kappa."""

    d: int = 30
    n: int = 20
    kappa: int = 3

    def __post_init__(self) -> None:
        if self.d < 1 or self.n < 1:
            raise ConfigError(f"data.d and data.n must be >= 1, got d={self.d}, n={self.n}")
        if not 1 <= self.kappa <= self.d:
            raise ConfigError(f"data.kappa must be in [1, d={self.d}], got {self.kappa}")


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
        if self.iterations < 0:
            raise ConfigError(f"train.iterations must be >= 0, got {self.iterations}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be a positive integer or null, got {self.batch_size}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown train.engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
