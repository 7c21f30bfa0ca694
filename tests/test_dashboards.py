"""What a researcher browses: W&B names, groups and tags, every logger's hyperparameters and final
metrics, the provenance of a run, and uploading an offline sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, TINY, compose_config
from wandb_log import run_contents

from sam_lightning.reporting.cli import main as sweep_main
from sam_lightning.run.naming import NAME_LIMIT, auto_tags, group_name, multirun_name, single_run_name


def _tensorboard_hparams(folder):
    """(hyperparameter names, metric names) of the HPARAMS tab of the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    (events,) = folder.glob("events.out.tfevents.*")  # one: the final metrics too, before Lightning closes it
    acc = EventAccumulator(str(events)).Reload()
    content = acc.PluginTagToContent("hparams")
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    return set(start.hparams), {m.name.tag for m in experiment.metric_infos}, acc


@pytest.mark.slow
def test_a_multirun_gives_short_names_a_readable_group_tags_and_every_logger_its_hyperparameters(tmp_path):
    machine = tmp_path / "machine" / "data"  # a path on this machine: in no name, group or grouping key
    sweep_dir = tmp_path / "multirun" / "2026-12-05" / "10-00-00"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            *TINY,
            "method=erm,sam",
            "seed=0,1",
            "logger=[wandb,csv,tensorboard]",
            "logger.wandb.mode=offline",
            "tags=[draft]",
            f"data.root={machine}",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra/launcher=basic",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if (p / "results.json").exists())
    assert len(jobs) == 4
    names = set()
    for job in jobs:
        (run_file,) = (job / "wandb").glob("offline-run-*/*.wandb")
        config, summary, run = run_contents(run_file)
        names.add(run["name"])
        assert run["group"] == "smoke/2026-12-05/10-00-00"
        method = config["method"]["name"]
        assert run["tags"] == [method, "synthetic", "batchnorm", "smoke", "draft"]
        for shown in (run["name"], run["group"], config["hydra"]["group_key"], *run["tags"]):
            assert str(tmp_path) not in shown and "data.root" not in shown, shown
        assert config["provenance"]["torch"] and summary["final_test_error"] >= 0
        # CSV and TensorBoard: the hyperparameters (no machine path) and, at the end, the final metrics
        hparams = yaml.safe_load((job / "csv" / "hparams.yaml").read_text())
        assert hparams["method"]["name"] == method and hparams["seed"] == config["seed"]
        assert "root" not in hparams["data"] and "paths" not in hparams and hparams["provenance"]["python"]
        last = (job / "csv" / "metrics.csv").read_text().splitlines()
        header, final = last[0].split(","), last[-1].split(",")
        assert float(final[header.index("final_test_error")]) == pytest.approx(summary["final_test_error"])
        params, metrics, acc = _tensorboard_hparams(job / "tensorboard")
        assert {"method/name", "seed", "provenance/torch"} <= params and "data/root" not in params
        assert {"final_test_error", "final_train_error", "wall_time_s"} <= metrics and "hp_metric" not in metrics
        assert acc.Scalars("final_test_error")[-1].value == pytest.approx(summary["final_test_error"])
    assert names == {"erm s0", "erm s1", "sam s0", "sam s1"}


def test_run_names_hold_what_the_sweep_varies_and_never_a_machine_path():
    cfg = compose_config([*TINY, "method=sam_m32", "method.rho=0.2", "seed=3", "data.root=/home/me/data"])
    job = ["experiment=smoke", "method=sam_m32", "method.rho=0.2", "seed=3", "data.root=/home/me/data"]
    assert multirun_name(cfg, job, {"method", "method.rho", "seed"}) == "sam_m32 rho=0.2 s3"
    assert multirun_name(cfg, job, {"method.rho"}) == "rho=0.2"  # the method and seed shared by all jobs
    assert multirun_name(cfg, job, {"data.root"}).startswith("sam_m32-synthetic-")  # nothing else varies
    erm = compose_config([*TINY, "method=erm", "method.rho=0.2", "seed=3"])
    assert multirun_name(erm, ["method=erm", "method.rho=0.2", "seed=3"], {"method", "method.rho", "seed"}) == "erm s3"
    many = [f"optim.{k}=0.{i}" for i, k in enumerate(("lr", "momentum", "l2"))] + ["data.noise=0.75", "model.width=4"]
    many.append("init_from=/home/me/outputs/run/last.ckpt")
    long = single_run_name(compose_config([*TINY, *many]), many)
    assert len(long) <= NAME_LIMIT and long.startswith("sam_m32-synthetic-preact_resnet18-s0,noise=0.75,width=4,")
    assert "/home" not in long and "init_from" not in long
    assert "/home" not in single_run_name(cfg, job) and "rho=0.2" in single_run_name(cfg, job)


