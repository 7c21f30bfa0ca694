"""Every preset composes with every data and model choice, and the paper's pairings hold."""

from __future__ import annotations

import pytest
from conftest import CONF, compose_config
from omegaconf import OmegaConf

from sam_lightning.cli import instantiate_method
from sam_lightning.config import ModelSpec, OptimSpec

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONF / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_composes_with_every_data(method, data):
    cfg = compose_config([f"method={method}", f"data={data}", "data.root=/tmp"])
    instantiate_method(cfg.method).check_batch_size(cfg.data.batch_size)
    OptimSpec.from_mapping(cfg.optim)
    ModelSpec.from_mapping(cfg.model)
    OmegaConf.to_container(cfg.method, resolve=True)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", DATA)
def test_every_data_composes_with_every_model(data, model):
    # a method never sets model keys: the data-model pairing is checked once, not once per method
    cfg = compose_config([f"data={data}", f"model={model}", "data.root=/tmp"])
    assert cfg.model.arch == model
    ModelSpec.from_mapping(cfg.model)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_trainer_composes(experiment):
    for trainer in TRAINERS:
        cfg = compose_config([f"experiment={experiment}", f"trainer={trainer}", "data.root=/tmp"])
        instantiate_method(cfg.method).check_batch_size(cfg.data.batch_size)
        ModelSpec.from_mapping(cfg.model)


def test_paper_pairing_and_presets():
    cfg = compose_config(["method=sam_m128", "data=cifar100", "trainer.devices=1"])
    assert (cfg.method.m, cfg.data.name, cfg.model.arch) == (128, "cifar100", "preact_resnet34")
    assert compose_config(["data=cifar10"]).model.arch == "preact_resnet18"
    assert compose_config(["data=cifar100", "model=preact_resnet18"]).model.arch == "preact_resnet18"
    default = compose_config([])
    assert (default.method._target_, default.method.rho, default.method.normalize) == (
        "sam_lightning.variants.SAM",
        0.1,
        True,
    )
    assert (default.optim.lr, default.optim.momentum, default.optim.l2) == (0.1, 0.9, 5e-4)
    assert (default.data.batch_size, default.trainer.max_epochs, default.model.width) == (128, 200, 64)
    assert default.optim.schedule == "piecewise" and default.optim.l2_mode == "loss"
    assert compose_config(["method=sam_const"]).method.normalize is False
    assert instantiate_method(compose_config(["method=erm"]).method).name == "erm"
    assert set(compose_config(["method=erm"]).method) == {"_target_", "rho"}  # only its own keys
    assert (default.model.norm, compose_config(["norm=group"]).model.norm) == ("batch", "group")
    assert ModelSpec.from_mapping(compose_config(["norm=group", "model.width=16"]).model).gn_groups == 8
    gpu = compose_config(["trainer=gpu"]).trainer
    assert gpu.precision == "bf16-mixed"
    assert compose_config(["trainer=ddp"]).trainer.strategy == "ddp"


def test_train_help_lists_exactly_the_training_groups(capfd, monkeypatch):
    from helpers import run_entry

    assert run_entry("train", ["--help"], monkeypatch) == 0
    out = capfd.readouterr().out
    groups = out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0].strip() for line in groups.splitlines() if ": " in line}
    expected = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}
    assert listed == expected and {"method", "norm", "data", "model"} <= listed and not listed & {"analysis", "theory"}
