"""Every preset composes with every data and model choice, and the paper's pairings hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONF, compose_config
from omegaconf import OmegaConf

from sam_lightning.entry import instantiate_method
from sam_lightning.settings.config import ModelSpec, OptimSpec

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem != "default")  # default: the data's
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
    assert compose_config(["data=synthetic"]).model.arch == "preact_resnet18"
    assert compose_config(["experiment=smoke", "data=cifar100"]).model.arch == "preact_resnet18"  # the preset's model
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


def test_trainer_node_lists_real_lightning_arguments_with_lightnings_defaults():
    """conf/train/trainer/default.yaml: each key a pl.Trainer argument, at Lightning's default unless its line says "here"."""
    import inspect
    import re

    import pytorch_lightning as pl

    params = inspect.signature(pl.Trainer.__init__).parameters
    lines = (CONF / "trainer" / "default.yaml").read_text().splitlines()
    listed = OmegaConf.load(CONF / "trainer" / "default.yaml")
    ours = {m.group(1) for line in lines if (m := re.match(r"(\w+):.*# here\b", line))}
    assert set(listed) <= set(params) - {"self", "logger", "callbacks", "default_root_dir"}, set(listed) - set(params)
    assert ours <= set(listed) and "max_epochs" in ours
    assert {k: v for k, v in listed.items() if k not in ours} == {k: params[k].default for k in listed if k not in ours}
    assert {k for k in ours if listed[k] == params[k].default} == set()  # "here" only where it differs


def test_unknown_trainer_arguments_are_refused_naming_the_one_meant():
    from hydra.errors import ConfigCompositionException

    from sam_lightning.settings.config import ConfigError
    from sam_lightning.training.run_spec import TrainerSpec, check_trainer_overrides

    def spec(*overrides):
        return TrainerSpec(args=OmegaConf.to_container(compose_config(list(overrides)).trainer))

    with pytest.raises(ConfigCompositionException):  # not listed: Hydra refuses it without `+`
        compose_config(["trainer.max_epoch=3"])
    with pytest.raises(ConfigError, match="trainer.max_epoch is not a pl.Trainer argument; did you mean max_epochs"):
        check_trainer_overrides(["experiment=smoke", "trainer.max_epoch=3"])  # train.py, before Hydra
    with pytest.raises(ConfigError, match="did you mean max_epochs"):
        spec("+trainer.max_epoch=3")
    check_trainer_overrides(["trainer.max_epochs=3", "trainer=gpu", "+trainer.max_time=00:01:00:00"])
    spec("trainer.detect_anomaly=true", "+trainer.enable_checkpointing=false")


def test_train_help_lists_exactly_the_training_groups(capfd, monkeypatch):
    from helpers import run_entry

    assert run_entry("train", ["--help"], monkeypatch) == 0
    out = capfd.readouterr().out
    groups = out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0].strip() for line in groups.splitlines() if ": " in line}
    expected = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}
    assert listed == expected and {"method", "norm", "data", "model"} <= listed and not listed & {"analysis", "theory"}


