import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from nerflite.metrics import ssim


def test_ssim_identical_images_is_one():
    img = torch.rand(32, 40, 3, generator=torch.Generator().manual_seed(0))
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_constant_images_closed_form():
    # Constant images have zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.5
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(torch.full((16, 16, 3), a), torch.full((16, 16, 3), b)).item()
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_ssim_matches_scikit_image(noise):
    rng = np.random.default_rng(1)
    a = rng.random((40, 48, 3))
    b = np.clip(a + noise * rng.standard_normal(a.shape), 0.0, 1.0)
    ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1
    )
    got = ssim(torch.from_numpy(b), torch.from_numpy(a)).item()
    assert got == pytest.approx(ref, abs=1e-5)

