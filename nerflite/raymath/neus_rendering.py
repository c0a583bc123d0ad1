"""The math of NeuS as pure functions: SDF -> opacity, SDF-guided up-sampling, the bounding sphere
and the inverse-sphere background.

Frame: everything here works in the *unit-sphere frame* in which the surface of interest lies
inside the sphere of radius 1 at the origin (``NeuSModel`` maps rays into it).

Opacity from an SDF (unbiased and occlusion-aware). With the logistic CDF
``Phi_s(x) = sigmoid(inv_s * x)``, the opacity of the section [t_i, t_i + delta_i] is

    alpha_i = clamp((Phi_s(f(p_i^-)) - Phi_s(f(p_i^+))) / Phi_s(f(p_i^-)), 0, 1)

where ``f(p^-)`` and ``f(p^+)`` are the SDF at the section's two ends. They are estimated from the
SDF and gradient at the section *midpoint*: ``f(p^-/+) = f(mid) -/+ cos * delta / 2`` with
``cos = <d, grad f>`` the SDF's rate of change along the ray. Early in training
(``cos_anneal_ratio`` < 1) ``cos`` is blended with ``-relu(-cos / 2 + 1/2)`` so that back-facing
sections still get some gradient; at ratio 1 it is the true ``-relu(-cos)`` (only sections where
the SDF decreases along the ray, i.e. entering the surface, are opaque).

Up-sampling (no gradients, a few SDF queries)::

    coarse t:   |----|----|----|----|----|----|----|----|        f(t) at every sample
    surface:                    ^ f changes sign here
    round i:    weights from the SDF with inv_s = 64 * 2**i -> sample_pdf -> new t -> merge

each round sharpens the density, so the new samples move into the sections around the first
zero crossing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.raymath.rendering import weights_from_alpha
from nerflite.raymath.sampling import sample_pdf


def near_far_from_sphere(origins: Tensor, directions: Tensor, radius: float = 1.0) -> tuple[Tensor, Tensor]:
    """Depth interval [near, far] (each [n, 1]) of length 2 * radius centred on the point of the
    ray closest to the origin.

    It contains the ray's chord through the sphere (when it hits), and its constant length gives
    every ray the same sample spacing ``2 * radius / n_samples``. ``near`` is clamped at 0 so a
    camera inside the sphere starts at its centre.
    """
    mid = -(origins * directions).sum(-1, keepdim=True) / (directions * directions).sum(-1, keepdim=True)
    near = (mid - radius).clamp_min(0.0)
    return near, mid + radius


def alpha_from_sdf(
    sdf: Tensor, cos: Tensor, delta: Tensor, inv_s: Tensor | float, cos_anneal_ratio: float = 1.0
) -> Tensor:
    """Section opacities [n, s] from the SDF [n, s] at section midpoints, the directional
    derivative ``cos = <d, grad f>`` [n, s] there, the section lengths ``delta`` [n, s] and the
    sharpness ``inv_s`` (see the module docstring)."""
    iter_cos = -(F.relu(-cos * 0.5 + 0.5) * (1.0 - cos_anneal_ratio) + F.relu(-cos) * cos_anneal_ratio)
    prev_cdf = torch.sigmoid((sdf - iter_cos * delta * 0.5) * inv_s)
    next_cdf = torch.sigmoid((sdf + iter_cos * delta * 0.5) * inv_s)
    return ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0.0, 1.0)


def upsample_weights(t: Tensor, sdf: Tensor, inside: Tensor, inv_s: float) -> Tensor:
    """Weights [n, s-1] of the sections between samples ``t`` [n, s] with SDF values ``sdf`` [n, s].

    Without gradients, the derivative along the ray is the finite difference over the section;
    the smaller (more negative) of it and the previous section's is used, clipped to [-1e3, 0] and
    zeroed for sections with both ends outside the sphere (``inside`` [n, s-1] bool).
    """
    delta = t[:, 1:] - t[:, :-1]  # [n, s-1]
    mid_sdf = 0.5 * (sdf[:, 1:] + sdf[:, :-1])  # [n, s-1]
    cos = (sdf[:, 1:] - sdf[:, :-1]) / (delta + 1e-5)  # [n, s-1]
    prev_cos = torch.cat([torch.zeros_like(cos[:, :1]), cos[:, :-1]], -1)
    cos = torch.minimum(prev_cos, cos).clamp(-1e3, 0.0) * inside
    prev_cdf = torch.sigmoid((mid_sdf - cos * delta * 0.5) * inv_s)
    next_cdf = torch.sigmoid((mid_sdf + cos * delta * 0.5) * inv_s)
    alpha = (prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)
    return weights_from_alpha(alpha)[0]


def merge_with_values(t: Tensor, values: Tensor, t_new: Tensor, values_new: Tensor) -> tuple[Tensor, Tensor]:
    """Merge two sample sets [n, a] and [n, b] with per-sample values into sorted [n, a+b]."""
    t_all, order = torch.sort(torch.cat([t, t_new], -1), -1)
    return t_all, torch.gather(torch.cat([values, values_new], -1), 1, order)


def hierarchical_upsample(
    origins: Tensor,
    directions: Tensor,
    t: Tensor,
    sdf_fn: Callable[[Tensor], Tensor],
    n_importance: int,
    steps: int,
    base_inv_s: float = 64.0,
) -> Tensor:
    """SDF-guided up-sampling: ``steps`` rounds of ``n_importance // steps`` new samples each, the
    round ``i`` density sharpened with ``inv_s = base_inv_s * 2**i``.

    ``t`` [n, s] sorted coarse depths; ``sdf_fn`` maps points [m, 3] to signed distances [m].
    Each round inverts the CDF of its weights at the quantiles ``(j + 0.5) / k`` (no randomness,
    also in training). Returns the sorted union [n, s + steps * (n_importance // steps)] (no gradients).
    """
    n = t.shape[0]
    per_step = n_importance // steps
    quantiles = (torch.arange(per_step, device=t.device, dtype=t.dtype) + 0.5) / per_step  # [k]
    with torch.no_grad():
        points = origins[:, None] + t[..., None] * directions[:, None]  # [n, s, 3]
        sdf = sdf_fn(points.reshape(-1, 3)).reshape(n, -1)  # [n, s]
        for i in range(steps):
            points = origins[:, None] + t[..., None] * directions[:, None]  # [n, s', 3]
            radius = points.norm(dim=-1)  # [n, s']
            inside = (radius[:, :-1] < 1.0) | (radius[:, 1:] < 1.0)  # [n, s'-1]
            weights = upsample_weights(t, sdf, inside, base_inv_s * 2**i)
            # the midpoint quantiles (j + 0.5) / k, j = 0..k-1, as in the official NeuS code
            t_new = sample_pdf(t, weights, per_step, deterministic=True, u=quantiles)  # [n, per_step]
            if i + 1 < steps:
                new_points = origins[:, None] + t_new[..., None] * directions[:, None]
                sdf_new = sdf_fn(new_points.reshape(-1, 3)).reshape(n, per_step)
            else:  # the last round's SDF values are not needed
                sdf_new = torch.zeros_like(t_new)
            t, sdf = merge_with_values(t, sdf, t_new, sdf_new)
    return t


def background_depths(
    far: Tensor, n_outside: int, perturb: bool, generator: torch.Generator | None = None,
    offset: float = 0.0,
) -> Tensor:
    """Depths [n, n_outside] beyond the sphere, sorted ascending: ``far / u + offset`` for
    ``u = linspace(1e-3, 1 - 1 / (n_outside + 1), n_outside)`` (uniform in inverse depth from just
    beyond ``far`` [n, 1] to about ``1000 * far``; stratified jitter of ``u`` when ``perturb``).

    ``NeuSModel`` passes ``offset`` = half its nominal section length (``1 / n_samples`` in the
    unit-sphere frame, as the official code does), so the first background sample lies beyond
    the midpoint of the last section inside, which starts at ``far``."""
    u = torch.linspace(1e-3, 1.0 - 1.0 / (n_outside + 1.0), n_outside, device=far.device, dtype=far.dtype)
    u = u.expand(far.shape[0], n_outside)
    if perturb:
        mids = 0.5 * (u[:, 1:] + u[:, :-1])
        upper = torch.cat([mids, u[:, -1:]], -1)
        lower = torch.cat([u[:, :1], mids], -1)
        r = torch.rand(u.shape, device=u.device, dtype=u.dtype, generator=generator)
        u = lower + (upper - lower) * r
    return far / torch.flip(u, dims=[-1]) + offset  # [n, n_outside], increasing


def inverse_sphere(points: Tensor) -> Tensor:
    """NeRF++ parameterization of points outside the unit sphere: [..., 3] -> [..., 4]
    ``(x / r, 1 / r)`` with ``r = max(|x|, 1)``, a bounded input for an unbounded background."""
    r = points.norm(dim=-1, keepdim=True).clamp_min(1.0)
    return torch.cat([points / r, 1.0 / r], -1)


def eikonal_loss(gradients: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of (|grad f| - 1)^2 over gradients [..., 3], optionally weighted by ``weight`` [...]."""
    err = (gradients.norm(dim=-1) - 1.0) ** 2
    if weight is None:
        return err.mean()
    return (err * weight).sum() / (weight.sum() + 1e-5)
