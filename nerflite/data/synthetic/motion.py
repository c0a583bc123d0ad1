"""The moving analytic scene: shapes whose exact geometry is known at every moment t in [0, 1].

Canonical frame as in ``shapes`` (z up, everything within 0.85 of the origin at every moment):

* a striped sphere (radius 0.24) sliding on a straight line from (-0.4, -0.3, -0.25) to
  (0.4, 0.3, -0.1);
* a checkered box (half size 0.2) turning a quarter turn about the vertical axis through its centre
  (0.25, -0.3, -0.3), from 0.2 rad to 0.2 + pi/2;
* a banded torus above them that grows (deforms): major radius 0.2 -> 0.34, minor 0.08 -> 0.1.

Each texture is painted in its shape's own moving frame, so a surface point keeps its colour as it
moves (what a deformation field can learn). Every shape's SDF is exact at every moment; the
scene's is their union (the minimum: the exact distance outside the shapes). ``moving_parts(t)``
gives the scene at t as ``shapes.Part`` s (the renderer and the surface sampler take them as they
take the static scene); ``moving_sdf(points, t)`` and
``moving_surface(n, t, gen)`` are the ground truth tests check geometry against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerflite.data.synthetic.shapes import (
    Part,
    _local,
    _mix,
    _rot_x,
    _rot_z,
    _soft,
    sample_box,
    sample_sphere,
    sample_surface,
    sample_torus,
    sdf_box,
    sdf_sphere,
    sdf_torus,
    union_sdf,
)

SPHERE_FROM = (-0.4, -0.3, -0.25)  # the sphere's centre at t = 0
SPHERE_TO = (0.4, 0.3, -0.1)  # ... and at t = 1
SPHERE_RADIUS = 0.24
BOX_CENTER, BOX_HALF = (0.25, -0.3, -0.3), 0.2
BOX_ANGLE = (0.2, 0.2 + math.pi / 2)  # rotation about z at t = 0 and t = 1
TORUS_CENTER, TORUS_TILT = (-0.05, 0.1, 0.35), 0.3
TORUS_MAJOR, TORUS_MINOR = (0.2, 0.34), (0.08, 0.1)  # radii at t = 0 and t = 1


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _check(t: float) -> float:
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"time must be in [0, 1], got {t}")
    return t


def sphere_center(t: float) -> Tensor:
    """The sliding sphere's centre at moment ``t`` [3] (float64)."""
    a, b = torch.tensor(SPHERE_FROM, dtype=torch.float64), torch.tensor(SPHERE_TO, dtype=torch.float64)
    return a + (b - a) * _check(t)


def box_rotation(t: float) -> Tensor:
    """The turning box's rotation (local to world) at moment ``t`` [3, 3]."""
    return _rot_z(_lerp(*BOX_ANGLE, _check(t)))


def torus_radii(t: float) -> tuple[float, float]:
    """The growing torus's (major, minor) radii at moment ``t``."""
    t = _check(t)
    return _lerp(*TORUS_MAJOR, t), _lerp(*TORUS_MINOR, t)


def moving_parts(t: float) -> list[Part]:
    """The scene at moment ``t``: a sliding sphere, a turning box and a growing torus."""
    sc, r = sphere_center(t), SPHERE_RADIUS
    bc, br = torch.tensor(BOX_CENTER, dtype=torch.float64), box_rotation(t)
    bh = torch.full((3,), BOX_HALF, dtype=torch.float64)
    tc, trot = torch.tensor(TORUS_CENTER, dtype=torch.float64), _rot_x(TORUS_TILT)
    major, minor = torus_radii(t)

    def sphere_albedo(p):
        x, y, z = _local(p, sc, torch.eye(3, dtype=torch.float64))  # stripes travel with the sphere
        return _mix((0.85, 0.2, 0.15), (0.95, 0.92, 0.85), _soft(torch.sin(z * 26.0 + 3.0 * x)))

    def box_albedo(p):
        x, y, z = (v * (2 * math.pi / 0.16) + 0.4 for v in _local(p, bc, br))  # the checker turns with it
        return _mix((0.9, 0.75, 0.2), (0.15, 0.3, 0.75), _soft(torch.sin(x) * torch.sin(y) * torch.sin(z)))

    def torus_albedo(p):
        x, y, _ = _local(p, tc, trot)
        return _mix((0.15, 0.65, 0.3), (0.9, 0.9, 0.9), _soft(torch.sin(torch.atan2(y, x) * 9.0)))

    return [
        Part("sphere", lambda p: sdf_sphere(p, sc, r), lambda n, g: sample_sphere(n, g, sc, r),
             4 * math.pi * r * r, sphere_albedo),
        Part("box", lambda p: sdf_box(p, bc, br, bh), lambda n, g: sample_box(n, g, bc, br, bh),
             24 * BOX_HALF * BOX_HALF, box_albedo),
        Part("torus", lambda p: sdf_torus(p, tc, trot, major, minor),
             lambda n, g: sample_torus(n, g, tc, trot, major, minor), 4 * math.pi**2 * major * minor, torus_albedo),
    ]


def moving_sdf(points: Tensor, t: float) -> Tensor:
    """Exact signed distance [m] of canonical points [m, 3] to the scene at moment ``t``."""
    return union_sdf(moving_parts(t), points.double())


def moving_surface(n: int, t: float, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """About ``n`` points uniform on the scene's surface at moment ``t`` (canonical frame): points
    [m, 3], outward normals [m, 3], part index [m] (0 sphere, 1 box, 2 torus)."""
    return sample_surface(moving_parts(t), n, gen)
