"""Every bad input answered with one clear line: the exit code, one `error:` line on stderr that names
the bad value, and no traceback, through the real entry points (train.py, theory.py, sweep.py and
the sharpness command).

The Hydra entry points run in this process (`main()` with sys.argv set, exactly as the command line
calls it): starting Python, torch and Lightning for each of ~50 cases would take minutes. One case
runs as a real process, to show that the two agree.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY
from hydra.core.global_hydra import GlobalHydra
from torchvision.io import encode_jpeg, write_png

from sam_lightning.models import build_model

# Values that stand for paths made by the fixtures below.
TMP = "<tmp>"


def _ckpt(path: Path, width: int = 4, arch: str = "preact_resnet18", max_epochs: int = 1) -> None:
    """A checkpoint as train.py writes it, as far as the checks read it (no training needed)."""
    model = {"arch": arch, "width": width, "norm": "batch", "gn_groups": 4}
    state = {f"backbone.{k}": v for k, v in build_model(num_classes=10, **model).state_dict().items()}
    hparams = {"model": model, "num_classes": 10, "max_epochs": max_epochs, "method": {"name": "sam"}}
    torch.save({"hyper_parameters": hparams, "state_dict": state, "epoch": 0}, path)


def _imagefolder(root: Path, break_it: str) -> None:
    """A 2-class tree of 32x32 PNGs, then broken one way."""
    for split in ("train", "test"):
        for k, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                write_png(torch.full((3, 32, 32), 60 * k + i, dtype=torch.uint8), str(root / split / name / f"{i}.png"))
    if break_it == "empty_class":
        (root / "train" / "bird").mkdir()
        (root / "test" / "bird").mkdir()
    elif break_it == "test_only_class":
        (root / "test" / "horse").mkdir()
        write_png(torch.zeros((3, 32, 32), dtype=torch.uint8), str(root / "test" / "horse" / "0.png"))
    elif break_it == "truncated_jpeg":
        data = encode_jpeg(torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)).numpy().tobytes()
        (root / "train" / "cat" / "cut.jpg").write_bytes(data[: len(data) // 2])
    elif break_it == "not_an_image":
        (root / "test" / "dog" / "notes.png").write_text("not a picture")


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    _ckpt(root / "good.ckpt")
    _ckpt(root / "wide.ckpt", width=8)
    _ckpt(root / "r34.ckpt", arch="preact_resnet34")
    _ckpt(root / "planned4.ckpt", max_epochs=4)
    (root / "garbage.ckpt").write_text("this is not a checkpoint")
    (root / "a_file").write_text("a file where a folder is expected")
    job = root / "runs" / "0_seed=0"  # one finished job for sweep.py to read
    job.mkdir(parents=True)
    config = {"method": {"name": "sam", "rho": 0.1, "m": None}, "data": {"name": "synthetic", "batch_size": 128}, "seed": 0}
    (job / "results.json").write_text(json.dumps({"status": "finished", "final_test_error": 0.5, "config": config, "history": []}))
    for kind in ("empty_class", "test_only_class", "truncated_jpeg", "not_an_image"):
        _imagefolder(root / kind, kind)
    return root


IMAGEFOLDER = ["data=imagefolder", "data.cache_dir=null"]

# (case id, overrides after TINY, what the error line must contain, exit code: 1 for train.py and
# theory.py, as for any failed run; 2 for bad input to sweep.py and the analysis commands)
TRAIN_CASES = [
    ("rho_not_a_number", ["method.rho=abc"], "method.rho='abc'", 1),
    ("lr_not_a_number", ["optim.lr=fast"], "optim.lr='fast'", 1),
    ("momentum_not_a_number", ["optim.momentum=abc"], "optim.momentum='abc'", 1),
    ("m_not_a_number", ["method.m=big"], "method.m='big'", 1),
    ("seed_not_a_number", ["seed=abc"], "seed='abc'", 1),
    ("seed_negative", ["seed=-1"], "seed=-1", 1),
    ("batch_size_zero", ["data.batch_size=0"], "data.batch_size=0", 1),
    ("batch_size_not_a_number", ["data.batch_size=abc"], "data.batch_size='abc'", 1),
    ("eval_batch_size_zero", ["eval_batch_size=0"], "eval_batch_size=0", 1),
    ("batch_larger_than_training_set", ["data.n_train=64", "data.batch_size=128", "method.m=null"], "data.batch_size=128 exceeds the 64", 1),
    ("synthetic_no_training_images", ["data.n_train=0"], "data.n_train=0", 1),
    ("width_zero", ["model.width=0"], "model.width=0", 1),
    ("gn_groups_not_dividing_width", ["norm=group", "model.gn_groups=3"], "model.gn_groups=3", 1),
    ("unknown_norm", ["model.norm=layer"], "model.norm='layer'", 1),
    ("unknown_method", ["method._target_=sam_lightning.variants.Adam"], "sam_lightning.variants.Adam", 1),
    ("unknown_method_key", ["+method.alpha=0.5"], "method.alpha", 1),
    ("m_not_dividing_batch", ["method.m=48"], "method.m=48", 1),
    ("switch_at_out_of_range", ["method=erm_to_sam", "method.switch_at=2"], "method.switch_at=2", 1),
    ("unknown_engine", ["method.engine=jit"], "method.engine='jit'", 1),
    ("chunks_per_pass_zero", ["method.chunks_per_pass=0"], "method.chunks_per_pass=0", 1),
    ("data_on_device_unknown", ["data_on_device=maybe"], "data_on_device='maybe'", 1),
    ("grad_clip_negative", ["optim.grad_clip=-1"], "optim.grad_clip=-1", 1),
    ("unknown_schedule", ["optim.schedule=linear"], "'linear'", 1),
    ("label_noise_too_large", ["data.label_noise=1.5"], "data.label_noise", 1),
    ("label_noise_not_a_number", ["data.label_noise=abc"], "data.label_noise='abc'", 1),
    ("train_fraction_zero", ["data.train_fraction=0"], "data.train_fraction", 1),
    ("max_epochs_zero", ["trainer.max_epochs=0"], "trainer.max_epochs=0", 1),
    ("max_epochs_negative", ["trainer.max_epochs=-1"], "trainer.max_epochs=-1", 1),
    ("unknown_trainer_argument", ["trainer.max_epoch=3"], "trainer.max_epoch", 1),
    ("top_k_not_a_number", ["checkpoint.top_k=abc"], "checkpoint.top_k='abc'", 1),
    ("every_n_epochs_negative", ["checkpoint.every_n_epochs=-1"], "checkpoint.every_n_epochs=-1", 1),
    ("callback_class_missing", ["+callbacks.extra._target_=pytorch_lightning.callbacks.NoSuchCallback"], "NoSuchCallback", 1),
    ("logger_mode_typo", ["logger=wandb", "logger.mode=offlien"], "logger.mode='offlien'", 1),
    ("logger_name_unknown", ["logger.name=tensorboard"], "logger.name='tensorboard'", 1),
    ("ckpt_path_missing", [f"ckpt_path={TMP}/missing.ckpt"], "missing.ckpt", 1),
    ("ckpt_path_garbage", [f"ckpt_path={TMP}/garbage.ckpt"], "garbage.ckpt", 1),
    ("ckpt_path_other_width", [f"ckpt_path={TMP}/wide.ckpt"], "width=8", 1),
    ("ckpt_path_other_arch", [f"ckpt_path={TMP}/r34.ckpt"], "preact_resnet34", 1),
    ("ckpt_path_other_max_epochs", [f"ckpt_path={TMP}/planned4.ckpt"], "trainer.max_epochs=4", 1),
    ("init_from_missing", [f"init_from={TMP}/missing.ckpt"], "missing.ckpt", 1),
    ("init_from_other_width", [f"init_from={TMP}/wide.ckpt"], "width=8", 1),
    ("init_from_garbage", [f"init_from={TMP}/garbage.ckpt"], "garbage.ckpt", 1),
    ("output_dir_under_a_file", [f"paths.output_dir={TMP}/a_file/run"], "a_file/run", 1),
    ("hydra_run_dir_under_a_file", [f"hydra.run.dir={TMP}/a_file/run"], "a_file/run", 1),
    ("cifar_missing_without_download", ["data=cifar10", "data.root=/nonexistent", "data.download=false"], "/nonexistent", 1),
    ("imagefolder_missing_root", [*IMAGEFOLDER, "data.root=/nonexistent"], "/nonexistent", 1),
    ("imagefolder_empty_class", [*IMAGEFOLDER, f"data.root={TMP}/empty_class"], "train/bird holds no images", 1),
    ("imagefolder_class_only_in_test", [*IMAGEFOLDER, f"data.root={TMP}/test_only_class"], "horse", 1),
    ("imagefolder_truncated_jpeg", [*IMAGEFOLDER, f"data.root={TMP}/truncated_jpeg"], "cut.jpg", 1),
    ("imagefolder_not_an_image", [*IMAGEFOLDER, f"data.root={TMP}/not_an_image"], "notes.png", 1),
]

OTHER_CASES = [
    ("theory_d_zero", "theory", ["data.d=0"], "data.d=0", 1),
    ("theory_d_not_a_number", "theory", ["data.d=abc"], "data.d='abc'", 1),
    ("theory_rho_not_a_number", "theory", ["method=sam_m1", "method.rho=abc"], "method.rho='abc'", 1),
    ("sweep_out_under_a_file", "sweep", [f"{TMP}/runs", "--out", f"{TMP}/a_file/summary"], "a_file/summary", 2),
    ("sweep_missing_folder", "sweep", [f"{TMP}/nowhere"], "nowhere", 2),
    ("sharpness_ckpt_missing", "sharpness", [f"ckpt={TMP}/missing.ckpt"], "missing.ckpt", 2),
    ("sharpness_ckpt_garbage", "sharpness", [f"ckpt={TMP}/garbage.ckpt", "data=synthetic"], "garbage.ckpt", 2),
]


def _fill(args: list[str], root: Path) -> list[str]:
    return [a.replace(TMP, str(root)) for a in args]


SCRIPTS = {"train": ROOT / "train.py", "theory": ROOT / "theory.py"}


def run_entry(module: str, args: list[str], monkeypatch) -> int:
    """The entry point as the command line runs it (`python train.py ARGS` is runpy of the script as
    __main__, which is also how Hydra finds its config folder); returns its exit code."""
    if module == "sweep":
        from sam_lightning.sweep.cli import main

        return main(args)
    script = SCRIPTS.get(module)
    monkeypatch.setattr(sys, "argv", [str(script or "sharpness"), *args])
    GlobalHydra.instance().clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        if script is not None:
            runpy.run_path(str(script), run_name="__main__")
        else:
            runpy.run_module("sam_lightning.analysis.sharpness", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except KeyboardInterrupt:  # escaped the entry point: report it, do not end the test session
        print("KeyboardInterrupt escaped", file=sys.stderr)
        return -2
    finally:
        # Hydra points the root logger at this test's captured streams and run folder: undo it.
        for handler in set(root.handlers) - set(handlers):
            handler.close()
        root.handlers[:], root.level = handlers, level
    return 0


def check_one_line(stderr: str, code: int, expected_code: int, names: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert names in errors[0], errors[0]
    assert code == expected_code, (code, errors[0])
    assert "HYDRA_FULL_ERROR" not in stderr


@pytest.mark.parametrize(("overrides", "names", "code"), [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses_in_one_line(overrides, names, code, paths, tmp_path, capfd, monkeypatch):
    args = [*TINY, f"hydra.run.dir={tmp_path / 'run'}", *_fill(overrides, paths)]
    got = run_entry("train", args, monkeypatch)
    check_one_line(capfd.readouterr().err, got, code, names.replace(TMP, str(paths)))
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


@pytest.mark.parametrize(("module", "args", "names", "code"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES])
def test_other_commands_refuse_in_one_line(module, args, names, code, paths, tmp_path, capfd, monkeypatch):
    if module in ("theory", "sharpness"):
        key = "hydra.run.dir" if module == "theory" else "out_dir"
        args = [*args, f"{key}={tmp_path / 'out'}"]
    got = run_entry(module, _fill(args, paths), monkeypatch)
    check_one_line(capfd.readouterr().err, got, code, names)


def test_the_command_line_answers_as_the_in_process_entry_point(paths, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", *TINY, f"hydra.run.dir={paths / 'a_file' / 'run'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    check_one_line(proc.stderr, proc.returncode, 1, "a_file/run")
