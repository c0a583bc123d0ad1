import copy
import dataclasses

import pytest
import torch

from nerflite.fields.instant_field import spherical_harmonics_4, trunc_exp
from nerflite.models.instant import InstantConfig, InstantModel
from nerflite.raymath.contraction import contract
from nerflite.raymath.occupancy import steps_to_cross
from nerflite.raymath.packed_rendering import render_packed
from nerflite.rays import RayBundle

TINY = dict(n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32, hidden=16, geo_features=7,
            grid_resolution=8, grid_update_every=1, grid_warmup_steps=4, steps_per_diagonal=64)  # fmt: skip


def bundle(n=20, seed=0, radius=4.0, far=6.0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, generator=g) - 0.5
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius
    d = torch.nn.functional.normalize(target - origins, dim=-1)
    near, far = torch.full((n, 1), 0.5), torch.full((n, 1), far)
    return RayBundle(origins, d, d, near, far, torch.zeros(n, 1, dtype=torch.long))


def test_contraction_identity_inside_continuous_and_bounded():
    x = torch.tensor([[0.3, -0.9, 0.5], [1.0, 0.2, 0.0], [4.0, 0.0, 0.0], [1e6, -1e6, 3.0]])
    c = contract(x)
    torch.testing.assert_close(c[:2], x[:2])
    torch.testing.assert_close(c[2], torch.tensor([1.75, 0.0, 0.0]))
    assert c.abs().max() <= 2.0 and c[3].abs().max() > 1.99
    e = torch.tensor([[1.0 + 1e-6, 0.5, 0.0]])
    assert (contract(e) - torch.tensor([[1.0, 0.5, 0.0]])).abs().max() < 1e-5