def test_groups_are_the_preset_or_the_swept_keys_before_the_date():
    swept = {"seed", "method", "method.rho", "data.root"}
    assert group_name("/scratch/me/multirun/2026-12-05/06-48-14", None, swept) == "method,rho,seed/2026-12-05/06-48-14"
    assert group_name("multirun/2026-12-05/06-48-14", "smoke", {"method"}) == "smoke/2026-12-05/06-48-14"
    assert (
        group_name("multirun/rho_grid/2026-12-05/06-48-14", "rho_grid", {"method.rho"})
        == "rho_grid/2026-12-05/06-48-14"
    )
    assert group_name("multirun/2026-12-05/06-48-14", None, {"data.root", "logger"}) == "multirun/2026-12-05/06-48-14"


def test_tags_name_method_data_norm_preset_and_scale_then_the_users_own():
    cfg = compose_config(["experiment=laptop_sam_vs_erm", "method=sam", "norm=group", "tags=[draft,erm_vs_sam]"])
    assert auto_tags(cfg, "laptop_sam_vs_erm") == [
        "sam",
        cfg.data.name,
        "groupnorm",
        "laptop_sam_vs_erm",
        "laptop",
        "draft",
        "erm_vs_sam",
    ]
    assert auto_tags(compose_config(["experiment=fig1", "method=erm"]), "fig1")[-1] == "paper"
    assert auto_tags(compose_config(["method=erm"]), None) == ["erm", "cifar10", "batchnorm"]


def test_provenance_names_the_commit_and_the_software():
    from sam_lightning.run.provenance import provenance

    found = provenance()
    assert {"git_commit", "git_dirty", "python", "torch", "lightning", "hydra", "cpu", "gpu"} <= set(found)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert found["git_commit"] == head.stdout.strip() and isinstance(found["git_dirty"], bool)


