import pytest
import torch

from nerflite.data.samplers import (
    PixelSampler,
    all_pixels,
    crop_box,
    inside_indices,
    sample_masked,
    sample_patches,
    sample_precrop,
    sample_uniform,
)

H = torch.tensor([6, 4, 8])
W = torch.tensor([5, 7, 3])


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _pixel_counts(img, y, x, heights=H, widths=W):
    counts = [torch.zeros(int(h), int(w)) for h, w in zip(heights, widths)]
    for i in range(len(heights)):
        sel = img == i
        counts[i].index_put_((y[sel], x[sel]), torch.ones(int(sel.sum())), accumulate=True)
    return counts


def test_uniform_covers_every_pixel_equally_across_image_sizes():
    n = 60_000
    img, y, x = sample_uniform(n, H, W, _gen())
    assert img.dtype == y.dtype == x.dtype == torch.int64 and img.shape == (n,)
    assert bool((y < H[img]).all() and (x < W[img]).all() and (y >= 0).all() and (x >= 0).all())
    counts = torch.cat([c.flatten() for c in _pixel_counts(img, y, x)])
    expected = n / int((H * W).sum())  # 70 pixels -> ~857 each
    # binomial sd ~ sqrt(857) ~ 29: every pixel within 6 sd
    assert float((counts - expected).abs().max()) < 6 * expected**0.5


def test_same_generator_seed_same_pixels():
    a = sample_uniform(100, H, W, _gen(3))
    b = sample_uniform(100, H, W, _gen(3))
    c = sample_uniform(100, H, W, _gen(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_crop_box_by_hand_and_precrop_stays_inside():
    y0, x0, h, w = crop_box(torch.tensor([800]), torch.tensor([600]), 0.5)
    assert (int(y0), int(x0), int(h), int(w)) == (200, 150, 400, 300)
    heights, widths = torch.tensor([40, 20]), torch.tensor([30, 50])
    img, y, x = sample_precrop(20_000, heights, widths, 0.5, _gen())
    y0, x0, h, w = crop_box(heights, widths, 0.5)
    assert bool((y >= y0[img]).all() and (y < (y0 + h)[img]).all())
    assert bool((x >= x0[img]).all() and (x < (x0 + w)[img]).all())
    # every crop pixel is reached
    assert len(set(zip(img.tolist(), y.tolist(), x.tolist()))) == int((h * w).sum())


def test_patches_are_square_blocks_inside_one_image():
    p = 3
    img, y, x = sample_patches(200, p, H, W, _gen())
    assert img.shape == (200 * p * p,)
    img, y, x = img.view(-1, p, p), y.view(-1, p, p), x.view(-1, p, p)
    assert bool((img == img[:, :1, :1]).all())
    torch.testing.assert_close(y - y[:, :1, :1], torch.arange(p).view(1, p, 1).expand_as(y))
    torch.testing.assert_close(x - x[:, :1, :1], torch.arange(p).view(1, 1, p).expand_as(x))
    assert bool((y < H[img]).all() and (x < W[img]).all())
    with pytest.raises(ValueError, match="larger"):
        sample_patches(4, 5, H, W, _gen())  # image 2 is 3 pixels wide


def _masks(seed=0):
    g = _gen(seed)
    return [torch.rand(int(h), int(w), generator=g) < 0.3 for h, w in zip(H, W)]


def test_masked_outside_rank_matches_loop_reference():
    masks = _masks()
    flat = torch.cat([m.flatten() for m in masks])
    inside = inside_indices(flat)
    outside_ref = torch.nonzero(~flat).view(-1)
    before = inside.long() - torch.arange(inside.numel())
    for j in range(outside_ref.numel()):  # the closed form for the j-th outside pixel
        got = j + int(torch.searchsorted(before, torch.tensor([j]), right=True))
        assert got == int(outside_ref[j])


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.8, 1.0])
def test_masked_fraction_inside_is_exact_and_sides_are_respected(fraction):
    masks = _masks(1)
    inside = inside_indices(torch.cat([m.flatten() for m in masks]))
    n = 4000
    img, y, x = sample_masked(n, inside, H, W, fraction, _gen())
    hit = torch.stack([masks[int(i)][int(a), int(b)] for i, a, b in zip(img, y, x)])
    n_in = round(fraction * n)
    assert bool(hit[:n_in].all()) and not bool(hit[n_in:].any())
    # inside draws are uniform over inside pixels: each inside pixel ~ n_in / k times
    if n_in:
        counts = torch.cat([c[m] for c, m in zip(_pixel_counts(img[:n_in], y[:n_in], x[:n_in]), masks)])
        expected = n_in / inside.numel()
        assert float((counts - expected).abs().max()) < 6 * expected**0.5 + 2


def test_masked_with_an_empty_side_draws_from_the_other():
    heights, widths = torch.tensor([2]), torch.tensor([3])
    none = inside_indices(torch.zeros(6, dtype=torch.bool))
    img, y, x = sample_masked(10, none, heights, widths, 1.0, _gen())
    assert img.shape == (10,)
    full = inside_indices(torch.ones(6, dtype=torch.bool))
    img, y, x = sample_masked(10, full, heights, widths, 0.0, _gen())
    assert img.shape == (10,) and bool((y < 2).all() and (x < 3).all())


def test_pixel_sampler_switches_precrop_off_after_the_set_steps():
    s = PixelSampler(precrop_steps=10, precrop_frac=0.5)
    heights, widths = torch.tensor([40]), torch.tensor([40])
    _, y, x = s(2000, 9, heights, widths, _gen())
    assert int(y.min()) >= 10 and int(y.max()) < 30 and int(x.min()) >= 10 and int(x.max()) < 30
    _, y, x = s(2000, 10, heights, widths, _gen())
    assert int(y.min()) < 10 and int(x.max()) >= 30


def test_pixel_sampler_patch_rounds_to_whole_patches_and_rejects_bad_settings():
    s = PixelSampler(kind="patch", patch_size=4)
    assert s.rays_per_batch(1000) == 992
    with pytest.raises(ValueError):
        PixelSampler(kind="patch", mask_sampling="inside")
    with pytest.raises(ValueError):
        PixelSampler(kind="ring")


def test_all_pixels_is_row_major():
    y, x = all_pixels(2, 3)
    assert y.tolist() == [0, 0, 0, 1, 1, 1] and x.tolist() == [0, 1, 2, 0, 1, 2]
