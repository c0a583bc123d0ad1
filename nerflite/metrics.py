"""Image quality metrics on tensors with values in [0, 1], whole-image and masked.

The masked forms score only the object a mask selects (DTU-style captures whose renders have no
background while the photos keep theirs): ``psnr_masked`` and ``ssim_masked``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: -10 log10(MSE)."""
    mse = torch.mean((pred.float() - target.float()) ** 2)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def _mask_hw(mask: Tensor, h: int, w: int) -> Tensor:
    """A mask [H, W] or [H, W, 1] (bool, or float > 0.5 inside) as bool [H, W]."""
    m = mask.reshape(mask.shape[0], mask.shape[1]) if mask.dim() == 3 else mask
    if tuple(m.shape) != (h, w):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of {h}x{w}")
    return m > 0.5 if m.dtype != torch.bool else m


def psnr_masked(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR in dB over the pixels inside ``mask`` only: -10 log10(MSE over mask pixels and channels).

    ``pred``, ``target`` [H, W, C]; ``mask`` [H, W] or [H, W, 1]. NaN when the mask is empty.
    """
    m = _mask_hw(mask, pred.shape[0], pred.shape[1]).to(pred.device)  # [H, W]
    if not bool(m.any()):
        return torch.tensor(float("nan"))
    diff = pred.float()[m] - target.float().to(pred.device)[m]  # [k, C]
    return -10.0 * torch.log10(torch.mean(diff**2).clamp_min(1e-10))


def _gaussian_window(sigma: float, radius: int, dtype, device) -> Tensor:
    """Normalised 1-D Gaussian weights [2 * radius + 1]."""
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def ssim_map(
    pred: Tensor, target: Tensor, sigma: float = 1.5, radius: int = 5, data_range: float = 1.0
) -> Tensor:
    """The local SSIM values of images [..., H, W, C]: [b, C, H - 2 radius, W - 2 radius].

    Entry ``[.., y, x]`` is the window centred on pixel ``(y + radius, x + radius)``; see ``ssim``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    h, w, c = pred.shape[-3:]
    if min(h, w) < 2 * radius + 1:
        raise ValueError(f"images of {h}x{w} are smaller than the {2 * radius + 1}-pixel SSIM window")
    x = pred.float().reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)  # [b*c, 1, H, W]
    y = target.float().reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w).to(x.device)
    g = _gaussian_window(sigma, radius, x.dtype, x.device)

    def blur(z: Tensor) -> Tensor:  # separable valid convolution [m, 1, H, W] -> [m, 1, H-2r, W-2r]
        z = torch.nn.functional.conv2d(z, g.view(1, 1, -1, 1))
        return torch.nn.functional.conv2d(z, g.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).reshape(-1, c, h - 2 * radius, w - 2 * radius)  # [b, C, H-2r, W-2r]


def ssim(
    pred: Tensor, target: Tensor, sigma: float = 1.5, radius: int = 5, data_range: float = 1.0
) -> Tensor:
    """Structural similarity (Wang et al. 2004) of images [..., H, W, C] with values in [0, 1].

    Local statistics use a Gaussian window (``sigma`` 1.5, ``2 * radius + 1`` = 11 taps) applied
    separably without padding, so only windows that lie fully inside the image count; the map is
    averaged over pixels and channels (and leading batch dimensions). With ``K1 = 0.01``,
    ``K2 = 0.03`` and ``L = data_range``:

        SSIM = (2 mu_x mu_y + C1) (2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (var_x + var_y + C2))

    This is the definition of scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, use_sample_covariance=False``.
    """
    return ssim_map(pred, target, sigma, radius, data_range).mean()


def ssim_masked(pred: Tensor, target: Tensor, mask: Tensor, sigma: float = 1.5, radius: int = 5) -> Tensor:
    """SSIM of the object inside ``mask``: both images [H, W, C] composited on black outside the mask,
    the SSIM map (``ssim_map``) averaged over the windows whose centre pixel is inside the mask.

    Pixels outside the mask never count (a perfect foreground scores exactly 1 whatever the photo's
    background), and the object's silhouette counts as an edge of both images. With a mask that
    covers the whole image this is ``ssim``. NaN when no window centre lies inside the mask.
    """
    h, w = pred.shape[0], pred.shape[1]
    m = _mask_hw(mask, h, w).to(pred.device)  # [H, W]
    keep = m.unsqueeze(-1).float()  # [H, W, 1]
    values = ssim_map(pred.float() * keep, target.float().to(pred.device) * keep, sigma, radius)  # [1, C, h', w']
    centres = m[radius : h - radius, radius : w - radius]  # [h', w'] windows centred inside the mask
    if not bool(centres.any()):
        return torch.tensor(float("nan"))
    return values[:, :, centres].mean()
