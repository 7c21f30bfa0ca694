"""Every data source through the same tests, each in its real on-disk format: CIFAR-10 and CIFAR-100
as torchvision writes them, an ImageFolder tree of PNGs, and synthetic images. Training subsets,
validation splits and label noise reach the batches; resume, the analysis commands and a laptop
preset run on each."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_config, stop_after, tiny_on
from helpers import assert_noise_figures_add_up, computed
from omegaconf import OmegaConf

from sam_lightning.data import DataSpec, ImageDataModule, load_source
from sam_lightning.data.registry import SOURCES, Source
from sam_lightning.data.sources import make_synthetic, num_classes_of, train_images_of
from sam_lightning.settings.config import ConfigError
from train import train


def data_spec(cfg) -> DataSpec:
    return DataSpec.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))


def datamodule_for(cfg) -> ImageDataModule:
    dm = ImageDataModule(data_spec(cfg))
    dm.setup("fit")
    return dm


class TinySource(Source):
    """A source that only this test registers: 40 training and 20 test images of 4 classes."""

    needs_root = False

    def __init__(self) -> None:
        self.prepared = 0

    def prepare(self, data: DataSpec) -> None:
        self.prepared += 1

    def load(self, data: DataSpec):
        return make_synthetic(40, 20, 4, seed=data.seed)

    def num_classes(self, data: DataSpec) -> int:
        return 4

    def train_images(self, data: DataSpec) -> int:
        return 40


def test_a_source_added_to_the_registry_is_read_through_the_normal_path(monkeypatch):
    # Adding a source is its entry in the registry (and a conf/train/data/<name>.yaml to pick it
    # with data=<name>): the settings' checks, the counts and the datamodule need no other edit.
    tiny = TinySource()
    monkeypatch.setitem(SOURCES, "tiny", tiny)
    data = DataSpec.from_mapping({"name": "tiny", "batch_size": 8, "val_fraction": 0.25, "label_noise": 0.5})
    assert (num_classes_of(data), train_images_of(data), data.check_sizes(train_images_of(data))) == (4, 40, 30)
    dm = ImageDataModule(data)
    dm.prepare_data()
    dm.setup("fit")
    assert tiny.prepared == 1
    assert dm.splits.sizes() == {"train": 30, "val": 10, "test": 20, "num_classes": 4, "noisy_train": 15}
    assert torch.equal(dm.splits.mean, make_synthetic(40, 20, 4, seed=0).mean)  # data.standardize: its statistics
    images, labels, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and set(labels.tolist()) <= set(range(4))
    # The settings read the entry: a name it lacks is refused with the registered names, and
    # data.root is required where the source says so.
    with pytest.raises(ConfigError, match=r"^data.name='tinier': must be one of .*, synthetic, tiny \(data=\.\.\.\)$"):
        DataSpec.from_mapping({"name": "tinier"})
    monkeypatch.setattr(tiny, "needs_root", True)
    with pytest.raises(ConfigError, match=r"^data.root is required for data=tiny: data.root=PATH$"):
        DataSpec.from_mapping({"name": "tiny"})


def test_subset_validation_split_and_flipped_labels_are_what_the_batches_carry(data_source):
    cfg = compose_config(
        tiny_on(
            data_source,
            "data.train_fraction=0.5",
            "data.val_fraction=0.25",
            "data.label_noise=0.6",
            "data.batch_size=32",
        )
    )
    full = load_source(data_spec(cfg))
    dm = datamodule_for(cfg)
    s = dm.splits
    assert s.sizes() == {
        "train": 96,
        "val": 32,
        "test": 128,
        "num_classes": full.num_classes,
        "noisy_train": round(0.6 * 96),
    }
    # Every training and validation image is one of the source's training images, none in both.
    index = {bytes(x.flatten().tolist()): i for i, x in enumerate(full.train_x)}
    train_ids = [index[bytes(x.flatten().tolist())] for x in s.train_x]
    val_ids = [index[bytes(x.flatten().tolist())] for x in s.val_x]
    assert not set(train_ids) & set(val_ids) and len(set(train_ids)) == 96
    assert torch.equal(s.train_true_y, full.train_y[train_ids])
    # Exactly the listed labels are flipped, each to another class.
    flipped = (s.train_y != s.train_true_y).nonzero().flatten()
    assert torch.equal(flipped, s.noisy_indices) and len(flipped) == round(0.6 * 96)
    # The batches training sees carry the flipped labels, and the true ones beside them.
    seen_images, seen_labels, seen_true = (torch.cat(t) for t in zip(*dm.train_dataloader()))
    by_image = {bytes(x.flatten().tolist()): (int(y), int(t)) for x, y, t in zip(s.train_x, s.train_y, s.train_true_y)}
    assert [by_image[bytes(x.flatten().tolist())] for x in seen_images] == list(
        zip(seen_labels.tolist(), seen_true.tolist())
    )
    assert int((seen_labels != seen_true).sum()) > 0.4 * len(seen_labels)


@pytest.mark.slow
def test_training_with_label_noise_and_a_subset_records_what_happened(data_source, tmp_path):
    common = ("data.train_fraction=0.5", "data.val_fraction=0.25", "trainer.max_epochs=3", "data.batch_size=32")
    noisy = train(
        compose_config(tiny_on(data_source, *common, "data.label_noise=0.6", f"paths.output_dir={tmp_path / 'noisy'}"))
    )
    clean = train(compose_config(tiny_on(data_source, *common, f"paths.output_dir={tmp_path / 'clean'}")))
    assert noisy["data_sizes"]["train"] == clean["data_sizes"]["train"] == 96 and noisy["data_sizes"]["val"] == 32
    assert noisy["data_sizes"]["noisy_train"] == 58 and "noisy_train" not in clean["data_sizes"]
    fits = [h["train/noisy_fit"] for h in noisy["history"]]
    assert len(fits) == 3 and len(set(fits)) > 1  # tracked every epoch, and it moves
    for row in noisy["history"]:
        assert_noise_figures_add_up(row, noisy["data_sizes"])
    assert noisy["final_train_noisy_fit"] is not None and clean["final_train_noisy_fit"] is None
    assert noisy["history"][0]["train/loss"] != clean["history"][0]["train/loss"]  # other labels, other run
    for run in (noisy, clean):
        val_errors = [h["val/error"] for h in run["history"]]
        assert run["final_val_error"] == val_errors[-1] and run["best_val_epoch"] == val_errors.index(min(val_errors))
        assert run["test_error_at_best_val"] == run["history"][run["best_val_epoch"]]["test/error"]
        assert run["config"]["checkpoint"]["monitor"] == "val/error"
    saved = json.loads((tmp_path / "noisy" / "noisy_labels.json").read_text())
    assert len(saved["indices"]) == 58 and all(a != b for a, b in zip(saved["noisy_labels"], saved["true_labels"]))


@pytest.mark.slow
def test_resume_on_every_source_is_exact(data_source, tmp_path):
    def run(name: str, *more: str) -> dict:
        return train(
            compose_config(
                tiny_on(
                    data_source,
                    "trainer.max_epochs=2",
                    "data.label_noise=0.25",
                    "data.val_fraction=0.25",
                    "data.batch_size=64",
                    f"paths.output_dir={tmp_path / name}",
                    *more,
                )
            )
        )

    whole = run("whole")
    run("stopped", *stop_after(0))
    resumed = run("stopped", f"ckpt_path={tmp_path / 'stopped/checkpoints/last.ckpt'}")
    assert computed(resumed["history"]) == computed(whole["history"])


@pytest.mark.slow
def test_analysis_commands_use_the_runs_own_training_points(data_source, tmp_path):
    from sam_lightning.analysis.interpolation import run as interpolation_run
    from sam_lightning.analysis.sharpness import run as sharpness_run

    ckpts = []
    for method in ("sam", "erm"):
        train(
            compose_config(
                tiny_on(
                    data_source,
                    "++trainer.limit_train_batches=2",
                    "data.batch_size=32",
                    "data.train_fraction=0.5",
                    f"method={method}",
                    f"paths.output_dir={tmp_path / method}",
                )
            )
        )
        ckpts.append(tmp_path / method / "checkpoints" / "last.ckpt")
    out = sharpness_run(
        compose_config(
            [
                f"ckpt={ckpts[0]}",
                "rho=[0.1]",
                "m=[8]",
                "n=8",
                "ascent_steps=1",
                "progress=false",
                "device=cpu",
                f"out_dir={tmp_path / 'sharpness'}",
            ],
            config_name="sharpness",
            tree="analysis",
        )
    )
    assert out["checkpoints"][0]["data"] == data_source[0].split("=")[1] and len(out["results"]) == 1
    curve = interpolation_run(
        compose_config(
            [
                f"ckpt_a={ckpts[1]}",
                f"ckpt_b={ckpts[0]}",
                "t=[0,1]",
                "train_points=300",
                "test_points=16",
                "bn_points=16",
                "progress=false",
                "device=cpu",
                f"out_dir={tmp_path / 'interpolation'}",
            ],
            config_name="interpolation",
            tree="analysis",
        )
    )
    assert curve["settings"]["train_points"] == 128  # the run's 128 training images, not the source's 256


REGIMES = ("laptop_sam_vs_erm", "laptop_small_m", "laptop_label_noise")


@pytest.mark.slow
@pytest.mark.parametrize("preset", REGIMES)
def test_laptop_regimes_train_on_every_source(preset, data_source, tmp_path):
    # The regime as composed (its subset, split, noise, norm, schedule), shrunk only in size and time.
    cfg = compose_config(
        [
            f"experiment={preset}",
            *data_source,
            "data.train_fraction=1.0",
            "model.width=4",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=1",
            "trainer.check_val_every_n_epoch=1",
            "trainer.enable_progress_bar=false",
            f"paths.output_dir={tmp_path}",
        ]
    )
    assert cfg.data.val_fraction == 0.1 and cfg.data.seed == 0 and cfg.model.init == "paper"
    out = train(cfg)
    assert (
        out["status"] == "finished" and out["final_val_error"] is not None and out["final_train_eval_error"] is not None
    )
    assert out["data_sizes"]["val"] == round(0.1 * 256)


@pytest.mark.slow
def test_eval_command_gives_the_runs_own_final_errors(data_source, tmp_path):
    from eval import evaluate

    run = train(
        compose_config(
            tiny_on(
                data_source,
                "data.val_fraction=0.25",
                "data.batch_size=64",
                "data.train_fraction=0.5",
                f"paths.output_dir={tmp_path / 'run'}",
            )
        )
    )
    out = evaluate(
        compose_config(
            [f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}", "device=cpu", f"out_dir={tmp_path / 'eval'}"],
            config_name="evaluate",
            tree="analysis",
        )
    )
    assert out["test_error"] == pytest.approx(run["final_test_error"], abs=1e-6)
    assert out["val_error"] == pytest.approx(run["final_val_error"], abs=1e-6)
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["checkpoint"]["epoch"] == 0
