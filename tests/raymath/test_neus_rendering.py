"""NeuS math on an analytic sphere SDF, where the surface crossing of every ray is known."""

from __future__ import annotations

import math

import pytest
import torch

from nerflite.raymath.neus_rendering import (
    alpha_from_sdf,
    background_depths,
    eikonal_loss,
    hierarchical_upsample,
    inverse_sphere,
    near_far_from_sphere,
)
from nerflite.raymath.rendering import weights_from_alpha
from nerflite.raymath.sampling import stratified_samples

RADIUS = 0.5


def sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1) - RADIUS


def sphere_rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays from cameras at distance 3 aimed at points inside a disc of radius 0.8 around the
    origin; returns origins, unit directions and the first crossing depth (nan on a miss)."""
    g = torch.Generator().manual_seed(seed)
    cam = torch.randn(n, 3, generator=g)
    cam = 3.0 * cam / cam.norm(dim=-1, keepdim=True)
    target = 0.8 * (torch.rand(n, 3, generator=g) * 2 - 1)
    d = target - cam
    d = d / d.norm(dim=-1, keepdim=True)
    b = (cam * d).sum(-1)
    disc = b**2 - (cam.norm(dim=-1) ** 2 - RADIUS**2)
    t_hit = -b - torch.sqrt(disc.clamp_min(0))
    t_hit[disc <= 0] = float("nan")
    return cam, d, t_hit


def render_sphere_weights(o, d, t, inv_s):
    """NeuS weights of sections [t_i, t_i + delta_i] with the analytic SDF and gradient."""
    delta = torch.cat([t[:, 1:] - t[:, :-1], t[:, -1:] - t[:, -2:-1]], -1)  # [n, s]
    mid = t + 0.5 * delta
    p = o[:, None] + mid[..., None] * d[:, None]  # [n, s, 3]
    grad = p / p.norm(dim=-1, keepdim=True)
    cos = (grad * d[:, None]).sum(-1)
    alpha = alpha_from_sdf(sphere_sdf(p), cos, delta, inv_s, cos_anneal_ratio=1.0)
    return weights_from_alpha(alpha)[0], mid, delta


def test_near_far_contains_the_sphere_chord():
    o, d, t_hit = sphere_rays(64)
    near, far = near_far_from_sphere(o, d)
    assert torch.allclose(far - near, torch.full_like(near, 2.0))
    p_near, p_far = o + near * d, o + far * d
    assert (p_near.norm(dim=-1) >= 1.0 - 1e-5).all() and (p_far.norm(dim=-1) >= 1.0 - 1e-5).all()
    hit = ~torch.isnan(t_hit)
    assert ((t_hit[hit] > near[hit, 0]) & (t_hit[hit] < far[hit, 0])).all()


def test_weights_peak_at_the_surface_and_sum_to_one():
    o, d, t_hit = sphere_rays(256)
    near, far = near_far_from_sphere(o, d)
    t = stratified_samples(near, far, 256, perturb=False)  # [n, 256], spacing 2/255
    weights, mid, delta = render_sphere_weights(o, d, t, inv_s=400.0)
    hit = ~torch.isnan(t_hit)
    assert hit.sum() > 50 and (~hit).sum() > 10
    p_hit = o + t_hit[:, None] * d
    incidence = -(p_hit * d).sum(-1) / RADIUS  # cosine between the ray and the inward normal
    hit = hit & (incidence > 0.2)  # leave out grazing rays, whose crossing is ill-defined
    peak = mid[hit].gather(1, weights[hit].argmax(-1, keepdim=True))[:, 0]
    # the peak section's midpoint is within one section of the true crossing
    assert (peak - t_hit[hit]).abs().max() < delta[0, 0] * 1.01
    # the weighted depth is unbiased to well below a section length
    depth = (weights[hit] * mid[hit]).sum(-1) / weights[hit].sum(-1)
    assert (depth - t_hit[hit]).abs().mean() < 0.25 * delta[0, 0]
    torch.testing.assert_close(weights[hit].sum(-1), torch.ones(int(hit.sum())), atol=2e-3, rtol=0)
    # grazing-free misses stay transparent
    far_miss = (~hit) & (torch.cross(o, d, dim=-1).norm(dim=-1) > RADIUS + 0.05)
    assert weights[far_miss].sum(-1).max() < 1e-2


def test_upsampling_moves_samples_toward_the_surface():
    o, d, t_hit = sphere_rays(128, seed=1)
    hit = ~torch.isnan(t_hit)
    near, far = near_far_from_sphere(o, d)
    coarse = stratified_samples(near, far, 64, perturb=False)
    t = hierarchical_upsample(o, d, coarse, sphere_sdf, n_importance=64, steps=4)
    assert t.shape == (128, 128)
    assert (t[:, 1:] >= t[:, :-1]).all()  # sorted
    assert ((t >= near - 1e-6) & (t <= far + 1e-6)).all()
    # coarse spacing 2/63 ~ 0.032: how many samples fall within 0.02 of the crossing
    close_coarse = ((coarse[hit] - t_hit[hit, None]).abs() < 0.02).sum(-1).float()
    close_fine = ((t[hit] - t_hit[hit, None]).abs() < 0.02).sum(-1).float()
    assert close_coarse.mean() < 2.0
    assert close_fine.mean() > 20.0
    # each round halves the logistic width, so the new samples bracket the crossing tightly
    new_minus_hit = t[hit] - t_hit[hit, None]
    nearest = new_minus_hit.abs().min(-1).values
    assert nearest.max() < 0.005


def test_eikonal_loss_of_an_analytic_sdf_is_zero():
    x = torch.randn(1000, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(sphere_sdf(x).sum(), x)
    assert eikonal_loss(grad).item() < 1e-10
    assert eikonal_loss(2.0 * grad).item() == pytest.approx(1.0, rel=1e-5)


def test_background_depths_and_inverse_sphere():
    far = torch.tensor([[2.0], [3.0]])
    t = background_depths(far, 32, perturb=False)
    assert (t[:, 0] > far[:, 0]).all() and (t[:, 1:] > t[:, :-1]).all()
    torch.testing.assert_close(t[:, -1], far[:, 0] / 1e-3)
    t_jit = background_depths(far, 32, perturb=True, generator=torch.Generator().manual_seed(0))
    assert (t_jit[:, 1:] > t_jit[:, :-1]).all() and (t_jit[:, 0] >= far[:, 0]).all()
    p = torch.tensor([[0.0, 0.0, 4.0], [0.3, 0.0, 0.0]])
    q = inverse_sphere(p)
    torch.testing.assert_close(q, torch.tensor([[0.0, 0.0, 1.0, 0.25], [0.3, 0.0, 0.0, 1.0]]))
    assert math.isclose(float(q[0, :3].norm()), 1.0)
