"""The laptop reproduction (docs/reproduction.md): its presets, the Fig. 2 checkpoint patterns, the
sharpness table over seeds and the sweep plots the document shows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CONF, compose_config
from omegaconf import OmegaConf

from sam_lightning.analysis.sharpness import expand_checkpoints, summary_table
from sam_lightning.entry import instantiate_method
from sam_lightning.reporting import plots
from sam_lightning.reporting.cli import summarize
from sam_lightning.reporting.collect import KEY
from sam_lightning.reporting.stats import format_mean_ci, mean_ci
from sam_lightning.settings.config import ConfigError
from train import train

ROOT = Path(__file__).resolve().parents[1]

LAPTOP = {  # preset: (norm, rho, label noise, epochs, methods of the multirun)
    "laptop_fig1": ("batch", 0.05, 0.0, 20, {"erm", "random", "nsam", "sam_m128", "sam_m4"}),
    "laptop_fig12": ("batch", 0.1, 0.6, 30, {"erm", "sam"}),
    "laptop_fig16": ("group", 0.02, 0.0, 20, {"erm", "sam_m128", "sam_m4"}),
}
SOURCES = (["data=imagefolder", "data.root=/some/cifar10-jpeg"], ["data=cifar10"])


def sweep_params(preset: str) -> dict[str, list[str]]:
    params = OmegaConf.load(CONF / "experiment" / f"{preset}.yaml").hydra.sweeper.params
    return {k: str(v).split(",") for k, v in params.items()}


@pytest.mark.parametrize("preset", sorted(LAPTOP))
def test_laptop_presets_keep_their_scale_with_either_image_source(preset):
    norm, rho, noise, epochs, methods = LAPTOP[preset]
    params = sweep_params(preset)
    assert set(params["method"]) == methods and params["seed"] == ["0", "1", "2"]
    for source in SOURCES:
        for method in methods:
            cfg = compose_config([f"experiment={preset}", *source, f"method={method}"])
            assert (cfg.data.name, cfg.data.train_fraction, cfg.data.label_noise) == (source[0][5:], 0.04, noise)
            assert (cfg.model.arch, cfg.model.width, cfg.model.norm) == ("preact_resnet18", 16, norm)
            assert (cfg.trainer.accelerator, cfg.trainer.max_epochs, list(cfg.logger)) == ("cpu", epochs, ["csv"])
            variant = instantiate_method(cfg.method)
            variant.check_batch_size(cfg.data.batch_size)
            if method != "erm":
                assert variant.rho == rho


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(LAPTOP))
def test_laptop_presets_run_their_smoke_variant(preset, tmp_path):
    cfg = compose_config(
        [
            f"experiment={preset}",
            "debug=smoke",
            "data.train_fraction=1.0",
            "trainer.check_val_every_n_epoch=1",
            f"paths.output_dir={tmp_path}",
            "trainer.enable_progress_bar=false",
        ]
    )
    out = train(cfg)
    assert out["status"] == "finished" and out["final_test_error"] is not None
    if LAPTOP[preset][2]:  # label noise: the fit of flipped and clean labels, every epoch
        trained = [h for h in out["history"] if "train/loss" in h]
        assert trained and all(h.get("train/noisy_fit") is not None for h in trained)
        assert all(h.get("train/clean_error") is not None for h in trained)


def _fake_sweep(root: Path, nested: bool) -> dict[str, list[Path]]:
    """last.ckpt files where a laptop_fig16 multirun puts them (data.root in a job name nests it)."""
    made: dict[str, list[Path]] = {}
    for num, (method, seed) in enumerate((m, s) for m in ("sam_m4", "sam_m32", "sam_m128", "erm") for s in range(3)):
        name = f"{num}_data=imagefolder,experiment=laptop_fig16,method={method},seed={seed}"
        job = (
            root / (f"{num}_data.root=" if nested else "") / ("work/cifar," + name.split("_", 1)[1] if nested else name)
        )
        (job / "checkpoints").mkdir(parents=True)
        (job / "checkpoints" / "last.ckpt").touch()
        made.setdefault(method, []).append(job / "checkpoints" / "last.ckpt")
    return made


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_fig2_preset_finds_each_methods_checkpoints_of_a_fig16_sweep(tmp_path, nested):
    made = _fake_sweep(tmp_path, nested)
    cfg = compose_config(["experiment=laptop_fig2", f"sweep={tmp_path}"], config_name="sharpness", tree="analysis")
    assert (list(cfg.rho), list(cfg.m), cfg.ascent_steps) == ([0.025, 0.05, 0.1, 0.2], [128], 10)
    paths, labels = expand_checkpoints(list(cfg.ckpt), list(cfg.labels))
    assert labels == ["ERM"] * 3 + ["128-SAM"] * 3 + ["4-SAM"] * 3
    expected = [
        (label, p)
        for label, method in (("ERM", "erm"), ("128-SAM", "sam_m128"), ("4-SAM", "sam_m4"))
        for p in made[method]
    ]
    assert sorted(zip(labels, map(Path, paths))) == sorted(expected)  # never m=32, and 128 is not 4
    # Plain paths pass as they are; a pattern without a match is one line.
    assert expand_checkpoints(["a.ckpt", "b.ckpt"], None) == (["a.ckpt", "b.ckpt"], None)
    with pytest.raises(ConfigError, match="matches no file"):
        expand_checkpoints([f"{tmp_path}/**/*method=gsam,*/last.ckpt"], ["GSAM"])


def test_fig2_preset_without_its_sweep_folder_is_one_line(tmp_path, capfd, monkeypatch):
    from helpers import run_entry

    code = run_entry("sharpness", ["experiment=laptop_fig2", f"out_dir={tmp_path}"], monkeypatch)
    err = capfd.readouterr().err
    assert code == 2 and err.strip().splitlines() == ["error: sweep is required: add sweep=..."], err[-2000:]


def test_sharpness_table_is_mean_and_ci_over_checkpoints_sharing_a_label():
    def record(label, rho, value, factor):
        return {
            "checkpoint": label,
            "bn": "train",
            "m": 128,
            "rho": rho,
            "sharpness": value,
            "suboptimality_factor": factor,
        }

    records = [record("ERM", rho, v * rho, 1.5) for v in (1.0, 2.0, 4.0) for rho in (0.05, 0.1)]
    records += [record("SAM", 0.05, 0.02, None)]
    table = summary_table(records)
    assert table[["checkpoint", "rho", "n_checkpoints"]].values.tolist() == [
        ["ERM", 0.05, 3],
        ["ERM", 0.1, 3],
        ["SAM", 0.05, 1],
    ]
    assert table["sharpness"][1] == format_mean_ci(*mean_ci([0.1, 0.2, 0.4])) and "[" in table["sharpness"][1]
    assert table["suboptimality_factor"].tolist() == ["1.5 [1.5, 1.5]", "1.5 [1.5, 1.5]", "-"]
    assert table["sharpness"][2] == "0.02"  # one checkpoint: no interval


def test_sweep_plots_rows_without_rho_and_the_label_noise_curves(tmp_path, monkeypatch):
    runs, histories = [], {}
    for method, base in (("erm", 0.7), ("sam", 0.6)):
        for seed in range(3):
            job = f"{method}-{seed}"
            runs.append(
                {
                    "job": job,
                    "status": "finished",
                    "reason": None,
                    "seed": seed,
                    KEY + "method": method,
                    "final_test_error": base + 0.01 * seed,
                    "best_test_error": base,
                    "final_train_error": 0.5,
                }
            )
            histories[job] = [
                {
                    "epoch": e,
                    "train/error": 0.9 - 0.1 * e,
                    "train/noisy_fit": 0.05 * e,
                    "train/clean_error": 0.8 - 0.1 * e,
                    **({"test/error": base + 0.1} if e % 2 else {}),
                }
                for e in range(4)
            ]
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, **kw: (figures.append(fig), save(fig, path, **kw))[1])
    summary, info = summarize(pd.DataFrame(runs), histories, ["x"], tmp_path, echo=lambda _: None)
    assert [p.name for p in info["images"]] == ["test_error_by_row.png", "test_error_curves.png"]
    by_row, curves = figures
    # by row: one tick per table row, the mean at the marker, every seed as a dot
    ax = by_row.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sam (3 seeds)", "erm (3 seeds)"]
    dots = [line.get_xdata() for line in ax.lines if line.get_marker() == "."]
    assert sorted(np.concatenate(dots).round(6).tolist()) == [60.0, 61.0, 62.0, 70.0, 71.0, 72.0]
    # curves: test, train, then how the flipped and the clean labels are fitted
    assert [a.get_ylabel() for a in curves.axes] == [
        "test error (%)",
        "train error (%)",
        "flipped labels fitted (%)",
        "train error, clean labels (%)",
    ]
    assert math.isclose(curves.axes[2].lines[0].get_ydata()[-1], 15.0)


def test_regime_b_jobs_are_regime_a_jobs_so_both_share_one_erm():
    # laptop_small_m only adds its m grid to laptop_sam_vs_erm: a job of either preset with the same
    # method, rho and seed is the same run (its results sit with regime A's, paired on one ERM).
    grid = sweep_params("laptop_small_m")
    assert set(grid["method"]) == {"sam_m4", "sam_m16", "sam", "erm"}
    assert [float(r) for r in grid["method.rho"]] == pytest.approx([0.05 * math.sqrt(m / 64) for m in (4, 16, 64)])
    for method in grid["method"]:
        b, a = (
            OmegaConf.to_container(
                compose_config([f"experiment={p}", f"method={method}", "method.rho=0.0125", "seed=1"])
            )
            for p in ("laptop_small_m", "laptop_sam_vs_erm")
        )
        assert b == a and b["model"]["norm"] == "batch", method


@pytest.mark.parametrize(
    ("preset", "job", "from_grid"),
    [
        ("laptop_switch", ["method=erm_to_sam", "method.m=4", "method.rho=0.0125", "method.switch_at=0.9"], True),
        ("laptop_switch", ["method=sam_to_erm", "method.m=4", "method.rho=0.0125", "method.switch_at=0.5"], True),
        ("laptop_multistep", ["method=sam", "method.m=4", "method.ascent_steps=10", "method.rho=0.025"], True),
        ("laptop_rho_schedule", ["method=sam", "method.rho_schedule=lr", "method.rho=0.05"], True),
        ("laptop_widths", ["method=sam", "model.width=8", "method.rho=0.05"], True),
        ("laptop_batch_sizes", ["method=sam", "data.batch_size=128", "method.rho=0.05"], True),
        ("laptop_switch", ["method=erm_to_sam", "method.m=null", "method.rho=0.2", "method.switch_at=0.9"], False),
        ("laptop_const_rho", ["method=sam_const", "method.rho=0.03"], True),
    ],
)
def test_figure_presets_on_regime_a_compose_regime_a_jobs(preset, job, from_grid):
    # Each figure preset on regime A only sweeps: a job of it (its grid's values as the job's
    # overrides) is regime A's job with the same overrides, so it pairs with regime A's ERM of the seed
    # (the committed switch and constant-rho runs ran as regime A jobs).
    grid = sweep_params(preset)
    for override in job if from_grid else []:  # else: a job the preset's comment gives, off its grid
        key, _, value = override.partition("=")
        if key in grid:
            assert value in map(str, grid[key]), (preset, override)
    own = OmegaConf.to_container(compose_config([f"experiment={preset}", *job, "seed=1"]))
    regime_a = OmegaConf.to_container(compose_config(["experiment=laptop_sam_vs_erm", *job, "seed=1"]))
    assert own == regime_a


def test_fig19_preset_takes_every_periodic_checkpoint_of_one_run_in_both_batchnorm_modes(tmp_path):
    for name in ("epoch009.ckpt", "epoch019.ckpt", "last.ckpt", "best-epoch009.ckpt"):
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / name).touch()
    cfg = compose_config(["experiment=laptop_fig19", f"run={tmp_path}"], config_name="sharpness", tree="analysis")
    assert (list(cfg.rho), list(cfg.m), list(cfg.bn), cfg.one_step) == ([0.1], [64], ["train", "eval"], False)
    paths, labels = expand_checkpoints([cfg.ckpt], None)
    assert [Path(p).name for p in paths] == ["epoch009.ckpt", "epoch019.ckpt"] and labels is None


def test_fig19_preset_runs_as_documented_and_a_run_without_checkpoints_is_one_line(tmp_path, capfd, monkeypatch):
    from helpers import run_entry

    code = run_entry(
        "sharpness", ["experiment=laptop_fig19", f"run={tmp_path}", f"out_dir={tmp_path / 'out'}"], monkeypatch
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "matches no file" in err[0], err
