"""NeuSModel: the interface (outputs, losses, metrics, set_step), the schedule, chunking."""

from __future__ import annotations

import math

import pytest
import torch

from nerflite.models.base import render_rays_chunked
from nerflite.models.neus import NeuSConfig, NeuSModel, lr_factor
from nerflite.rays import RayBundle


def tiny_config(**kw) -> NeuSConfig:
    base = dict(
        n_samples=16, n_importance=16, up_sample_steps=2, n_outside=8, sdf_layers=2, sdf_width=32,
        sdf_skips=[], feature_dim=8, color_layers=1, color_width=32, bg_layers=2, bg_width=32,
        bg_multires=4, netchunk=4096,
    )
    base.update(kw)
    return NeuSConfig(**base)


def rays_at_origin(n: int, center=(0.0, 0.0, 0.0), scale: float = 1.0, seed: int = 0) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = 3.0 * o / o.norm(dim=-1, keepdim=True)
    d = -o + 0.5 * torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    o = torch.as_tensor(center) + scale * o
    return RayBundle(o, d, d, torch.zeros(n, 1), torch.ones(n, 1), torch.zeros(n, 1, dtype=torch.long))


@pytest.mark.parametrize("n_outside", [0, 8])
def test_outputs_losses_and_metrics(n_outside):
    torch.manual_seed(0)
    model = NeuSModel(tiny_config(n_outside=n_outside))
    rays = rays_at_origin(24)
    out = model(rays)
    s = 16 + 16
    assert out["rgb"].shape == (24, 3) and out["depth"].shape == (24, 1)
    assert out["accumulation"].shape == (24, 1) and out["normals"].shape == (24, 3)
    assert out["gradients"].shape == (24, s, 3) and out["eikonal_mask"].shape == (24, s)
    assert ((out["rgb"] >= 0) & (out["rgb"] <= 1 + 1e-5)).all()
    assert ((out["accumulation"] >= 0) & (out["accumulation"] <= 1 + 1e-5)).all()
    if n_outside:  # the background reaches to ~1000 x far: every ray ends up opaque
        assert (out["accumulation"] > 0.5).all()
    batch = {"rgb": torch.rand(24, 3), "mask": torch.rand(24, 1) > 0.5}
    losses = model.losses(out, batch)
    assert set(losses) == {"rgb", "eikonal", "mask"}
    sum(losses.values()).backward()
    assert model.variance.variance.grad is not None
    assert model.sdf_field.layers[0].parametrizations.weight.original0.grad is not None
    m = model.metrics(out, batch)
    assert {"psnr", "inv_s", "psnr_masked"} <= set(m)
    assert float(m["inv_s"]) == pytest.approx(math.exp(3.0), rel=1e-5)
    no_mask = NeuSModel(tiny_config(n_outside=n_outside, mask_weight=0.0))
    assert set(no_mask.losses(no_mask(rays), batch)) == {"rgb", "eikonal"}
    no_mask.eval()
    with torch.no_grad():
        eval_out = no_mask(rays)
    assert "gradients" not in eval_out and set(no_mask.losses(eval_out, batch)) == {"rgb"}


def test_masked_colour_loss_ignores_rays_outside_the_mask():
    model = NeuSModel(tiny_config(n_outside=0))
    out = {"rgb": torch.zeros(4, 3), "gradients": torch.zeros(4, 2, 3) + torch.tensor([1.0, 0, 0]),
           "eikonal_mask": torch.ones(4, 2), "weights_sum_fg": torch.full((4, 1), 0.5)}
    batch = {"rgb": torch.tensor([[0.1, 0.2, 0.3]] * 2 + [[1.0, 1.0, 1.0]] * 2),
             "mask": torch.tensor([[True], [True], [False], [False]])}
    losses = model.losses(out, batch)
    assert float(losses["rgb"]) == pytest.approx(0.6, rel=1e-4)  # L1 summed over channels
    assert float(losses["eikonal"]) == pytest.approx(0.0, abs=1e-8)
    assert float(losses["mask"]) == pytest.approx(0.1 * math.log(2.0), rel=1e-4)


def test_eval_is_deterministic_and_chunking_does_not_change_results():
    torch.manual_seed(0)
    model = NeuSModel(tiny_config()).eval()
    rays = rays_at_origin(40)
    whole = render_rays_chunked(model, rays, chunk=40)
    again = render_rays_chunked(model, rays, chunk=7)
    for k in ("rgb", "depth", "accumulation"):
        torch.testing.assert_close(whole[k], again[k], atol=1e-5, rtol=1e-5)


def test_scene_sphere_moves_the_model_frame():
    """The same rays, translated and scaled with the bounding sphere, give the same colours and
    depths scaled by the radius."""
    torch.manual_seed(0)
    unit = NeuSModel(tiny_config(n_outside=0)).eval()
    moved = NeuSModel(tiny_config(n_outside=0), sphere_center=(1.0, -2.0, 0.5), sphere_radius=3.0).eval()
    moved.load_state_dict(unit.state_dict() | {"sphere_center": moved.sphere_center,
                                                 "sphere_radius": moved.sphere_radius})
    with torch.no_grad():
        a = unit(rays_at_origin(16))
        b = moved(rays_at_origin(16, center=(1.0, -2.0, 0.5), scale=3.0))
    torch.testing.assert_close(a["rgb"], b["rgb"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(3.0 * a["depth"], b["depth"], atol=1e-4, rtol=1e-4)
    x = torch.tensor([[1.0, -2.0, 0.5], [4.0, -2.0, 0.5]])
    torch.testing.assert_close(moved.scene_sdf(x), 3.0 * unit.scene_sdf(torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])))


def test_learning_rate_schedule_and_cos_anneal():
    assert lr_factor(0, 100, 0.05, 1000) == 0.0
    assert lr_factor(50, 100, 0.05, 1000) == pytest.approx(0.5)
    assert lr_factor(100, 100, 0.05, 1000) == pytest.approx(1.0)
    assert lr_factor(550, 100, 0.05, 1000) == pytest.approx(0.525)
    assert lr_factor(1000, 100, 0.05, 1000) == pytest.approx(0.05)
    model = NeuSModel(tiny_config(anneal_end=100))
    assert model.cos_anneal_ratio == 0.0
    model.set_step(25)
    assert model.cos_anneal_ratio == pytest.approx(0.25)
    model.set_step(500)
    assert model.cos_anneal_ratio == 1.0
    assert NeuSModel(tiny_config(anneal_end=0)).cos_anneal_ratio == 1.0
    with pytest.raises(ValueError, match="multiple"):
        NeuSModel(tiny_config(n_importance=15, up_sample_steps=2))
