"""Pre-activation ResNets for 32x32 images (He et al., 2016, "Identity Mappings in Deep Residual
Networks"), with the CIFAR stem (one 3x3 conv, no max-pool), a width factor and a choice of
normalization layer.

    model = build_model("preact_resnet18", num_classes=10, width=64, norm="batch")

`width` is the channel count of the stem and first stage; the four stages have width x (1, 2, 4, 8)
channels (64 is the paper's ResNet). `norm="group"` uses GroupNorm with `gn_groups` groups in every
layer (default: `paper_gn_groups(width)`, the paper's code's width // 2); each layer's channel count
(width, 2 width, 4 width, 8 width) must be divisible by it.

The settings are checked by `sam_lightning.settings.config.ModelSpec`, which every caller with user input
goes through; here they are taken as given.

`init="paper"` (the default) initializes as the paper's code does: convolutions Kaiming-normal
(fan_out, relu), normalization weights 1 and biases 0, the linear layer's bias 0 (its weight keeps
PyTorch's default). `init="torch"` keeps PyTorch's defaults for every layer. The init sets the
weights' scale, and so what a given perturbation radius rho means relative to them.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHITECTURES = {"preact_resnet18": (2, 2, 2, 2), "preact_resnet34": (3, 4, 6, 3)}
INITS = ("paper", "torch")


def paper_gn_groups(width: int) -> int:
    """GroupNorm's groups when none are given: width // 2, as the paper's code (at least 1)."""
    return max(1, width // 2)


def norm_layer(kind: str, gn_groups: int):
    return {"batch": nn.BatchNorm2d, "group": partial(nn.GroupNorm, gn_groups)}[kind]


class PreActBlock(nn.Module):
    """norm -> relu -> conv3x3 -> norm -> relu -> conv3x3, plus identity (or 1x1 conv) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm) -> None:
        super().__init__()
        self.bn1 = norm(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input, as in the paper's reference code.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...],
        num_classes: int,
        width: int = 64,
        norm: str = "batch",
        gn_groups: int | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm, paper_gn_groups(width) if gn_groups is None else gn_groups)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        stages, in_planes = [], width
        for i, n_blocks in enumerate(blocks):
            planes = width * 2**i
            strides = [1 if i == 0 else 2] + [1] * (n_blocks - 1)
            layers = []
            for stride in strides:
                layers.append(PreActBlock(in_planes, planes, stride, make_norm))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.bn = make_norm(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(self.conv1(x))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@torch.no_grad()
def paper_init(model: nn.Module) -> None:
    """The paper's code's init (its `init_weights_he`), applied in place."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Linear):
            module.bias.zero_()


def build_model(
    arch: str,
    num_classes: int,
    width: int = 64,
    norm: str = "batch",
    gn_groups: int | None = None,
    in_channels: int = 3,
    init: str = "paper",
) -> PreActResNet:
    model = PreActResNet(ARCHITECTURES[arch], num_classes, width, norm, gn_groups, in_channels)
    if init == "paper":
        paper_init(model)
    return model
