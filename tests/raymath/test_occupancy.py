import pytest
import torch

from nerflite.raymath.marching import marching_steps, pack_whole_rays, ray_aabb, rays_for_budget
from nerflite.raymath.occupancy import OccupancyGrid, steps_to_cross


def cube_occ(points):  # 1 inside the cube [-0.25, 0.25]^3 (aligned with the cells of a 16^3 grid on [-1, 1]^3)
    return (points.abs().amax(dim=-1) < 0.25).float()


def rays(origins, directions):
    d = torch.nn.functional.normalize(torch.tensor(directions, dtype=torch.float32), dim=-1)
    o = torch.tensor(origins, dtype=torch.float32)
    n = o.shape[0]
    return o, d, torch.zeros(n, 1), torch.full((n, 1), 10.0)


def test_ray_aabb_and_cone_steps():
    o, d, _, _ = rays([[-3.0, 0, 0], [-3.0, 5, 0]], [[1.0, 0, 0], [1.0, 0, 0]])
    t_in, t_out = ray_aabb(o, d, -torch.ones(3), torch.ones(3))
    assert t_in[0] == 2 and t_out[0] == 4 and t_out[1] < t_in[1]
    b = marching_steps(torch.tensor([0.5, 3.0]), 40, 0.1, 0.05)
    dt = b[:, 1:] - b[:, :-1]
    torch.testing.assert_close(dt, torch.clamp(0.05 * b[:, :-1], min=0.1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(marching_steps(torch.tensor([1.0]), 3, 0.5, 0.0), torch.tensor([[1.0, 1.5, 2, 2.5]]))


def test_pack_whole_rays_takes_whole_rays_in_order_and_never_part_of_one():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(13, 9, generator=g) > 0.6
    ray = torch.arange(13)[:, None].expand(13, 9).reshape(-1)
    keep = mask.reshape(-1)
    idx, valid, kept = pack_whole_rays(ray, keep, 13, 0)
    assert valid is None and kept.all() and torch.equal(idx, keep.nonzero()[:, 0])
    counts = mask.sum(dim=1)
    for budget in (9, 20, 40, int(mask.sum()), 200):
        i, v, k = pack_whole_rays(ray, keep, 13, budget)
        assert len(i) == budget and torch.all(ray[i][1:] >= ray[i][:-1])  # static size, sorted (padding too)
        # kept rays: the longest prefix whose samples fit, each with every one of its samples
        assert torch.equal(k, torch.cumsum(counts, 0) <= budget)
        exact = idx[k[ray[idx]]]  # the exact packing's entries of the kept rays, in the same order
        assert int(v.sum()) == len(exact) <= budget and torch.equal(i[v], exact)
    assert rays_for_budget(1000, 0, 0, 64) == 64  # nothing known yet: every ray
    assert rays_for_budget(1000, 500, 10, 4096) == 21  # 50 samples per ray -> 20 rays, 5% more
    assert rays_for_budget(1000, 5, 10, 64) == 64  # capped by the batch


@pytest.mark.parametrize("budget", [0, 3000])
def test_block_marching_keeps_exactly_the_dense_samples(budget):
    """Empty-space skipping through the one-cell-dilated grid gives the very samples of dense marching."""
    g = torch.Generator().manual_seed(1)
    grid = OccupancyGrid([-1.5, -1.5, -1.0, 1.5, 1.5, 1.0], resolution=32)  # cells not cubes
    grid.bitfield.copy_(torch.rand(grid.bitfield.shape, generator=g) < 0.03)
    n = 300
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3.5
    d = torch.nn.functional.normalize(torch.rand(n, 3, generator=g) - 0.5 - o / 3.5, dim=-1)
    near, far = torch.full((n, 1), 0.1), torch.full((n, 1), 6.0)
    step = 0.01
    coarse = grid.coarse(step)
    assert coarse is not None and coarse[1] == int(2 * 2.0 / 32 / step)  # the z side is the smallest
    n_steps = steps_to_cross(grid, step)
    dense = grid.march(o, d, near, far, step, n_steps, budget=budget, skip_empty=False)
    blocks = grid.march(o, d, near, far, step, n_steps, budget=budget)
    v = torch.ones_like(dense.t_starts, dtype=torch.bool) if dense.valid is None else dense.valid
    assert v.sum() > 100
    vb = torch.ones_like(blocks.t_starts, dtype=torch.bool) if blocks.valid is None else blocks.valid
    assert torch.equal(blocks.ray_indices[vb], dense.ray_indices[v])
    torch.testing.assert_close(blocks.t_starts[vb], dense.t_starts[v], atol=1e-6, rtol=0)
    assert grid.coarse(step, cone_angle=0.01) is None and grid.coarse(0.5) is None


def test_empty_space_gives_no_samples_and_a_cube_samples_only_inside():
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16, update_every=1, warmup_steps=10)
    o, d, near, far = rays([[-3.0, 0.1, 0.05], [-3.0, 0.7, 0.0], [0.05, -3.0, 0.1]], [[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    step = grid.cell_diagonal() / 4
    n_steps = steps_to_cross(grid, step)
    # fresh grid: everything counts as occupied, the ray crosses the whole box
    s = grid.march(o, d, near, far, step, n_steps)
    assert (s.ray_indices == 0).sum() >= int(2 / step) - 1
    grid.update(0, lambda p: torch.zeros(len(p)))
    assert not grid.bitfield.any()
    for budget in (0, n_steps):
        s = grid.march(o, d, near, far, step, n_steps, perturb=True, budget=budget)
        assert (len(s.ray_indices) == 0) if budget == 0 else not s.valid.any()
    grid.update(1, cube_occ)
    assert int(grid.bitfield.sum()) == 4**3  # the 4^3 cells of the cube
    for budget in (0, 500):
        s = grid.march(o, d, near, far, step, n_steps, budget=budget)
        assert s.ray_kept is None or s.ray_kept.all()
        valid = torch.ones_like(s.ray_indices, dtype=torch.bool) if s.valid is None else s.valid
        ri = s.ray_indices[valid]
        pts = o[ri] + s.t_mid[valid][:, None] * d[ri]
        assert torch.all(pts.abs().amax(dim=-1) < 0.25 + 1e-6)
        assert (ri == 0).sum() >= int(0.5 / step) - 1 and (ri == 2).sum() >= int(0.5 / step) - 1
        assert not (ri == 1).any()  # passes beside the cube
        assert torch.all(s.t_ends[valid] > s.t_starts[valid])


def test_update_decay_threshold_and_schedule():
    grid = OccupancyGrid([0, 0, 0, 1, 1, 1], resolution=8, update_every=4, warmup_steps=8, decay=0.5, threshold=0.3)
    assert not grid.update(3, cube_occ)
    assert grid.update(0, lambda p: torch.full((len(p),), 0.8))
    torch.testing.assert_close(grid.values, torch.full_like(grid.values, 0.8))
    assert grid.update(4, lambda p: torch.zeros(len(p)))  # warm-up: every cell decays
    torch.testing.assert_close(grid.values, torch.full_like(grid.values, 0.4))
    assert grid.bitfield.all()  # 0.4 > min(0.3, mean 0.4)
    grid.update(4, lambda p: torch.zeros(len(p)))
    assert not grid.bitfield.any()  # 0.2 <= min(0.3, 0.2)
    # the EMA is a max: a larger value replaces the decayed one at once
    grid.update(4, lambda p: (p[:, 0] < 0.5).float())
    assert torch.all(grid.values.view(8, 8, 8)[:4] == 1) and torch.all(grid.values.view(8, 8, 8)[4:] == 0.1)
    # after warm-up only a subset of cells is visited: some decay, the rest keep their value
    before = grid.values.clone()
    grid.update(8, lambda p: torch.zeros(len(p)), generator=torch.Generator().manual_seed(0))
    changed = grid.values != before
    assert 0 < int(changed.sum()) < grid.values.numel()
    torch.testing.assert_close(grid.values[changed], before[changed] * 0.5)
    assert int(grid.n_updates) == 5
    sd = grid.state_dict()
    assert set(sd) == {"values", "bitfield", "n_updates"}
    other = OccupancyGrid([0, 0, 0, 1, 1, 1], resolution=8)
    other.load_state_dict(sd)
    assert torch.equal(other.bitfield, grid.bitfield)


def test_cascades_cover_a_larger_box():
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=8, n_cascades=2, update_every=1)
    grid.update(0, lambda p: (p.norm(dim=-1) > 1.2).float())
    pts = torch.tensor([[1.9, 0.0, 0.0], [0.0, 0.0, 0.0], [2.5, 0.0, 0.0]])
    assert grid.occupied(pts).tolist() == [True, False, False]
