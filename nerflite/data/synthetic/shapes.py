"""The analytic scene: signed distance functions, surface sampling and procedural colour.

Everything here lives in the *canonical* frame: z up, the object inside the unit sphere around the
origin (every point of it within 0.85 of the origin). The writers place this frame into each
file format's own world frame.

A scene is a list of ``Part`` s (exact SDFs of simple primitives); the scene's SDF is their union
(``min``), which is the exact distance outside the object, so sphere tracing never overshoots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# Fixed light (canonical frame, towards the light) and the Lambert + ambient mix.
LIGHT_DIR = (0.35, -0.55, 0.76)
AMBIENT = 0.3
DIFFUSE = 0.7


def _rot_z(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _rot_x(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


def _local(p: Tensor, center: Tensor, rot: Tensor) -> list[Tensor]:
    """World points [m, 3] into a primitive's local frame (``rot`` maps local to world): x, y, z [m] each.

    Written per component: on the CPU, elementwise ops on [m] are far faster than small matmuls
    and reductions over a last dimension of size 3.
    """
    c, r = center.tolist(), rot.tolist()
    d = [p[:, i] - c[i] for i in range(3)]
    return [r[0][i] * d[0] + r[1][i] * d[1] + r[2][i] * d[2] for i in range(3)]  # R^T (p - c)


def sdf_sphere(p: Tensor, center: Tensor, radius: float) -> Tensor:
    c = center.tolist()
    x, y, z = (p[:, i] - c[i] for i in range(3))
    return torch.sqrt(x * x + y * y + z * z) - radius  # [m]


def sdf_box(p: Tensor, center: Tensor, rot: Tensor, half: Tensor) -> Tensor:
    """Exact distance to a box with half sizes ``half`` [3], rotated by ``rot`` (local to world)."""
    q = [v.abs() - h for v, h in zip(_local(p, center, rot), half.tolist())]  # 3 x [m]
    o = [v.clamp(min=0.0) for v in q]
    outside = torch.sqrt(o[0] * o[0] + o[1] * o[1] + o[2] * o[2])
    inside = torch.maximum(q[0], torch.maximum(q[1], q[2])).clamp(max=0.0)
    return outside + inside  # [m]


def sdf_torus(p: Tensor, center: Tensor, rot: Tensor, major: float, minor: float) -> Tensor:
    """Exact distance to a torus around the local z axis."""
    x, y, z = _local(p, center, rot)
    ring = torch.sqrt(x * x + y * y) - major
    return torch.sqrt(ring * ring + z * z) - minor  # [m]


# --- uniform samplers on each primitive's surface (float64, canonical frame) -------------------


def sample_sphere(n: int, gen: torch.Generator, center: Tensor, radius: float) -> Tensor:
    v = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return center + radius * v / torch.linalg.norm(v, dim=-1, keepdim=True)  # [n, 3]


def sample_box(n: int, gen: torch.Generator, center: Tensor, rot: Tensor, half: Tensor) -> Tensor:
    """Uniform on the box's six faces: a face is drawn with probability proportional to its area."""
    areas = torch.stack([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)  # [6]
    face = torch.multinomial(areas, n, replacement=True, generator=gen)  # [n]
    axis, sign = face % 3, torch.where(face < 3, 1.0, -1.0).double()
    q = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * half  # [n, 3]
    q[torch.arange(n), axis] = sign * half[axis]
    return q @ rot.T + center  # [n, 3]


def sample_torus(n: int, gen: torch.Generator, center: Tensor, rot: Tensor, major: float, minor: float) -> Tensor:
    """Uniform on a torus: the tube angle is drawn by rejection with density ~ (R + r cos v)."""
    out = []
    count = 0
    while count < n:
        u = torch.rand(2 * n, generator=gen, dtype=torch.float64) * 2 * math.pi
        v = torch.rand(2 * n, generator=gen, dtype=torch.float64) * 2 * math.pi
        keep = torch.rand(2 * n, generator=gen, dtype=torch.float64) * (major + minor) < major + minor * torch.cos(v)
        u, v = u[keep], v[keep]
        ring = major + minor * torch.cos(v)
        out.append(torch.stack([ring * torch.cos(u), ring * torch.sin(u), minor * torch.sin(v)], -1))
        count += len(u)
    q = torch.cat(out)[:n]  # [n, 3]
    return q @ rot.T + center


def sample_box_face(n: int, gen: torch.Generator, center: Tensor, rot: Tensor, half: Tensor, axis: int, sign: float):
    """Uniform on one face of a box (the wall's visible front)."""
    q = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * half
    q[:, axis] = sign * half[axis]
    return q @ rot.T + center


# --- procedural albedo -----------------------------------------------------------------------


def _mix(a: tuple, b: tuple, w: Tensor) -> Tensor:
    """Blend colours ``a`` and ``b`` with weights ``w`` [m] in [0, 1] -> [m, 3]."""
    a_t, b_t = (
        torch.tensor(a, dtype=w.dtype, device=w.device),
        torch.tensor(b, dtype=w.dtype, device=w.device),
    )
    return a_t + (b_t - a_t) * w[:, None]


def _soft(v: Tensor) -> Tensor:
    """A soft square wave from a sine-like signal: crisp stripes without hard aliasing."""
    return 0.5 + 0.5 * torch.tanh(4.0 * v)


@dataclass
class Part:
    """One primitive: its SDF, a uniform surface sampler, its surface area and its albedo."""

    name: str
    sdf: Callable[[Tensor], Tensor]  # [m, 3] -> [m]
    sample: Callable[[int, torch.Generator], Tensor]  # n, generator -> [n, 3] float64
    area: float
    albedo: Callable[[Tensor], Tensor]  # [m, 3] -> [m, 3] in [0, 1]


# The object's primitives (canonical frame): centre, rotation (local to world), sizes.
BOX_C, BOX_R = torch.tensor([-0.3, -0.15, -0.2], dtype=torch.float64), _rot_z(0.5)
BOX_H = torch.full((3,), 0.25, dtype=torch.float64)
SPH_C, SPH_R = torch.tensor([0.2, 0.12, -0.22], dtype=torch.float64), 0.28
TOR_C, TOR_ROT, TOR_MAJ, TOR_MIN = (
    torch.tensor([0.05, 0.0, 0.32], dtype=torch.float64),
    _rot_x(0.35),
    0.32,
    0.1,
)


def object_parts() -> list[Part]:
    """A rotated checkered box, a striped sphere partly sunk into it and a tilted banded torus above."""

    def box_albedo(p):
        x, y, z = (v * (2 * math.pi / 0.2) + 0.4 for v in _local(p, BOX_C, BOX_R))
        return _mix((0.9, 0.75, 0.2), (0.15, 0.3, 0.75), _soft(torch.sin(x) * torch.sin(y) * torch.sin(z)))

    def sphere_albedo(p):
        q = p - SPH_C.to(p)
        return _mix((0.85, 0.2, 0.15), (0.95, 0.92, 0.85), _soft(torch.sin(q[:, 2] * 28.0 + 3.0 * q[:, 0])))

    def torus_albedo(p):
        x, y, _ = _local(p, TOR_C, TOR_ROT)
        angle = torch.atan2(y, x)
        return _mix((0.15, 0.65, 0.3), (0.9, 0.9, 0.9), _soft(torch.sin(angle * 9.0)))

    box_area = 8 * float(BOX_H[0] * BOX_H[1] + BOX_H[1] * BOX_H[2] + BOX_H[0] * BOX_H[2])
    return [
        Part(
            "box",
            lambda p: sdf_box(p, BOX_C, BOX_R, BOX_H),
            lambda n, g: sample_box(n, g, BOX_C, BOX_R, BOX_H),
            box_area,
            box_albedo,
        ),
        Part(
            "sphere",
            lambda p: sdf_sphere(p, SPH_C, SPH_R),
            lambda n, g: sample_sphere(n, g, SPH_C, SPH_R),
            4 * math.pi * SPH_R**2,
            sphere_albedo,
        ),
        Part(
            "torus",
            lambda p: sdf_torus(p, TOR_C, TOR_ROT, TOR_MAJ, TOR_MIN),
            lambda n, g: sample_torus(n, g, TOR_C, TOR_ROT, TOR_MAJ, TOR_MIN),
            4 * math.pi**2 * TOR_MAJ * TOR_MIN,
            torus_albedo,
        ),
    ]


def wall_part(y_front: float, half_x: float, half_z: float, thickness: float = 0.1) -> Part:
    """A checkered slab whose front face is the plane y = ``y_front`` (facing -y): the LLFF backdrop."""
    center = torch.tensor([0.0, y_front + thickness / 2, 0.0], dtype=torch.float64)
    half = torch.tensor([half_x, thickness / 2, half_z], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)

    def albedo(p):
        return _mix((0.55, 0.5, 0.45), (0.25, 0.35, 0.45), _soft(torch.sin(p[:, 0] * 7.0) * torch.sin(p[:, 2] * 7.0)))

    return Part(
        "wall",
        lambda p: sdf_box(p, center, eye, half),
        lambda n, g: sample_box_face(n, g, center, eye, half, 1, -1.0),
        4 * half_x * half_z,
        albedo,
    )


def union_sdf(parts: list[Part], p: Tensor) -> Tensor:
    """The scene's SDF [m]: the union (minimum) of its parts."""
    d = parts[0].sdf(p)
    for part in parts[1:]:
        d = torch.minimum(d, part.sdf(p))
    return d


def nearest_part(parts: list[Part], p: Tensor) -> Tensor:
    """Index [m] (int64) of the part nearest to each point."""
    return torch.stack([part.sdf(p) for part in parts], dim=-1).argmin(dim=-1)


def sdf_normal(sdf: Callable[[Tensor], Tensor], p: Tensor, h: float) -> Tensor:
    """Unit outward normals [m, 3] by central differences of ``sdf``."""
    offsets = torch.eye(3, dtype=p.dtype, device=p.device) * h  # [3, 3]
    grad = torch.stack([sdf(p + offsets[i]) - sdf(p - offsets[i]) for i in range(3)], dim=-1)  # [m, 3]
    return grad / torch.linalg.norm(grad, dim=-1, keepdim=True).clamp(min=1e-12)


def shade(parts: list[Part], p: Tensor, h: float) -> tuple[Tensor, Tensor]:
    """View-independent colour [m, 3] (Lambert + ambient, fixed light) and part index [m] at points."""
    part = nearest_part(parts, p)
    normal = sdf_normal(lambda x: union_sdf(parts, x), p, h)  # [m, 3]
    light = torch.tensor(LIGHT_DIR, dtype=p.dtype, device=p.device)
    light = light / torch.linalg.norm(light)
    lambert = (normal @ light).clamp(min=0.0)  # [m]
    albedo = torch.zeros_like(p)
    for k, prt in enumerate(parts):
        sel = part == k
        if sel.any():
            albedo[sel] = prt.albedo(p[sel])
    return albedo * (AMBIENT + DIFFUSE * lambert)[:, None], part


def sample_surface(parts: list[Part], n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """About ``n`` points uniform (by area) on the union's surface: points [m, 3], normals [m, 3], part [m].

    Each part is sampled in proportion to its area, then points inside another part are dropped,
    which keeps the density uniform over the visible surface of the union.
    """
    total = sum(p.area for p in parts)
    pts, nrm, ids = [], [], []
    for k, part in enumerate(parts):
        x = part.sample(max(1, round(n * part.area / total)), gen)  # [nk, 3]
        others = [q.sdf(x) for j, q in enumerate(parts) if j != k]
        if others:
            x = x[torch.stack(others, -1).amin(-1) > 0.0]
        pts.append(x)
        nrm.append(sdf_normal(part.sdf, x, 1e-6))
        ids.append(torch.full((len(x),), k, dtype=torch.int64))
    return torch.cat(pts), torch.cat(nrm), torch.cat(ids)
