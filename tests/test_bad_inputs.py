"""Every bad input answered with one clear line: the exit code, one `error:` line on stderr that names
the bad value, and no traceback, through the real entry points (train.py, eval.py, theory.py,
sweep.py, the analysis commands and the bench). A user mistake exits with 2 at every one of them;
a run that failed or diverged with 1.

The Hydra entry points run in this process (`main()` with sys.argv set, exactly as the command line
calls it): starting Python, torch and Lightning for each of ~50 cases would take minutes. One case
runs as a real process, to show that the two agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, compose_config, tiny_on
from helpers import check_one_line, run_entry
from torchvision.io import encode_jpeg, write_png

from sam_lightning.data import ImageDataModule
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
    config = {
        "method": {"name": "sam", "rho": 0.1, "m": None},
        "data": {"name": "synthetic", "batch_size": 128},
        "seed": 0,
    }
    (job / "results.json").write_text(
        json.dumps({"status": "finished", "final_test_error": 0.5, "config": config, "history": []})
    )
    (root / "run" / "checkpoints").mkdir(parents=True)  # a checkpoint in its run folder, with the run's data config
    _ckpt(root / "run" / "checkpoints" / "last.ckpt")
    data = {"name": "synthetic", "n_train": 64, "n_test": 32, "num_classes": 10, "batch_size": 16, "seed": 0}
    (root / "run" / "results.json").write_text(json.dumps({"status": "finished", "config": {"data": data}}))
    for kind in ("empty_class", "test_only_class", "truncated_jpeg", "not_an_image"):
        _imagefolder(root / kind, kind)
    return root


# batches of 2: the broken trees hold 4 or 5 training images (too few for a full batch of 128 is refused first)
IMAGEFOLDER = ["data=imagefolder", "data.cache_dir=null", "data.batch_size=2", "method.m=null"]

# (case id, overrides after TINY, what the error line must contain, exit code: 2 for bad input to
# every command; 1 is a run that failed or diverged)
TRAIN_CASES = [
    ("rho_not_a_number", ["method.rho=abc"], "method.rho='abc'", 2),
    ("lr_not_a_number", ["optim.lr=fast"], "optim.lr='fast'", 2),
    ("momentum_not_a_number", ["optim.momentum=abc"], "optim.momentum='abc'", 2),
    ("m_not_a_number", ["method.m=big"], "method.m='big'", 2),
    ("seed_not_a_number", ["seed=abc"], "seed='abc'", 2),
    ("seed_negative", ["seed=-1"], "seed=-1", 2),
    ("batch_size_zero", ["data.batch_size=0"], "data.batch_size=0", 2),
    ("batch_size_not_a_number", ["data.batch_size=abc"], "data.batch_size='abc'", 2),
    ("eval_batch_size_zero", ["eval_batch_size=0"], "eval_batch_size=0", 2),
    (
        "batch_larger_than_training_set",
        ["data.n_train=64", "data.batch_size=128", "method.m=null"],
        "data.batch_size=128 exceeds the 64",
        2,
    ),
    ("synthetic_no_training_images", ["data.n_train=0"], "data.n_train=0", 2),
    ("width_zero", ["model.width=0"], "model.width=0", 2),
    ("gn_groups_not_dividing_width", ["norm=group", "model.gn_groups=3"], "model.gn_groups=3", 2),
    ("unknown_norm", ["model.norm=layer"], "model.norm='layer'", 2),
    ("unknown_method", ["method._target_=sam_lightning.variants.Adam"], "sam_lightning.variants.Adam", 2),
    ("unknown_method_key", ["+method.alpha=0.5"], "method.alpha", 2),
    ("switch_at_out_of_range", ["method=erm_to_sam", "method.switch_at=2"], "method.switch_at=2", 2),
    ("unknown_engine", ["method.engine=jit"], "method.engine='jit'", 2),
    ("chunks_per_pass_zero", ["method.chunks_per_pass=0"], "method.chunks_per_pass=0", 2),
    ("data_on_device_unknown", ["data_on_device=maybe"], "data_on_device='maybe'", 2),
    ("grad_clip_negative", ["optim.grad_clip=-1"], "optim.grad_clip=-1", 2),
    ("unknown_schedule", ["optim.schedule=linear"], "'linear'", 2),
    ("label_noise_too_large", ["data.label_noise=1.5"], "data.label_noise", 2),
    ("label_noise_not_a_number", ["data.label_noise=abc"], "data.label_noise='abc'", 2),
    ("train_fraction_zero", ["data.train_fraction=0"], "data.train_fraction", 2),
    ("max_epochs_zero", ["trainer.max_epochs=0"], "trainer.max_epochs=0", 2),
    ("max_epochs_negative", ["trainer.max_epochs=-1"], "trainer.max_epochs=-1", 2),
    ("unknown_trainer_argument", ["trainer.max_epoch=3"], "trainer.max_epoch", 2),
    ("unknown_trainer_argument_added_with_plus", ["+trainer.max_epoch=3"], "did you mean max_epochs", 2),
    # typos: named with the key they meant, before any data is read (the CIFAR root here does not exist)
    (
        "trainer_argument_typo_before_the_data",
        ["data=cifar10", "data.root=/nonexistent", "data.download=false", "trainer.max_epoch=3"],
        "did you mean max_epochs",
        2,
    ),
    ("data_key_typo_added_with_plus", ["+data.batch_sise=64"], "did you mean batch_size", 2),
    ("data_key_unknown_added_with_plus", ["+data.colour=red"], "data.colour", 2),
    ("top_k_not_a_number", ["checkpoint.top_k=abc"], "checkpoint.top_k='abc'", 2),
    ("every_n_epochs_negative", ["checkpoint.every_n_epochs=-1"], "checkpoint.every_n_epochs=-1", 2),
    (
        "callback_class_missing",
        ["+callbacks.extra._target_=pytorch_lightning.callbacks.NoSuchCallback"],
        "NoSuchCallback",
        2,
    ),
    ("logger_mode_typo", ["logger=wandb", "logger.wandb.mode=offlien"], "logger.wandb.mode='offlien'", 2),
    (
        "logger_class_missing",
        ["+logger.extra._target_=pytorch_lightning.loggers.NoSuchLogger"],
        "logger.extra._target_='pytorch_lightning.loggers.NoSuchLogger'",
        2,
    ),
    ("logger_not_a_logger", ["+logger.extra._target_=collections.OrderedDict"], "is not a Lightning logger", 2),
    ("logger_boolean_off", ["logger=tensorboard", "+logger.tensorboard.log_graph=off"], "log_graph='off'", 2),
    (
        "wandb_online_without_an_api_key",
        ["logger=wandb", "logger.wandb.mode=online"],
        "logger.wandb.mode=online needs a W&B API key",
        2,
    ),
    ("ckpt_path_missing", [f"ckpt_path={TMP}/missing.ckpt"], "missing.ckpt", 2),
    ("ckpt_path_garbage", [f"ckpt_path={TMP}/garbage.ckpt"], "garbage.ckpt", 2),
    ("ckpt_path_other_width", [f"ckpt_path={TMP}/wide.ckpt"], "width=8", 2),
    ("ckpt_path_other_arch", [f"ckpt_path={TMP}/r34.ckpt"], "preact_resnet34", 2),
    ("ckpt_path_other_max_epochs", [f"ckpt_path={TMP}/planned4.ckpt"], "trainer.max_epochs=4", 2),
    ("init_from_missing", [f"init_from={TMP}/missing.ckpt"], "missing.ckpt", 2),
    ("init_from_other_width", [f"init_from={TMP}/wide.ckpt"], "width=8", 2),
    ("init_from_garbage", [f"init_from={TMP}/garbage.ckpt"], "garbage.ckpt", 2),
    ("output_dir_under_a_file", [f"paths.output_dir={TMP}/a_file/run"], "a_file/run", 2),
    ("hydra_run_dir_under_a_file", [f"hydra.run.dir={TMP}/a_file/run"], "a_file/run", 2),
    (
        "cifar_missing_without_download",
        ["data=cifar10", "data.root=/nonexistent", "data.download=false"],
        "/nonexistent",
        2,
    ),
    ("imagefolder_missing_root", [*IMAGEFOLDER, "data.root=/nonexistent"], "/nonexistent", 2),
    ("imagefolder_empty_class", [*IMAGEFOLDER, f"data.root={TMP}/empty_class"], "train/bird holds no images", 2),
    ("imagefolder_class_only_in_test", [*IMAGEFOLDER, f"data.root={TMP}/test_only_class"], "horse", 2),
    ("imagefolder_truncated_jpeg", [*IMAGEFOLDER, f"data.root={TMP}/truncated_jpeg"], "cut.jpg", 2),
    ("imagefolder_not_an_image", [*IMAGEFOLDER, f"data.root={TMP}/not_an_image"], "notes.png", 2),
    # booleans take true/false only: any other word would silently turn the option on
    ("augment_off", ["data.augment=off"], "data.augment='off'", 2),
    ("eval_train_yes", ["data.eval_train=yes"], "data.eval_train='yes'", 2),
    ("channels_last_maybe", ["channels_last=maybe"], "channels_last='maybe'", 2),
    ("compile_maybe", ["compile=maybe"], "compile='maybe'", 2),
    ("compile_with_vmap", ["compile=true", "method.engine=vmap"], "compile=true with method.engine=vmap", 2),
    ("precision_unknown", ["trainer.precision=fp8"], "fp8", 2),
    ("nesterov_on", ["optim.nesterov=on"], "optim.nesterov='on'", 2),
    ("normalize_no", ["method.normalize=no"], "method.normalize='no'", 2),
    ("progress_bar_off", ["trainer.enable_progress_bar=off"], "trainer.enable_progress_bar='off'", 2),
    (
        "callback_boolean_off",
        ["callbacks.last_checkpoint.save_on_train_epoch_end=off"],
        "callbacks.last_checkpoint.save_on_train_epoch_end='off'",
        2,
    ),
    # runs that would train nothing
    ("limit_train_batches_zero", ["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0", 2),
    ("max_steps_zero", ["trainer.max_steps=0"], "trainer.max_steps=0", 2),
    (
        "no_full_batch_per_device",
        ["trainer.devices=3", "data.batch_size=128", "method.m=null"],
        "85 per device on 3 devices",
        2,
    ),
    # values checked before anything trains
    (
        "early_stopping_patience_not_a_number",
        ["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=abc"],
        "callbacks.early_stopping.patience='abc'",
        2,
    ),
    ("synthetic_noise_negative", ["data.noise=-1"], "data.noise=-1", 2),
    ("unknown_data_source", ["data.name=mnist"], "data.name='mnist'", 2),
    ("data_seed_not_a_number", ["data.seed=abc"], "data.seed='abc'", 2),
    ("checkpoint_monitor_empty", ["checkpoint.monitor=''"], "checkpoint.monitor=''", 2),
    (
        "init_from_with_ckpt_path",
        [f"init_from={TMP}/good.ckpt", f"ckpt_path={TMP}/good.ckpt"],
        "init_from and ckpt_path",
        2,
    ),
    (
        "swa_refused",
        [
            "+callbacks.swa._target_=pytorch_lightning.callbacks.StochasticWeightAveraging",
            "+callbacks.swa.swa_lrs=0.01",
        ],
        "StochasticWeightAveraging",
        2,
    ),
    # values that would train nothing or mislead, refused before the run starts
    (
        "label_noise_flips_no_label",
        ["data.label_noise=0.001"],
        "data.label_noise=0.001 flips no label of the 256 training images: the smallest noise that flips one is 0.00196",
        2,
    ),
    (
        "val_fraction_holds_out_no_image",
        ["data.val_fraction=0.001"],
        "data.val_fraction=0.001 holds out no image of the 256 training images",
        2,
    ),
    ("monitor_without_a_validation_split", ["checkpoint.monitor=val/error"], "only with data.val_fraction > 0", 2),
    ("monitor_not_logged", ["checkpoint.monitor=nope"], "use auto or one of train/loss", 2),
    (
        "criterion_metric_typo",
        ["method=erm", "+criterion.metric=train/eror", "+criterion.at_most=0.1"],
        "criterion.metric='train/eror': this run logs no such metric; did you mean train/error?",
        2,
    ),
    (
        "criterion_method_typo",
        ["+criterion.metric=train/error", "+criterion.at_most=0.1", "+criterion.methods=[samm]"],
        "criterion.methods: 'samm' is no method's name; did you mean sam?",
        2,
    ),
    # a key no code reads, added with +, at the top level and in a section without a spec
    ("unknown_top_level_key", ["+seeed=1"], "unknown key seeed; did you mean seed?", 2),
    ("unknown_resume_key", [f"+ckpt_pth={TMP}/good.ckpt"], "unknown key ckpt_pth; did you mean ckpt_path?", 2),
    ("unknown_init_key", [f"+init_form={TMP}/good.ckpt"], "unknown key init_form; did you mean init_from?", 2),
    ("unknown_checkpoint_key", ["+checkpoint.topk=2"], "unknown key checkpoint.topk; did you mean top_k?", 2),
    # Hydra's own composition errors
    ("hydra_key_typo", ["method.rhoo=0.2"], "cannot set method.rhoo: no such key; did you mean rho?", 2),
    ("hydra_option_typo", ["method=sam_m12"], "method=sam_m12: no such option; did you mean sam_m128?", 2),
    ("hydra_override_unparsable", ["seed=[1"], "cannot parse seed=[1", 2),
]

OTHER_CASES = [
    ("theory_d_zero", "theory", ["data.d=0"], "data.d=0", 2),
    ("theory_d_not_a_number", "theory", ["data.d=abc"], "data.d='abc'", 2),
    ("theory_rho_not_a_number", "theory", ["method=sam_m1", "method.rho=abc"], "method.rho='abc'", 2),
    (
        "theory_rho_negative",
        "theory",
        ["experiment=diag_net", "method=sam_m1", "method.rho=-0.5"],
        "method.rho=-0.5: must be a number >= 0",
        2,
    ),
    ("theory_iterations_zero", "theory", ["experiment=diag_net", "train.iterations=0"], "train.iterations=0", 2),
    ("theory_normalize_no", "theory", ["method=sam", "method.normalize=no"], "method.normalize='no'", 2),
    ("sharpness_one_step_no", "sharpness", [f"ckpt={TMP}/good.ckpt", "one_step=no"], "one_step='no'", 2),
    (
        "interpolation_recompute_bn_off",
        "interpolation",
        [f"ckpt_a={TMP}/good.ckpt", f"ckpt_b={TMP}/good.ckpt", "recompute_bn=off"],
        "recompute_bn='off'",
        2,
    ),
    ("bench_unknown_engine", "bench", ["engines=[jit]"], "'jit'", 2),
    ("bench_unknown_precision", "bench", ["precisions=[fp8]"], "'fp8'", 2),
    ("bench_out_under_a_file", "bench", [f"out={TMP}/a_file/bench.json"], "a_file/bench.json", 2),
    ("bench_channels_last_maybe", "bench", ["channels_last=[maybe]"], "channels_last='maybe'", 2),
    ("sweep_out_under_a_file", "sweep", [f"{TMP}/runs", "--out", f"{TMP}/a_file/summary"], "a_file/summary", 2),
    ("sweep_missing_folder", "sweep", [f"{TMP}/nowhere"], "nowhere", 2),
    ("sharpness_ckpt_missing", "sharpness", [f"ckpt={TMP}/missing.ckpt"], "missing.ckpt", 2),
    ("sharpness_ckpt_garbage", "sharpness", [f"ckpt={TMP}/garbage.ckpt", "data=synthetic"], "garbage.ckpt", 2),
    ("sharpness_ckpt_left_out", "sharpness", [], "ckpt is required", 2),
    (
        "sharpness_data_key_typo",
        "sharpness",
        [f"ckpt={TMP}/good.ckpt", "data=synthetic", "+data.n_trian=64"],
        "did you mean n_train",
        2,
    ),
    (
        "interpolation_ckpt_missing",
        "interpolation",
        [f"ckpt_a={TMP}/missing.ckpt", f"ckpt_b={TMP}/good.ckpt"],
        "missing.ckpt",
        2,
    ),
    (
        "interpolation_other_architectures",
        "interpolation",
        [f"ckpt_a={TMP}/good.ckpt", f"ckpt_b={TMP}/wide.ckpt"],
        "another architecture",
        2,
    ),
    ("eval_ckpt_path_left_out", "eval", [], "ckpt_path is required", 2),
    ("eval_ckpt_missing", "eval", [f"ckpt_path={TMP}/missing.ckpt"], "missing.ckpt", 2),
    ("eval_without_run_config", "eval", [f"ckpt_path={TMP}/good.ckpt"], "no run config found", 2),
    (
        "eval_data_augment_off",
        "eval",
        [f"ckpt_path={TMP}/run/checkpoints/last.ckpt", "+data.augment=off"],
        "data.augment='off'",
        2,
    ),
    ("eval_batch_size_zero", "eval", [f"ckpt_path={TMP}/run/checkpoints/last.ckpt", "batch_size=0"], "batch_size=0", 2),
    (
        "interpolation_batch_size_zero",
        "interpolation",
        [f"ckpt_a={TMP}/good.ckpt", f"ckpt_b={TMP}/good.ckpt", "batch_size=0"],
        "batch_size=0",
        2,
    ),
    ("sharpness_m_zero", "sharpness", [f"ckpt={TMP}/good.ckpt", "m=[0]"], "every batch size must be >= 1", 2),
    ("eval_unknown_key", "eval", [f"ckpt_path={TMP}/good.ckpt", "+batch_sise=64"], "did you mean batch_size?", 2),
    ("sharpness_unknown_key", "sharpness", [f"ckpt={TMP}/good.ckpt", "+seeed=1"], "did you mean seed?", 2),
    ("theory_unknown_key", "theory", ["+seeed=1"], "unknown key seeed; did you mean seed?", 2),
    ("theory_unknown_switch_key", "theory", ["+switch.att=5"], "unknown key switch.att; did you mean at?", 2),
    (
        "theory_hydra_key_typo",
        "theory",
        ["method.rhoo=0.2"],
        "cannot set method.rhoo: no such key; did you mean rho?",
        2,
    ),
    ("theory_hydra_option_typo", "theory", ["method=sam_m2"], "method=sam_m2: no such option; did you mean sam_m1?", 2),
    ("eval_hydra_key_typo", "eval", [f"ckpt_path={TMP}/good.ckpt", "batch_sise=64"], "cannot set batch_sise", 2),
    (
        "sharpness_hydra_option_typo",
        "sharpness",
        [f"ckpt={TMP}/good.ckpt", "data=cifar1"],
        "data=cifar1: no such option",
        2,
    ),
    (
        "interpolation_hydra_key_typo",
        "interpolation",
        [f"ckpt_a={TMP}/good.ckpt", f"ckpt_b={TMP}/good.ckpt", "t_nun=5"],
        "cannot set t_nun: no such key; did you mean t_num?",
        2,
    ),
    (
        "sweep_paired_without_the_key",
        "sweep",
        [f"{TMP}/runs", "--paired", "colour", "--baseline", "erm"],
        "--paired colour",
        2,
    ),
]


def _fill(args: list[str], root: Path) -> list[str]:
    return [a.replace(TMP, str(root)) for a in args]


@pytest.mark.parametrize(("overrides", "names", "code"), [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses_in_one_line(overrides, names, code, paths, tmp_path, capfd, monkeypatch):
    args = [*TINY, f"hydra.run.dir={tmp_path / 'run'}", *_fill(overrides, paths)]
    got = run_entry("train", args, monkeypatch)
    check_one_line(capfd.readouterr().err, got, code, names.replace(TMP, str(paths)))
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


@pytest.mark.parametrize(
    ("module", "args", "names", "code"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES]
)
def test_other_commands_refuse_in_one_line(module, args, names, code, paths, tmp_path, capfd, monkeypatch):
    if module in ("theory", "sharpness", "interpolation", "eval"):
        key = "hydra.run.dir" if module == "theory" else "out_dir"
        args = [*args, f"{key}={tmp_path / 'out'}"]
    got = run_entry(module, _fill(args, paths), monkeypatch)
    check_one_line(capfd.readouterr().err, got, code, names)


@pytest.mark.slow
def test_the_command_line_answers_as_the_in_process_entry_point(paths, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "train.py", *TINY, f"hydra.run.dir={paths / 'a_file' / 'run'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_one_line(proc.stderr, proc.returncode, 2, "a_file/run")


# -- values that train nothing or mislead, on every data source -------------------------------------
# The training images are counted before the run starts (CIFAR's labels read, an ImageFolder tree's
# files listed, a synthetic set's n_train), so that the refusal comes before anything is written.
SPLIT_CASES = {
    "label_noise_flips_no_label": (
        ["data.label_noise=0.001"],
        "data.label_noise=0.001 flips no label of the 256 training images: the smallest noise that flips one is 0.00196",
    ),
    "val_fraction_holds_out_no_image": (
        ["data.val_fraction=0.001"],
        "data.val_fraction=0.001 holds out no image of the 256 training images: the smallest fraction that holds out one is 0.00196",
    ),
    "label_noise_of_a_subset": (
        ["data.train_fraction=0.1", "data.label_noise=0.01", "data.batch_size=16", "method.m=null"],
        "data.label_noise=0.01 flips no label of the 26 training images (data.train_fraction=0.1 of 256)",
    ),
    "monitor_without_a_validation_split": (
        ["checkpoint.monitor=val/error"],
        "checkpoint.monitor='val/error': this run logs no such metric (it is logged only with data.val_fraction > 0)",
    ),
    "too_few_images_for_a_batch": (
        ["data.train_fraction=0.1", "data.batch_size=32", "method.m=null"],
        "data.batch_size=32 exceeds the 26 training images",
    ),
}


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_a_split_or_noise_of_no_image_is_refused_before_the_run_on_every_source(case, data_source, tmp_path):
    from sam_lightning.settings.config import ConfigError
    from sam_lightning.training.run_spec import build_run

    overrides, names = SPLIT_CASES[case]
    with pytest.raises(ConfigError) as err:
        build_run(compose_config(tiny_on(data_source, f"paths.output_dir={tmp_path / 'run'}", *overrides)))
    assert names in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # nothing decoded or written


def test_the_smallest_fractions_named_are_accepted_on_every_source(data_source, tmp_path):
    from sam_lightning.training.run_spec import build_run

    # 0.00196 of 256 holds out one image; the smallest noise that flips one of the other 255 is 0.00197
    run = build_run(
        compose_config(
            tiny_on(
                data_source, f"paths.output_dir={tmp_path}", "data.val_fraction=0.00196", "data.label_noise=0.00197"
            )
        )
    )
    assert run.selection_metric == "val/error"
    dm = ImageDataModule(run.data)
    dm.setup("fit")
    assert dm.splits.sizes()["val"] == 1 and dm.splits.sizes()["noisy_train"] == 1


def test_an_optuna_study_of_no_trial_is_refused_before_anything_is_written(tmp_path, capfd, monkeypatch):
    pytest.importorskip("optuna")
    sweep = tmp_path / "sweep"
    got = run_entry(
        "train",
        [*TINY, "hparams_search=rho_optuna", "hydra.sweeper.n_trials=0", f"hydra.sweep.dir={sweep}"],
        monkeypatch,
    )
    check_one_line(capfd.readouterr().err, got, 2, "hydra.sweeper.n_trials=0: must be an integer >= 1")
    assert not sweep.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,names",
    [
        (["method=sam_m12"], "method=sam_m12: no such option; did you mean sam_m128?"),
        (["+ckpt_pth=last.ckpt"], "unknown key ckpt_pth; did you mean ckpt_path?"),
    ],
    ids=["hydra_option_typo", "unknown_key"],
)
def test_a_bad_input_exits_2_from_the_command_line(overrides, names, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_one_line(proc.stderr, proc.returncode, 2, names)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# m must divide the batch wherever the two are given: the method's m, the data's batch size, a
# preset's m, the theory command, and a hand-written loop calling the step itself
M_NOT_DIVIDING = {
    "method_m": ("train", ["method.m=48"], "method.m=48 must divide"),
    "data_batch_size": ("train", ["method.m=32", "data.batch_size=48"], "method.m=32 must divide"),
    "preset_m": ("train", ["method=sam_m128", "data.batch_size=192", "data.n_train=384"], "method.m=128 must divide"),
    "theory": (
        "theory",
        ["experiment=diag_net", "method=sam", "method.m=3", "train.iterations=2"],
        "method.m=3 must divide the number of examples data.n=20",
    ),
    "theory_batch_size": (
        "theory",
        ["experiment=diag_net", "method=sam", "method.m=2", "train.batch_size=5", "train.iterations=2"],
        "method.m=2 must divide the batch size train.batch_size=5",
    ),
    "library": ("library", [], "method.m=5 must be a positive divisor of the batch size 16"),
}


@pytest.mark.parametrize("where", M_NOT_DIVIDING)
def test_m_must_divide_the_batch(where, tmp_path, capfd, monkeypatch):
    entry, args, names = M_NOT_DIVIDING[where]
    if entry == "library":
        import torch.nn.functional as F
        from helpers import fixed_batch, mlp

        from sam_lightning.core.step import sam_gradients
        from sam_lightning.variants import SAM

        model, (x, y) = mlp(), fixed_batch(16)
        with pytest.raises(ValueError, match=names):
            sam_gradients(model, list(model.parameters()), F.cross_entropy, x, y, SAM(m=5), rho=0.1)
        return
    prefix = TINY if entry == "train" else []
    got = run_entry(entry, [*prefix, *args, f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, names)
    if entry == "train":  # a refused training run writes nothing (a multirun job records it: test_run_status.py)
        assert not (tmp_path / "run").exists()
        return
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())  # refused, and recorded as such
    assert recorded["status"] == "failed" and recorded["reason"].startswith("ConfigError: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_bench_refuses_cuda_without_a_gpu(capfd, monkeypatch):
    got = run_entry("bench", ["device=cuda"], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, "device=cuda")


SEARCH_SPACES = {
    "log_interval_below_zero": "optim.lr=tag(log, interval(-1, 0.5))",
    "reversed_interval": "method.rho=interval(0.5, 0.1)",
}


@pytest.mark.parametrize("space", SEARCH_SPACES.values(), ids=SEARCH_SPACES.keys())
def test_bad_optuna_search_space_is_one_line_before_any_trial(space, tmp_path, capfd, monkeypatch):
    pytest.importorskip("optuna")
    got = run_entry("train", [*TINY, "hparams_search=rho_optuna", space, f"hydra.sweep.dir={tmp_path}"], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, space.split("=", 1)[0])
    assert not list(tmp_path.glob("*/results.json"))


def test_diverged_theory_run_exits_1_as_training(tmp_path, capfd, monkeypatch):
    got = run_entry(
        "theory",
        [
            "experiment=diag_net",
            "train.iterations=50",
            "train.log_every=10",
            "train.lr=100",
            f"hydra.run.dir={tmp_path}",
        ],
        monkeypatch,
    )
    check_one_line(capfd.readouterr().err, got, 1, "diverged")
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "diverged"


def test_every_boolean_of_conf_is_checked():
    """Each true/false default in conf/ is a key some check knows (a new one must be added): a
    boolean field of the spec that holds it (train.py's settings, the data, the variants), a
    boolean pl.Trainer argument, or a key of strict.BOOLEANS (the analysis commands, theory, bench)."""
    import dataclasses

    import yaml

    import sam_lightning.variants as variants
    from sam_lightning.data import DataSpec
    from sam_lightning.settings.config import OptimSpec
    from sam_lightning.settings.strict import BOOLEANS
    from sam_lightning.training.run_spec import TRAINER_BOOLEANS, LoggingSpec, RunSpec

    specs = [DataSpec, OptimSpec, LoggingSpec, RunSpec]
    specs += [c for c in vars(variants).values() if dataclasses.is_dataclass(c)]
    known = {f.name for cls in specs for f in dataclasses.fields(cls) if "bool" in str(f.type)}
    known |= set(TRAINER_BOOLEANS) | {key.rsplit(".", 1)[-1] for keys in BOOLEANS.values() for key in keys}
    known |= {"chdir", "plots"}  # Hydra's own settings and its callbacks' arguments
    known |= {"fast_dev_run"}  # true, false or a number of batches: Lightning refuses any other value itself
    found = set()

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, path)
        elif isinstance(node, bool):
            found.add((path.rsplit(".", 1)[-1], path))

    for file in (ROOT / "conf").rglob("*.yaml"):
        walk(yaml.safe_load(file.read_text()), "")
    callback_arguments = {
        "save_on_train_epoch_end",
        "auto_insert_metric_name",
        "enable_version_counter",
        "log_model",
        "default_hp_metric",
    }  # callbacks' and loggers' arguments, checked by their classes' signatures
    # hydra.job_logging is Python's logging config (dictConfig), set in conf/, not a run's setting
    missing = sorted(
        path
        for name, path in found
        if name not in known | callback_arguments and not path.startswith("hydra.job_logging.")
    )
    assert not missing, missing


# -- one run, one folder -----------------------------------------------------------------------------
def _earlier_run(folder: Path) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- method=sam\n")
    (folder / "results.json").write_text(json.dumps({"status": "finished", "config": {"method": {"name": "sam"}}}))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "epoch099.ckpt").write_text("the earlier run's")


@pytest.mark.parametrize("key", ["hydra.run.dir", "paths.output_dir"])
def test_a_folder_that_holds_a_run_is_refused(key, tmp_path, capfd, monkeypatch):
    folder = tmp_path / "run"
    _earlier_run(folder)
    elsewhere = (
        [f"hydra.run.dir={tmp_path / 'hydra'}"] if key != "hydra.run.dir" else []
    )  # Hydra's own folder under tmp too
    got = run_entry("train", [*TINY, "method=erm", f"{key}={folder}", *elsewhere], monkeypatch)
    check_one_line(capfd.readouterr().err, got, 2, "already holds a run")
    assert json.loads((folder / "results.json").read_text())["status"] == "finished"  # left as it was
    assert (folder / ".hydra" / "overrides.yaml").read_text() == "- method=sam\n"
    assert (folder / "checkpoints" / "epoch099.ckpt").exists()


@pytest.mark.slow
def test_overwrite_replaces_the_earlier_run(tmp_path, capfd, monkeypatch):
    folder = tmp_path / "run"
    _earlier_run(folder)
    got = run_entry("train", [*TINY, "method=erm", f"hydra.run.dir={folder}", "overwrite=true"], monkeypatch)
    assert got == 0, capfd.readouterr().err[-2000:]
    assert json.loads((folder / "results.json").read_text())["config"]["method"]["name"] == "erm"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_two_runs_started_together_write_two_folders_without_a_warning(tmp_path):
    # The default hydra.run.dir (outputs/<date>/<time>_<method>_<data>_<token>, under the working
    # folder) is checked for writability before Hydra creates it: silently, and for real.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "train.py"),
                *TINY,
                "trainer.log_every_n_steps=1",
                "callbacks=none",
                f"paths.log_dir={tmp_path}",
                f"seed={seed}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert "warning" not in (out + err).lower(), err[-3000:]
    results = sorted(tmp_path.glob("outputs/*/*_sam_m32_synthetic_*/results.json"))
    assert len(results) == 2, [str(p) for p in tmp_path.rglob("*")][:20]
    assert sorted(json.loads(p.read_text())["config"]["seed"] for p in results) == [0, 1]
    # not by luck of the second: the default folder ends with the start's microseconds
    import re

    assert all(re.search(r"_[0-9]{6}$", p.parent.name) for p in results), [p.parent.name for p in results]


def test_a_checkpoint_with_code_is_refused_without_advising_weights_only_false(tmp_path):
    import pickle

    from sam_lightning.run.checkpoints import load_checkpoint
    from sam_lightning.settings.config import ConfigError

    (tmp_path / "code.ckpt").write_bytes(pickle.dumps(Path("/")))  # unpickling it would construct an object
    with pytest.raises(ConfigError) as err:
        load_checkpoint(tmp_path / "code.ckpt")
    assert "code.ckpt" in str(err.value) and "weights_only" not in str(err.value) and "False" not in str(err.value)


# -- one error type, one exit code per kind of outcome ----------------------------------------------
def _exit_of(job, capfd) -> tuple[int, str]:
    from sam_lightning.entry import run_command

    with pytest.raises(SystemExit) as stop:
        run_command(job, None)
    return stop.value.code, capfd.readouterr().err


def test_run_command_exits_2_for_a_user_mistake_1_for_a_failure_and_the_errors_own_code(capfd):
    from sam_lightning.run.results import TrainingDiverged
    from sam_lightning.settings.config import ConfigError
    from sam_lightning.training.callbacks.preemption import Preempted

    def raising(error):
        def job(cfg):
            raise error

        return job

    code, err = _exit_of(raising(ConfigError("data.batch_size=0: must be an integer >= 1")), capfd)
    check_one_line(err, code, 2, "data.batch_size=0")
    code, err = _exit_of(raising(TrainingDiverged(float("nan"), 0, 3)), capfd)
    check_one_line(err, code, 1, "training diverged")
    code, err = _exit_of(raising(Preempted("preempted (SIGTERM) at step 3")), capfd)
    check_one_line(err, code, 143, "preempted")
    code, err = _exit_of(raising(RuntimeError("CUDA out of memory")), capfd)  # a failed run: its traceback
    assert code == 1 and "Traceback" in err and "error: RuntimeError: CUDA out of memory" in err


# -- Hydra's mode flags: at most one per command ------------------------------------------------------
MODE_FLAGS = {
    "multirun_cfg": ("train", ["-m", "experiment=smoke", "--cfg", "job"], "--cfg shows one job's config"),
    "multirun_cfg_hydra": (
        "train",
        ["--multirun", "--cfg=hydra", "seed=0,1"],
        "drop -m and give one value per swept key",
    ),
    "theory_multirun_cfg": ("theory", ["-m", "method=erm,sam", "-c", "job"], "--cfg shows one job's config"),
    "cfg_info": ("train", ["--cfg", "job", "--info"], "--cfg and --info cannot be combined"),
}


@pytest.mark.parametrize("entry,args,names", MODE_FLAGS.values(), ids=MODE_FLAGS.keys())
def test_two_mode_flags_are_one_line(entry, args, names, capfd, monkeypatch):
    got = run_entry(entry, args, monkeypatch)
    out, err = capfd.readouterr()
    check_one_line(err, got, 2, names)
    assert out == ""  # refused before Hydra printed anything


@pytest.mark.slow
def test_a_multiruns_cfg_from_the_command_line_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "experiment=smoke", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_one_line(proc.stderr, proc.returncode, 2, "--cfg shows one job's config")
    assert "--cfg hydra" in proc.stderr and proc.stdout == ""
