"""Where images come from: torchvision's CIFAR classes, an ImageFolder tree, or synthetic data.

Every source returns the same thing, `ImageArrays`: uint8 (N, 3, 32, 32) tensors and int64 labels,
kept in memory (CIFAR is 180 MB as uint8), so training never decodes an image twice. Data that
cannot be read (a missing folder, an empty class, an undecodable file) is a `ConfigError` whose
one line names the path and the fix. Which sources exist, and which of these functions each one
calls, is `sam_lightning.data.registry`: `load_source`, `num_classes_of` and `train_images_of` ask
the source that `data.name` names there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from sam_lightning.data.registry import SOURCES, Cifar, source_of
from sam_lightning.data.spec import DataSpec
from sam_lightning.settings.config import ConfigError

log = logging.getLogger(__name__)

# The CIFAR sources' per-channel training-set statistics (mean, std), by name.
CIFAR_STATS = {name: (s.mean, s.std) for name, s in SOURCES.items() if isinstance(s, Cifar)}


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


def _cifar_class(source: Cifar):
    from torchvision import datasets

    return getattr(datasets, source.dataset)


def download_cifar(source: Cifar, data: DataSpec) -> None:
    """Fetch CIFAR into data.root unless it is already there (torchvision checks the files' md5)."""
    _read_cifar(source, data.name, data.root, download=True)


def _cifar_missing(name: str, root: str, download: bool) -> ConfigError:
    fix = "set data.download=true (needs network)" if not download else "delete the folder and download again"
    return ConfigError(
        f"{name} not found or corrupted under {os.path.abspath(root)}: {fix}, or point data.root at a folder holding it"
    )


def load_cifar(source: Cifar, data: DataSpec) -> ImageArrays:
    return _read_cifar(source, data.name, data.root, data.download)


def _read_cifar(source: Cifar, name: str, root: str, download: bool) -> ImageArrays:
    cls = _cifar_class(source)
    splits = {}
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise _cifar_missing(name, root, download) from err
        except OSError as err:  # no network while downloading
            raise ConfigError(
                f"could not download {name} into {os.path.abspath(root)} ({err.__class__.__name__}: {err}); fetch it on a machine with network and set data.root, data.download=false"
            ) from err
        splits[train] = (
            torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(ds.targets, dtype=torch.long),
        )
    mean, std = torch.tensor(source.mean), torch.tensor(source.std)
    return ImageArrays(*splits[True], *splits[False], num_classes=source.classes, mean=mean, std=std)


# What torchvision.io.decode_image reads. Other files in a class folder (README.txt, .DS_Store,
# thumbs.db, ...) are skipped and counted in the log; a file with one of these extensions that
# cannot be decoded (truncated, or not an image at all) stops the run with its path.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def _class_folders(split: Path) -> list[str]:
    return sorted(d.name for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))


def _list_images(base: Path, split: str, classes: list[str]) -> tuple[list[tuple[Path, int]], list[Path]]:
    """(image files with their class index, skipped files) of `base/split`; an empty class is an error."""
    images, skipped = [], []
    for k, c in enumerate(classes):
        found = 0
        for f in sorted((base / split / c).iterdir()):
            if not f.is_file():
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                images.append((f, k))
                found += 1
            else:
                skipped.append(f)
        if not found:
            raise ConfigError(
                f"{base / split / c} holds no images ({', '.join(IMAGE_EXTENSIONS)}): every class needs images in train/ and test/; remove the folder or add images"
            )
    return images, skipped


