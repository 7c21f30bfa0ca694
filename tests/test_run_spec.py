"""build_run: a training run's typed specs, made once from the composed config, with the dependent
defaults derived in one place."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import TINY, compose_config
from torch import nn

from sam_lightning.data import DataSpec
from sam_lightning.models import build_model
from sam_lightning.models.preact_resnet import paper_gn_groups
from sam_lightning.settings import config
from sam_lightning.settings.config import ConfigError, ModelSpec, OptimSpec
from sam_lightning.settings.fingerprint import fingerprint
from sam_lightning.training.run_spec import RunSpec, build_run
from sam_lightning.variants import SAM


def run_of(tmp_path, *overrides: str) -> RunSpec:
    return build_run(compose_config([*TINY, f"paths.output_dir={tmp_path / 'run'}", *overrides]))


def test_build_run_makes_every_spec_and_the_run_level_values(tmp_path):
    cfg = compose_config([*TINY, f"paths.output_dir={tmp_path / 'run'}", "cpu_threads=1"])
    run = build_run(cfg)
    assert isinstance(run.model, ModelSpec) and isinstance(run.optim, OptimSpec) and isinstance(run.data, DataSpec)
    assert isinstance(run.method, SAM) and run.method.m == 32
    assert (run.model.width, run.data.name, run.data.batch_size, run.data.n_train) == (4, "synthetic", 128, 256)
    assert run.trainer.max_epochs == 1 and run.trainer.world_size == 1 and not run.trainer.on_gpu
    assert list(run.logging.entries) == ["csv"] and run.seed == 0 and run.threads == 1 and run.num_classes == 10
    assert run.channels_last is False  # channels_last=auto on a CPU run
    assert run.output_dir == tmp_path / "run" and run.ckpt_path is None and run.init_from is None
    # the resolved config, as results.json records it: the variant's name, the selection metric
    assert run.config["method"]["name"] == "sam" and cfg.method.name == "sam"
    assert run.config["checkpoint"]["monitor"] == run.selection_metric == "test/error"
    assert run.config["callbacks"]["best_checkpoint"]["monitor"] == "test/error"
    assert run.fingerprint == fingerprint(run.config) and run.fingerprint["method.name"] == "sam"


def test_the_selection_metric_follows_the_validation_split(tmp_path):
    run = run_of(tmp_path, "data.val_fraction=0.25", "data.batch_size=32")
    assert run.selection_metric == "val/error"
    monitors = {type(c).__name__ + str(getattr(c, "monitor", None)) for c in run.trainer.callbacks}
    assert "ModelCheckpointval/error" in monitors
    assert run_of(tmp_path, "checkpoint.monitor=train/error").selection_metric == "train/error"


def test_group_norm_groups_have_one_default_read_everywhere():
    # the paper's code: width // 2; the spec, the model and the bench read the same value
    spec = ModelSpec(width=16, norm="group")
    assert spec.gn_groups == paper_gn_groups(16) == 8
    groups = {
        m.num_groups
        for m in build_model("preact_resnet18", 10, width=16, norm="group").modules()
        if isinstance(m, nn.GroupNorm)
    }
    assert groups == {8}
    assert (
        build_model(num_classes=10, **asdict(spec)).state_dict().keys()
        == build_model("preact_resnet18", 10, width=16, norm="group").state_dict().keys()
    )


def test_data_spec_checks_its_values_once_and_reads_older_configs():
    with pytest.raises(ConfigError, match="unknown key data.batch_sise; did you mean batch_size"):
        DataSpec.from_mapping({"name": "synthetic", "batch_sise": 3})
    with pytest.raises(ConfigError, match=r"data.train_fraction=0: must be in \(0, 1\]"):
        DataSpec(name="synthetic", n_train=8, n_test=8, num_classes=2, train_fraction=0)
    # a data config recorded before `standardize` existed: those runs standardized their inputs
    assert DataSpec.from_mapping({"name": "cifar10", "root": "data", "download": False}).standardize is True
    assert (
        DataSpec(
            name="synthetic", n_train=100, n_test=8, num_classes=2, train_fraction=0.5, val_fraction=0.2
        ).check_sizes(100)
        == 40
    )


def user_error_classes() -> list[type]:
    """Every exception class defined in sam_lightning."""
    found = set()
    package = Path(config.__file__).parents[1]  # this tree's (a namespace package spans every install)
    for info in pkgutil.walk_packages([str(package)], "sam_lightning."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("sam_lightning"):
                found.add(obj)
    return sorted(found, key=lambda c: c.__qualname__)


def test_one_error_type_for_user_mistakes():
    """Every error class of the project is ConfigError or a subclass of it, except those of runs
    that failed (TrainingDiverged: exit 1) or were stopped (Preempted: exit 143)."""
    others = [c.__name__ for c in user_error_classes() if not issubclass(c, ConfigError)]
    assert sorted(others) == ["Preempted", "TrainingDiverged"]
