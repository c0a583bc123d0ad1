"""Occupancy grid (instant-ngp / nerfacc): which cells of the scene box hold anything, and ray
marching that returns packed samples in occupied cells only.

Grid: ``n_cascades`` grids of R^3 cells; cascade c covers the box scaled by 2^c about its centre
(one cascade: a bounded scene). Each cell keeps ``values`` (an EMA-max of ``occ_fn`` at random
points of the cell: density * step for NeRF, an SDF-derived opacity for NeuS) and ``bitfield``
(values > min(threshold, mean of values)). ``update(step, occ_fn)`` runs every ``update_every``
steps: during ``warmup_steps`` every cell is sampled, later a random quarter of the cells plus
as many cells drawn from the occupied ones; a sampled cell becomes max(value * decay, occ_fn(x)).

Marching (``nerflite.raymath.marching``): candidate intervals of ``step_size`` (or growing with
``cone_angle``) from where the ray enters the outermost box to where it leaves it (clipped to
[near, far]), ``max_steps`` per ray, kept where ``occupied`` says their midpoint is; packed in ray
order, exactly or into a fixed budget of slots that takes whole rays only.

Schedule (instant-ngp / nerfacc): every ``update_every`` = 16 steps; all cells during the first
``warmup_steps`` = 256 steps, then a random quarter of the cells plus as many occupied cells;
``decay`` = 0.95; ``threshold`` = 0.01 on the occupancy value (for NeRF: sigma times the marching
step, i.e. the opacity of one step), lowered to the mean value while the field is still faint.
The grid values, the bitfield and the update counter are buffers, so checkpoints carry them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from nerflite.raymath.marching import Coarse, PackedSamples, march, ray_aabb


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
        self._dilated: Tensor | None = None  # bitfield dilated by one cell (``near_occupied``), cached
        self._dilated_version: tuple[int, int] | None = None

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

    def near_occupied(self, points: Tensor) -> Tensor:
        """bool [m]: a cell next to (or at) the point's cell, clamped into the grid, is occupied.

        True for every point within one cell (per axis) of an occupied cell: the conservative block
        test of ``nerflite.raymath.marching.candidates`` (one cascade). The dilated bitfield is rebuilt
        whenever the bitfield changes (an update, a loaded checkpoint)."""
        version = (self.bitfield.data_ptr(), self.bitfield._version)  # changes on update, load and move
        if self._dilated is None or self._dilated_version != version:
            r = self.resolution
            grid = self.bitfield.reshape(self.n_cascades, 1, r, r, r).float()
            dilated = torch.nn.functional.max_pool3d(grid, 3, stride=1, padding=1)
            self._dilated, self._dilated_version = dilated.reshape(self.n_cascades, -1) > 0, version
        cascade, flat, _ = self.cell_index(points)
        return self._dilated[cascade, flat]

    def coarse(self, step_size: float, cone_angle: float = 0.0) -> Coarse | None:
        """The block test for marching at ``step_size``: ``near_occupied`` with blocks of
        floor(2 h / step_size) steps (h: the smallest cell side), so every point of a block lies
        within one cell of its midpoint; None (dense marching) with cascades, a cone, or blocks of
        fewer than 2 steps."""
        h = float((2 * self.half_size / self.resolution).min())
        block = int(math.floor(2 * h / step_size * (1 - 1e-6)))
        if self.n_cascades > 1 or cone_angle > 0 or block < 2:
            return None
        return self.near_occupied, block

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
        skip_empty: bool = True,
    ) -> PackedSamples:
        """Packed samples in occupied cells along rays (origins, directions [n, 3], near, far [n, 1])
        from where each ray enters the outermost box to where it leaves it (``nerflite.raymath.marching.march``;
        ``budget`` > 0 keeps whole rays only; ``skip_empty`` tests blocks of steps first, ``coarse``)."""
        t0, t1 = self.ray_interval(origins, directions, near, far)
        if perturb:
            t0 = t0 + torch.rand(t0.shape, device=t0.device, generator=generator) * step_size
        coarse = self.coarse(step_size, cone_angle) if skip_empty else None
        return march(origins, directions, t0, t1, self.occupied, step_size, max_steps, cone_angle, budget, coarse)

    def ray_interval(self, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor) -> tuple[Tensor, Tensor]:
        """(t0 [n], t1 [n]): the part of each ray inside the outermost box and [near, far] (t1 <= t0: none)."""
        lo, hi = self.outer_box
        t_in, t_out = ray_aabb(origins, directions, lo, hi)  # [n]
        return torch.maximum(t_in, near[:, 0]), torch.minimum(t_out, far[:, 0])


def steps_to_cross(grid: OccupancyGrid, step_size: float) -> int:
    """Marching steps that cover the diagonal of the outermost box at ``step_size`` (no cone)."""
    lo, hi = grid.outer_box
    return int(math.ceil(float(torch.linalg.norm(hi - lo)) / step_size))
