"""Typed, validated settings for the training system (plain dataclasses, no Hydra).

A Hydra config (or any mapping) becomes one of these with `MethodSpec.from_mapping(cfg.method)`;
bad values fail here, before any data is loaded, with one line that names the key.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the accepted values."""


def _accepts(annotation, value) -> bool:
    """Whether `value` fits a field annotation (int, float, bool, str, X | None). A float field takes
    an int (rho=1); no numeric field takes a bool or a string ('abc' is not a radius)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bool, str):
        return isinstance(value, annotation)
    return True  # anything else is the dataclass's own business


def from_mapping(cls, section: str, values: Mapping):
    """`cls(**values)`, with a one-line error naming any unknown key or a value of the wrong type
    (so that e.g. method.rho=abc is refused here, not met as a TypeError deep in a comparison)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {section}.{', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _accepts(hints[key], value):
            wanted = " or ".join(getattr(a, "__name__", str(a)) for a in (typing.get_args(hints[key]) or (hints[key],)))
            raise ConfigError(f"{section}.{key}={value!r} is not a valid value: expected {wanted.replace('NoneType', 'null')}")
    return cls(**dict(values))


METHODS = ("erm", "sam", "nsam", "random", "asam", "erm_to_sam", "sam_to_erm")
SCHEDULES = ("piecewise", "cosine", "constant")
L2_MODES = ("loss", "weight_decay")


def _choice(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")


@dataclass(frozen=True)
class MethodSpec:
    """How gradients are formed on each batch (one optimizer step per batch for every method).

    name:
      erm         one forward/backward at w.
      sam         m-SAM: per chunk of m examples, e = rho g/||g|| (or rho g), gradient at w + e.
      nsam        n-SAM (paper Eq. 21): the ascent gradient comes from another batch, the previous
                  one (ascent_batch=previous, the paper's code; the very first step of a run, or of
                  a resumed run, uses the batch itself) or a uniformly drawn one (ascent_batch=random).
      random      e random, independent of the loss: uniform on the rho-sphere (noise=sphere) or
                  Gaussian with std sigma per coordinate (noise=gaussian).
      asam        adaptive SAM (Kwon et al., 2021): e = rho T^2 g/||T g||, T = |w| + eta on
                  weight tensors (conv, linear, norm weights), T = 1 on biases.
      erm_to_sam  ERM, then this spec's SAM from epoch round(switch_at * max_epochs) on.
      sam_to_erm  SAM, then ERM from that epoch on.
    rho: perturbation radius (rho_schedule=lr scales it with the learning rate, rho_t = rho lr_t/lr_0).
    m: chunk size; None = the whole (per-device) batch. normalize: False gives constant-rho SAM.
    ascent_steps, ascent_step_mult: k projected ascent steps of size rho * ascent_step_mult.
    bn_ascent_updates_stats: whether ascent passes update BatchNorm running statistics (every pass
    normalizes with its own chunk's batch statistics either way).
    """

    name: str = "sam"
    rho: float = 0.1
    m: int | None = None
    normalize: bool = True
    bn_ascent_updates_stats: bool = True
    ascent_steps: int = 1
    ascent_step_mult: float = 1.0
    rho_schedule: str = "constant"
    ascent_batch: str = "previous"
    noise: str = "sphere"
    sigma: float = 0.0
    eta: float = 0.01
    switch_at: float = 0.9

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ConfigError(f"unknown method.name {self.name!r}; choose one of {', '.join(METHODS)}")
        if self.rho < 0:
            raise ConfigError(f"method.rho must be >= 0, got {self.rho}")
        if self.m is not None and self.m < 1:
            raise ConfigError(f"method.m must be a positive integer or null, got {self.m}")
        if self.ascent_steps < 1:
            raise ConfigError(f"method.ascent_steps must be >= 1, got {self.ascent_steps}")
        if self.ascent_step_mult <= 0:
            raise ConfigError(f"method.ascent_step_mult must be > 0, got {self.ascent_step_mult}")
        _choice("method.rho_schedule", self.rho_schedule, ("constant", "lr"))
        _choice("method.ascent_batch", self.ascent_batch, ("previous", "random"))
        _choice("method.noise", self.noise, ("sphere", "gaussian"))
        if self.sigma < 0 or self.eta < 0:
            raise ConfigError(f"method.sigma and method.eta must be >= 0, got {self.sigma} and {self.eta}")
        if not 0 <= self.switch_at <= 1:
            raise ConfigError(f"method.switch_at must be in [0, 1], got {self.switch_at}")
        if self.name == "asam" and self.ascent_steps != 1:
            raise ConfigError("method.ascent_steps > 1 is not defined for asam; use name=sam")

    @classmethod
    def from_mapping(cls, values: Mapping) -> MethodSpec:
        return from_mapping(cls, "method", values)

    def check_batch_size(self, batch_size: int) -> None:
        if self.name != "erm" and self.m is not None and batch_size % self.m:
            raise ConfigError(f"method.m={self.m} must divide the per-device batch size data.batch_size={batch_size}")

    def switch_epoch(self, max_epochs: int) -> int | None:
        """The first epoch of the second phase for erm_to_sam / sam_to_erm, else None."""
        return round(self.switch_at * max_epochs) if self.name in ("erm_to_sam", "sam_to_erm") else None

    def active(self, epoch: int, switch_epoch: int | None) -> str:
        """The method in force at `epoch`: erm, or the perturbing method (sam, nsam, ...)."""
        if self.name == "erm_to_sam":
            return "sam" if epoch >= switch_epoch else "erm"
        if self.name == "sam_to_erm":
            return "erm" if epoch >= switch_epoch else "sam"
        return self.name


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
        return from_mapping(cls, "optim", values)


def check_data_settings(label_noise: float, train_fraction: float) -> None:
    """The data options checked before any data is read."""
    if not 0 <= label_noise < 1:
        raise ConfigError(f"data.label_noise must be in [0, 1), got {label_noise}")
    if not 0 < train_fraction <= 1:
        raise ConfigError(f"data.train_fraction must be in (0, 1], got {train_fraction}")
