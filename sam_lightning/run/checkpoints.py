"""Checkpoints written by `train.py`, opened for analysis: weights only, architecture checked.

    ckpt = load_checkpoint("outputs/.../checkpoints/last.ckpt")   # ConfigError on bad input
    model = ckpt.build_backbone("cpu")                            # weights loaded, eval mode
    data = data_spec_for(ckpt)                                    # the data the run trained on (a DataSpec)

A checkpoint is the Lightning file of `SAMClassifier`: `hyper_parameters` says how to build the
backbone (`model`, a `ModelSpec`: arch, width, norm, gn_groups, init; `num_classes`), `state_dict`
holds its weights under `backbone.`. Nothing else in the file is used, and nothing in it is
executed: it is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from sam_lightning.data.spec import DataSpec
from sam_lightning.models import build_model
from sam_lightning.run.jsonio import RESULTS_FILE
from sam_lightning.run.run_dir import CHECKPOINT_DIR, HYDRA_DIR
from sam_lightning.settings.config import ConfigError, ModelSpec
from sam_lightning.settings.fingerprint import first_difference

PREFIX = "backbone."


@dataclass
class SavedCheckpoint:
    path: Path
    model: ModelSpec
    num_classes: int
    method: dict
    state_dict: dict[str, Tensor]  # the backbone's, without the "backbone." prefix
    epoch: int | None = None
    global_step: int | None = None
    max_epochs: int | None = None  # the run's planned length (its LR schedule and switch epoch follow it)
    fingerprint: dict | None = (
        None  # what defines the run (sam_lightning/settings/fingerprint.py); None in older checkpoints
    )

    @property
    def architecture(self) -> dict:
        return architecture_of(self.model, self.num_classes)

    @property
    def run_dir(self) -> Path | None:
        """train.py writes `<run dir>/checkpoints/*.ckpt`; None for a file kept anywhere else."""
        return self.path.parent.parent if self.path.parent.name == CHECKPOINT_DIR else None

    def default_label(self) -> str:
        from sam_lightning.run.naming import uses_rho

        m = self.method
        what = m.get("name", "?")
        if uses_rho(m):  # its rho and chunk size: what tells its checkpoints from another run's
            what += f" rho={m.get('rho')} m={m.get('m') or 'B'}"
        where = f"{self.run_dir.name}/{self.path.stem}" if self.run_dir else self.path.stem
        return f"{what} ({where})"

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "architecture": self.architecture,
            "method": self.method,
            "epoch": self.epoch,
            "global_step": self.global_step,
        }

    def build_backbone(self, device: torch.device | str = "cpu") -> nn.Module:
        model = build_model(num_classes=self.num_classes, **asdict(self.model))
        model.load_state_dict(self.state_dict, strict=True)
        return model.to(device).eval()


def architecture_of(model: ModelSpec, num_classes: int) -> dict:
    """What decides the shapes of the weights of `build_model(num_classes, **asdict(model))`
    (gn_groups only matters with GroupNorm)."""
    arch = {"arch": model.arch, "width": model.width, "norm": model.norm, "num_classes": num_classes}
    if model.norm == "group":
        arch["gn_groups"] = model.gn_groups
    return arch


def _arch_text(arch: Mapping) -> str:
    return " ".join(f"{k}={v}" for k, v in arch.items())


def _mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    """One line saying how `state` differs from `model`'s state dict, or None if it fits."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{name}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or None


