"""Empty-space skipping for SDF models: an occupancy grid derived from the SDF, and depths placed
in its occupied cells, as pure functions with fixed shapes (no host sync).

Frame: the unit-sphere frame; the grid covers the cube [-1, 1]^3 with ``res`` cells per axis
(cell size ``h = 2 / res``). A cell may hold the surface (or the part of the NeuS density that
matters) when the SDF at its centre is within a shell:

    occupied  <=>  |f(centre)| <= sqrt(3) h + k / inv_s

``sqrt(3) h`` is a full cell diagonal, twice the distance from the centre to a corner, so a
1-Lipschitz SDF (the eikonal loss keeps it close) with its zero level in the cell is never missed;
``k / inv_s`` widens the shell by ``k`` widths of the logistic density ``sigmoid(inv_s f)`` while
the surface is still blurry (small ``inv_s`` early in training).

Sampling (``occupied_depths``): ``n_candidates`` equal bins along each ray between near and far,
each marked occupied or not by a grid lookup at its midpoint; ``sample_pdf`` over the occupied
bins puts the requested depths inside them (evenly when no bin is occupied). Every ray gets the
same number of depths, so a training step has shapes known in advance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerflite.raymath.sampling import sample_pdf


def cell_centers(res: int, device=None) -> Tensor:
    """Centres [res^3, 3] of the grid's cells over [-1, 1]^3, x fastest (index i + res (j + res k))."""
    c = (torch.arange(res, device=device, dtype=torch.float32) + 0.5) * (2.0 / res) - 1.0  # [res]
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack([x, y, z], -1).reshape(-1, 3)


def shell_width(res: int, inv_s: Tensor | float, k: float) -> Tensor | float:
    """Half-width of the occupied shell around the zero level: ``sqrt(3) h + k / inv_s``."""
    return math.sqrt(3.0) * (2.0 / res) + k / inv_s


def occupancy_from_sdf(sdf: Tensor, res: int, inv_s: Tensor | float, k: float) -> Tensor:
    """Occupied cells [res, res, res] (bool, indexed [k, j, i]) from the SDF [res^3] at ``cell_centers``."""
    return (sdf.abs() <= shell_width(res, inv_s, k)).reshape(res, res, res)


def lookup(grid: Tensor, points: Tensor) -> Tensor:
    """Occupancy [m] (bool) of points [m, 3] in the grid [res, res, res]; outside the cube: empty."""
    res = grid.shape[0]
    inside = (points.abs() < 1.0).all(-1)  # [m]
    ijk = ((points + 1.0) * (0.5 * res)).long().clamp(0, res - 1)  # [m, 3]
    flat = ijk[:, 0] + res * (ijk[:, 1] + res * ijk[:, 2])  # [m]
    return grid.reshape(-1)[flat] & inside


def occupied_depths(
    origins: Tensor,
    directions: Tensor,
    near: Tensor,
    far: Tensor,
    grid: Tensor,
    n_candidates: int,
    n_samples: int,
    perturb: bool,
) -> Tensor:
    """Depths t [n, n_samples] inside the occupied cells along rays (see the module docstring).

    origins, directions [n, 3] in the unit-sphere frame; near, far [n, 1]. With ``perturb`` the
    candidate bins are shifted by a random fraction of a bin per ray and the depths are drawn at
    random quantiles; otherwise both are deterministic.
    """
    n = origins.shape[0]
    u = torch.linspace(0.0, 1.0, n_candidates + 1, device=near.device, dtype=near.dtype)  # [c+1]
    edges = near + (far - near) * u  # [n, c+1]
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])  # [n, c]
    if perturb:
        step = (far - near) / n_candidates  # [n, 1]
        mids = mids + (torch.rand(n, 1, device=near.device, dtype=near.dtype) - 0.5) * step
    points = origins[:, None] + mids[..., None] * directions[:, None]  # [n, c, 3]
    occupied = lookup(grid, points.reshape(-1, 3)).reshape(n, n_candidates).to(near.dtype)  # [n, c]
    # interior quantiles only (as NeuS's up-sampling): u = 0 and 1 would land on near and far
    return sample_pdf(edges, occupied, n_samples + 2, deterministic=not perturb)[:, 1:-1]
