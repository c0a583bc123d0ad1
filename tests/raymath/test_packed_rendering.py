import torch

from nerflite.raymath.packed_rendering import (
    accumulate_along_rays,
    exclusive_segment_cumsum,
    ray_first_sample,
    render_packed,
    weights_from_density_packed,
)
from nerflite.raymath.rendering import accumulation, blend_background, composite, composite_depth, weights_from_density


def dense_and_packed(n=37, s=24, seed=0):
    """Random dense samples [n, s] (ray r uses its first k_r, k_r may be 0) and the same samples packed."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(n, s, generator=g) * 4 + 1, dim=-1).values
    d = torch.cat([t[:, 1:] - t[:, :-1], torch.full((n, 1), 0.05)], dim=-1)  # [n, s] finite last interval
    sigma = torch.rand(n, s, generator=g) * 8 * (torch.rand(n, s, generator=g) > 0.3)
    sigma[0, :4] = 1e4  # an opaque ray
    rgb = torch.rand(n, s, 3, generator=g)
    k = torch.randint(0, s + 1, (n,), generator=g)
    k[1] = 0
    keep = torch.arange(s)[None] < k[:, None]  # [n, s]
    sigma = sigma * keep  # unused dense samples are empty space
    ray_indices = torch.arange(n)[:, None].expand(n, s)[keep]
    packed = dict(sigma=sigma[keep], rgb=rgb[keep], t_starts=t[keep], t_ends=(t + d)[keep], ray_indices=ray_indices)
    return (t, d, sigma, rgb), packed


def test_segment_helpers_against_loops():
    ray_indices = torch.tensor([0, 0, 0, 2, 2, 3, 5])
    first, counts = ray_first_sample(ray_indices, 7)
    assert counts.tolist() == [3, 0, 2, 1, 0, 1, 0]
    assert first.tolist() == [0, 3, 3, 5, 6, 6, 7]
    v = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert exclusive_segment_cumsum(v, ray_indices, 7).tolist() == [0, 1, 3, 0, 4, 0, 0]
    acc = accumulate_along_rays(v, ray_indices, 7)
    assert acc[:, 0].tolist() == [6, 0, 9, 6, 0, 7, 0]


def test_packed_matches_the_dense_renderer():
    (t, d, sigma, rgb), p = dense_and_packed()
    n = t.shape[0]
    w_dense, trans_dense = weights_from_density(sigma, d)
    bg = torch.tensor([1.0, 0.5, 0.25])
    out = render_packed(p["sigma"], p["rgb"], p["t_starts"], p["t_ends"], p["ray_indices"], n, background=bg)
    # the packed samples are the dense ones where the ray uses them
    w_packed_dense = torch.zeros_like(w_dense)
    counts = torch.bincount(p["ray_indices"], minlength=n)
    for r in range(n):
        w_packed_dense[r, : counts[r]] = out["weights"][p["ray_indices"] == r]
    torch.testing.assert_close(w_packed_dense, w_dense, atol=1e-5, rtol=0)
    acc = accumulation(w_dense)
    torch.testing.assert_close(out["accumulation"], acc, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["rgb"], blend_background(composite(w_dense, rgb), acc, bg), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["depth"], composite_depth(w_dense, t + d / 2), atol=1e-5, rtol=0)
    _, trans, _ = weights_from_density_packed(p["sigma"], p["t_starts"], p["t_ends"], p["ray_indices"], n)
    used = torch.arange(t.shape[1])[None] < counts[:, None]  # [n, s]
    torch.testing.assert_close(trans, trans_dense[used], atol=1e-5, rtol=0)
    assert out["rgb"][1].tolist() == bg.tolist()  # a ray without samples shows the background


def test_invalid_slots_change_nothing_and_gradients_match():
    _, p = dense_and_packed(seed=3)
    n = 37
    ref = render_packed(p["sigma"], p["rgb"], p["t_starts"], p["t_ends"], p["ray_indices"], n)
    # a fixed budget: garbage slots after the real ones, attributed to the last ray
    extra = 50
    cat = lambda x, fill: torch.cat([x, fill])  # noqa: E731
    sigma = cat(p["sigma"], torch.full((extra,), 1e3)).requires_grad_(True)
    rgb = cat(p["rgb"], torch.rand(extra, 3))
    ts = cat(p["t_starts"], torch.zeros(extra))
    te = cat(p["t_ends"], torch.ones(extra))
    ri = cat(p["ray_indices"], torch.full((extra,), n - 1))
    valid = torch.arange(len(ri)) < len(p["ray_indices"])
    out = render_packed(sigma, rgb, ts, te, ri, n, valid=valid)
    for k in ("rgb", "depth", "accumulation"):
        torch.testing.assert_close(out[k], ref[k], atol=1e-6, rtol=0)
    out["rgb"].sum().backward()
    assert torch.all(sigma.grad[~valid] == 0)


def test_long_packed_arrays_stay_exact():
    """A million samples: the global prefix sum must not lose the last rays' transmittance."""
    n, s = 20000, 50
    sigma = torch.full((n * s,), 5.0)
    ts = torch.arange(s, dtype=torch.float32).repeat(n) * 0.01
    ri = torch.arange(n).repeat_interleave(s)
    w, trans, _ = weights_from_density_packed(sigma, ts, ts + 0.01, ri, n)
    expected = torch.exp(-0.05 * torch.arange(s, dtype=torch.float64)).float()
    torch.testing.assert_close(trans[-s:], expected, atol=1e-6, rtol=0)
