"""Typed, validated settings for the training system (plain dataclasses, no Hydra), and the one
error every user mistake raises.

A mapping becomes one of these with `OptimSpec.from_mapping(values)`; bad values fail here, before
any data is loaded, with one line that names the key. `sam_lightning.training.run_spec.build_run` makes all
of a run's specs from its composed config; the method (ERM or a SAM variant, `sam_lightning.variants`)
is built from conf/train/method/ by its `_target_`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """A user mistake: a setting, a path or a file that cannot be used as given. The message is one
    line that names the key (or file) and what it accepts; every entry point exits with status 2."""


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_int(key: str, value, minimum: int, why: str = "") -> None:
    if not is_int(value) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}{why}")


def require_bool(key: str, value, words: Iterable[str] = ()) -> None:
    """true or false, or one of `words`. A word Hydra does not read as a boolean (`off`, `no`) stays
    a string, and any non-empty string is true in Python: the option would silently stay on."""
    words = tuple(words)
    if isinstance(value, bool) or value in words:
        return
    extra = "".join(f" or {w}" for w in words)
    raise ConfigError(f"{key}={value!r}: must be true or false{extra}")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """ "; did you mean X?" for the known word closest to a typo (difflib), else ""."""
    close = difflib.get_close_matches(str(word), sorted(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _accepts(annotation, value) -> bool:
    """Whether `value` fits a field annotation (int, float, bool, str, X | None). A float field takes
    an int (rho=1); no numeric field takes a bool or a string ('abc' is not a radius)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return is_number(value)
    if annotation is int:
        return is_int(value)
    if annotation in (bool, str):
        return isinstance(value, annotation)
    return True  # anything else is the dataclass's own business


def from_mapping(cls, section: str, values: Mapping):
    """`cls(**values)`, after `check_fields`."""
    check_fields(cls, section, values)
    return cls(**dict(values))


def check_keys(section: str, values: Mapping, known: Iterable[str]) -> None:
    """A one-line error naming the first key of `values` that is not `known` (a key no code reads,
    e.g. one added with +, would be silently ignored), with the known key closest to it. `section`:
    the dotted path of `values` ("" at the top level)."""
    known = set(known)
    unknown = sorted(set(values) - known)
    if unknown:
        key = f"{section}.{unknown[0]}" if section else unknown[0]
        raise ConfigError(f"unknown key {key}{did_you_mean(unknown[0], known)} (known: {', '.join(sorted(known))})")


def check_fields(cls, section: str, values: Mapping) -> None:
    """A one-line error naming any key that is not a field of the dataclass `cls`, or a value of the
    wrong type (so that e.g. method.rho=abc is refused here, not met as a TypeError deep in a comparison)."""
    check_keys(section, values, (f.name for f in fields(cls)))
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _accepts(hints[key], value):
            wanted = " or ".join(getattr(a, "__name__", str(a)) for a in (typing.get_args(hints[key]) or (hints[key],)))
            raise ConfigError(
                f"{section}.{key}={value!r} is not a valid value: expected {wanted.replace('NoneType', 'null')}"
            )


SCHEDULES = ("piecewise", "cosine", "constant")
L2_MODES = ("loss", "weight_decay")
NORMS = ("batch", "group")


@dataclass(frozen=True)
class ModelSpec:
    """The backbone: `build_model(num_classes=..., **asdict(spec))`.

    norm: batch | group (set by the `norm` config group); gn_groups: GroupNorm groups, None = the
    paper's code's value (`models.preact_resnet.paper_gn_groups`: width // 2), and must divide the
    width. init: paper (the paper's code: Kaiming-normal convolutions, fan_out) | torch (PyTorch's defaults).
    """

    arch: str = "preact_resnet18"
    width: int = 64
    norm: str = "batch"
    gn_groups: int | None = None
    init: str = "paper"

    def __post_init__(self) -> None:
        from sam_lightning.models.preact_resnet import ARCHITECTURES, INITS, paper_gn_groups

        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"model.arch={self.arch!r}: must be one of {', '.join(sorted(ARCHITECTURES))}")
        require_int("model.width", self.width, 1)
        if self.norm not in NORMS:
            raise ConfigError(f"model.norm={self.norm!r}: must be one of {', '.join(NORMS)} (norm=batch, norm=group)")
        if self.init not in INITS:
            raise ConfigError(f"model.init={self.init!r}: must be one of {', '.join(INITS)}")
        if self.gn_groups is None:
            object.__setattr__(self, "gn_groups", paper_gn_groups(self.width))
        if not is_int(self.gn_groups) or self.gn_groups < 1 or (self.norm == "group" and self.width % self.gn_groups):
            raise ConfigError(
                f"model.gn_groups={self.gn_groups!r}: must be a positive divisor of model.width={self.width}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping) -> ModelSpec:
        return from_mapping(cls, "model", values)


@dataclass(frozen=True)
class OptimSpec:
    """SGD with momentum, L2 regularization and an epoch-wise learning-rate schedule.

    l2_mode=loss adds 0.5 * l2 * ||w||^2 to the loss (the paper's code: it enters the SAM ascent
    gradient too); l2_mode=weight_decay passes l2 to SGD's weight_decay instead (decoupled from
    the perturbation). schedule: piecewise (x0.1 at 50% and 75% of the epochs), cosine, constant.
    grad_clip: clip the final descent gradient (the one the optimizer steps with, after the SAM
    step) to this l2 norm; None: no clipping.
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    l2: float = 5e-4
    l2_mode: str = "loss"
    schedule: str = "piecewise"
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.grad_clip is not None and not (is_number(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"optim.grad_clip={self.grad_clip!r}: must be a number > 0, or null for no clipping")
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
