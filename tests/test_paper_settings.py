"""Every paper preset (conf/train/experiment/fig*.yaml) against the paper's own settings
(docs/paper_settings.yaml): composed as a user's `python train.py -m experiment=<figure>` composes
it, each method of its grid on its own."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml
from conftest import CONF, ROOT, compose_config
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

TABLE = yaml.safe_load((ROOT / "docs" / "paper_settings.yaml").read_text())
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("fig*.yaml"))

# table key -> the composed config's key
KEYS = {
    "data": "data.name",
    "model": "model.arch",
    "width": "model.width",
    "norm": "model.norm",
    "batch_size": "data.batch_size",
    "epochs": "trainer.max_epochs",
    "lr": "optim.lr",
    "momentum": "optim.momentum",
    "l2": "optim.l2",
    "schedule": "optim.schedule",
    "augment": "data.augment",
    "label_noise": "data.label_noise",
    "val_fraction": "data.val_fraction",
    "standardize": "data.standardize",
    "init": "model.init",
    "sigma": "method.sigma",
    "ascent_steps": "method.ascent_steps",
    "rho_schedule": "method.rho_schedule",
}


@functools.cache
def sweep_params(preset: str) -> dict[str, list]:
    """The preset's grid as `-m experiment=<preset>` sweeps it (its own and its defaults', e.g. the
    rho grid of stage 1): hydra.sweeper.params as lists of YAML values."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        node = compose(config_name="train", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = OmegaConf.select(node, "hydra.sweeper.params") or {}
    return {k: [yaml.safe_load(v) for v in str(value).split(",")] for k, value in params.items()}


def settings(figure: str) -> dict:
    return {**{k: v for k, v in TABLE["defaults"].items()}, **TABLE["figures"][figure]}


def test_paper_settings_table_covers_every_paper_preset():
    assert sorted(TABLE["figures"]) == PRESETS
    unknown = (
        {k for fig in TABLE["figures"] for k in TABLE["figures"][fig]}
        - set(KEYS)
        - {"source", "methods", "rho", "m", "rho_grid"}
    )
    assert not unknown, f"table keys the test does not check: {unknown}"


@functools.cache  # read only: each method's radius and chunk size come from one composition
def preset_with(figure: str, method: str):
    return compose_config([f"experiment={figure}", f"method={method}"])


@pytest.mark.parametrize("figure", PRESETS)
def test_paper_settings_of_each_preset_match_the_paper(figure):
    want, grid = settings(figure), sweep_params(figure)
    base = compose_config([f"experiment={figure}"])
    methods = grid.get("method") or [base.method.get("name") or Path(base.method._target_).suffix[1:].lower()]
    assert sorted(map(str, methods)) == sorted(want["methods"]), "methods"
    for key, path in KEYS.items():
        if key not in want or want[key] is None:
            continue
        if path in grid:  # swept: the grid is the paper's
            assert grid[path] == (want[key] if isinstance(want[key], list) else [want[key]]), (
                f"{key}: swept {grid[path]}"
            )
            continue
        if path.startswith("method.") and key not in TABLE["figures"][figure]:
            continue  # a method setting only where the figure states it
        assert OmegaConf.select(base, path) == want[key], (
            f"{key} ({path}) = {OmegaConf.select(base, path)!r}, the paper: {want[key]!r}"
        )
    # Per-method radii and chunk sizes, each method composed on its own as the sweep composes it.
    for key in ("rho", "m"):
        for method, value in (want.get(key) or {}).items():
            path = f"method.{key}"
            composed = OmegaConf.select(preset_with(figure, method), path)
            if path in grid:  # a list must be the grid; a value must be one of the grid's
                assert (grid[path] == value) if isinstance(value, list) else (value in grid[path]), (
                    f"{method}: {key} grid {grid[path]}, the paper: {value}"
                )
            else:
                assert composed == value, f"{method}: {key} = {composed}, the paper: {value}"


def test_paper_settings_rho_grid_is_the_sweep_preset():
    assert sweep_params_of("sweep", "rho_grid")["method.rho"] == TABLE["defaults"]["rho_grid"]


def sweep_params_of(group: str, name: str) -> dict[str, list]:
    node = OmegaConf.load(CONF / group / f"{name}.yaml")
    return {k: [yaml.safe_load(v) for v in str(value).split(",")] for k, value in node.hydra.sweeper.params.items()}


def test_paper_settings_defaults_hold_for_a_plain_run():
    # `python train.py` with no preset is App. D's CIFAR-10 run (the validation split is the presets').
    cfg = compose_config([])
    want = TABLE["defaults"]
    for key, path in KEYS.items():
        if key in want and key != "val_fraction":
            assert OmegaConf.select(cfg, path) == want[key], key


def test_paper_settings_init_is_kaiming_fan_out_and_torch_init_is_pytorchs_default():
    import math

    import torch
    from torch import nn

    from sam_lightning.models import ARCHITECTURES, PreActResNet, build_model

    torch.manual_seed(0)
    paper = build_model("preact_resnet18", 10, width=64)
    for name, conv in ((n, m) for n, m in paper.named_modules() if isinstance(m, nn.Conv2d)):
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert float(conv.weight.std()) == pytest.approx(math.sqrt(2 / fan_out), rel=0.1), name
    assert float(paper.linear.bias.abs().max()) == 0.0
    assert all(
        float(m.weight.min()) == 1.0 and float(m.bias.abs().max()) == 0.0
        for m in paper.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    # init=torch is exactly the model PyTorch's defaults give, draw for draw.
    torch.manual_seed(0)
    default = PreActResNet(ARCHITECTURES["preact_resnet18"], 10, 16)
    torch.manual_seed(0)
    torch_init = build_model("preact_resnet18", 10, width=16, init="torch")
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), torch_init.state_dict().values()))

    def conv_norm(model):  # all convolution weights as one vector
        return math.sqrt(sum(float((m.weight**2).sum()) for m in model.modules() if isinstance(m, nn.Conv2d)))

    torch.manual_seed(0)
    assert conv_norm(build_model("preact_resnet18", 10, width=16)) / conv_norm(torch_init) == pytest.approx(
        2.19, abs=0.05
    )


def test_paper_settings_inputs_are_raw_pixels_and_standardize_true_restores_the_old_ones(tmp_path):
    import torch

    from sam_lightning.data import DataSpec, load_source
    from sam_lightning.data.sources import CIFAR_STATS

    cfg = compose_config(["data=cifar10"])
    assert cfg.data.standardize is False and compose_config([]).model.init == "paper"
    raw = {"name": "synthetic", "n_train": 16, "n_test": 8, "num_classes": 2, "seed": 0, "standardize": False}
    arrays = load_source(DataSpec.from_mapping(raw))
    assert torch.equal(arrays.mean, torch.zeros(3)) and torch.equal(arrays.std, torch.ones(3))
    old = load_source(DataSpec.from_mapping({**raw, "standardize": True}))
    assert not torch.equal(old.std, torch.ones(3))
    # A data config without the key (an older run's) had standardized inputs.
    legacy = DataSpec.from_mapping({k: v for k, v in raw.items() if k != "standardize"})
    assert torch.equal(load_source(legacy).mean, old.mean)
    assert CIFAR_STATS["cifar10"][0] == (0.4914, 0.4822, 0.4465)
