"""Ray marching through an occupancy test, as pure functions (nerfacc's estimator idea, in PyTorch).

Candidate intervals along each ray start at ``t0`` [n] and have length ``step_size`` (with
``cone_angle`` > 0 the length grows as max(step_size, cone_angle * t), as for unbounded scenes);
a candidate is kept when it ends before ``t1`` [n] and ``occupied_fn`` (any callable points
[m, 3] -> bool [m]) says its midpoint is occupied. Kept samples are packed in ray order
(``nerflite.raymath.packed_rendering``: sample i belongs to ray ``ray_indices[i]``).

No ray is ever cut short. Two ways to pack:

* exact (``budget`` = 0): every kept sample of every ray, a data-dependent size (one host sync).
* a fixed budget of sample slots (``budget`` > 0): whole rays are taken in order while their
  samples fit (``pack_whole_rays``); a ray that does not fit is left out entirely and flagged in
  ``ray_kept``, so the caller leaves it out of the loss and the metrics. Shapes are static and
  nothing is read back to the host. The rays of a training batch are in random order, so the
  rays kept are a random subset; the caller adapts how many rays it marches so that the
  samples follow the budget (``models/instant.py``).

``render_until_opaque`` marches in segments for whole images: rays whose transmittance has fallen
below ``eps`` (or that have left the box) stop, rays that miss the box never start.
Shapes: ``n`` rays, ``S`` candidate steps per ray, ``m`` packed samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nerflite.raymath.packed_rendering import accumulate_along_rays, weights_from_density_packed

OccupiedFn = Callable[[Tensor], Tensor]  # points [m, 3] -> bool [m]
Coarse = tuple[OccupiedFn, int]  # (conservative test of a block's midpoint, steps per block)
RadianceFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (points [m, 3], rays [m]) -> sigma [m], rgb [m, 3]


@dataclass
class PackedSamples:
    """Samples of many rays in one flat array (sorted by ray)."""

    t_starts: Tensor  # [m] interval starts
    t_ends: Tensor  # [m] interval ends
    ray_indices: Tensor  # [m] int64, sorted
    valid: Tensor | None  # [m] bool, None when every slot is a real sample
    n_rays: int  # rays in the bundle the samples belong to
    ray_kept: Tensor | None = None  # [n] bool: the ray has all its samples here (None: every ray)

    @property
    def t_mid(self) -> Tensor:
        return 0.5 * (self.t_starts + self.t_ends)  # [m]

    def n_valid(self) -> Tensor:
        """Samples in use (a 0-d tensor: no host sync)."""
        if self.valid is None:
            return torch.tensor(float(self.t_starts.shape[0]), device=self.t_starts.device)
        return self.valid.float().sum()


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


@dataclass
class Candidates:
    """Candidate intervals of many rays, flat and sorted by ray (then by depth)."""

    ray: Tensor  # [E] int64
    starts: Tensor  # [E]
    ends: Tensor  # [E]
    keep: Tensor  # [E] bool: occupied and ending before t1


def pack_whole_rays(ray: Tensor, keep: Tensor, n: int, budget: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """(entry index [m], valid [m] or None, ray kept [n]) of the kept entries of sorted candidates
    (``ray`` [E] ray of each entry, ``keep`` [E] bool).

    ``budget`` 0: every kept entry (a data-dependent size, one host sync); every ray kept.
    ``budget`` > 0: exactly ``budget`` slots. Rays are taken whole, in order, while the running
    total of their entries fits; the first ray that does not fit and every ray after it are left
    out (``kept`` False) with none of their entries. Unused slots are marked invalid and point at
    the last entry, so the rays of the slots stay sorted. No host sync.
    """
    if budget <= 0:
        return keep.nonzero()[:, 0], None, torch.ones(n, dtype=torch.bool, device=keep.device)
    counts = torch.zeros(n, dtype=torch.int64, device=keep.device).index_add_(0, ray, keep.long())  # [n]
    kept = torch.cumsum(counts, dim=0) <= budget  # [n]: a prefix of the rays
    take = keep & kept[ray]  # [E]
    pos = torch.cumsum(take.long(), dim=0) - 1  # [E] slot of each taken entry (all < budget)
    slot = torch.where(take, pos, torch.full_like(pos, budget))  # the rest -> a dump slot
    e = ray.shape[0]
    idx = torch.full((budget + 1,), e - 1, dtype=torch.int64, device=keep.device)
    idx = idx.scatter(0, slot, torch.arange(e, device=keep.device))[:budget]  # taken entries have distinct slots
    valid = torch.arange(budget, device=keep.device) < take.sum()
    return idx, valid, kept


def rays_for_budget(budget: int, samples: float, rays: float, n: int, margin: float = 1.05) -> int:
    """Rays to march so that their samples fill ``budget``, given that ``rays`` rays had ``samples``
    samples (the last step), clamped to [1, n]; ``n`` when nothing is known yet. ``margin`` marches
    a few rays more than the mean predicts, so the budget is full most steps (the extra rays are
    left out whole)."""
    if samples <= 0 or rays <= 0:
        return n
    return int(min(n, max(1, math.ceil(margin * budget * rays / samples))))


def candidates(
    origins: Tensor, directions: Tensor, t0: Tensor, t1: Tensor, occupied_fn: OccupiedFn,
    step_size: float, n_steps: int, cone_angle: float = 0.0, coarse: Coarse | None = None,
) -> Candidates:  # fmt: skip
    """``n_steps`` candidate intervals per ray from ``t0``, those to keep marked.

    Dense: every candidate is looked up ([n, S], no host sync). With ``coarse`` = (coarse_fn,
    block) and no cone: blocks of ``block`` steps are looked up first with ``coarse_fn``, a
    conservative test (True wherever any point within block * step_size / 2 of the block's
    midpoint may be occupied, e.g. the grid dilated by one cell), and only the steps of blocks
    that pass are looked up with ``occupied_fn``: the same kept candidates (tested), with far
    fewer lookups where space is empty, at the price of one host sync.
    """
    if coarse is not None and coarse[1] > 1 and cone_angle <= 0:
        return _block_candidates(origins, directions, t0, t1, occupied_fn, step_size, n_steps, *coarse)
    bounds = marching_steps(t0, n_steps, step_size, cone_angle)  # [n, S + 1]
    starts, ends = bounds[:, :-1], bounds[:, 1:]
    n = origins.shape[0]
    pts = origins[:, None, :] + (0.5 * (starts + ends))[..., None] * directions[:, None, :]  # [n, S, 3]
    keep = (ends <= t1[:, None]) & occupied_fn(pts.reshape(-1, 3)).reshape(n, n_steps)  # [n, S]
    ray = torch.arange(n, device=t0.device)[:, None].expand(n, n_steps)
    return Candidates(ray.reshape(-1), starts.reshape(-1), ends.reshape(-1), keep.reshape(-1))


def _block_candidates(
    origins: Tensor, directions: Tensor, t0: Tensor, t1: Tensor, occupied_fn: OccupiedFn,
    step_size: float, n_steps: int, coarse_fn: OccupiedFn, block: int,
) -> Candidates:  # fmt: skip
    n, dev = origins.shape[0], t0.device
    n_blocks = -(-n_steps // block)
    b_start = t0[:, None] + torch.arange(n_blocks, device=dev, dtype=t0.dtype) * (block * step_size)  # [n, B]
    b_mid = b_start + 0.5 * block * step_size
    pts = origins[:, None, :] + b_mid[..., None] * directions[:, None, :]  # [n, B, 3]
    hit = (b_start < t1[:, None]) & coarse_fn(pts.reshape(-1, 3)).reshape(n, n_blocks)  # [n, B]
    ray, blk = hit.nonzero(as_tuple=True)  # [h] sorted by ray, then block (the one host sync)
    if ray.numel() == 0:  # one placeholder entry, so that a fixed budget still has an entry to point at
        z = t0.new_zeros(1)
        return Candidates(torch.full((1,), n - 1, device=dev), z, z, torch.zeros(1, dtype=torch.bool, device=dev))
    j = blk[:, None] * block + torch.arange(block, device=dev)  # [h, block] step index
    k = j.to(t0.dtype)
    starts = t0[ray, None] + k * step_size  # as marching_steps computes them
    ends = t0[ray, None] + (k + 1) * step_size
    pts = origins[ray, None, :] + (0.5 * (starts + ends))[..., None] * directions[ray, None, :]  # [h, block, 3]
    keep = (j < n_steps) & (ends <= t1[ray, None]) & occupied_fn(pts.reshape(-1, 3)).reshape(-1, block)
    ray = ray[:, None].expand(-1, block)
    return Candidates(ray.reshape(-1), starts.reshape(-1), ends.reshape(-1), keep.reshape(-1))


def march(
    origins: Tensor, directions: Tensor, t0: Tensor, t1: Tensor, occupied_fn: OccupiedFn,
    step_size: float, n_steps: int, cone_angle: float = 0.0, budget: int = 0, coarse: Coarse | None = None,
) -> PackedSamples:  # fmt: skip
    """Packed samples in occupied space along rays (origins, directions [n, 3]; t0, t1 [n]); see
    the module docstring for ``budget`` and ``candidates`` for ``coarse``."""
    c = candidates(origins, directions, t0, t1, occupied_fn, step_size, n_steps, cone_angle, coarse)
    n = origins.shape[0]
    idx, valid, kept = pack_whole_rays(c.ray, c.keep, n, budget)
    return PackedSamples(c.starts[idx], c.ends[idx], c.ray[idx], valid, n, None if budget <= 0 else kept)


@torch.no_grad()
def render_until_opaque(
    origins: Tensor, directions: Tensor, t0: Tensor, t1: Tensor, occupied_fn: OccupiedFn,
    radiance_fn: RadianceFn, step_size: float, n_steps: int, cone_angle: float = 0.0,
    eps: float = 1e-4, segment: int = 64, coarse: Coarse | None = None,
) -> dict[str, Tensor]:  # fmt: skip
    """Colour, depth and accumulation of whole images, marching ``segment`` steps at a time.

    Each round marches the rays still alive, renders their samples on top of the transmittance
    they arrived with, and retires rays with transmittance below ``eps`` (the rest of the ray could
    add at most ``eps`` to any output) or past ``t1``; rays that miss (t1 <= t0) never start. With
    ``eps`` = 0 every sample is rendered (equal to a single exact march). Returns ``rgb`` [n, 3]
    (no background), ``depth`` [n, 1] (sum w t), ``accumulation`` [n, 1] and ``n_samples`` (a
    0-d tensor: samples rendered).
    """
    n, dev = origins.shape[0], origins.device
    rgb = torch.zeros(n, 3, device=dev)
    depth, acc = torch.zeros(n, 1, device=dev), torch.zeros(n, 1, device=dev)
    trans = torch.ones(n, device=dev)
    t_cur = t0.clone()
    alive = (t1 > t0).nonzero()[:, 0]  # [a] rays that cross the box
    done, n_samples = 0, torch.zeros((), device=dev)
    while alive.numel() > 0 and done < n_steps:
        k = min(segment, n_steps - done)
        o, d = origins[alive], directions[alive]
        c = candidates(o, d, t_cur[alive], t1[alive], occupied_fn, step_size, k, cone_angle, coarse)
        idx = c.keep.nonzero()[:, 0]
        ray = c.ray[idx]  # local ray index into ``alive``
        if ray.numel() > 0:
            ts, te = c.starts[idx], c.ends[idx]
            mid = 0.5 * (ts + te)
            sigma, colour = radiance_fn(o[ray] + mid[:, None] * d[ray], alive[ray])
            w, _, _ = weights_from_density_packed(sigma.float(), ts, te, ray, len(alive))
            w = w * trans[alive][ray]  # the transmittance the ray arrived with
            a = len(alive)
            rgb.index_add_(0, alive, accumulate_along_rays(w, ray, a, colour.float()))
            depth.index_add_(0, alive, accumulate_along_rays(w, ray, a, mid[:, None]))
            acc.index_add_(0, alive, accumulate_along_rays(w, ray, a))
            tau = accumulate_along_rays(sigma.float() * (te - ts), ray, a)[:, 0]  # [a]
            trans[alive] = trans[alive] * torch.exp(-tau)
            n_samples = n_samples + ray.numel()
        t_cur[alive] = marching_steps(t_cur[alive], k, step_size, cone_angle)[:, -1]
        done += k
        still = (t_cur[alive] < t1[alive]) & (trans[alive] > eps)
        alive = alive[still]
        segment *= 2  # rays left after the first rounds are mostly crossing empty space
    return {"rgb": rgb, "depth": depth, "accumulation": acc, "n_samples": n_samples}
