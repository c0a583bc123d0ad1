"""neus_instant's parts: the hash-grid SDF field (geometric init, autograd gradient, progressive
levels), the SDF-derived occupancy grid and its sampling, the model's schedule and state."""

from __future__ import annotations

import math

import pytest
import torch

from nerflite.fields.hash_sdf_field import HashSDFField
from nerflite.models.neus_instant import NeuSInstantConfig, NeuSInstantModel
from nerflite.raymath.neus_rendering import near_far_from_sphere
from nerflite.raymath.sdf_occupancy import cell_centers, lookup, occupancy_from_sdf, occupied_depths, shell_width
from nerflite.rays import RayBundle

SMALL = dict(n_levels=6, log2_table_size=12, base_resolution=4, max_resolution=64)


def shell_points(n: int, r_min: float, r_max: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    r = r_min + (r_max - r_min) * torch.rand(n, 1, generator=g)
    return r * d / d.norm(dim=-1, keepdim=True)


def tiny_config(**kw) -> NeuSInstantConfig:
    base = dict(SMALL, sdf_width=16, feature_dim=7, color_width=16, n_samples=8, n_importance=8,
                n_candidates=32, occ_resolution=16, occ_every=4, start_levels=2, level_every=10)
    return NeuSInstantConfig(**{**base, **kw})


def rays_at_origin(n: int, seed: int = 0) -> RayBundle:
    """Rays from distance 3 through points near the origin."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = 3.0 * o / o.norm(dim=-1, keepdim=True)
    d = -o + 0.3 * torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    return RayBundle(o, d, d, torch.zeros(n, 1), torch.full((n, 1), 6.0), torch.zeros(n, 1, dtype=torch.int64))


def test_geometric_init_starts_as_a_sphere():
    torch.manual_seed(0)
    field = HashSDFField(**SMALL, hidden_dim=64, init_radius=0.5)
    x = shell_points(4096, 0.2, 0.9)
    with torch.no_grad():
        err = (field.sdf(x)[:, 0] - (x.norm(dim=-1) - 0.5)).abs()
    # one random hidden layer of width 64 fluctuates around |x| - r by ~ 1 / sqrt(64) of |x|
    assert err.mean() < 0.15, err.mean()
    grad = field.sdf_feature_gradient(x, create_graph=False)[2]
    radial = torch.nn.functional.cosine_similarity(grad, x, dim=-1)
    assert radial.mean() > 0.9 and 0.7 < grad.norm(dim=-1).mean() < 1.3
    # the grid features enter with zero weights: the hash tables change nothing at first
    with torch.no_grad():
        before = field.sdf(x)
        field.encoding.table.normal_(0.0, 1.0)
        assert torch.equal(field.sdf(x), before)


def test_sdf_gradient_matches_finite_differences():
    torch.manual_seed(0)
    field = HashSDFField(**SMALL, hidden_dim=16, feature_dim=4).double()
    with torch.no_grad():  # a field that depends on the grid: random tables and first-layer weights
        field.encoding.table.normal_(0.0, 0.3)
        field.layers[0].weight.normal_(0.0, 0.5)
    x = shell_points(256, 0.1, 0.95, seed=1).double()
    _, _, grad = field.sdf_feature_gradient(x, create_graph=False)
    eps = 1e-6
    fd = torch.stack(
        [(field.sdf(x + eps * e)[:, 0] - field.sdf(x - eps * e)[:, 0]) / (2 * eps) for e in torch.eye(3).double()],
        -1,
    )
    assert grad.abs().mean() > 0.1  # not a trivial field
    torch.testing.assert_close(grad, fd, atol=1e-5, rtol=1e-5)
    # create_graph keeps the gradient differentiable in the hash tables (the eikonal loss trains them)
    field.train()
    _, _, g = field.sdf_feature_gradient(x)
    ((g.norm(dim=-1) - 1) ** 2).mean().backward()
    assert field.encoding.table.grad.abs().sum() > 0


def test_progressive_levels_follow_the_step_and_survive_a_state_round_trip():
    torch.manual_seed(0)
    model = NeuSInstantModel(tiny_config(start_levels=2, level_every=10))
    assert model.sdf_field.encoding.n_active_levels == 2
    expected = {0: 2, 9: 2, 10: 3, 25: 4, 40: 6, 1000: 6}
    for step, k in expected.items():
        model.set_step(step)
        assert model.active_levels(step) == k and model.sdf_field.encoding.n_active_levels == k
    # the inactive levels' table entries do not change the SDF
    model.set_step(0)
    with torch.no_grad():
        model.sdf_field.layers[0].weight.normal_(0.0, 0.5)
    x = shell_points(512, 0.1, 0.9)
    enc = model.sdf_field.encoding
    before = model.sdf_field.sdf(x).detach()
    with torch.no_grad():
        fine = slice(enc._offsets[2].item(), None)  # rows of levels 2..5
        enc.table[fine] += 1.0
    assert torch.equal(model.sdf_field.sdf(x).detach(), before)
    model.set_step(40)  # all levels: now the change shows
    assert not torch.allclose(model.sdf_field.sdf(x).detach(), before)
    # a fresh model that loads the checkpoint's state and step renders the same
    model.update_occupancy()
    other = NeuSInstantModel(tiny_config(start_levels=2, level_every=10))
    other.load_state(model.state_dict(), 40)
    assert other.step == 40 and other.sdf_field.encoding.n_active_levels == 6
    model.eval(), other.eval()
    rays = rays_at_origin(16)
    torch.testing.assert_close(other(rays)["rgb"], model(rays)["rgb"])
    assert torch.equal(other.occupancy, model.occupancy)


def test_occupancy_of_a_known_sphere():
    res, r, k, inv_s = 32, 0.5, 4.0, 64.0
    centers = cell_centers(res)
    grid = occupancy_from_sdf(centers.norm(dim=-1) - r, res, inv_s, k)  # [res, res, res]
    width = shell_width(res, inv_s, k)
    assert math.isclose(width, math.sqrt(3) * 2 / res + k / inv_s)
    # every point on the sphere is in an occupied cell; points far from it are in empty ones
    on = shell_points(20000, r, r, seed=2)
    assert lookup(grid, on).all()
    far_in, far_out = shell_points(5000, 0.0, r - width - 0.1, 3), shell_points(5000, r + width + 0.1, 0.99, 4)
    assert not lookup(grid, far_in).any() and not lookup(grid, far_out).any()
    assert not lookup(grid, torch.tensor([[1.5, 0.0, 0.0], [0.0, -1.2, 0.3]])).any()  # outside the cube
    # the occupied volume is about the shell's
    shell_volume = 4.0 / 3.0 * math.pi * ((r + width) ** 3 - (r - width) ** 3)
    assert abs(float(grid.float().mean()) * 8.0 - shell_volume) < 0.15 * shell_volume
    # the cell index order is x fastest: the cell at (+x, 0, 0) edge is grid[k, j, i] with i high
    one = torch.zeros(res, res, res, dtype=torch.bool)
    one[res // 2, res // 2, res - 1] = True
    assert lookup(one, torch.tensor([[0.99, 0.01, 0.01]])).all()
    assert not lookup(one, torch.tensor([[0.01, 0.01, 0.99]])).any()


@pytest.mark.parametrize("perturb", [False, True])
def test_occupied_depths_land_in_the_shell(perturb):
    res, r, inv_s, k = 32, 0.5, 200.0, 1.0
    grid = occupancy_from_sdf(cell_centers(res).norm(dim=-1) - r, res, inv_s, k)
    rays = rays_at_origin(256, seed=5)
    near, far = near_far_from_sphere(rays.origins, rays.directions)
    t = occupied_depths(rays.origins, rays.directions, near, far, grid, 256, 16, perturb)  # [n, 16]
    assert t.shape == (256, 16) and (t[:, 1:] >= t[:, :-1]).all()
    p = rays.origins[:, None] + t[..., None] * rays.directions[:, None]  # [n, 16, 3]
    closest = (rays.origins + near.add(1.0) * rays.directions).norm(dim=-1)  # [n] ray's distance to 0
    hits = closest < r - 0.05
    bin_len = 2.0 / 256
    dist = (p[hits].norm(dim=-1) - r).abs()
    # within the occupied cells (cell diagonal + k / inv_s) plus one candidate bin
    assert dist.max() <= shell_width(res, inv_s, k) + math.sqrt(3) * 2 / res + bin_len
    assert hits.sum() > 100


def test_fixed_size_sampler_covers_every_occupied_stretch_of_a_ray():
    """No ray is cut short: every ray gets its fixed number of depths spread over all of its occupied
    bins (here the front and the back crossing of a sphere shell), and the stratified depths span
    [near, far] whole."""
    res, r, inv_s, k = 32, 0.5, 200.0, 1.0
    grid = occupancy_from_sdf(cell_centers(res).norm(dim=-1) - r, res, inv_s, k)
    o = torch.tensor([[-3.0, 0.02, 0.01]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    near, far = near_far_from_sphere(o, d)
    t = occupied_depths(o, d, near, far, grid, 256, 32, perturb=False)[0]  # [32]
    x = o[0, 0] + t  # the ray runs along x through the centre
    front, back = (x < 0).sum(), (x > 0).sum()
    assert front >= 12 and back >= 12  # both crossings of the shell, about half each
    assert float(x.max()) > r - shell_width(res, inv_s, k)  # the back crossing is reached
    model = NeuSInstantModel(tiny_config(n_samples=16, n_importance=0)).eval()
    depths = model.sample_depths(o, d, near, far)
    assert float(depths.min()) < float(near) + 2.0 / 16 and float(depths.max()) > float(far) - 2.0 / 16


def test_model_update_occupancy_follows_the_sdf_and_a_step_trains():
    torch.manual_seed(0)
    model = NeuSInstantModel(tiny_config(occ_resolution=24, occ_every=4))
    assert model.occupancy.all()  # nothing skipped before the first update
    model.train()
    model.set_step(0)
    opt = torch.optim.Adam(model.optimizer_groups(model.cfg.lr))
    out = model(rays_at_origin(32))  # step 0: the grid is recomputed from the SDF first
    occ = model.occupancy.clone()
    assert 0.02 < occ.float().mean() < 0.8 and not occ[12, 12, 12]  # the centre cell is deep inside
    losses = model.losses(out, {"rgb": torch.rand(32, 3), "mask": torch.ones(32, 1, dtype=torch.bool)})
    assert set(losses) == {"rgb", "eikonal", "mask"}
    sum(losses.values()).backward()
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == [model.cfg.lr, model.cfg.variance_lr]
    model.set_step(1)
    model(rays_at_origin(32))
    assert model._occ_updated_at == 0  # only every occ_every steps
    model.eval()
    model.set_step(4)
    model(rays_at_origin(8))
    assert model._occ_updated_at == 0  # never while rendering
    with pytest.raises(ValueError, match="NeuSInstantConfig.occ_every"):
        NeuSInstantModel(tiny_config(occ_every=0))


@pytest.mark.gpu
def test_training_step_has_no_host_sync():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    model = NeuSInstantModel(tiny_config()).cuda().train()
    opt = torch.optim.Adam(model.optimizer_groups(model.cfg.lr))
    rays = rays_at_origin(256).to("cuda")
    batch = {"rgb": torch.rand(256, 3, device="cuda"), "mask": torch.ones(256, 1, dtype=torch.bool, device="cuda")}
    for step in range(3):  # warm-up (allocator, lazy init)
        model.set_step(step)
        sum(model.losses(model(rays), batch).values()).backward()
        opt.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(4, 9):  # includes an occupancy update at step 8
            model.set_step(step)
            loss = sum(model.losses(model(rays), batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
