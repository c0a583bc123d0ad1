"""Hand-made ray bundles of a dynamic scene: rays with ``extras["time"]`` (and appearance ids)."""

from __future__ import annotations

import torch

from nerflite.rays import RayBundle


def dynamic_rays(n: int = 40, times=(0.0, 0.5, 1.0), appearance_ids=None, seed: int = 0) -> RayBundle:
    """``n`` rays from a sphere of radius 4 towards the centre (near 2, far 6), each at a moment drawn
    from ``times`` (cycled), with ``extras["appearance_id"]`` cycled from ``appearance_ids`` if given."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 4
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g) * 0.3 - origins, dim=-1)
    extras = {"time": torch.tensor(times, dtype=torch.float32).repeat(n)[:n, None]}
    if appearance_ids is not None:
        extras["appearance_id"] = torch.tensor(appearance_ids, dtype=torch.int64).repeat(n)[:n, None]
    near, far = torch.full((n, 1), 2.0), torch.full((n, 1), 6.0)
    return RayBundle(origins, d, d, near, far, torch.zeros(n, 1, dtype=torch.int64), extras=extras)


def without_time(rays: RayBundle) -> RayBundle:
    return rays.replace(extras={k: v for k, v in rays.extras.items() if k != "time"})
