"""The theory presets hold the paper's settings: every value of docs/paper_settings_theory.yaml.

Each figure's presets are composed with Hydra's compose API (as tests/test_theory.py composes them)
and compared with the table, radii after the one documented map (`rho_from_paper_code`).

    .venv/bin/python -m pytest tests/ -k paper_settings -q
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sam_lightning.theory import relu_1d
from sam_lightning.theory.spec import rho_from_paper_code
from sam_lightning.theory.units import in_project_units

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "theory"
TABLE = yaml.safe_load((ROOT / "docs" / "paper_settings_theory.yaml").read_text())["figures"]

# table key -> the composed config's key, compared as they are
PLAIN = {
    "d": "data.d",
    "n": "data.n",
    "kappa": "data.kappa",
    "draw": "data.source",
    "alpha": "train.alpha",
    "step_size": "train.lr",
    "iterations": "train.iterations",
    "batch_size": "train.batch_size",
    "switch_at": "switch.at",
    "normalize": "method.normalize",
}
SPECIAL = {"rho", "rho_after_switch", "rho_grid", "same_rho", "methods", "relu", "x", "y"}
ABOUT = {"section", "sources", "presets"}  # where the values come from, and what runs them


def composed(overrides: list[str]):
    return _composed(tuple(overrides))


@functools.cache  # read only here; each figure's presets are read for every key of the table
def _composed(overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="theory", overrides=list(overrides), return_hydra_config=True)


def value(cfg, key: str):
    """The value a run of the composed preset uses: step sizes and radii as `in_project_units` turns them into numbers."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("hydra", "paths")])
    return OmegaConf.select(OmegaConf.create(in_project_units(OmegaConf.to_container(job, resolve=True))), key)


def in_paper_units(cfg, node: str = "method") -> float:
    """method.rho (or switch.to.rho) as the paper would state it: the inverse of rho_from_paper_code."""
    rho, m = value(cfg, f"{node}.rho"), value(cfg, f"{node}.m")
    return rho if cfg.problem != "diag_net" else rho / rho_from_paper_code(1.0, m)


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12)
    return a == b


CASES = [(fig, key) for fig, entry in TABLE.items() for key, v in entry.items() if key not in ABOUT and v is not None]


def test_paper_settings_table_names_only_known_keys_and_composable_presets():
    for fig, entry in TABLE.items():
        unknown = set(entry) - set(PLAIN) - SPECIAL - ABOUT
        assert not unknown, (fig, unknown)
        assert {"section", "sources", "presets", "methods"} <= set(entry), fig
        for overrides in entry["presets"].values():
            composed(overrides)


@pytest.mark.parametrize("figure,key", CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_paper_settings_match_the_presets(figure, key):
    entry = TABLE[figure]
    stated, presets = entry[key], entry["presets"]
    if key == "methods":
        assert list(presets) == stated
    elif key in PLAIN:
        for method, overrides in presets.items():
            assert same(value(composed(overrides), PLAIN[key]), stated), (method, key)
    elif key in ("rho", "rho_after_switch"):
        node = "method" if key == "rho" else "switch.to"
        for method, rho in stated.items():
            assert same(in_paper_units(composed(presets[method]), node), rho), (method, key)
    elif key == "rho_grid":
        for method, grid in stated.items():
            cfg = composed(presets[method])
            swept = [float(r) for r in str(cfg.hydra.sweeper.params["method.rho"]).split(",")]
            m = value(cfg, "method.m")
            assert swept == pytest.approx([rho_from_paper_code(r, m) for r in grid], rel=1e-12), method
    elif key == "same_rho":
        radii = {method: in_paper_units(composed(presets[method])) for method in ("n-SAM", "1-SAM")}
        assert same(radii["n-SAM"], radii["1-SAM"]) == stated, radii
    elif key == "relu":
        for method, overrides in presets.items():
            cfg = composed(overrides)
            for name, v in stated.items():
                assert same(value(cfg, f"relu.{name}"), v), (method, name)
    elif key in ("x", "y"):
        assert list(getattr(relu_1d, f"{key.upper()}_TRAIN")) == pytest.approx(stated, abs=1e-12)
    else:
        raise AssertionError(f"no check for {figure}.{key}")
