"""Masked PSNR / SSIM: closed forms, the whole-image case and a loop reference."""

import math

import pytest
import torch

from nerflite.metrics import _gaussian_window, psnr, psnr_masked, ssim, ssim_masked


def _disc(h: int, w: int, radius: float) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (y - h / 2) ** 2 + (x - w / 2) ** 2 < radius**2  # [H, W] bool


def test_psnr_masked_closed_form_ignores_the_background():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(24, 32, 3, generator=gen) * 0.5
    mask = _disc(24, 32, 9.0)
    pred = torch.where(mask[..., None], target + 0.1, torch.rand(24, 32, 3, generator=gen))
    assert psnr_masked(pred, target, mask).item() == pytest.approx(20.0, abs=1e-4)  # -10 log10(0.1^2)
    assert psnr_masked(pred, target, mask.float()[..., None]).item() == pytest.approx(20.0, abs=1e-4)
    assert psnr(pred, target).item() < 15.0  # the background dominates the unmasked figure
    full = torch.ones(24, 32, dtype=torch.bool)
    assert psnr_masked(pred, target, full).item() == pytest.approx(psnr(pred, target).item(), abs=1e-5)
    assert math.isnan(psnr_masked(pred, target, torch.zeros(24, 32, dtype=torch.bool)).item())


def test_ssim_masked_perfect_foreground_is_one_and_full_mask_is_ssim():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(32, 40, 3, generator=gen)
    mask = _disc(32, 40, 11.0)
    black_bg = torch.where(mask[..., None], target, torch.zeros(()))  # a render without background
    assert ssim_masked(black_bg, target, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(black_bg, target).item() < 0.6
    noisy = (target + 0.2 * torch.randn(32, 40, 3, generator=gen)).clamp(0, 1)
    full = torch.ones(32, 40, dtype=torch.bool)
    assert ssim_masked(noisy, target, full).item() == pytest.approx(ssim(noisy, target).item(), abs=1e-6)
    a, b, c1 = 0.3, 0.5, 0.01**2  # constant images: (2ab + C1) / (a^2 + b^2 + C1) with any full mask
    got = ssim_masked(torch.full((16, 16, 3), a), torch.full((16, 16, 3), b), torch.ones(16, 16, 1)).item()
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    border_only = torch.zeros(32, 40, dtype=torch.bool)
    border_only[:3] = True  # no window centre lies in the mask
    assert math.isnan(ssim_masked(noisy, target, border_only).item())


def _ssim_masked_loop(pred, target, mask, sigma=1.5, radius=5):
    """The definition, window by window: composite on black, SSIM of each window centred in the mask."""
    g = _gaussian_window(sigma, radius, torch.float64, "cpu")
    wgt = g[:, None] * g[None, :]  # [k, k]
    keep = mask[..., None].double()
    x, y = pred.double() * keep, target.double() * keep
    h, w, c = x.shape
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(radius, h - radius):
        for j in range(radius, w - radius):
            if not mask[i, j]:
                continue
            for ch in range(c):
                px = x[i - radius : i + radius + 1, j - radius : j + radius + 1, ch]
                py = y[i - radius : i + radius + 1, j - radius : j + radius + 1, ch]
                mx, my = (wgt * px).sum(), (wgt * py).sum()
                vx, vy = (wgt * px * px).sum() - mx**2, (wgt * py * py).sum() - my**2
                cov = (wgt * px * py).sum() - mx * my
                values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return torch.stack(values).mean()


def test_ssim_masked_matches_a_window_by_window_reference():
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(20, 26, 3, generator=gen)
    pred = (target + 0.15 * torch.randn(20, 26, 3, generator=gen)).clamp(0, 1)
    mask = _disc(20, 26, 7.0)
    ref = _ssim_masked_loop(pred, target, mask)
    assert ssim_masked(pred, target, mask).item() == pytest.approx(ref.item(), abs=1e-5)


@pytest.mark.slow
def test_dtu_perfect_foreground_scores_full_marks_only_when_masked(shared_data):
    """DTU scan 65 at 1/8 size: the photo's object on black (a perfect render without background)."""
    from nerflite.data.datamanager import DataManager, DataManagerConfig
    from nerflite.data.parsers import DatasetConfig, load_scene

    scene = load_scene(DatasetConfig(path=str(shared_data("dtu_scan65")), downscale=8))
    with DataManager(scene, DataManagerConfig(workers=0), "cpu") as dm:
        _, batch = dm.eval_image(scene.split("test")[0])
    h, w = batch["image_hw"]
    target, mask = batch["rgb"].reshape(h, w, 3), batch["mask"].reshape(h, w)
    render = target * mask[..., None]
    assert psnr(render, target).item() < 15.0  # the background alone drags it down to ~10 dB
    assert psnr_masked(render, target, mask).item() == pytest.approx(100.0)  # MSE 0, clamped at 1e-10
    assert ssim_masked(render, target, mask).item() == pytest.approx(1.0, abs=1e-6)
