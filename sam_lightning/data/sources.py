"""Where images come from: torchvision's CIFAR classes, an ImageFolder tree, or synthetic data.

Every source returns the same thing, `ImageArrays`: uint8 (N, 3, 32, 32) tensors and int64 labels,
kept in memory (CIFAR is 180 MB as uint8), so training never decodes an image twice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class DataUnavailableError(RuntimeError):
    """The data set cannot be read; the message names the path and the fix, in one line."""


@dataclass
class ImageArrays:
    train_x: Tensor  # uint8 (N, C, H, W)
    train_y: Tensor  # int64 (N,)
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    mean: Tensor  # per channel, in [0, 1] units
    std: Tensor


def channel_stats(x_uint8: Tensor) -> tuple[Tensor, Tensor]:
    x = x_uint8.float().div_(255.0)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def load_cifar(name: str, root: str, download: bool) -> ImageArrays:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    splits = {}
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            fix = "set data.download=true (needs network)" if not download else "delete the folder and download again"
            raise DataUnavailableError(f"{name} not found or corrupted under {os.path.abspath(root)}: {fix}, or point data.root at a folder holding it") from err
        except OSError as err:  # no network while downloading
            raise DataUnavailableError(f"could not download {name} into {os.path.abspath(root)} ({err.__class__.__name__}: {err}); fetch it on a machine with network and set data.root, data.download=false") from err
        splits[train] = (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long))
    mean, std = (torch.tensor(s) for s in CIFAR_STATS[name])
    return ImageArrays(*splits[True], *splits[False], num_classes=100 if name == "cifar100" else 10, mean=mean, std=std)


def _decode_folder(folder: Path, classes: list[str]) -> tuple[Tensor, Tensor]:
    from torchvision.io import ImageReadMode, decode_image
    from tqdm import tqdm

    files = [(f, k) for k, c in enumerate(classes) for f in sorted((folder / c).iterdir()) if f.is_file()]
    images = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    for i, (f, _) in enumerate(tqdm(files, desc=f"decoding {folder}", unit="img", mininterval=2)):
        img = decode_image(str(f), mode=ImageReadMode.RGB)
        if img.shape[1:] != (32, 32):
            img = F.interpolate(img[None].float(), size=(32, 32), mode="bilinear", antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
        images[i] = img
    return images, torch.tensor([k for _, k in files], dtype=torch.long)


def load_imagefolder(root: str, cache_dir: str | None) -> ImageArrays:
    """Any `train/<class>/*`, `test/<class>/*` tree, decoded once (and cached, if `cache_dir`)."""
    base = Path(root).expanduser()
    if not (base / "train").is_dir() or not (base / "test").is_dir():
        raise DataUnavailableError(f"no train/ and test/ folders under {base.resolve()}: set data.root to an ImageFolder tree (train/<class>/*, test/<class>/*)")
    classes = sorted(d.name for d in (base / "train").iterdir() if d.is_dir())
    cache = None
    if cache_dir:
        key = hashlib.sha1(str(base.resolve()).encode()).hexdigest()[:12]
        cache = Path(cache_dir).expanduser() / f"imagefolder-{key}.pt"
        if cache.exists():
            return ImageArrays(**torch.load(cache, weights_only=True))
    try:
        train_x, train_y = _decode_folder(base / "train", classes)
        test_x, test_y = _decode_folder(base / "test", classes)
    except (OSError, RuntimeError) as err:
        raise DataUnavailableError(f"cannot read images under {base.resolve()}: {err}") from err
    mean, std = channel_stats(train_x)
    arrays = ImageArrays(train_x, train_y, test_x, test_y, len(classes), mean, std)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(vars(arrays), tmp)
        os.replace(tmp, cache)
    return arrays


def make_synthetic(n_train: int, n_test: int, num_classes: int, seed: int, noise: float = 0.6) -> ImageArrays:
    """CIFAR-shaped images whose class is a smooth colour template plus heavy per-pixel noise.

    Deterministic in `seed`, offline, and learnable: a small ResNet reaches far below chance error
    within a few epochs, while the noise keeps it from being trivial. `noise` scales the per-pixel
    noise (`data.noise`): at 0.6 a small ResNet reaches near 0% test error; at 2.5 (8x the noise
    variance per unit of class signal) a network trained on a few hundred images fits their noise
    and generalizes far worse."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.randn(num_classes, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False)
    templates = templates / templates.flatten(1).std(dim=1)[:, None, None, None]

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = templates[y] + noise * torch.randn(n, 3, 32, 32, generator=g) * 2.5
        x = (0.5 + 0.12 * x).clamp(0, 1)
        return (x * 255).round().to(torch.uint8), y

    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    mean, std = channel_stats(train_x)
    return ImageArrays(train_x, train_y, test_x, test_y, num_classes, mean, std)


def load_source(cfg) -> ImageArrays:
    """Dispatch on `data.name` (a Hydra `data` config or any object with the same attributes)."""
    if cfg.name in CIFAR_STATS:
        return load_cifar(cfg.name, cfg.root, cfg.download)
    if cfg.name == "imagefolder":
        return load_imagefolder(cfg.root, cfg.get("cache_dir"))
    if cfg.name == "synthetic":
        return make_synthetic(cfg.n_train, cfg.n_test, cfg.num_classes, cfg.seed, noise=cfg.get("noise", 0.6))
    raise ValueError(f"unknown data.name {cfg.name!r}: use cifar10, cifar100, imagefolder or synthetic")
