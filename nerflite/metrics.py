"""Image quality metrics on tensors with values in [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: -10 log10(MSE)."""
    mse = torch.mean((pred.float() - target.float()) ** 2)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