def test_local_settings_compose_when_present_and_are_optional(tmp_path, monkeypatch):
    """conf/train/local/default.yaml (git-ignored) holds one machine's settings; a fresh clone has none."""
    import shutil

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam_lightning.training.loggers import logger_entries

    monkeypatch.delenv("SAM_DATA_ROOT", raising=False)
    tree = tmp_path / "train"
    shutil.copytree(CONF, tree, ignore=lambda folder, names: ["default.yaml"] if folder.endswith("local") else [])

    def composed(*overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(tree), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    fresh = composed()  # no local file: the defaults entry is optional
    assert fresh.cpu_threads == "auto" and Path(fresh.data.root) == Path("data") and fresh.logger.wandb.entity is None
    (tree / "local" / "default.yaml").write_text(
        "# @package _global_\ndata:\n  root: /datasets/here\ncpu_threads: 3\nlogger:\n  wandb:\n    entity: team\n"
    )
    here = composed("experiment=laptop", "data=cifar10")
    assert (here.data.root, here.cpu_threads, here.logger.wandb.entity) == ("/datasets/here", 3, "team")
    assert list(here.logger) == ["csv", "wandb"]  # the preset's csv; the W&B setting is kept but not a logger
    assert [name for name, _, _ in logger_entries(here.logger)] == ["csv"]
    assert composed("data.root=/elsewhere").data.root == "/elsewhere"  # the command line still wins
    example = composed("local=example")
    assert example.data.root == "/datasets/cifar" and example.cpu_threads == 8


def _method_parent(name: str) -> str | None:
    """The method YAML that conf/train/method/<name>.yaml starts from (its defaults list), if any."""
    own = OmegaConf.load(CONF / "method" / f"{name}.yaml")
    parents = [d for d in (own.get("defaults") or []) if d != "_self_"]
    return str(parents[0]) if parents else None


@pytest.mark.parametrize("method", METHODS)
def test_each_method_default_has_one_home(method):
    """A method's default lives in its dataclass (code builds methods without a config: SAM(m=4)) or
    in the YAML (the only place a config run reads it), not in both with two values. The YAML lists
    every setting of its class (Hydra accepts method.<key>=... only for a key it has); the YAML that
    introduces a class (its `_target_` is not its parent's) states each dataclass default as it is;
    a preset that starts from another YAML of the same class states only what it changes."""
    import dataclasses

    from hydra.utils import get_class

    node = compose_config([f"method={method}"]).method
    values = OmegaConf.to_container(node, resolve=True)
    cls = get_class(values["_target_"])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(values) - {"_target_"} == set(fields), f"{method}.yaml must list exactly {cls.__name__}'s settings"
    parent = _method_parent(method)
    before = OmegaConf.to_container(compose_config([f"method={parent}"]).method) if parent else {}
    if before.get("_target_") != values["_target_"]:  # introduces the class: no default stated twice apart
        for name, f in fields.items():
            if f.default is not dataclasses.MISSING:
                assert values[name] == f.default and type(values[name]) is type(f.default), (
                    f"{method}.yaml: {name}={values[name]!r} contradicts {cls.__name__}'s default {f.default!r}"
                )
    else:  # a preset of its parent's class: only its choices
        own = OmegaConf.to_container(OmegaConf.load(CONF / "method" / f"{method}.yaml"))
        same = [k for k, v in own.items() if k != "defaults" and before.get(k) == v]
        assert not same, f"{method}.yaml restates what {parent}.yaml sets: {same}"


def test_job_folders_leave_out_exactly_the_bookkeeping_keys():
    # Hydra names multirun job folders by their overrides minus exclude_keys (exact keys, no
    # prefixes): those must be what sam_lightning/settings/fingerprint.py calls bookkeeping.
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam_lightning.settings.fingerprint import BOOKKEEPING, is_bookkeeping

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        excluded = compose(config_name="train", return_hydra_config=True).hydra.job.config.override_dirname.exclude_keys
    assert [k for k in excluded if not is_bookkeeping(k)] == []
    assert [k for k in BOOKKEEPING if k not in excluded] == []


def test_checkpoint_callbacks_write_where_the_run_folder_layout_says():
    # The layout's one home is sam_lightning/run/run_dir.py; the callback YAMLs must agree with it.
    from sam_lightning.run.run_dir import CHECKPOINT_DIR, LAST_CHECKPOINT

    callbacks = OmegaConf.to_container(
        compose_config(["callbacks=[default,early_stopping,lr_monitor]"]).callbacks, resolve=False
    )
    saving = {k: v for k, v in callbacks.items() if v and str(v["_target_"]).endswith(".ModelCheckpoint")}
    assert len(saving) == 3
    assert {v["dirpath"] for v in saving.values()} == {"${paths.output_dir}/" + CHECKPOINT_DIR}
    assert saving["last_checkpoint"]["filename"] + ".ckpt" == LAST_CHECKPOINT
