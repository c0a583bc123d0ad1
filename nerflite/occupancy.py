"""Occupancy grid (instant-ngp / nerfacc): which cells of the scene box hold anything, and ray
marching that returns packed samples in occupied cells only.

Grid: ``n_cascades`` grids of R^3 cells; cascade c covers the box scaled by 2^c about its centre
(one cascade: a bounded scene). Each cell keeps ``values`` (an EMA-max of ``occ_fn`` at random
points of the cell: density * step for NeRF, an SDF-derived opacity for NeuS) and ``bitfield``
(values > min(threshold, mean of values)). ``update(step, occ_fn)`` runs every ``update_every``
steps: during ``warmup_steps`` every cell is sampled, later a random quarter of the cells plus
as many cells drawn from the occupied ones; a sampled cell becomes max(value * decay, occ_fn(x)).

Marching: candidate intervals of length ``dt`` (``step_size``; with ``cone_angle`` > 0 the step
grows as max(step_size, cone_angle * t), as for unbounded scenes) from where the ray enters the
outermost box to where it leaves it (clipped to [near, far]), ``max_steps`` per ray; a candidate
is kept when its midpoint lies in an occupied cell. Kept samples are packed in ray order
(``nerflite.packed_rendering``); ``budget`` > 0 packs into exactly ``budget`` slots with a
validity mask (no data-dependent shape, no host sync), ``budget`` = 0 compacts exactly.
The grid values, the bitfield and the update counter are buffers, so checkpoints carry them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class PackedSamples:
    """Samples of many rays in one flat array (sorted by ray)."""

    t_starts: Tensor  # [m] interval starts
    t_ends: Tensor  # [m] interval ends
    ray_indices: Tensor  # [m] int64, sorted
    valid: Tensor | None  # [m] bool, None when every slot is a real sample
    n_rays: int  # rays in the bundle the samples belong to

    @property
    def t_mid(self) -> Tensor:
        return 0.5 * (self.t_starts + self.t_ends)  # [m]


def ray_aabb(origins: Tensor, directions: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [n] of rays [n, 3] through the box [lo, hi] (exit < entry: a miss)."""
    inv = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    a, b = (lo - origins) * inv, (hi - origins) * inv  # [n, 3]
    return torch.minimum(a, b).amax(dim=-1), torch.maximum(a, b).amin(dim=-1)


def marching_steps(t0: Tensor, n_steps: int, step_size: float, cone_angle: float) -> Tensor:
    """Step boundaries [n, n_steps + 1] from t0 [n]: t_{k+1} = t_k + max(step_size, cone_angle t_k)."""
    k = torch.arange(n_steps + 1, device=t0.device, dtype=t0.dtype)  # [S + 1]
    linear = t0[:, None] + k * step_size  # [n, S + 1]
    if cone_angle <= 0:
        return linear
    t_switch = step_size / cone_angle  # beyond it the step is cone_angle * t
    k_lin = ((t_switch - t0) / step_size).ceil().clamp(min=0)  # [n] linear steps before switching
    t_geo0 = t0 + k_lin * step_size  # [n]
    geo = t_geo0[:, None] * (1.0 + cone_angle) ** (k - k_lin[:, None]).clamp(min=0)
    return torch.where(k < k_lin[:, None], linear, geo)


