"""Volume rendering of packed samples: all rays' samples in one flat array, as pure functions.

The dense renderer (``nerflite.raymath.rendering``) works on [n, s] grids of samples; an occupancy-grid
marcher gives every ray a different number of samples, so here sample i belongs to ray
``ray_indices[i]`` (int64, sorted, so each ray's samples are contiguous and in marching order) and
covers the interval [t_starts[i], t_ends[i]]. With ``tau_i = sigma_i (t_end_i - t_start_i)``:

    alpha_i = 1 - exp(-tau_i)
    T_i     = exp(-sum_{j < i, same ray} tau_j)        (segment exclusive cumulative sum)
    w_i     = T_i alpha_i
    C_r = sum_{i in r} w_i c_i,  D_r = sum_{i in r} w_i t_i,  A_r = sum_{i in r} w_i   (index_add)

Fixed budget: a training step keeps a fixed number of sample slots, of which ``valid`` [m] marks
those in use (invalid slots get weight 0 and touch no ray), so every shape is known before the step
runs and nothing is read back to the host. The segment sums are one global cumulative sum minus each
ray's value at its first sample; it runs in float64 with each tau capped at ``TAU_CAP`` so that the
subtraction stays exact to ~1e-9 over millions of samples (a capped interval already leaves
T < 1e-13 behind it, so the cap changes nothing measurable).
Shapes: ``m`` samples, ``n`` rays, ``c`` channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

TAU_CAP = 30.0  # optical thickness above which an interval counts as opaque (exp(-30) ~ 1e-13)


def ray_first_sample(ray_indices: Tensor, n_rays: int) -> tuple[Tensor, Tensor]:
    """(index of each ray's first sample [n], samples per ray [n]) for sorted ``ray_indices`` [m].

    Rays without samples get count 0 and the index where their samples would start. No host sync.
    """
    counts = torch.zeros(n_rays, dtype=torch.int64, device=ray_indices.device)
    counts.index_add_(0, ray_indices, torch.ones_like(ray_indices))
    first = torch.cumsum(counts, dim=0) - counts  # [n]
    return first, counts


def exclusive_segment_cumsum(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """sum_{j < i, ray j = ray i} values_j for every sample i (values [m], float64 inside) -> [m]."""
    m = values.shape[0]
    if m == 0:
        return values
    v = values.double()
    excl = torch.cumsum(v, dim=0) - v  # [m] global exclusive prefix
    first, _ = ray_first_sample(ray_indices, n_rays)
    start = excl[first.clamp(max=m - 1)]  # [n] prefix at each ray's first sample
    return (excl - start[ray_indices]).to(values.dtype)


def weights_from_density_packed(
    sigma: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor,
    n_rays: int,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(weights [m], transmittance [m], alpha [m]) from densities sigma [m] >= 0 on intervals.

    ``valid`` [m] bool (None: all valid) zeroes the unused slots of a fixed-size budget.
    """
    tau = sigma * (t_ends - t_starts)  # [m]
    if valid is not None:
        tau = torch.where(valid, tau, torch.zeros_like(tau))
    alpha = 1.0 - torch.exp(-tau)
    trans = torch.exp(-exclusive_segment_cumsum(tau.clamp(max=TAU_CAP), ray_indices, n_rays))
    return trans * alpha, trans, alpha


def accumulate_along_rays(weights: Tensor, ray_indices: Tensor, n_rays: int, values: Tensor | None = None) -> Tensor:
    """sum of w_i * values_i per ray: weights [m], values [m, c] (None: the weights) -> [n, c]."""
    src = weights[:, None] if values is None else weights[:, None] * values  # [m, c]
    out = torch.zeros(n_rays, src.shape[-1], dtype=src.dtype, device=src.device)
    return out.index_add(0, ray_indices, src)


def render_packed(
    sigma: Tensor,
    rgb: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor,
    n_rays: int,
    valid: Tensor | None = None,
    background: Tensor | Sequence[float] | None = None,
) -> dict[str, Tensor]:
    """Colour, depth, accumulation per ray from packed samples (see the module docstring).

    sigma [m], rgb [m, 3], t_starts / t_ends [m], ray_indices [m] -> ``rgb`` [n, 3], ``depth``
    [n, 1] (sum w t at interval midpoints, not normalised), ``accumulation`` [n, 1], ``weights``
    [m]; ``background`` [3] is composited behind (rgb + (1 - A) bg).
    """
    weights, _, _ = weights_from_density_packed(sigma, t_starts, t_ends, ray_indices, n_rays, valid)
    if valid is not None:
        weights = torch.where(valid, weights, torch.zeros_like(weights))
    acc = accumulate_along_rays(weights, ray_indices, n_rays)  # [n, 1]
    colour = accumulate_along_rays(weights, ray_indices, n_rays, rgb)  # [n, 3]
    depth = accumulate_along_rays(weights, ray_indices, n_rays, (0.5 * (t_starts + t_ends))[:, None])
    if background is not None:
        bg = torch.as_tensor(background, dtype=colour.dtype, device=colour.device)
        colour = colour + (1.0 - acc) * bg
    return {"rgb": colour, "depth": depth, "accumulation": acc, "weights": weights}
