"""train.py end to end: through Hydra's compose API in-process, and through the command line."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY
from helpers import computed
from wandb_log import run_contents

from train import train

RESULT_KEYS = {
    "status",
    "reason",
    "final_test_error",
    "best_test_error",
    "best_epoch",
    "final_train_error",
    "final_train_loss",
    "epochs_done",
    "wall_time_s",
    "config",
    "history",
    "data_sizes",
}


def run_cli(*overrides: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.slow
def test_compose_api_run_writes_results_and_checkpoints(tiny_cfg):
    cfg = tiny_cfg("trainer.max_epochs=2")
    out = train(cfg)
    run_dir = cfg.paths.output_dir
    on_disk = json.load(open(f"{run_dir}/results.json"))
    assert RESULT_KEYS <= set(on_disk)
    assert on_disk["status"] == "finished" and on_disk["epochs_done"] == 2 and len(on_disk["history"]) == 2
    assert on_disk["final_test_error"] == out["final_test_error"] == on_disk["history"][-1]["test/error"]
    assert on_disk["best_test_error"] == min(h["test/error"] for h in on_disk["history"])
    assert on_disk["config"]["method"]["m"] == 32 and on_disk["config"]["seed"] == 0
    assert on_disk["data_sizes"] == {"train": 256, "val": 0, "test": 128, "num_classes": 10}
    assert on_disk["global_step"] == 2 * (256 // 128)
    assert os.path.exists(f"{run_dir}/checkpoints/last.ckpt")
    assert any(f.startswith("best-epoch") for f in os.listdir(f"{run_dir}/checkpoints"))


@pytest.mark.slow
def test_cpu_runs_are_deterministic_for_a_seed(tmp_path, tiny_cfg):
    a = train(tiny_cfg(f"paths.output_dir={tmp_path / 'a'}"))
    b = train(tiny_cfg(f"paths.output_dir={tmp_path / 'b'}"))
    c = train(tiny_cfg(f"paths.output_dir={tmp_path / 'c'}", "seed=1"))
    assert computed(a["history"]) == computed(b["history"])
    assert computed(a["history"]) != computed(c["history"])


@pytest.mark.slow
def test_wandb_offline_run_holds_config_and_final_metrics(tiny_cfg, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")  # mode=auto must find no API key and go offline by itself
    cfg = tiny_cfg("logger=wandb", "logger.wandb.mode=auto")
    out = train(cfg)
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("W&B: offline mode")]
    assert len(notices) == 1 and "wandb sync" in notices[0]
    wandb_dir = os.path.join(cfg.paths.output_dir, "wandb")
    runs = [d for d in os.listdir(wandb_dir) if d.startswith("offline-run-")]
    assert len(runs) == 1
    (run_file,) = (ROOT / wandb_dir / runs[0]).glob("*.wandb")
    config, summary, run = run_contents(run_file)
    assert config["method"]["name"] == "sam" and config["seed"] == 0 and config["data"]["name"] == "synthetic"
    # The resolved Hydra config, not overwritten by Lightning's hyperparameter logging.
    assert (
        config["channels_last"] == "auto"
        and "max_epochs" not in config
        and config["method"]["_target_"] == "sam_lightning.variants.SAM"
    )
    assert summary["final_test_error"] == pytest.approx(out["final_test_error"])
    assert summary["test/error"] == pytest.approx(out["final_test_error"])
    assert run["project"] == "sam-lightning"


def test_smoke_preset_logs_to_two_loggers_at_once(tiny_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_cfg("logger=[csv,tensorboard]")
    assert list(cfg.logger) == ["csv", "tensorboard"]
    out = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    assert [float(r["test/error"]) for r in rows if r.get("test/error")] == [out["final_test_error"]]
    (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload()
    assert "test/error" in scalars.Tags()["scalars"] and "train/loss" in scalars.Tags()["scalars"]
    assert scalars.Scalars("test/error")[-1].value == pytest.approx(out["final_test_error"])


def test_print_config_shows_the_composed_config_as_a_tree_first(tmp_path, capfd, monkeypatch):
    from test_bad_inputs import run_entry

    # Printed before anything runs: a bad value after it still is refused as always.
    code = run_entry(
        "train", [*TINY, "print_config=true", "data.batch_size=0", f"hydra.run.dir={tmp_path}"], monkeypatch
    )
    out = capfd.readouterr().out
    assert code == 2 and out.startswith("config\n")
    branches = [line.split("── ")[1] for line in out.splitlines() if line[:4] in ("├── ", "└── ")]
    assert branches[:4] == ["data", "model", "method", "optim"] and branches[-1] == "top level"
    assert "│   └── name: synthetic" in out and "seed: 0" in out.split("── data")[1]  # resolved: data.seed is ${seed}
    assert f"output_dir: {tmp_path}" in out
    run_entry("train", [*TINY, "data.batch_size=0", f"hydra.run.dir={tmp_path / 'quiet'}"], monkeypatch)
    assert "── data" not in capfd.readouterr().out  # print_config=false, the default: nothing printed


def _offline_run_file(run_dir):
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/*.wandb")
    return run_file


@pytest.mark.slow
def test_wandb_run_records_the_command_its_files_and_its_preset(tmp_path):
    # WANDB_SILENT unset, as for a user: W&B's own warnings would show
    env_silent = os.environ.pop("WANDB_SILENT", None)
    try:
        proc = run_cli(
            *TINY,
            "trainer.log_every_n_steps=1",
            "method=sam_m128",
            "logger=wandb",
            "logger.wandb.mode=offline",
            "tags=[paper]",
            f"hydra.run.dir={tmp_path}",
        )
    finally:
        if env_silent is not None:
            os.environ["WANDB_SILENT"] = env_silent
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert "anonymous" not in console and "warning" not in console.lower(), console[-3000:]
    results = json.load(open(tmp_path / "results.json"))
    config, summary, run = run_contents(_offline_run_file(tmp_path))
    assert "method=sam_m128" in config["hydra"]["overrides"] and "tags=[paper]" in config["hydra"]["overrides"]
    assert config["hydra"]["command"].startswith("python train.py ") and "method=sam_m128" in config["hydra"]["command"]
    assert run["name"].startswith("sam_m128-synthetic-"), run["name"]  # the preset, not only its class
    assert "paper" not in run["name"] and run["tags"] == ["sam_m128", "synthetic", "batchnorm", "smoke", "paper"]
    assert summary["parameters"] == results["parameters"] > 0 and summary["wall_time_s"] > 0
    files = next((tmp_path / "wandb").glob("offline-run-*")) / "files"
    assert json.loads((files / "results.json").read_text())["status"] == "finished"
    assert "CPU threads" in (files / "train.log").read_text()


@pytest.mark.slow
def test_wandb_run_names_keep_the_preset_and_its_overrides():
    from sam_lightning.run.naming import single_run_name

    def name(*overrides):
        from conftest import compose_config

        return single_run_name(compose_config([*TINY, "logger=wandb", *overrides]), list(overrides))

    assert name("method=sam_m32") != name("method=sam_m128") != name("method=sam_m4")
    assert name("method=sam_m32").startswith("sam_m32-synthetic-preact_resnet18-s0")
    assert "rho=0.2" in name("method=sam_m32", "method.rho=0.2")
    assert name("method=sam_m32", "seed=3", "tags=[x]", "trainer.enable_progress_bar=false") == name(
        "method=sam_m32", "seed=3"
    )


@pytest.mark.slow
def test_wandb_disabled_prints_no_run_folder(tiny_cfg, capsys):
    train(tiny_cfg("logger=wandb", "logger.wandb.mode=disabled"))
    out = capsys.readouterr().out
    assert "finished:" in out and "W&B run:" not in out


@pytest.mark.slow
def test_cli_multirun_leaves_logger_tags_out_of_folder_names(tmp_path):
    proc = run_cli(
        "-m",
        *TINY,
        "seed=0",
        "logger=wandb",
        "logger.wandb.mode=offline",
        "tags=[paper]",
        f"hydra.sweep.dir={tmp_path}",
        "hydra/launcher=basic",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p for p in tmp_path.iterdir() if (p / "results.json").exists()]
    assert "paper" not in job.name and "tags" not in job.name
    _, _, run = run_contents(_offline_run_file(job))
    assert "paper" not in run["name"] and run["tags"][-1] == "paper"


@pytest.mark.slow
def test_cli_smoke_preset_learns(tmp_path):
    # About 25 s on 2 idle cores; the time limit here only catches a preset grown far too big.
    proc = run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}", "trainer.enable_progress_bar=false", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.load(open(tmp_path / "results.json"))
    assert results["status"] == "finished" and results["epochs_done"] == 4
    assert results["final_test_error"] < 0.5  # chance is 0.9
    assert "results:" in proc.stdout and str(tmp_path) in proc.stdout
    assert f"finished: final test error {100 * results['final_test_error']:.2f}%, best" in proc.stdout
    assert "`Trainer.fit` stopped" in (tmp_path / "train.log").read_text()  # Lightning's messages reach the run's log
    console = proc.stdout + proc.stderr
    assert "litlogger" not in console and "GPU available" not in console and "LeafSpec" not in console
    assert "warning" not in console.lower(), [line for line in console.splitlines() if "warning" in line.lower()]


def test_training_failure_is_recorded_not_lost(tiny_cfg, monkeypatch):
    from sam_lightning.training.module import SAMClassifier

    def explode(self, batch, batch_idx):
        raise FloatingPointError("loss is nan")

    monkeypatch.setattr(SAMClassifier, "training_step", explode)
    cfg = tiny_cfg()
    with pytest.raises(FloatingPointError):
        train(cfg)
    results = json.load(open(f"{cfg.paths.output_dir}/results.json"))
    assert results["status"] == "failed" and "loss is nan" in results["reason"]
    assert results["config"]["seed"] == cfg.seed  # the failure record keeps the run's config


def test_console_counts_epochs_from_one_as_the_plots():
    from types import SimpleNamespace

    from sam_lightning.training.callbacks.progress import RichTestProgressBar
    from train import summary_line

    bar = RichTestProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=4)
    assert bar._get_train_description(0).strip() == "Epoch 1/4"
    payload = {
        "status": "finished",
        "final_test_error": 0.2,
        "best_test_error": 0.1,
        "best_epoch": 0,
        "epochs_done": 4,
        "wall_time_s": 3,
    }
    assert "(epoch 1 of 4)" in summary_line(payload)


@pytest.mark.slow
def test_fast_dev_run_says_its_errors_are_from_one_batch(tiny_cfg, capsys):
    train(tiny_cfg("trainer.fast_dev_run=true"))
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("finished")]
    assert "fast_dev_run" in line and "one batch" in line


def test_summary_line_reads_early_stopping_on_validation_when_there_is_a_split():
    from train import summary_line

    payload = {
        "status": "finished",
        "final_test_error": 0.48,
        "best_test_error": 0.47,
        "best_epoch": 99,
        "epochs_done": 150,
        "test_error_at_best_val": 0.479,
        "best_val_epoch": 109,
        "best_val_error": 0.43,
        "wall_time_s": 100,
    }
    assert "at the best validation epoch (110): test error 47.90%, validation error 43.00%" in summary_line(payload)
    assert "validation" not in summary_line({**payload, "test_error_at_best_val": None})


@pytest.mark.parametrize(
    ("overrides", "warned"), [(["norm=group", "channels_last=true"], True), (["norm=group"], False)]
)
def test_channels_last_with_groupnorm_on_a_cpu_is_said_to_be_slow(tiny_cfg, caplog, overrides, warned):
    from train import CPU_GROUPNORM_CHANNELS_LAST

    with caplog.at_level(logging.WARNING, logger="train"):
        train(tiny_cfg(*overrides, "trainer.fast_dev_run=true"))
    assert (CPU_GROUPNORM_CHANNELS_LAST in caplog.text) is warned
