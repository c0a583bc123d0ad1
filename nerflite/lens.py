"""Lens distortion on normalised camera coordinates: the OpenCV radial-tangential model and the
OpenCV fisheye (equidistant) model, forward (``distort``) and inverted (``undistort``, a fixed
number of vectorised Newton steps). The formulas and conventions: ``nerflite.cameras``, whose
``project`` and ``generate_rays`` use these. Pure functions of tensors, layer 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

N_DISTORTION = 6  # k1, k2, k3, k4, p1, p2
LENS_ITERATIONS = 10  # Newton steps when inverting the lens model (converged well before for real lenses)


def _radtan(u: Tensor, v: Tensor, k: Tensor) -> tuple[Tensor, ...]:
    """Radial-tangential distortion of normalised ``u, v`` [n]: ``u_d, v_d`` and the Jacobian
    entries ``d u_d / d u``, ``d u_d / d v`` (= ``d v_d / d u``), ``d v_d / d v``."""
    k1, k2, k3, p1, p2 = k[:, 0], k[:, 1], k[:, 2], k[:, 4], k[:, 5]
    r2 = u * u + v * v
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    dradial = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
    ud = u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
    vd = v * radial + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v
    j_uu = radial + 2 * u * u * dradial + 2 * p1 * v + 6 * p2 * u
    j_uv = 2 * u * v * dradial + 2 * p1 * u + 2 * p2 * v
    j_vv = radial + 2 * v * v * dradial + 6 * p1 * v + 2 * p2 * u
    return ud, vd, j_uu, j_uv, j_vv


def _theta_poly(theta: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """Fisheye ``theta_d(theta)`` [n] and its derivative [n]."""
    k1, k2, k3, k4 = k[:, 0], k[:, 1], k[:, 2], k[:, 3]
    t2 = theta * theta
    poly = 1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))
    dpoly = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
    return theta * poly, dpoly


def distort(p_cam: Tensor, dist: Tensor, fisheye: Tensor | None) -> Tensor:
    """Distorted normalised coordinates [n, 2] of camera-space points ``p_cam`` [n, 3] (module
    docstring); ``dist`` [n, 6], ``fisheye`` [n] bool or None (no fisheye view)."""
    x, y, z = p_cam.unbind(-1)
    ud, vd = _radtan(x / z, y / z, dist)[:2]
    out = torch.stack([ud, vd], -1)  # [n, 2]
    if fisheye is None:
        return out
    r = torch.sqrt(x * x + y * y)
    theta_d, _ = _theta_poly(torch.atan2(r, z), dist)
    scale = torch.where(r > 0, theta_d / r.clamp_min(1e-30), 1.0 / z)  # theta_d / r -> 1 / z on the axis
    return torch.where(fisheye[:, None], torch.stack([x, y], -1) * scale[:, None], out)


def undistort(uv_d: Tensor, dist: Tensor, fisheye: Tensor | None, iterations: int = LENS_ITERATIONS) -> Tensor:
    """Camera-space directions [n, 3] that ``distort`` maps to ``uv_d`` [n, 2] (see ``pixel_directions``).

    Newton's method from ``uv = uv_d``, a fixed number of steps with no data-dependent control flow.
    """
    u0, v0 = uv_d[:, 0], uv_d[:, 1]
    u, v = u0, v0
    for _ in range(iterations):
        ud, vd, a, b, d = _radtan(u, v, dist)
        det = a * d - b * b
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        ex, ey = ud - u0, vd - v0
        u, v = u - (d * ex - b * ey) / det, v - (a * ey - b * ex) / det
    ok = torch.isfinite(u) & torch.isfinite(v)  # a lens that folds over: keep rays finite
    rect = torch.stack([torch.where(ok, u, u0), torch.where(ok, v, v0), torch.ones_like(u)], -1)  # [n, 3]
    if fisheye is None:
        return rect
    theta_d = torch.linalg.norm(uv_d, dim=-1)  # [n]
    theta = theta_d
    for _ in range(iterations):
        g, dg = _theta_poly(theta, dist)
        theta = (theta - (g - theta_d) / torch.where(dg.abs() < 1e-12, torch.ones_like(dg), dg)).clamp(0.0, math.pi)
    ratio = torch.where(theta_d > 0, torch.sin(theta) / theta_d.clamp_min(1e-30), torch.ones_like(theta))
    fish = torch.cat([uv_d * ratio[:, None], torch.cos(theta)[:, None]], -1)  # [n, 3]
    return torch.where(fisheye[:, None], fish, rect)