def pack_mask(mask: Tensor, budget: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """(ray index [m], step index [m], valid [m] or None) of the True entries of ``mask`` [n, S].

    ``budget`` 0: exactly the True entries (a data-dependent size). ``budget`` > 0: ``budget``
    slots filled in ray order, the rest marked invalid (ray n-1, step 0); each ray keeps at most
    its first ``budget // n`` entries, so the total fits and no ray loses its samples to the
    others. No host sync in the second form.
    """
    n, s = mask.shape
    if budget <= 0:
        ray, step = mask.nonzero(as_tuple=True)
        return ray, step, None
    per_ray = max(budget // n, 1)  # every ray keeps at most its share: none is starved by the others
    mask = mask & (torch.cumsum(mask.int(), dim=1) <= per_ray)
    flat = mask.reshape(-1)
    pos = torch.cumsum(flat.long(), dim=0) - 1  # [n * S] slot of each kept entry
    keep = flat & (pos < budget)
    slot = torch.where(keep, pos, torch.full_like(pos, budget))  # overflow / unused -> dump slot
    src = torch.arange(n * s, device=mask.device)
    flat_idx = torch.full((budget + 1,), n * s - s, dtype=torch.int64, device=mask.device)
    flat_idx = flat_idx.scatter(0, slot, src)[:budget]  # kept entries have distinct slots
    valid = torch.arange(budget, device=mask.device) < keep.sum()
    return flat_idx // s, flat_idx % s, valid


class OccupancyGrid(nn.Module):
    """The grid over ``aabb`` = [x0, y0, z0, x1, y1, z1] (see the module docstring)."""

    def __init__(
        self,
        aabb: list[float],
        resolution: int = 128,
        n_cascades: int = 1,
        update_every: int = 16,
        warmup_steps: int = 256,
        decay: float = 0.95,
        threshold: float = 0.01,
    ):
        super().__init__()
        if len(aabb) != 6 or any(aabb[i] >= aabb[i + 3] for i in range(3)):
            raise ValueError(f"occupancy grid: aabb must be [x0, y0, z0, x1, y1, z1] with x0 < x1, got {aabb}")
        self.resolution, self.n_cascades = resolution, n_cascades
        self.update_every, self.warmup_steps = update_every, warmup_steps
        self.decay, self.threshold = decay, threshold
        lo, hi = torch.tensor(aabb[:3], dtype=torch.float32), torch.tensor(aabb[3:], dtype=torch.float32)
        self.register_buffer("center", (lo + hi) / 2, persistent=False)
        self.register_buffer("half_size", (hi - lo) / 2, persistent=False)
        n_cells = resolution**3
        self.register_buffer("values", torch.zeros(n_cascades, n_cells))  # EMA-max occupancy
        self.register_buffer("bitfield", torch.ones(n_cascades, n_cells, dtype=torch.bool))  # occupied cells
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.int64))  # updates done so far

    @property
    def outer_box(self) -> tuple[Tensor, Tensor]:
        scale = 2.0 ** (self.n_cascades - 1)
        return self.center - self.half_size * scale, self.center + self.half_size * scale

    def cell_diagonal(self) -> float:
        """Length of the diagonal of a finest-cascade cell (a natural marching step)."""
        return float(torch.linalg.norm(2 * self.half_size / self.resolution))

    # ---------------------------------------------------------------- lookup
    def cell_index(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(cascade [m], flat cell index [m], inside [m]) of points [m, 3]; inside: in the grid."""
        u = (points - self.center) / self.half_size  # [m, 3] in [-1, 1] for cascade 0
        r = u.abs().amax(dim=-1)  # [m]
        cascade = torch.log2(r.clamp(min=1e-12)).ceil().clamp(min=0).long()  # [m]
        inside = cascade < self.n_cascades
        cascade = cascade.clamp(max=self.n_cascades - 1)
        g = (u / 2.0 ** cascade[:, None].float() + 1) * 0.5 * self.resolution  # [m, 3] in [0, R]
        ijk = g.long().clamp(0, self.resolution - 1)
        inside = inside & (r <= 2.0 ** (self.n_cascades - 1))
        flat = ijk[:, 0] * self.resolution**2 + ijk[:, 1] * self.resolution + ijk[:, 2]
        return cascade, flat, inside

    def occupied(self, points: Tensor) -> Tensor:
        """bool [m]: the points [m, 3] lie in occupied cells (False outside the grid)."""
        cascade, flat, inside = self.cell_index(points)
        return self.bitfield[cascade, flat] & inside

    # ---------------------------------------------------------------- update
    def cell_points(self, cascade: Tensor, flat: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A uniformly random point [m, 3] in each given cell."""
        R = self.resolution
        ijk = torch.stack([flat // (R * R), (flat // R) % R, flat % R], dim=-1).float()  # [m, 3]
        jitter = torch.rand(ijk.shape, device=ijk.device, generator=generator)
        u = (ijk + jitter) / R * 2 - 1  # [m, 3] in [-1, 1]
        return self.center + u * self.half_size * 2.0 ** cascade[:, None].float()

    @torch.no_grad()
    def update(self, step: int, occ_fn: Callable[[Tensor], Tensor], generator: torch.Generator | None = None) -> bool:
        """Refresh the grid at steps that are multiples of ``update_every``; returns whether it ran."""
        if step % self.update_every != 0:
            return False
        n_cells = self.resolution**3
        dev = self.values.device
        for c in range(self.n_cascades):
            if step < self.warmup_steps:
                flat = torch.arange(n_cells, device=dev)
            else:
                k = max(n_cells // 4, 1)
                uniform = torch.randint(0, n_cells, (k,), device=dev, generator=generator)
                weights = self.bitfield[c].float() + 1e-6  # never all zero: no host check needed
                occupied = torch.multinomial(weights, k, replacement=True, generator=generator)
                flat = torch.cat([uniform, occupied])
            cascade = torch.full_like(flat, c)
            value = occ_fn(self.cell_points(cascade, flat, generator)).reshape(-1).float()  # [k]
            fresh = torch.full((n_cells,), -1.0, device=dev).scatter_reduce(0, flat, value, "amax")
            sampled = fresh >= 0
            self.values[c] = torch.where(sampled, torch.maximum(self.values[c] * self.decay, fresh), self.values[c])
        thresh = torch.clamp(self.values.mean(), max=self.threshold)
        self.bitfield.copy_(self.values > thresh)
        self.n_updates += 1
        return True

    # ---------------------------------------------------------------- marching
    @torch.no_grad()
    def march(
        self,
        origins: Tensor,
        directions: Tensor,
        near: Tensor,
        far: Tensor,
        step_size: float,
        max_steps: int,
        cone_angle: float = 0.0,
        perturb: bool = False,
        budget: int = 0,
        generator: torch.Generator | None = None,
    ) -> PackedSamples:
        """Packed samples in occupied cells along rays (origins, directions [n, 3], near, far [n, 1])."""
        n = origins.shape[0]
        lo, hi = self.outer_box
        t_in, t_out = ray_aabb(origins, directions, lo, hi)  # [n]
        t0 = torch.maximum(t_in, near[:, 0])
        t1 = torch.minimum(t_out, far[:, 0])
        if perturb:
            t0 = t0 + torch.rand(t0.shape, device=t0.device, generator=generator) * step_size
        bounds = marching_steps(t0, max_steps, step_size, cone_angle)  # [n, S + 1]
        starts, ends = bounds[:, :-1], bounds[:, 1:]  # [n, S]
        mid = 0.5 * (starts + ends)
        pts = origins[:, None, :] + mid[..., None] * directions[:, None, :]  # [n, S, 3]
        mask = (ends <= t1[:, None]) & self.occupied(pts.reshape(-1, 3)).reshape(n, max_steps)  # [n, S]
        ray, step, valid = pack_mask(mask, budget)
        return PackedSamples(starts[ray, step], ends[ray, step], ray, valid, n)


def steps_to_cross(grid: OccupancyGrid, step_size: float) -> int:
    """Marching steps that cover the diagonal of the outermost box at ``step_size`` (no cone)."""
    lo, hi = grid.outer_box
    return int(math.ceil(float(torch.linalg.norm(hi - lo)) / step_size))
