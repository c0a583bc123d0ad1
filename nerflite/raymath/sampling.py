"""Depths along rays: stratified samples and inverse-CDF importance samples.

Samplers return depths ``t`` [n, s] (distances along unit ray directions), never points; a model
turns them into points with ``RayBundle.points(t)``. Randomness comes from ``torch.rand`` with an
optional explicit ``torch.Generator``; with ``perturb=False`` / ``deterministic=True`` every
function here is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0, 1) draws of ``shape`` on ``like``'s device and dtype."""
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    # a generator lives on one device: draw there, then move
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return u.to(like.device)


def stratified_samples(
    near: Tensor,
    far: Tensor,
    n_samples: int,
    perturb: bool,
    lindisp: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n_samples`` sorted depths per ray between ``near`` [n, 1] and ``far`` [n, 1] -> t [n, s].

    The ``s`` depths are evenly spaced in depth (``lindisp=False``) or in inverse depth
    (``lindisp=True``), both ends included. With ``perturb`` each depth is drawn uniformly inside
    its stratum, the interval between the midpoints to its neighbours (the first and last strata
    are half-open at ``near`` / ``far``), so the draws stay sorted and inside [near, far].
    """
    u = torch.linspace(0.0, 1.0, n_samples, device=near.device, dtype=near.dtype)  # [s]
    if lindisp:
        t = 1.0 / (1.0 / near * (1.0 - u) + 1.0 / far * u)  # [n, s]
    else:
        t = near * (1.0 - u) + far * u  # [n, s]
    if perturb:
        mids = 0.5 * (t[:, 1:] + t[:, :-1])  # [n, s-1]
        upper = torch.cat([mids, t[:, -1:]], dim=-1)  # [n, s]
        lower = torch.cat([t[:, :1], mids], dim=-1)  # [n, s]
        t = lower + (upper - lower) * _uniform(t.shape, t, generator)
    return t


def midpoints(t: Tensor) -> Tensor:
    """Midpoints between consecutive depths: t [n, s] -> [n, s-1]."""
    return 0.5 * (t[..., 1:] + t[..., :-1])


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    n_samples: int,
    deterministic: bool,
    generator: torch.Generator | None = None,
    u: Tensor | None = None,
) -> Tensor:
    """Draw depths from the piecewise-constant pdf given by ``weights`` over ``bins``.

    Args:
        bins: [n, s+1] sorted bin edges along each ray.
        weights: [n, s] non-negative mass of each bin (need not be normalised; a small constant
            1e-5 is added to every bin so that empty rays still sample uniformly).
        n_samples: draws per ray.
        deterministic: use the evenly spaced quantiles ``u = linspace(0, 1, n_samples)`` instead
            of uniform random ``u`` (eval mode).
        generator: optional RNG for the random ``u``.
        u: the quantiles to invert, [k] or [n, k], sorted, in [0, 1]; given, they replace both
            the evenly spaced and the random ones (``n_samples`` must equal k). NeuS's
            up-sampling passes the midpoint quantiles ``(i + 0.5) / k``; tests pass fixed draws.

    Returns:
        t [n, n_samples], sorted along each ray and inside [bins[:, 0], bins[:, -1]]. Inverse
        transform sampling: ``t = F^-1(u)`` with the piecewise-linear CDF ``F``. No gradient flows
        into ``bins`` or ``weights`` (callers pass detached weights anyway).
    """
    bins = bins.detach()
    weights = weights.detach() + 1e-5  # [n, s]
    pdf = weights / weights.sum(dim=-1, keepdim=True)  # [n, s]
    cdf = torch.cumsum(pdf, dim=-1)  # [n, s]
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # [n, s+1]
    cdf[:, -1] = 1.0  # exactly 1 despite rounding, so every u <= 1 is covered
    n = bins.shape[0]
    if u is not None:
        if u.shape[-1] != n_samples:
            raise ValueError(f"sample_pdf: {u.shape[-1]} quantiles given for n_samples={n_samples}")
        u = u.to(bins).expand(n, n_samples).contiguous()  # [n, k]
    elif deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=bins.device, dtype=bins.dtype)
        u = u.expand(n, n_samples).contiguous()  # [n, k]
    else:
        # sorted draws give sorted depths (F^-1 is monotonic)
        u = torch.sort(_uniform((n, n_samples), bins, generator), dim=-1).values  # [n, k]

    s = weights.shape[-1]
    idx = torch.searchsorted(cdf, u, right=True)  # [n, k]: cdf[idx-1] <= u < cdf[idx]
    below = (idx - 1).clamp(0, s)
    above = idx.clamp(max=s)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)  # [n, k]
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)  # [n, k]
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    frac = ((u - cdf_lo) / denom).clamp(0.0, 1.0)  # [n, k] position inside the bin
    return bin_lo + frac * (bin_hi - bin_lo)


def merge_samples(t_a: Tensor, t_b: Tensor, return_indices: bool = False):
    """Sorted union of two depth sets along each ray: [n, a], [n, b] -> [n, a+b].

    With ``return_indices`` also returns the permutation [n, a+b] into ``cat([t_a, t_b])``, so that
    values already computed for ``t_a`` can be gathered into the merged order.
    """
    t, order = torch.sort(torch.cat([t_a, t_b], dim=-1), dim=-1)
    return (t, order) if return_indices else t
