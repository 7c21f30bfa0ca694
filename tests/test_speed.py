"""How fast a run computes: trainer.precision=auto and channels_last=auto resolved from what the CPU
supports (and recorded resolved), compile=true checked against eager in float64, and the epoch's
training time logged to every logger and results.json."""

from __future__ import annotations

import copy
import csv
import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF, TINY, compose_config
from helpers import fixed_batch, mlp

from sam_lightning.core.engine import choose_engine
from sam_lightning.core.step import step_gradients
from sam_lightning.settings import speed
from sam_lightning.settings.fingerprint import first_difference
from sam_lightning.training.run_spec import build_run
from sam_lightning.variants import ERM, SAM
from train import train

AMX = {"avx512f", "amx_tile", "amx_bf16"}
NO_BF16 = {"avx2", "avx512f"}  # AVX-512 without its BF16 extension: oneDNN would emulate bf16


def test_bf16_support_is_read_from_the_cpu_features(tmp_path, monkeypatch):
    assert speed.cpu_bf16_feature(AMX) == "amx_bf16"
    assert speed.cpu_bf16_feature({"avx512f", "avx512_bf16"}) == "avx512_bf16"
    assert speed.cpu_bf16_feature(NO_BF16) is None and speed.cpu_bf16_feature(set()) is None
    # a torch without torch.cpu.get_capabilities: the flags of /proc/cpuinfo
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert speed.cpu_bf16_feature(speed.cpu_features(cpuinfo)) == "avx512_bf16"
    assert speed.cpu_features(tmp_path / "missing") == set()


def _run(tmp_path, monkeypatch, features: set[str], *overrides: str):
    monkeypatch.setattr(speed, "cpu_features", lambda: features)
    cfg = compose_config([*TINY, f"paths.output_dir={tmp_path / 'run'}", "cpu_threads=1", *overrides])
    return cfg, build_run(cfg)


@pytest.mark.parametrize(
    ("features", "norm", "precision", "channels_last", "said"),
    [
        (AMX, "batch", "bf16-mixed", True, "this CPU has amx_bf16"),
        (AMX, "group", "bf16-mixed", False, "this CPU has amx_bf16"),
        (NO_BF16, "batch", "32-true", False, speed.NO_BF16_CPU),
    ],
    ids=["amx_batchnorm", "amx_groupnorm", "no_bf16"],
)
def test_precision_auto_is_chosen_by_the_cpu_and_recorded_resolved(
    tmp_path, monkeypatch, features, norm, precision, channels_last, said
):
    cfg, run = _run(tmp_path, monkeypatch, features, "trainer.precision=auto", f"norm={norm}")
    # what pl.Trainer gets, results.json and .hydra/ record, and the fingerprint a resume compares
    assert run.trainer.args["precision"] == run.config["trainer"]["precision"] == cfg.trainer.precision == precision
    assert run.fingerprint["trainer.precision"] == precision
    assert run.channels_last is channels_last and run.compile is False
    assert said in run.speed and "\n" not in run.speed
    # one override gives the old setting back, whatever the CPU
    _, kept = _run(tmp_path, monkeypatch, features, "trainer.precision=32-true", f"norm={norm}")
    assert kept.config["trainer"]["precision"] == "32-true" and kept.channels_last is False


def test_a_resume_on_another_cpu_compares_the_precisions_computed(tmp_path, monkeypatch):
    _, bf16 = _run(tmp_path, monkeypatch, AMX, "trainer.precision=auto")
    _, fp32 = _run(tmp_path, monkeypatch, NO_BF16, "trainer.precision=auto")
    assert first_difference(bf16.fingerprint, fp32.fingerprint) == (
        "trainer.precision='bf16-mixed' in the checkpoint, '32-true' now"
    )


def test_the_laptop_presets_train_in_float32_until_their_one_line_is_switched():
    presets = sorted(p.stem for p in (CONF / "experiment").glob("laptop_*.yaml"))
    assert "laptop_sam_vs_erm" in presets
    for preset in presets:
        assert compose_config([f"experiment={preset}"]).trainer.precision == "32-true", preset
    assert compose_config(["experiment=laptop_sam_vs_erm", "trainer.precision=auto"]).trainer.precision == "auto"


