"""Every data source, by the name `data.name` picks: the one place that knows which sources exist.

    source = SOURCES[data.name]   # source_of(data)
    source.load(data)             # its ImageArrays (through sam_lightning.data.sources.load_source)

A source answers what a run asks of its data (`Source`): whether it reads `data.root`
(`needs_root`), which of its own keys it requires (`check`, when the `DataSpec` is made), what is
done once per machine before loading (`prepare`: CIFAR's download), its images (`load`), and,
without decoding any image, its number of classes and of training images (`num_classes`,
`train_images`: the model is built and the settings' sizes are checked before any image is read).
`DataSpec` checks `data.name` against `SOURCES`; `load_source`, `num_classes_of`, `train_images_of`
and the datamodule's `prepare_data` look the source up here and nowhere else.

Adding a source: its `Source` and its entry in `SOURCES` here, and conf/train/data/<name>.yaml.
No torch here (`DataSpec` reads this module, and tools that only check settings start fast): the
loading itself lives in `sam_lightning.data.sources`, imported when a source first reads data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sam_lightning.settings.config import ConfigError, is_number, require_int

if TYPE_CHECKING:
    from types import ModuleType

    from sam_lightning.data.sources import ImageArrays
    from sam_lightning.data.spec import DataSpec


def _impl() -> ModuleType:
    """sam_lightning.data.sources (torch), imported on first use."""
    from sam_lightning.data import sources

    return sources


class Source(ABC):
    """One data source. `needs_root`: data.root is required (a path that is not null, "" or ???)."""

    needs_root: bool = True

    def check(self, data: DataSpec) -> None:  # noqa: B027 (optional: most sources have no keys of their own)
        """Refuse (ConfigError) the settings of its own keys this source cannot use; the keys every
        source shares are checked by `DataSpec`."""

    def prepare(self, data: DataSpec) -> None:  # noqa: B027 (optional: most sources have nothing to fetch)
        """Once per machine before any process loads (Lightning's prepare_data): nothing here."""

    @abstractmethod
    def load(self, data: DataSpec) -> ImageArrays:
        """The training and test images with their labels, and the source's per-channel statistics."""

    @abstractmethod
    def num_classes(self, data: DataSpec) -> int:
        """The number of classes, without loading any image; a missing data folder is a ConfigError."""

    @abstractmethod
    def train_images(self, data: DataSpec) -> int:
        """The number of training images, without decoding any; a source that cannot be read is a ConfigError."""


@dataclass(frozen=True)
class Cifar(Source):
    """CIFAR-10 or CIFAR-100 through torchvision (`dataset`: its torchvision.datasets class), read
    from data.root, downloaded there first with data.download. `mean`, `std`: the training set's
    per-channel statistics (the input normalization with data.standardize)."""

    classes: int
    dataset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def prepare(self, data: DataSpec) -> None:
        if data.download:
            _impl().download_cifar(self, data)

    def load(self, data: DataSpec) -> ImageArrays:
        return _impl().load_cifar(self, data)

    def num_classes(self, data: DataSpec) -> int:
        _impl().require_cifar(self, data)
        return self.classes

    def train_images(self, data: DataSpec) -> int:
        return _impl().cifar_train_images(self, data)


class ImageFolder(Source):
    """Any train/<class>/*, test/<class>/* tree under data.root, decoded once (cached in data.cache_dir)."""

    def load(self, data: DataSpec) -> ImageArrays:
        return _impl().load_imagefolder(data.root, data.cache_dir)

    def num_classes(self, data: DataSpec) -> int:
        return _impl().imagefolder_num_classes(data.root)

    def train_images(self, data: DataSpec) -> int:
        return _impl().imagefolder_train_images(data.root)


class Synthetic(Source):
    """CIFAR-shaped images generated offline from data.seed: data.n_train, data.n_test,
    data.num_classes and data.noise (`sam_lightning.data.sources.make_synthetic`)."""

    needs_root = False

    def check(self, data: DataSpec) -> None:
        require_int("data.n_train", data.n_train, 1)
        require_int("data.n_test", data.n_test, 1)
        require_int("data.num_classes", data.num_classes, 2)
        if not is_number(data.noise) or data.noise < 0:
            raise ConfigError(
                f"data.noise={data.noise!r}: must be a number >= 0 (the per-pixel noise of the synthetic images)"
            )

    def load(self, data: DataSpec) -> ImageArrays:
        return _impl().make_synthetic(data.n_train, data.n_test, data.num_classes, data.seed, noise=data.noise)

    def num_classes(self, data: DataSpec) -> int:
        return data.num_classes

    def train_images(self, data: DataSpec) -> int:
        return data.n_train


# data.name -> its source, in the order error messages list them.
SOURCES: dict[str, Source] = {
    "cifar10": Cifar(classes=10, dataset="CIFAR10", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": Cifar(classes=100, dataset="CIFAR100", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    "imagefolder": ImageFolder(),
    "synthetic": Synthetic(),
}


def source_of(data: DataSpec) -> Source:
    """The source of checked settings (`DataSpec` has refused any name `SOURCES` lacks)."""
    return SOURCES[data.name]
