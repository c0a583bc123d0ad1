"""Volume rendering along rays, as pure functions over sample depths and per-sample values.

For samples at depths ``t_i`` with interval lengths ``delta_i = t_{i+1} - t_i`` and densities
``sigma_i`` (the last interval is ``last``, effectively infinite):

    alpha_i = 1 - exp(-sigma_i * delta_i)                 opacity of interval i
    T_i     = prod_{j < i} (1 - alpha_j)                  transmittance up to sample i
    w_i     = T_i * alpha_i                               weight of sample i
    C       = sum_i w_i c_i,  D = sum_i w_i t_i,  A = sum_i w_i

Directions are unit vectors in nerflite, so ``delta`` is already a distance; no ray-norm factor.
Shapes: ``n`` rays, ``s`` samples per ray, ``c`` channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def deltas(t: Tensor, last: float = 1e10) -> Tensor:
    """Interval lengths t[i+1] - t[i], with ``last`` for the final sample: [n, s] -> [n, s]."""
    return torch.cat([t[..., 1:] - t[..., :-1], torch.full_like(t[..., :1], last)], dim=-1)


def alpha_from_density(sigma: Tensor, deltas: Tensor) -> Tensor:
    """Opacity of each interval, 1 - exp(-sigma * delta), for densities sigma >= 0: [n, s]."""
    return 1.0 - torch.exp(-sigma * deltas)


def weights_from_alpha(alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Weights w_i = T_i alpha_i and transmittance T_i = prod_{j<i} (1 - alpha_j + 1e-10).

    The 1e-10 keeps the product (and its gradient) finite behind fully opaque samples; it changes
    nothing above float precision in front of them. alpha [n, s] -> (weights [n, s], T [n, s]).
    """
    keep = 1.0 - alpha + 1e-10  # [n, s]
    trans = torch.cumprod(torch.cat([torch.ones_like(keep[..., :1]), keep[..., :-1]], dim=-1), dim=-1)
    return trans * alpha, trans


def weights_from_density(sigma: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """The same weights computed from densities in log space: T_i = exp(-sum_{j<i} sigma_j delta_j).

    Equal to ``weights_from_alpha(alpha_from_density(sigma, deltas))`` (without the 1e-10), with
    a cheaper and division-free backward pass. sigma, deltas [n, s] -> (weights [n, s], T [n, s]).
    """
    tau = sigma * deltas  # [n, s] optical thickness of each interval
    alpha = 1.0 - torch.exp(-tau)
    # exclusive cumulative sum: optical depth in front of each sample (the infinite last
    # interval never enters it)
    tau_before = torch.cat([torch.zeros_like(tau[..., :1]), torch.cumsum(tau[..., :-1], dim=-1)], dim=-1)
    trans = torch.exp(-tau_before)
    return trans * alpha, trans


def composite(weights: Tensor, values: Tensor) -> Tensor:
    """Weighted sum of per-sample values along each ray: weights [n, s], values [n, s, c] -> [n, c]."""
    return torch.einsum("ns,nsc->nc", weights, values)


def composite_depth(weights: Tensor, t: Tensor) -> Tensor:
    """Expected depth sum_i w_i t_i (not normalised by accumulation): [n, s] -> [n, 1]."""
    return (weights * t).sum(dim=-1, keepdim=True)


def accumulation(weights: Tensor) -> Tensor:
    """Total opacity along each ray, sum_i w_i in [0, 1]: [n, s] -> [n, 1]."""
    return weights.sum(dim=-1, keepdim=True)


def disparity(depth: Tensor, acc: Tensor) -> Tensor:
    """Inverse of the accumulation-normalised depth, 1 / max(1e-10, depth / acc): [n, 1] -> [n, 1].

    Rays that hit nothing (acc <= 1e-10) get disparity 0 (infinitely far) instead of a NaN.
    """
    inv = 1.0 / torch.clamp(depth / acc.clamp_min(1e-10), min=1e-10)
    return torch.where(acc > 1e-10, inv, torch.zeros_like(inv))


def blend_background(rgb: Tensor, acc: Tensor, background: Tensor | Sequence[float]) -> Tensor:
    """Composite a constant background behind the rendered colour: rgb + (1 - acc) * bg.

    rgb [n, 3] (already weighted by the ray's opacity), acc [n, 1], background [3] -> [n, 3].
    """
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)  # [3]
    return rgb + (1.0 - acc) * bg
