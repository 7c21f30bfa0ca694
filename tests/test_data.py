"""Data: deterministic synthetic sets, batched augmentation, clear errors for missing data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from sam_lightning.data import DataSpec, load_source, random_crop_flip
from sam_lightning.data.sources import make_synthetic
from sam_lightning.settings.config import ConfigError


def test_synthetic_is_deterministic_in_the_seed_and_balanced():
    a, b, c = (
        make_synthetic(200, 50, 10, seed=3),
        make_synthetic(200, 50, 10, seed=3),
        make_synthetic(200, 50, 10, seed=4),
    )
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.dtype == torch.uint8 and a.train_x.shape == (200, 3, 32, 32)
    assert torch.bincount(a.train_y, minlength=10).tolist() == [20] * 10


def test_synthetic_classes_are_separable_by_a_linear_probe():
    a = make_synthetic(1000, 500, 10, seed=0)
    # Nearest class mean on the raw pixels: the classes carry signal far above chance.
    x, xt = a.train_x.flatten(1).float(), a.test_x.flatten(1).float()
    means = torch.stack([x[a.train_y == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(xt, means).argmin(1) == a.test_y).float().mean()
    assert accuracy > 0.5


def _within_over_between(a) -> float:
    """Per-pixel variance within classes over the variance of the class means: noise over signal."""
    x = a.train_x.flatten(1).float()
    means = torch.stack([x[a.train_y == k].mean(0) for k in range(10)])
    within = torch.stack([x[a.train_y == k].var(0) for k in range(10)]).mean()
    return float(within / means.var(0).mean())


def test_synthetic_noise_knob_buries_the_signal():
    # The demo's setting (data.noise=2.5): each pixel carries far less class signal than at the default.
    easy, hard = make_synthetic(256, 100, 10, seed=0), make_synthetic(256, 100, 10, seed=0, noise=2.5)
    assert _within_over_between(hard) > 5 * _within_over_between(easy)
    cfg = DataSpec(name="synthetic", n_train=256, n_test=100, num_classes=10, seed=0, noise=2.5)
    assert torch.equal(load_source(cfg).train_x, hard.train_x)
    assert torch.equal(load_source(replace(cfg, noise=0.6)).train_x, easy.train_x)


def test_random_crop_is_a_zero_padded_shift_and_flip_a_mirror():
    torch.manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x, padding=4, flip=True)
    padded = F.pad(x, (4, 4, 4, 4))
    shifts = set()
    for i in range(64):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                out[i],
                (
                    padded[i, :, dy : dy + 32, dx : dx + 32].flip(-1)
                    if flip
                    else padded[i, :, dy : dy + 32, dx : dx + 32]
                ),
            )
        ]
        assert matches, f"image {i} is not a shifted (mirrored) crop"
        shifts.add(matches[0])
    assert len(shifts) > 20  # offsets are drawn per image, not once per batch


def test_missing_cifar_without_download_names_path_and_fix(tmp_path):
    cfg = DataSpec(name="cifar10", root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(ConfigError) as err:
        load_source(cfg)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "data.download=true" in message and "\n" not in message


def test_imagefolder_reads_a_tree_and_refuses_a_wrong_one(tmp_path):
    from torchvision.io import write_png

    for split in ("train", "test"):
        for k, cls in enumerate(("cat", "dog")):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                write_png(
                    torch.full((3, 32, 32), 40 * k + i, dtype=torch.uint8), str(tmp_path / split / cls / f"{i}.png")
                )
    cfg = DataSpec(name="imagefolder", root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    arrays = load_source(cfg)
    assert arrays.num_classes == 2 and arrays.train_x.shape == (6, 3, 32, 32)
    assert arrays.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(arrays.train_x[4, 0, 0, 0]) == 41
    again = load_source(cfg)  # from the cache this time
    assert torch.equal(again.train_x, arrays.train_x)
    with pytest.raises(ConfigError, match="train/ and test/"):
        load_source(DataSpec(name="imagefolder", root=str(tmp_path / "train"), cache_dir=None))


def test_device_resident_batches_equal_the_dataloaders():
    # Same seed, same batches (order and content) from both training-data paths, epoch after epoch.
    from sam_lightning.data import ImageDataModule
    from sam_lightning.data.device_loader import DeviceBatches

    cfg = DataSpec(name="synthetic", n_train=100, n_test=10, num_classes=3, batch_size=16)
    runs = {}
    for on_device in (False, True):
        dm = ImageDataModule(cfg, on_device=on_device)
        dm.setup()
        loader = dm.train_dataloader()
        assert isinstance(loader, DeviceBatches) == on_device and len(loader) == 6
        torch.manual_seed(3)
        runs[on_device] = [b for _ in range(2) for b in loader]
    assert len(runs[True]) == 12
    for a, b in zip(runs[False], runs[True]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(runs[True][0][1], runs[True][6][1])  # reshuffled per epoch


@pytest.mark.slow
def test_training_on_device_resident_data_gives_the_same_run(tiny_cfg, tmp_path):
    from train import train

    runs = [
        train(tiny_cfg(f"data_on_device={flag}", "trainer.max_epochs=2", f"paths.output_dir={tmp_path / flag}"))
        for flag in ("false", "true")
    ]
    assert [h["train/loss"] for h in runs[0]["history"]] == [h["train/loss"] for h in runs[1]["history"]]
    assert runs[0]["final_test_error"] == runs[1]["final_test_error"]


def _tree(root, classes=("cat", "dog"), per_class=2):
    from torchvision.io import write_png

    for split in ("train", "test"):
        for k, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                write_png(torch.full((3, 32, 32), 40 * k + i, dtype=torch.uint8), str(root / split / cls / f"{i}.png"))


def test_imagefolder_cache_follows_the_tree_and_says_when_it_is_used(tmp_path, caplog):
    caplog.set_level("INFO", logger="sam_lightning.data.sources")
    cfg = DataSpec(name="imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"))
    _tree(tmp_path / "tree")
    assert load_source(cfg).num_classes == 2
    assert not any("using the decoded images cached" in r.message for r in caplog.records)
    assert load_source(cfg).num_classes == 2
    assert any("using the decoded images cached" in r.message for r in caplog.records)
    _tree(tmp_path / "tree", classes=("cat", "dog", "eel"))  # a class added after the first run
    again = load_source(cfg)
    assert again.num_classes == 3 and again.train_x.shape[0] == 6


def test_imagefolder_skips_non_image_files_and_counts_them(tmp_path, caplog):
    _tree(tmp_path)
    (tmp_path / "train" / "cat" / "README.txt").write_text("where these images come from")
    (tmp_path / "test" / "dog" / ".DS_Store").write_bytes(b"\0\1")
    arrays = load_source(DataSpec(name="imagefolder", root=str(tmp_path), cache_dir=None))
    assert arrays.train_x.shape[0] == 4 and arrays.test_x.shape[0] == 4
    skipped = [r.message for r in caplog.records if "skipped" in r.message]
    assert len(skipped) == 1 and "skipped 2 file(s)" in skipped[0] and "README.txt" in skipped[0]


def test_imagefolder_composed_without_a_root_is_refused_not_pointed_at_cifars_folder():
    # data/imagefolder builds on data/cifar10, whose root has a default; the tree has none.
    from conftest import compose_config
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(compose_config(["data=imagefolder"]).data, resolve=True)
    with pytest.raises(ConfigError, match="data.root is required for data=imagefolder"):
        DataSpec.from_mapping(data)
    given = OmegaConf.to_container(compose_config(["data=imagefolder", "data.root=/trees/cifar"]).data, resolve=True)
    assert DataSpec.from_mapping(given).root == "/trees/cifar"
