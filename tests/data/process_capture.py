"""A photo capture SIFT can work with, with exactly known cameras: the synthetic object (its
shapes, with a dense procedural speckle texture instead of its smooth stripes) on a speckled
ground slab, rendered from an orbit and written as plain RGB photos on a grey background."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerflite.cameras import Cameras
from nerflite.data.synthetic import rigs
from nerflite.data.synthetic.render import render_views
from nerflite.data.synthetic.shapes import Part, object_parts, sample_box, sdf_box
from nerflite.data.synthetic.writers import to_uint8, write_png

GROUND_Z = -0.5  # top face of the ground slab (canonical frame, object above it)
WAVES = 40  # plane waves summed into the speckle texture


def speckle(seed: int):
    """Albedo [m, 3] -> [m, 3]: a sum of random plane waves (blobs a few pixels wide at 256 px),
    tinted per part, so every surface patch has distinct corners."""
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(WAVES, 3, generator=gen, dtype=torch.float64), dim=-1)
    freq = 12.0 + 30.0 * torch.rand(WAVES, generator=gen, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(WAVES, generator=gen, dtype=torch.float64)
    tint = 0.35 + 0.65 * torch.rand(3, generator=gen, dtype=torch.float64)

    def albedo(p: Tensor) -> Tensor:
        waves = torch.sin(p.double() @ (dirs * freq[:, None]).T + phase).sum(-1) / math.sqrt(WAVES / 2)  # [m]
        v = 0.5 + 0.5 * torch.tanh(1.5 * waves)  # [m] in (0, 1)
        return (0.1 + 0.9 * v[:, None] * tint).to(p.dtype)  # [m, 3]

    return albedo


def capture_parts() -> list[Part]:
    parts = [Part(p.name, p.sdf, p.sample, p.area, speckle(i)) for i, p in enumerate(object_parts())]
    c = torch.tensor([0.0, 0.0, GROUND_Z - 0.05], dtype=torch.float64)
    half, rot = torch.tensor([1.6, 1.6, 0.05], dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    parts.append(Part("ground", lambda p: sdf_box(p, c, rot, half), lambda n, g: sample_box(n, g, c, rot, half),
                      4 * 1.6 * 1.6, speckle(7)))
    return parts


def render_capture(out: Path, views: int = 32, size: int = 256, seed: int = 0) -> tuple[Cameras, list[str]]:
    """Write ``out/img_000.png ...``; returns the true cameras (OpenCV c2w, canonical frame) and names."""
    gen = torch.Generator().manual_seed(seed)
    c2w = rigs.orbit(views, 4.0, (20.0, 55.0), gen)
    f = 0.5 * size / math.tan(0.35)
    cams = rigs.intrinsics(views, size, size, f, f, size / 2, size / 2, c2w)
    r = render_views(capture_parts(), cams, bound=None, far=10.0)
    rgb = r.rgb * r.alpha[..., None] + 0.5 * (1 - r.alpha[..., None])  # [v, h, w, 3] on grey
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(to_uint8(rgb)):
        names.append(f"img_{i:03d}.png")
        write_png(out / names[-1], np.ascontiguousarray(img))
    return cams, names