def _decode(files: list[tuple[Path, int]], desc: str) -> tuple[Tensor, Tensor]:
    from torchvision.io import ImageReadMode, decode_image
    from tqdm import tqdm

    images = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    for i, (f, _) in enumerate(tqdm(files, desc=desc, unit="img", mininterval=2)):
        try:
            img = decode_image(str(f), mode=ImageReadMode.RGB)
        except (OSError, RuntimeError) as err:
            # torchvision prefixes "decode_jpeg, <source file>:<line>, " to what went wrong
            reason = re.sub(r"^\w+, \S+:\d+, ", "", (str(err).strip().splitlines() or [type(err).__name__])[0])
            raise ConfigError(f"cannot decode {f}: {reason[:150]}; delete or replace the file") from err
        if img.shape[1:] != (32, 32):
            img = (
                F.interpolate(img[None].float(), size=(32, 32), mode="bilinear", antialias=True)[0]
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
        images[i] = img
    return images, torch.tensor([k for _, k in files], dtype=torch.long)


def tree_fingerprint(files: list[Path], base: Path) -> str:
    """A hash of the tree's content as the file system describes it: every image's relative path,
    size and modification time. Adding, removing, replacing or touching an image changes it."""
    h = hashlib.sha1(str(base.resolve()).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _imagefolder_files(base: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]], list[Path]]:
    """The classes of an ImageFolder tree, its training and test image files (with their class
    index) and the files skipped, listed without decoding any; a tree that cannot be used as it is
    (see `load_imagefolder`) is a ConfigError."""
    if not (base / "train").is_dir() or not (base / "test").is_dir():
        raise ConfigError(
            f"no train/ and test/ folders under {base.resolve()}: set data.root to an ImageFolder tree (train/<class>/*, test/<class>/*)"
        )
    classes = _class_folders(base / "train")
    if not classes:
        raise ConfigError(
            f"{base / 'train'} holds no class folders: an ImageFolder tree is train/<class>/*, test/<class>/*"
        )
    test_only = sorted(set(_class_folders(base / "test")) - set(classes))
    if test_only:
        raise ConfigError(
            f"{base / 'test'} has class folder(s) that train/ lacks: {', '.join(test_only)}; a class must be in both"
        )
    missing = [c for c in classes if not (base / "test" / c).is_dir()]
    if missing:
        raise ConfigError(
            f"{base / 'test'} lacks the class folder(s) {', '.join(missing)} of train/; a class must be in both"
        )
    train_files, skipped = _list_images(base, "train", classes)
    test_files, skipped_test = _list_images(base, "test", classes)
    skipped += skipped_test
    return classes, train_files, test_files, skipped


def load_imagefolder(root: str, cache_dir: str | None) -> ImageArrays:
    """Any `train/<class>/*`, `test/<class>/*` tree, decoded once (and cached, if `cache_dir`).

    The classes are the folders of train/; each must hold images in both splits, and test/ may hold
    no other class (both are errors, not silently empty or dropped classes). Non-image files are
    skipped and counted in the log; an undecodable image is an error that names the file. The cache
    is keyed on the tree's content (`tree_fingerprint`), so a changed tree is decoded again."""
    base = Path(root).expanduser()
    classes, train_files, test_files, skipped = _imagefolder_files(base)
    if skipped:
        log.warning(
            "skipped %d file(s) that are not %s images under %s, e.g. %s",
            len(skipped),
            "/".join(e[1:] for e in IMAGE_EXTENSIONS),
            base,
            skipped[0],
        )
    cache = None
    if cache_dir:
        key = tree_fingerprint([f for f, _ in train_files + test_files], base)
        cache = Path(cache_dir).expanduser() / f"imagefolder-{key}.pt"
        if cache.exists():
            log.info("%s: using the decoded images cached in %s (same files, sizes and times)", base, cache)
            return ImageArrays(**torch.load(cache, weights_only=True))
    train_x, train_y = _decode(train_files, f"decoding {base / 'train'}")
    test_x, test_y = _decode(test_files, f"decoding {base / 'test'}")
    mean, std = channel_stats(train_x)
    arrays = ImageArrays(train_x, train_y, test_x, test_y, len(classes), mean, std)
    if cache is not None:
        tmp = cache.with_suffix(".tmp")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(vars(arrays), tmp)
            os.replace(tmp, cache)
            log.info("%s: decoded images cached in %s", base, cache)
        except OSError as err:  # a cache is a saving, never a reason to fail the run
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning(
                "%s: the decoded images cannot be cached in %s (%s); going on without",
                base,
                cache.parent,
                err.strerror or err,
            )
    return arrays


