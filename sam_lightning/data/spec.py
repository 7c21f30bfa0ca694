"""What a run reads: one frozen, checked `DataSpec` (the `data` node of conf/train/data/*.yaml).

    data = DataSpec.from_mapping({"name": "synthetic", "n_train": 256, "n_test": 128, "num_classes": 10})

The datamodule, the splits, the sources and the analysis commands read its fields; every value is
checked here once, before any image is read. No torch here: tools that only check settings start fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sam_lightning.data.registry import SOURCES
from sam_lightning.settings.config import ConfigError, from_mapping, is_number, require_int


def subset_images(n: int, train_fraction: float) -> int:
    """How many of n source images the training subset keeps (at least one; all at 1)."""
    return n if train_fraction == 1 else max(1, round(train_fraction * n))


def training_images(n: int, train_fraction: float, val_fraction: float) -> int:
    """How many of n source images train: the subset, less its validation part (the counts
    `sam_lightning.data.splits.make_splits` keeps)."""
    kept = subset_images(n, train_fraction)
    return kept - round(val_fraction * kept)


def smallest_fraction(n: int) -> float:
    """The smallest fraction (three significant digits) of n images that rounds to at least one
    image: just above 0.5 / n, since round(0.5) is 0."""
    step = 10.0 ** (math.floor(math.log10(0.5 / n)) - 2)
    fraction = float(f"{(math.floor(0.5 / n / step) + 1) * step:.3g}")
    while round(fraction * n) < 1:  # float rounding at the boundary
        fraction = float(f"{fraction + step:.3g}")
    return fraction


def require_full_batches(n_train: int, batch_size: int, world: int) -> None:
    """Each device trains on its share of the training set with full batches only (the incomplete
    last batch is dropped): a share below data.batch_size would train nothing."""
    if n_train // world < batch_size:
        per = f" ({n_train // world} per device on {world} devices)" if world > 1 else ""
        raise ConfigError(
            f"data.batch_size={batch_size} exceeds the {n_train} training images{per}: lower data.batch_size"
        )


@dataclass(frozen=True)
class DataSpec:
    """One data set and how a run uses it (README, "Data options").

    name: a source of `sam_lightning.data.registry.SOURCES` (cifar10 | cifar100 | imagefolder |
    synthetic); root: where the files are (required unless the source generates its images);
    download: fetch CIFAR into root; cache_dir: the decoded ImageFolder tensors' cache (null: none).
    batch_size: per device; augment: random crop (crop_padding) and flip; standardize: per-channel
    mean/std (false: raw [0, 1] pixels, the paper's code; a config without the key is an older
    run's, whose inputs were standardized: the default). train_fraction, val_fraction, label_noise:
    the subset, its held-out validation part and the flipped labels, all drawn by `seed`.
    test_fraction: evaluate on a fixed subset of the test set (round(fraction * N) images, drawn by
    `seed`; 1: all of it), for short runs whose every evaluation would otherwise read all 10,000.
    eval_train: also evaluate the training images. Synthetic only: n_train, n_test, num_classes,
    noise (per-pixel noise). num_classes: null for the others (CIFAR's own; an ImageFolder's folders).
    default_arch: the network `model=default` builds for this data (the paper's pairing; the model
    section records the one built).
    """

    name: str
    root: str | None = None
    download: bool = False
    cache_dir: str | None = None
    batch_size: int = 128
    augment: bool = True
    crop_padding: int = 4
    standardize: bool = True
    train_fraction: float = 1.0
    val_fraction: float = 0.0
    test_fraction: float = 1.0
    eval_train: bool = False
    label_noise: float = 0.0
    seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    num_classes: int | None = None
    noise: float = 0.6
    default_arch: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in SOURCES:
            raise ConfigError(f"data.name={self.name!r}: must be one of {', '.join(SOURCES)} (data=...)")
        source = SOURCES[self.name]
        if source.needs_root and self.root in (None, "", "???"):
            raise ConfigError(f"data.root is required for data={self.name}: data.root=PATH")
        require_int("data.batch_size", self.batch_size, 1)
        require_int("data.crop_padding", self.crop_padding, 0)
        require_int("data.seed", self.seed, 0)
        if not 0 < self.train_fraction <= 1:
            raise ConfigError(f"data.train_fraction={self.train_fraction}: must be in (0, 1]")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction}: must be in [0, 1)")
        if not is_number(self.test_fraction) or not 0 < self.test_fraction <= 1:
            raise ConfigError(f"data.test_fraction={self.test_fraction!r}: must be in (0, 1] (1: the whole test set)")
        if not 0 <= self.label_noise < 1:
            raise ConfigError(f"data.label_noise={self.label_noise}: must be in [0, 1)")
        source.check(self)  # the source's own keys (synthetic: n_train, n_test, num_classes, noise)

    @classmethod
    def from_mapping(cls, values: Mapping) -> DataSpec:
        return from_mapping(cls, "data", values)

    @property
    def eval_sets(self) -> tuple[str, ...]:
        """What a run evaluates, in the evaluation loaders' order: test always; val with a
        validation split; train_eval with eval_train (the training images with their true labels,
        unaugmented, in eval mode). Each logs `<set>/loss` and `<set>/error`."""
        return ("test",) + ("val",) * (self.val_fraction > 0) + ("train_eval",) * self.eval_train

    def check_sizes(self, n_source: int) -> int:
        """The training images of a source that holds `n_source`, after the subset and the
        validation split; a split or a label noise that rounds to no image at all is refused (it
        would hold out or flip nothing without a word, and an empty split fails after training)."""
        kept = subset_images(n_source, self.train_fraction)
        subset = f" (data.train_fraction={self.train_fraction} of {n_source})" if kept != n_source else ""
        of = f"the {kept} training images{subset}"
        if self.val_fraction > 0 and round(self.val_fraction * kept) == 0:
            raise ConfigError(
                f"data.val_fraction={self.val_fraction} holds out no image of {of}: the smallest fraction "
                f"that holds out one is {smallest_fraction(kept)} (0: no validation split)"
            )
        n_train = training_images(n_source, self.train_fraction, self.val_fraction)
        if self.label_noise > 0 and round(self.label_noise * n_train) == 0:
            images = f"the {n_train} training images" if n_train != kept else of
            raise ConfigError(
                f"data.label_noise={self.label_noise} flips no label of {images}: the smallest noise "
                f"that flips one is {smallest_fraction(n_train)} (0: no label noise)"
            )
        return n_train
