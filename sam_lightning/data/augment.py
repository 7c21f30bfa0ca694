"""Batched augmentation on whatever device the batch is on (the airbench way: no per-image PIL work).

Equivalent to torchvision's RandomCrop(32, padding=4) (zero padding) + RandomHorizontalFlip, drawn
independently per image from the global torch RNG (so `seed` fixes it on the CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(images: Tensor, padding: int = 4, flip: bool = True) -> Tensor:
    """images: (B, C, H, W). Each image is shifted by a random offset in [-padding, padding]^2
    (uncovered pixels are zero) and mirrored with probability 1/2."""
    b, _, h, w = images.shape
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), device=images.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(b, device=images.device)[:, None, None, None]
        chans = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, chans, rows, cols]
    if flip:
        mirror = torch.rand(b, device=images.device) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images


def normalize(images_uint8: Tensor, mean: Tensor, std: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> float, per-channel standardized."""
    x = images_uint8.to(dtype).div_(255.0)
    return (x - mean.to(x)[:, None, None]) / std.to(x)[:, None, None]