def make_synthetic(n_train: int, n_test: int, num_classes: int, seed: int, noise: float = 0.6) -> ImageArrays:
    """CIFAR-shaped images whose class is a smooth colour template plus heavy per-pixel noise.

    Deterministic in `seed`, offline, and learnable: a small ResNet reaches far below chance error
    within a few epochs, while the noise keeps it from being trivial. `noise` scales the per-pixel
    noise (`data.noise`): at 0.6 a small ResNet reaches near 0% test error; at 2.5 (8x the noise
    variance per unit of class signal) a network trained on a few hundred images fits their noise
    and generalizes far worse."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(
        torch.randn(num_classes, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False
    )
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


def load_source(data: DataSpec) -> ImageArrays:
    """The images of the source `data.name` names; the arrays' mean and std are the input
    normalization the run uses (0 and 1 without data.standardize)."""
    arrays = source_of(data).load(data)
    if not data.standardize:
        arrays.mean, arrays.std = torch.zeros(3), torch.ones(3)
    return arrays


def num_classes_of(data: DataSpec) -> int:
    """The number of classes without loading any image (the model is built before Lightning's data
    hooks run). A missing data folder is an error here already, before anything else starts."""
    return source_of(data).num_classes(data)


def train_images_of(data: DataSpec) -> int:
    """The source's training images, counted without decoding any, so that the settings that depend
    on their number (the validation split, label noise, full batches) are checked before the run
    starts: synthetic: n_train; an ImageFolder tree: its image files, listed (a tree that cannot be
    used is an error here already); CIFAR: the labels of its training files (`cifar_train_images`)."""
    return source_of(data).train_images(data)


def require_cifar(source: Cifar, data: DataSpec) -> None:
    """Without data.download, CIFAR's folder must be under data.root already."""
    if not data.download and not (Path(data.root).expanduser() / _cifar_class(source).base_folder).is_dir():
        raise _cifar_missing(data.name, data.root, data.download)


# What torchvision's CIFAR download brings (its md5 sums pin the files): 50,000 training images.
CIFAR_TRAIN_IMAGES = 50_000


def cifar_train_images(source: Cifar, data: DataSpec) -> int:
    """The labels of CIFAR's training files, unpickled as torchvision does (a second or two for the
    real ones), or torchvision's 50,000 when the files are still to be downloaded."""
    cls = _cifar_class(source)
    folder = Path(data.root).expanduser() / cls.base_folder
    try:
        count = 0
        for file, _ in cls.train_list:
            with open(folder / file, "rb") as f:
                entry = pickle.load(f, encoding="latin1")  # as torchvision reads them
            count += len(entry["labels"] if "labels" in entry else entry["fine_labels"])
        return count
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as err:
        if data.download:  # missing or damaged: prepare_data downloads torchvision's files
            return CIFAR_TRAIN_IMAGES
        raise _cifar_missing(data.name, data.root, data.download) from err


def imagefolder_num_classes(root: str) -> int:
    """The class folders of an ImageFolder tree's train/, counted without listing any image."""
    train = Path(root).expanduser() / "train"
    if not train.is_dir() or not (classes := _class_folders(train)):
        raise ConfigError(
            f"no class folders under {train.resolve()}: set data.root to an ImageFolder tree (train/<class>/*, test/<class>/*)"
        )
    return len(classes)


def imagefolder_train_images(root: str) -> int:
    """An ImageFolder tree's training image files, listed (a tree that cannot be used is an error)."""
    return len(_imagefolder_files(Path(root).expanduser())[1])