def _load_error(err: BaseException) -> str:
    """torch.load's error in a few words, without its advice to retry with weights_only=False: that
    would run whatever code an untrusted file holds."""
    text = " ".join(str(err).split())
    if "weights_only" in text or "Weights only load failed" in text:
        unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        return (
            f"it holds {unsupported.group(1)}, not only tensors"
            if unsupported
            else "it holds objects other than tensors"
        )
    return text.split(". ")[0] if text else type(err).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> SavedCheckpoint:
    """Read a train.py checkpoint with `weights_only=True` and check its weights fit its hyper-parameters."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint file")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling raises many types; all mean "not usable"
        raise ConfigError(
            f"{path}: cannot be read as a weights-only checkpoint ({_load_error(err)}); "
            "it is not a checkpoint written by train.py, or it holds more than tensors and numbers"
        ) from err
    hparams = raw.get("hyper_parameters") if isinstance(raw, dict) else None
    if (
        not isinstance(hparams, dict)
        or not isinstance(hparams.get("model"), dict)
        or not isinstance(raw.get("state_dict"), dict)
    ):
        raise ConfigError(
            f"{path}: not a checkpoint written by train.py (needs hyper_parameters.model, num_classes and state_dict)"
        )
    state = {k[len(PREFIX) :]: v for k, v in raw["state_dict"].items() if k.startswith(PREFIX)}
    if not state:
        raise ConfigError(f"{path}: its state_dict holds no '{PREFIX}*' weights")
    try:
        model = ModelSpec.from_mapping(hparams["model"])
    except ConfigError as err:
        raise ConfigError(f"{path}: cannot build its model ({err})") from err
    ckpt = SavedCheckpoint(
        path=path,
        model=model,
        num_classes=int(hparams.get("num_classes", 0)),
        method=dict(hparams.get("method") or {}),
        state_dict=state,
        epoch=raw.get("epoch"),
        global_step=raw.get("global_step"),
        max_epochs=hparams.get("max_epochs"),
        fingerprint=hparams.get("fingerprint"),
    )
    problem = _mismatch(build_model(num_classes=ckpt.num_classes, **asdict(model)), state)
    if problem:
        raise ConfigError(f"{path}: weights do not match its architecture {_arch_text(ckpt.architecture)}: {problem}")
    return ckpt


def load_for_model(path: str | Path, key: str, model: ModelSpec, num_classes: int) -> SavedCheckpoint:
    """The checkpoint given as `key`=path (init_from, ckpt_path), checked against the configured
    model before Lightning opens it: a missing, unreadable or foreign file, or weights of another
    shape, is one ConfigError line naming the setting and the file."""
    try:
        ckpt = load_checkpoint(path)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from err
    expected = architecture_of(model, num_classes)
    if ckpt.architecture != expected:
        raise ConfigError(
            f"{key}={path} holds a model {_arch_text(ckpt.architecture)}, the configured model is {_arch_text(expected)}"
        )
    return ckpt


def load_for_resume(
    path: str | Path, model: ModelSpec, num_classes: int, max_epochs: int, fingerprint: Mapping
) -> SavedCheckpoint:
    """ckpt_path: the checks of `load_for_model`, the same planned length and the same experiment.
    The LR schedule and the ERM->SAM switch epoch are fractions of trainer.max_epochs: resuming with
    another value would silently give another run, so it is refused; training longer is a new run.
    Checkpoints older than the fingerprint or the planned length skip those checks."""
    ckpt = load_for_model(path, "ckpt_path", model, num_classes)
    planned = ckpt.max_epochs
    if planned is not None and planned != max_epochs:
        raise ConfigError(
            f"ckpt_path={path} is a run planned for trainer.max_epochs={planned} (its LR schedule and switch epoch follow it), "
            f"not {max_epochs}: resume with trainer.max_epochs={planned}, or train longer on purpose "
            f"as a new run from its weights: init_from={path} trainer.max_epochs={max_epochs}"
        )
    if ckpt.fingerprint is not None and (diff := first_difference(ckpt.fingerprint, fingerprint)):
        raise ConfigError(
            f"ckpt_path={path} is another experiment ({diff}): resume it with its own settings, "
            f"or start a new run from its weights with init_from={path}"
        )
    return ckpt


def require_same_architecture(a: SavedCheckpoint, b: SavedCheckpoint) -> None:
    """Weights of two checkpoints can only be mixed if every tensor has the same meaning and shape."""
    if a.architecture != b.architecture:
        raise ConfigError(
            f"{b.path} has another architecture than {a.path}: {_arch_text(b.architecture)} vs {_arch_text(a.architecture)}"
        )


def run_config(ckpt: SavedCheckpoint) -> dict | None:
    """The resolved config of the run that wrote `ckpt` (results.json, else .hydra/config.yaml)."""
    run_dir = ckpt.run_dir
    if run_dir is None:
        return None
    results = run_dir / RESULTS_FILE
    if results.is_file():
        try:
            config = json.loads(results.read_text()).get("config")
        except (OSError, json.JSONDecodeError):
            config = None
        if isinstance(config, dict):
            return config
    hydra_config = run_dir / HYDRA_DIR / "config.yaml"
    if hydra_config.is_file():
        return OmegaConf.to_container(OmegaConf.load(hydra_config), resolve=True)
    return None


def data_spec_for(ckpt: SavedCheckpoint, override: Mapping | None = None) -> DataSpec:
    """The data the run trained on (its recorded data config), with the keys of `override` on top:
    a whole data option (data=cifar10), or keys given alone (data.root=...; the analysis configs'
    null keys are not given)."""
    given = dict(override or {})
    if given.get("name") is None:  # no data option chosen: only the keys set on the command line
        given = {k: v for k, v in given.items() if v is not None}
    merged = {**((run_config(ckpt) or {}).get("data") or {}), **given}
    if merged.get("name") is None:
        raise ConfigError(
            f"{ckpt.path}: no run config found next to it (results.json two folders up); choose the data with data=cifar10 (or another conf/train/data option)"
        )
    data = DataSpec.from_mapping(merged)
    if data.num_classes not in (None, ckpt.num_classes):
        raise ConfigError(
            f"{ckpt.path}: the model has {ckpt.num_classes} classes but data {data.name} has {data.num_classes}"
        )
    return data