@pytest.mark.parametrize(
    ("setting", "precision", "on"),
    [
        ("auto", "32-true", True),
        ("auto", "bf16-mixed", False),
        ("true", "bf16-mixed", True),
        ("false", "32-true", False),
    ],
)
def test_compile_auto_is_on_for_float32_on_a_cpu(tmp_path, monkeypatch, setting, precision, on):
    _, run = _run(tmp_path, monkeypatch, AMX, f"compile={setting}", f"trainer.precision={precision}")
    assert run.compile is on and f"compile {'on' if on else 'off'}" in run.speed


def test_the_run_logs_its_precision_layout_and_compile_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(speed, "cpu_features", lambda: NO_BF16)
    cfg = compose_config(
        [*TINY, "trainer.fast_dev_run=true", "trainer.precision=auto", f"paths.output_dir={tmp_path / 'run'}"]
    )
    with caplog.at_level(logging.INFO, logger="train"):
        out = train(cfg)
    lines = [r.getMessage() for r in caplog.records if speed.NO_BF16_CPU in r.getMessage()]
    assert lines == [
        "precision 32-true (trainer.precision=auto: no bf16 support on this CPU: float32), "
        "channels_last off (auto: on a CPU only in bf16 with BatchNorm), compile off"
    ]
    assert out["config"]["trainer"]["precision"] == "32-true"
    assert (out["channels_last"], out["compile"]) == (False, False)


# -- the epoch's training time -----------------------------------------------------------------------
def test_each_epochs_training_time_is_logged_and_kept_in_the_history(tmp_path):
    cfg = compose_config([*TINY, "trainer.max_epochs=2", "logger=csv", f"paths.output_dir={tmp_path / 'run'}"])
    out = train(cfg)
    times = [h["time/epoch_s"] for h in out["history"]]
    assert len(times) == 2 and all(0 < t < out["wall_time_s"] for t in times) and sum(times) < out["wall_time_s"]
    rows = list(csv.DictReader(open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")))
    assert [float(r["time/epoch_s"]) for r in rows if r.get("time/epoch_s")] == pytest.approx(times)
    on_disk = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert [h["time/epoch_s"] for h in on_disk["history"]] == times


# -- torch.compile --------------------------------------------------------------------------------------
def _gradients(model, method):
    params = list(model.parameters())
    for p in params:
        p.grad = None
    x, y = fixed_batch(16)
    step_gradients(model, params, F.cross_entropy, x, y, method, rho=method.rho)
    return [p.grad.clone() for p in params] + [b.clone() for b in model.buffers()]


@pytest.mark.slow
def test_the_compiled_step_equals_the_eager_one_in_float64():
    eager = mlp(norm=True)
    compiled = copy.deepcopy(eager)
    compiled.compile()
    methods = [ERM(), SAM(rho=0.1, m=None), SAM(rho=0.1, m=4, engine="loop"), SAM(rho=0.1, m=4, engine="auto")]
    for method in methods:
        for a, b in zip(_gradients(eager, method), _gradients(compiled, method)):
            assert torch.allclose(a, b, rtol=0, atol=1e-10), method
    # the vectorized engine cannot run a compiled forward: auto takes the loop, vmap warns and does
    vmap_ok = SAM(m=4, engine="auto")
    assert choose_engine(vmap_ok, eager, 4, 4) == "vmap" and choose_engine(vmap_ok, compiled, 4, 4) == "loop"
    assert choose_engine(SAM(m=4, engine="vmap"), compiled, 4, 4) == "loop"


@pytest.mark.slow
def test_a_compiled_run_logs_its_compile_time(tmp_path, caplog):
    cfg = compose_config(
        [*TINY, "compile=true", "method=sam", "trainer.limit_val_batches=0", f"paths.output_dir={tmp_path / 'run'}"]
    )
    with caplog.at_level(logging.INFO):
        out = train(cfg)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("torch.compile of the backbone")]
    assert len(said) == 1 and "s of compiling" in said[0]
    assert out["status"] == "finished" and out["compile"] is True
