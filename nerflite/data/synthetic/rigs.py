"""Camera rigs in the canonical frame (z up, object inside the unit sphere at the origin).

All cameras are nerflite ``Cameras`` (OpenCV axes, pixel centres at +0.5, float64).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerflite.camera_paths import look_at
from nerflite.cameras import Cameras

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
UP = (0.0, 0.0, 1.0)  # world up of the canonical frame


def intrinsics(n: int, width: int, height: int, fx: float, fy: float, cx: float, cy: float, c2w: Tensor) -> Cameras:
    full = lambda v: torch.full((n,), float(v), dtype=torch.float64)  # noqa: E731
    return Cameras(
        fx=full(fx),
        fy=full(fy),
        cx=full(cx),
        cy=full(cy),
        width=torch.full((n,), width, dtype=torch.int64),
        height=torch.full((n,), height, dtype=torch.int64),
        c2w=c2w,
    )


def orbit(n: int, radius: float, elevation_deg: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Cameras around the upper hemisphere looking at the origin: c2w [n, 3, 4].

    Azimuths are evenly spaced (with a random phase and jitter), elevations spread over the range
    by the golden ratio, so every view is different and the whole band is covered.
    """
    phase = float(torch.rand((), generator=gen, dtype=torch.float64)) * 2 * math.pi
    jitter = (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5) * (math.pi / max(n, 1))
    az = phase + 2 * math.pi * torch.arange(n, dtype=torch.float64) / n + jitter
    lo, hi = (math.radians(e) for e in elevation_deg)
    frac = (torch.arange(n, dtype=torch.float64) * GOLDEN + float(torch.rand((), generator=gen))) % 1.0
    el = lo + (hi - lo) * frac
    eye = radius * torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)
    return look_at(eye, torch.zeros(3, dtype=torch.float64), UP)


def forward_facing(
    n: int, distance: float, spread: tuple[float, float], target_y: float, gen: torch.Generator
) -> Tensor:
    """Cameras on a jittered grid in the plane y = -distance, looking roughly along +y: c2w [n, 3, 4].

    ``spread`` is the half extent (x, z) of the grid; each camera looks at a point near
    (0, target_y, 0), so the views converge slightly, as hand-held forward-facing captures do.
    """
    cols = max(1, math.ceil(math.sqrt(n * spread[0] / spread[1])))
    rows = math.ceil(n / cols)
    i = torch.arange(n, dtype=torch.float64)
    gx = (i % cols + 0.5) / cols * 2 - 1
    gz = (torch.div(i, cols, rounding_mode="floor") + 0.5) / rows * 2 - 1
    jit = (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * 0.3
    eye = torch.stack(
        [
            (gx + jit[:, 0] / cols) * spread[0],
            torch.full_like(gx, -distance),
            (gz + jit[:, 1] / rows) * spread[1],
        ],
        -1,
    )
    target = torch.tensor([0.0, target_y, 0.0], dtype=torch.float64) + 0.1 * torch.randn(
        n, 3, generator=gen, dtype=torch.float64
    )
    return look_at(eye, target, UP)
