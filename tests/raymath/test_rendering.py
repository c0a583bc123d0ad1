import math

import pytest
import torch

from nerflite.raymath.rendering import (
    accumulation,
    alpha_from_density,
    blend_background,
    composite,
    composite_depth,
    deltas,
    disparity,
    weights_from_alpha,
    weights_from_density,
)


def test_deltas_by_hand():
    t = torch.tensor([[1.0, 1.5, 3.0]])
    torch.testing.assert_close(deltas(t, last=7.0), torch.tensor([[0.5, 1.5, 7.0]]))


@pytest.mark.parametrize("weights_fn", ["alpha", "density"])
def test_constant_density_slab_transmittance(weights_fn):
    # samples every 0.01 from t = 0 in a medium of density 3: T(t) = exp(-3 t)
    sigma_value, step = 3.0, 0.01
    t = (torch.arange(200, dtype=torch.float64) * step)[None]  # [1, 200]
    sigma = torch.full_like(t, sigma_value)
    d = deltas(t)
    if weights_fn == "alpha":
        w, trans = weights_from_alpha(alpha_from_density(sigma, d))
    else:
        w, trans = weights_from_density(sigma, d)
    torch.testing.assert_close(trans, torch.exp(-sigma_value * t), rtol=1e-8, atol=1e-8)
    # the weight of each interval is the light absorbed in it: T(t_i) - T(t_{i+1})
    expected_w = torch.exp(-sigma_value * t[:, :-1]) - torch.exp(-sigma_value * t[:, 1:])
    torch.testing.assert_close(w[:, :-1], expected_w, rtol=1e-8, atol=1e-8)
    # the infinite last interval absorbs everything left, so all light is accounted for
    torch.testing.assert_close(accumulation(w), torch.ones(1, 1, dtype=torch.float64))


def test_opaque_wall_gives_its_depth_and_full_accumulation():
    d_wall = 3.25
    t = torch.linspace(2.0, 6.0, 17)[None].repeat(4, 1)  # 3.25 is sample 5
    sigma = torch.where(t >= d_wall, torch.tensor(1e4), torch.tensor(0.0))
    colour = torch.zeros(4, 17, 3)
    colour[:, 5] = torch.tensor([0.2, 0.4, 0.6])
    w, trans = weights_from_alpha(alpha_from_density(sigma, deltas(t)))
    torch.testing.assert_close(composite_depth(w, t), torch.full((4, 1), d_wall))
    torch.testing.assert_close(accumulation(w), torch.ones(4, 1))
    torch.testing.assert_close(composite(w, colour), torch.tensor([[0.2, 0.4, 0.6]]).repeat(4, 1))
    torch.testing.assert_close(
        disparity(composite_depth(w, t), accumulation(w)), torch.full((4, 1), 1 / d_wall)
    )
    assert torch.all(trans[:, :6] == 1.0) and torch.all(trans[:, 6:] < 1e-6)


def _loop_reference(t, sigma, rgb):
    n, s = t.shape
    out_rgb, out_depth, out_acc = torch.zeros(n, 3), torch.zeros(n, 1), torch.zeros(n, 1)
    weights = torch.zeros(n, s)
    for r in range(n):
        trans = 1.0
        for i in range(s):
            delta = (t[r, i + 1] - t[r, i]).item() if i + 1 < s else 1e10
            alpha = 1.0 - math.exp(-sigma[r, i].item() * delta)
            w = trans * alpha
            weights[r, i] = w
            out_rgb[r] += w * rgb[r, i]
            out_depth[r] += w * t[r, i]
            out_acc[r] += w
            trans *= 1.0 - alpha
    return weights, out_rgb, out_depth, out_acc


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorized_matches_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n, s = 7, 13
    t = torch.sort(2 + 4 * torch.rand(n, s, generator=g), dim=-1).values
    sigma = torch.rand(n, s, generator=g) * torch.tensor([0.0, 0.3, 3.0, 30.0, 1.0, 10.0, 0.1])[:, None]
    rgb = torch.rand(n, s, 3, generator=g)
    ref_w, ref_rgb, ref_depth, ref_acc = _loop_reference(t, sigma, rgb)
    for w, _ in (
        weights_from_alpha(alpha_from_density(sigma, deltas(t))),
        weights_from_density(sigma, deltas(t)),
    ):
        torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(composite(w, rgb), ref_rgb, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(composite_depth(w, t), ref_depth, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(accumulation(w), ref_acc, rtol=1e-5, atol=1e-6)


def test_density_and_alpha_weights_have_the_same_gradient():
    g = torch.Generator().manual_seed(3)
    t = torch.sort(torch.rand(5, 9, generator=g, dtype=torch.float64), dim=-1).values
    sigma_a = (torch.rand(5, 9, generator=g, dtype=torch.float64) * 5).requires_grad_()
    sigma_b = sigma_a.detach().clone().requires_grad_()
    target = torch.rand(5, 9, generator=g, dtype=torch.float64)
    (weights_from_alpha(alpha_from_density(sigma_a, deltas(t)))[0] * target).sum().backward()
    (weights_from_density(sigma_b, deltas(t))[0] * target).sum().backward()
    torch.testing.assert_close(sigma_a.grad, sigma_b.grad, rtol=1e-6, atol=1e-8)


def test_background_and_disparity():
    rgb = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.25, 0.0], [0.1, 0.1, 0.1]])
    acc = torch.tensor([[0.0], [1.0], [0.5]])
    out = blend_background(rgb, acc, [1.0, 1.0, 1.0])
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.25, 0.0], [0.6, 0.6, 0.6]]))
    depth = torch.tensor([[0.0], [2.0], [1.5]])
    torch.testing.assert_close(disparity(depth, acc), torch.tensor([[0.0], [0.5], [1 / 3]]))
