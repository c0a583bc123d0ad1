"""Camera paths for rendering: pure functions that return camera-to-world matrices [n, 3, 4].

Everything is in nerflite's OpenCV convention (x right, y down, z forward; see ``cameras.py``).
``up`` is a world direction that should appear upward in the images (so the cameras' -y axis).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _normalize(v: Tensor) -> Tensor:
    return v / torch.linalg.norm(v, dim=-1, keepdim=True).clamp_min(1e-12)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """Cameras at ``eye`` [n, 3] looking at ``target`` [n, 3] (or [3]) with ``up`` [3] upward -> [n, 3, 4].

    A camera looking straight along ``up`` gets an arbitrary right axis perpendicular to its view.
    """
    eye = torch.as_tensor(eye)
    target = torch.as_tensor(target, dtype=eye.dtype).expand_as(eye)
    up = torch.as_tensor(up, dtype=eye.dtype).expand_as(eye)
    z = _normalize(target - eye)  # forward
    x = torch.linalg.cross(z, up)  # right = forward x up (y is down)
    degenerate = torch.linalg.norm(x, dim=-1) < 1e-9  # [n]
    if degenerate.any():
        other = torch.where(z[:, :1].abs() < 0.9, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype),
                            torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype))  # [n, 3]
        x = torch.where(degenerate[:, None], torch.linalg.cross(z, other), x)
    x = _normalize(x)
    y = torch.linalg.cross(z, x)  # down
    return torch.stack([x, y, z, eye], dim=-1)  # [n, 3, 4]


def scene_up(c2w: Tensor) -> Tensor:
    """The mean 'up' (-y) axis of a set of cameras [n, 3, 4] -> [3] unit."""
    return _normalize(-c2w[:, :, 1].mean(0))


def orbit_path(
    center: Tensor, radius: float, up: Tensor, n_frames: int = 120, elevation_deg: float = 30.0
) -> Tensor:
    """``n_frames`` cameras evenly spaced on a circle around ``center`` [3], looking at it.

    The circle lies ``elevation_deg`` above the plane through ``center`` orthogonal to ``up``, at
    distance ``radius`` from ``center``.
    """
    center = torch.as_tensor(center, dtype=torch.float32)
    up = _normalize(torch.as_tensor(up, dtype=center.dtype))
    # An orthonormal basis (a, b) of the plane orthogonal to up.
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    a = _normalize(torch.linalg.cross(up, helper.to(up.dtype)))
    b = torch.linalg.cross(up, a)
    theta = torch.arange(n_frames, dtype=center.dtype) * (2.0 * math.pi / n_frames)  # [n]
    el = math.radians(elevation_deg)
    dirs = math.cos(el) * (torch.cos(theta)[:, None] * a + torch.sin(theta)[:, None] * b) + math.sin(el) * up
    eye = center + radius * dirs  # [n, 3]
    return look_at(eye, center, up)


def orbit_from_cameras(c2w: Tensor, center: Tensor, n_frames: int = 120) -> Tensor:
    """The default path for scenes seen from around: [n_frames, 3, 4] cameras circling ``center``.

    The path follows the capture: it turns about the views' mean up axis at their median distance
    and elevation. When the views surround the scene (no azimuth gap over 90 degrees) it is a full
    turn; otherwise it sweeps the observed azimuth range out and back, so it never shows the side
    no camera saw (a DTU-style frontal arc stays an arc).
    """
    dtype = torch.as_tensor(c2w).dtype
    c2w = torch.as_tensor(c2w).double()
    center = torch.as_tensor(center, dtype=c2w.dtype)
    up = scene_up(c2w)
    rel = c2w[:, :, 3] - center  # [n, 3]
    dist = torch.linalg.norm(rel, dim=-1)  # [n]
    radius = float(dist.median())
    elevation = float(torch.asin((rel @ up / dist.clamp_min(1e-12)).clamp(-1, 1)).median())
    # an orthonormal basis (e1, e2) of the plane perpendicular to up, e1 towards the mean view
    e1 = rel.mean(0) - (rel.mean(0) @ up) * up
    if float(torch.linalg.norm(e1)) < 1e-6 * max(radius, 1e-12):
        e1 = rel[0] - (rel[0] @ up) * up
    if float(torch.linalg.norm(e1)) < 1e-12:
        e1 = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0] if abs(float(up[0])) < 0.9 else [0.0, 1.0, 0.0],
                                                 dtype=up.dtype))
    e1 = _normalize(e1)
    e2 = torch.linalg.cross(up, e1)
    azimuth = torch.atan2(rel @ e2, rel @ e1)  # [n] in (-pi, pi], around the mean direction
    ring = torch.sort(azimuth).values
    gaps = torch.diff(torch.cat([ring, ring[:1] + 2 * math.pi]))
    phase = torch.arange(n_frames, dtype=c2w.dtype) * (2 * math.pi / n_frames)  # [f]
    if len(azimuth) < 2 or float(gaps.max()) <= math.pi / 2:
        angles = phase
    else:  # sweep the arc of observed azimuths, out and back
        lo, hi = float(azimuth.min()), float(azimuth.max())
        angles = (lo + hi) / 2 + (hi - lo) / 2 * torch.sin(phase)
    ring_dirs = torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2  # [f, 3]
    dirs = math.cos(elevation) * ring_dirs + math.sin(elevation) * up
    return look_at(center + radius * dirs, center, up).to(dtype)


def average_pose(c2w: Tensor) -> Tensor:
    """The mean camera [3, 4]: mean centre, mean forward axis, mean up, re-orthonormalised."""
    c2w = c2w.float()
    center = c2w[:, :, 3].mean(0)
    forward = _normalize(c2w[:, :, 2].mean(0))
    return look_at(center[None], (center + forward)[None], scene_up(c2w))[0]


def spiral_path(
    c2w: Tensor, focus_depth: float, n_frames: int = 120, n_rotations: float = 2.0, zrate: float = 0.5
) -> Tensor:
    """The forward-facing spiral: cameras circle the average pose (radii from the 90th percentile of
    the capture's camera offsets) while looking at the point ``focus_depth`` in front of it."""
    avg = average_pose(c2w)  # [3, 4]
    R, center = avg[:, :3], avg[:, 3]
    local = (c2w[:, :, 3].float() - center) @ R  # camera offsets in the average frame [n, 3]
    radii = torch.quantile(local.abs(), 0.9, dim=0)  # [3]
    theta = torch.linspace(0.0, 2.0 * math.pi * n_rotations, n_frames + 1)[:-1]  # [n]
    offs = torch.stack([torch.cos(theta), -torch.sin(theta), -torch.sin(theta * zrate)], -1) * radii  # [n, 3]
    eye = center + offs @ R.T
    target = center + focus_depth * R[:, 2]
    return look_at(eye, target, -R[:, 1])


def focus_depth_from_bounds(near: float, far: float, weight: float = 0.75) -> float:
    """A focus depth between the scene's near and far bounds, weighted in disparity."""
    return 1.0 / ((1.0 - weight) / near + weight / far)
