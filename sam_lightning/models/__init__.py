"""Backbones: plain `nn.Module`s that know nothing of SAM, Lightning or Hydra."""

from sam_lightning.models.preact_resnet import ARCHITECTURES, PreActResNet, build_model

__all__ = ["ARCHITECTURES", "PreActResNet", "build_model"]
