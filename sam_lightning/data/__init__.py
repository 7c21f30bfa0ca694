"""Datasets held in memory as uint8 tensors, augmented in batches on the training device."""

from sam_lightning.data.augment import normalize, random_crop_flip
from sam_lightning.data.sources import ImageArrays, load_source
from sam_lightning.data.spec import DataSpec

__all__ = ["DataSpec", "ImageArrays", "ImageDataModule", "load_source", "normalize", "random_crop_flip"]


def __getattr__(name: str):
    # The LightningDataModule pulls in pytorch_lightning (seconds to import): load it on demand so
    # that tools using only the data sources start fast.
    if name == "ImageDataModule":
        from sam_lightning.data.datamodule import ImageDataModule

        return ImageDataModule
    raise AttributeError(name)