def test_wandb_sync_uploads_every_offline_run_of_a_sweep(tmp_path, monkeypatch, capsys):
    import sam_lightning.reporting.wandb_io as wandb_io

    for job in ("0_seed=0", "1_seed=1"):
        (tmp_path / job / "wandb" / "offline-run-20261205_100000-abc").mkdir(parents=True)
    assert sweep_main([str(tmp_path), "--wandb-sync"]) == 2  # no API key here: one line, nothing uploaded
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stay offline" in err
    assert sweep_main([str(tmp_path / "0_seed=0" / "wandb" / "nothing"), "--wandb-sync"]) == 2
    (tmp_path / "empty").mkdir()
    assert sweep_main([str(tmp_path / "empty"), "--wandb-sync"]) == 2  # a folder without a run
    monkeypatch.setattr(wandb_io, "require_online", lambda instead="": None)
    called = []
    monkeypatch.setattr(
        wandb_io.subprocess, "run", lambda cmd, check: called.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    assert sweep_main([str(tmp_path), "--wandb-sync"]) == 0
    (cmd,) = called
    assert cmd[1:4] == ["-m", "wandb", "sync"] and [p.split("/")[-3] for p in cmd[4:]] == ["0_seed=0", "1_seed=1"]


def test_test_fraction_keeps_a_fixed_subset_of_the_test_set_for_every_source():
    import torch

    from sam_lightning.data.sources import ImageArrays
    from sam_lightning.data.spec import DataSpec
    from sam_lightning.data.splits import make_splits
    from sam_lightning.settings.config import ConfigError

    n = 200
    arrays = ImageArrays(
        train_x=torch.zeros(40, 3, 32, 32, dtype=torch.uint8),
        train_y=torch.arange(40) % 10,
        test_x=torch.arange(n).view(n, 1, 1, 1).expand(n, 3, 32, 32).to(torch.uint8),
        test_y=torch.arange(n) % 10,
        num_classes=10,
        mean=torch.zeros(3),
        std=torch.ones(3),
    )

    def tested(fraction, seed=0):
        splits = make_splits(
            arrays, train_fraction=1.0, val_fraction=0.0, label_noise=0.0, seed=seed, test_fraction=fraction
        )
        return splits.test_x[:, 0, 0, 0].tolist()

    assert tested(1.0) == list(range(n))  # the whole test set, in order
    quarter = tested(0.25)
    assert len(quarter) == 50 and quarter == sorted(set(quarter)) and quarter == tested(0.25)
    assert tested(0.25, seed=1) != quarter  # drawn by data.seed
    for bad in (0, 1.5, "all"):
        with pytest.raises(ConfigError, match="data.test_fraction"):
            DataSpec.from_mapping(
                {"name": "synthetic", "n_train": 64, "n_test": 64, "num_classes": 10, "test_fraction": bad}
            )


def test_the_fingerprint_holds_the_test_fraction_but_not_at_its_default():
    from sam_lightning.settings.fingerprint import fingerprint

    assert "data.test_fraction" not in fingerprint({"data": {"name": "cifar10", "test_fraction": 1.0}})
    assert fingerprint({"data": {"name": "cifar10", "test_fraction": 0.1}})["data.test_fraction"] == 0.1


def test_the_log_interval_is_at_most_an_epoch():
    from sam_lightning.training.callbacks.log_interval import batches_per_epoch

    assert batches_per_epoch(256, 128, 1, 1.0) == 2 and batches_per_epoch(1024, 128, 2, None) == 4
    assert batches_per_epoch(1024, 128, 1, 3) == 3 and batches_per_epoch(1024, 128, 1, 0.5) == 4


@pytest.mark.slow
def test_a_short_run_logs_its_steps_without_lightnings_interval_warning(tiny_cfg, recwarn, caplog):
    import csv

    from train import train

    cfg = tiny_cfg("logger=csv", "data.test_fraction=0.5")  # 2 batches an epoch; the smoke preset logs every 4 steps
    out = train(cfg)
    said = [str(w.message) for w in recwarn] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "logging interval" in m], said
    rows = list(csv.DictReader(open(f"{cfg.paths.output_dir}/csv/metrics.csv")))
    assert [r["step"] for r in rows if r.get("step/perturbation_norm")] == ["1"]  # per step: the epoch's last
    assert out["data_sizes"]["test"] == 64 and out["config"]["data"]["test_fraction"] == 0.5


class CtrlCAtStep:
    """Presses Ctrl-C (SIGINT to this process) after training step `step`, as a user at the console does."""

    def __new__(cls, step: int):
        import pytorch_lightning as pl

        class _CtrlC(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                if trainer.global_step == step:
                    import signal

                    os.kill(os.getpid(), signal.SIGINT)

        return _CtrlC()


@pytest.mark.slow
def test_ctrl_c_says_where_the_run_is_and_how_to_resume_it(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            *TINY,
            "trainer.max_epochs=2",
            "data.batch_size=64",  # 4 steps an epoch: step 6 is in the second, after epoch 1's last.ckpt
            f"hydra.run.dir={run}",
            "+callbacks.ctrlc._target_=test_dashboards.CtrlCAtStep",
            "+callbacks.ctrlc.step=6",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        # Ctrl-C's default action, as at a console: a suite started in the background (`make test &`)
        # hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in console, console[-3000:]
    assert f"interrupted (Ctrl-C) at step 6; run folder: {run}" in console
    assert (
        f"resume from its last checkpoint with: python train.py ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
        in console
    )
    assert yaml.safe_load((run / "results.json").read_text())["status"] == "interrupted"