def test_sh_basis_is_orthonormal_and_trunc_exp_gradient_is_clamped():
    d = torch.nn.functional.normalize(torch.randn(200000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    sh = spherical_harmonics_4(d.double())
    gram = 4 * torch.pi * sh.T @ sh / len(d)  # Monte-Carlo integral over the sphere
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)
    x = torch.tensor([1.0, 30.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([1.0, 15.0])))


def twin_with_budget(model: InstantModel, budget: int) -> InstantModel:
    """The same weights and grid, training with ``budget`` sample slots."""
    twin = copy.deepcopy(model)
    twin.cfg = dataclasses.replace(model.cfg, sample_budget=budget)
    return twin


def test_budget_keeps_whole_rays_that_render_exactly_as_exact_packing_and_the_loss_ignores_the_rest():
    torch.manual_seed(0)
    exact = InstantModel(InstantConfig(**TINY), background=(1.0, 1.0, 1.0), sphere_radius=1.0)
    rays, target = bundle(40), torch.rand(40, 3, generator=torch.Generator().manual_seed(3))
    exact.train()
    exact.set_step(0)
    torch.manual_seed(1)
    out_a = exact(rays)
    total = int(out_a["n_samples"])
    budgeted = twin_with_budget(exact, total // 2)
    budgeted.set_step(1)  # no grid update at step 1 in either model (the same grid)
    exact.set_step(1)
    torch.manual_seed(2)
    out_a = exact(rays)
    torch.manual_seed(2)
    out_b = budgeted(rays)
    kept = out_b["ray_mask"][:, 0].bool()
    assert 0 < int(kept.sum()) < 40 and int(out_b["n_samples"]) <= total // 2
    assert torch.equal(kept, torch.arange(40) < int(kept.sum()))  # whole rays, in batch order
    for k in ("rgb", "depth", "accumulation"):  # every ray that counts renders as with exact packing
        torch.testing.assert_close(out_b[k][kept], out_a[k][kept], atol=1e-6, rtol=0)
    # the loss is the colour MSE over the kept rays only, and the other rays' targets do not matter
    loss = budgeted.losses(out_b, {"rgb": target})["rgb"]
    torch.testing.assert_close(loss, ((out_a["rgb"][kept] - target[kept]) ** 2).mean())
    other = target.clone()
    other[~kept] = 1.0 - other[~kept]
    torch.testing.assert_close(budgeted.losses(out_b, {"rgb": other})["rgb"], loss)
    ga = torch.autograd.grad(((out_a["rgb"][kept] - target[kept]) ** 2).mean(), exact.field.encoding.table)[0]
    gb = torch.autograd.grad(loss, budgeted.field.encoding.table)[0]
    torch.testing.assert_close(gb, ga, atol=1e-7, rtol=1e-5)
    m = budgeted.metrics(out_b, {"rgb": target})
    assert int(m["rays_used"]) == int(kept.sum()) and int(m["samples_per_step"]) == int(out_b["n_samples"])


def test_samples_per_step_follow_the_budget_as_the_grid_empties():
    torch.manual_seed(0)
    cfg = InstantConfig(**{**TINY, "grid_update_every": 10**6, "grid_warmup_steps": 0}, sample_budget=2000)
    model = InstantModel(cfg, background=(1.0, 1.0, 1.0), sphere_radius=1.0)
    model.train()

    def step(k):
        model.set_step(k)
        m = model.metrics(model(bundle(512, seed=k)), {"rgb": torch.zeros(512, 3)})
        return int(m["samples_per_step"]), int(m["rays_used"])

    step(0)  # the one grid update (every cell occupied); nothing known yet: all 512 rays marched
    full = [step(k) for k in range(1, 5)]
    assert all(0.8 * 2000 <= s <= 2000 for s, _ in full), full
    centres = model.grid.cell_points(torch.zeros(8**3, dtype=torch.long), torch.arange(8**3))
    model.grid.bitfield[0] = centres.norm(dim=-1) < 0.4  # most of the box empties: fewer samples per ray
    step(5)  # marched as many rays as before: under-filled
    sparse = [step(k) for k in range(6, 10)]
    assert all(0.8 * 2000 <= s <= 2000 for s, _ in sparse), sparse
    assert min(r for _, r in sparse) > 1.5 * max(r for _, r in full)  # more rays for the same samples


def test_whole_images_stop_rays_once_opaque_and_match_exact_packing():
    torch.manual_seed(0)
    cfg = InstantConfig(**{**TINY, "steps_per_diagonal": 512}, density_bias=3.0)  # ~440 steps across
    model = InstantModel(cfg, background=(1.0, 1.0, 1.0), sphere_radius=1.0)
    model.eval()
    rays = bundle(64)
    with torch.no_grad():
        s = model.sample(rays)  # eval: one exact march, no jitter
        ri = s.ray_indices
        sigma, rgb = model._radiance(rays.origins[ri] + s.t_mid[:, None] * rays.directions[ri], rays.viewdirs[ri])
        ref = render_packed(sigma, rgb, s.t_starts, s.t_ends, ri, 64, None, model.background)
        model.cfg.early_stop = 0.0
        full = model(rays)
        model.cfg.early_stop = 1e-4
        early = model(rays)
    for k in ("rgb", "depth", "accumulation"):
        torch.testing.assert_close(full[k], ref[k], atol=2e-5, rtol=0)
        torch.testing.assert_close(early[k], ref[k], atol=5e-4 if k != "depth" else 5e-3, rtol=0)
    assert int(full["n_samples"]) == len(ri)
    assert int(early["n_samples"]) < 0.6 * len(ri)  # opaque rays stop early


def test_evaluation_set_step_and_load_state_never_change_the_grid():
    torch.manual_seed(0)
    model = InstantModel(InstantConfig(**TINY, sample_budget=500), sphere_radius=1.0)
    model.train()
    model.set_step(0)
    model(bundle())
    assert int(model.grid.n_updates) == 1
    state = copy.deepcopy(model.state_dict())
    assert "march_stats" in state and float(state["march_stats"][0]) > 0
    model.set_step(1)
    model(bundle())
    model(bundle())  # a second forward of the same step does not update again
    assert int(model.grid.n_updates) == 2
    model.eval()
    model.set_step(4)
    model(bundle())
    model.train()
    model.load_state(state, 8)
    assert int(model.grid.n_updates) == 1 and model.step == 8
    # a resumed model marches as many rays as the one that saved the checkpoint would have
    fresh = InstantModel(InstantConfig(**TINY, sample_budget=500), sphere_radius=1.0)
    fresh.load_state(state, 1)
    assert fresh.rays_to_march(4096) == model.rays_to_march(4096) < 4096


def test_sample_budget_smaller_than_one_ray_is_refused():
    with pytest.raises(ValueError, match="sample_budget"):
        InstantModel(InstantConfig(**TINY, sample_budget=8), sphere_radius=1.0)


@pytest.mark.parametrize("mode", ["bounded", "ndc", "unbounded"])
def test_scene_modes_march_and_render(mode):
    torch.manual_seed(0)
    model = InstantModel(InstantConfig(**TINY, scene_mode=mode), sphere_radius=1.0, far=20.0)
    rays = bundle(far=20.0) if mode != "ndc" else bundle(radius=0.9, far=1.0)
    model.train()
    for step in range(2):
        model.set_step(step)
        out = model(rays)
    assert out["rgb"].shape == (20, 3) and torch.isfinite(out["rgb"]).all()
    assert int(out["n_samples"]) > 0
    if mode == "unbounded":  # samples reach far beyond the unit sphere, on a growing step
        s = model.sample(rays)
        assert float(s.t_ends.max()) > 10.0
        dt = s.t_ends - s.t_starts
        assert float(dt.max()) > 1.3 * float(dt.min())  # 1/256 of the distance beyond t = 14
    with pytest.raises(ValueError, match="scene_mode"):
        InstantModel(InstantConfig(scene_mode="sphere"))


@pytest.mark.slow
def test_compiled_field_trains_as_the_eager_one():
    """``compile=true``: the same outputs and table gradients as the eager field (CPU inductor)."""
    torch.manual_seed(0)
    eager = InstantModel(InstantConfig(**TINY, sample_budget=1000), sphere_radius=1.0)
    compiled = InstantModel(InstantConfig(**TINY, sample_budget=1000, compile=True), sphere_radius=1.0)
    compiled.load_state_dict(eager.state_dict())
    assert set(compiled.state_dict()) == set(eager.state_dict())
    outs, grads = [], []
    for model in (eager, compiled):
        model.train()
        model.set_step(0)
        torch.manual_seed(1)
        out = model(bundle(64))
        outs.append(out["rgb"])
        grads.append(torch.autograd.grad(out["rgb"].square().sum(), model.field.encoding.table)[0])
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-4)


def test_cascades_widen_the_field_and_the_marching_to_the_outer_box():
    """grid_cascades = 2: the grid and the hash grid cover the box doubled about its centre, so a
    ray reaches geometry outside the finest box (instant-ngp's aabb_scale)."""
    torch.manual_seed(0)
    cfg = InstantConfig(**TINY, aabb=[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], grid_cascades=2)
    model = InstantModel(cfg, sphere_radius=1.0).eval()
    torch.testing.assert_close(model.box_lo, torch.full((3,), -2.0))
    outside = torch.tensor([[1.8, 0.0, 0.0]])
    assert float(model.unit(outside)[0, 0]) == pytest.approx(0.95)  # not clamped onto the inner box
    o = torch.tensor([[1.6, -3.0, 0.0]])
    d = torch.tensor([[0.0, 1.0, 0.0]])
    rays = RayBundle(o, d, d, torch.zeros(1, 1), torch.full((1, 1), 6.0), torch.zeros(1, 1, dtype=torch.long))
    s = model.sample(rays)  # the ray passes beside the finest box, inside the outer one
    assert len(s.ray_indices) > 0
    assert model.max_steps == steps_to_cross(model.grid, model.step_size) >= 2 * 64 - 1  # twice the finest box
