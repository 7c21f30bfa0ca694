"""Typed, validated settings for the training system (plain dataclasses, no Hydra).

A Hydra config (or any mapping) becomes one of these with `MethodSpec.from_mapping(cfg.method)`;
bad values fail here, before any data is loaded, with one line that names the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the accepted values."""


def _from_mapping(cls, section: str, values: Mapping):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {section}.{', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**dict(values))


METHODS = ("erm", "sam")
SCHEDULES = ("piecewise", "cosine", "constant")
L2_MODES = ("loss", "weight_decay")


@dataclass(frozen=True)
class MethodSpec:
    """How gradients are formed on each batch.

    name: erm | sam. rho: perturbation radius (ignored by erm). m: chunk size of m-SAM; None
    means the whole batch (m = batch size). normalize: e = rho g/||g|| (True) or rho g (False).
    bn_ascent_updates_stats: whether the ascent pass updates BatchNorm running statistics (both
    passes always normalize with their chunk's batch statistics).
    """

    name: str = "sam"
    rho: float = 0.1
    m: int | None = None
    normalize: bool = True
    bn_ascent_updates_stats: bool = True

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ConfigError(f"unknown method.name {self.name!r}; choose one of {', '.join(METHODS)}")
        if self.rho < 0:
            raise ConfigError(f"method.rho must be >= 0, got {self.rho}")
        if self.m is not None and self.m < 1:
            raise ConfigError(f"method.m must be a positive integer or null, got {self.m}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> MethodSpec:
        return _from_mapping(cls, "method", values)

    def check_batch_size(self, batch_size: int) -> None:
        if self.name != "erm" and self.m is not None and batch_size % self.m:
            raise ConfigError(f"method.m={self.m} must divide the per-device batch size data.batch_size={batch_size}")


@dataclass(frozen=True)
class OptimSpec:
    """SGD with momentum, L2 regularization and an epoch-wise learning-rate schedule.

    l2_mode=loss adds 0.5 * l2 * ||w||^2 to the loss (the paper's code: it enters the SAM ascent
    gradient too); l2_mode=weight_decay passes l2 to SGD's weight_decay instead (decoupled from
    the perturbation). schedule: piecewise (x0.1 at 50% and 75% of the epochs), cosine, constant.
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    l2: float = 5e-4
    l2_mode: str = "loss"
    schedule: str = "piecewise"

    def __post_init__(self) -> None:
        if self.name != "sgd":
            raise ConfigError(f"optim.name must be 'sgd', got {self.name!r}")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.l2 < 0:
            raise ConfigError(f"optim.l2 must be >= 0, got {self.l2}")
        if self.l2_mode not in L2_MODES:
            raise ConfigError(f"optim.l2_mode must be one of {', '.join(L2_MODES)}, got {self.l2_mode!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> OptimSpec:
        return _from_mapping(cls, "optim", values)
