import math

import torch

from nerflite import camera_paths as cp
from nerflite.cameras import Cameras, project


def _assert_rotations(c2w):
    R = c2w[:, :, :3]
    eye = torch.eye(3).expand_as(R)
    torch.testing.assert_close(R.transpose(1, 2) @ R, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(R)), atol=1e-5, rtol=0)


def _cams(c2w, w=64, h=48, f=50.0):
    n = len(c2w)
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(full(f), full(f), full(w / 2), full(h / 2), torch.full((n,), w), torch.full((n,), h), c2w)


def test_look_at_puts_target_at_principal_point_and_up_upward():
    eye = torch.tensor([[3.0, -2.0, 1.5]])
    target = torch.tensor([0.2, 0.1, -0.3])
    up = torch.tensor([0.0, 0.0, 1.0])
    c2w = cp.look_at(eye, target, up)
    _assert_rotations(c2w)
    cams = _cams(c2w)
    xy, z = project(cams, torch.tensor([0]), target[None])
    torch.testing.assert_close(xy[0], torch.tensor([32.0, 24.0]), atol=1e-4, rtol=0)
    assert z.item() > 0
    # A point above the target appears higher in the image (smaller y).
    xy_up, _ = project(cams, torch.tensor([0]), (target + 0.1 * up)[None])
    assert xy_up[0, 1] < xy[0, 1]
    assert abs(xy_up[0, 0].item() - 32.0) < 1e-3


def test_orbit_is_a_level_circle_looking_at_the_center():
    center = torch.tensor([0.5, -0.2, 0.1])
    up = torch.tensor([0.0, 0.0, 1.0])
    c2w = cp.orbit_path(center, radius=4.0, up=up, n_frames=12, elevation_deg=30.0)
    _assert_rotations(c2w)
    offsets = c2w[:, :, 3] - center
    torch.testing.assert_close(offsets.norm(dim=-1), torch.full((12,), 4.0))
    torch.testing.assert_close(offsets[:, 2], torch.full((12,), 4.0 * math.sin(math.radians(30.0))))
    # Forward axes point at the centre; consecutive frames are 30 degrees apart around up.
    torch.testing.assert_close(c2w[:, :, 2], -offsets / 4.0, atol=1e-5, rtol=0)
    flat = offsets[:, :2] / offsets[:, :2].norm(dim=-1, keepdim=True)
    cos = (flat[1:] * flat[:-1]).sum(-1)
    torch.testing.assert_close(cos, torch.full((11,), math.cos(math.radians(30.0))), atol=1e-5, rtol=0)


def test_orbit_from_cameras_recovers_radius_and_elevation():
    up = torch.tensor([0.0, 0.0, 1.0])
    ring = cp.orbit_path(torch.zeros(3), 4.0, up, n_frames=40, elevation_deg=20.0)
    orbit = cp.orbit_from_cameras(ring, torch.zeros(3), n_frames=8)
    torch.testing.assert_close(orbit[:, :, 3].norm(dim=-1), torch.full((8,), 4.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(orbit[:, 2, 3], torch.full((8,), 4.0 * math.sin(math.radians(20.0))), atol=1e-4, rtol=0)


def test_spiral_circles_the_average_pose_and_looks_at_the_focus():
    # Forward-facing capture: cameras near z = 0 looking along +z (OpenCV), scattered in x / y.
    g = torch.Generator().manual_seed(0)
    eye = torch.cat([torch.rand(20, 2, generator=g) - 0.5, torch.zeros(20, 1)], -1)
    capture = cp.look_at(eye, eye + torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))
    c2w = cp.spiral_path(capture, focus_depth=5.0, n_frames=30)
    _assert_rotations(c2w)
    focus = torch.tensor([0.0, 0.0, 5.0]) + eye.mean(0) * torch.tensor([1.0, 1.0, 0.0])
    to_focus = focus - c2w[:, :, 3]
    torch.testing.assert_close(c2w[:, :, 2], to_focus / to_focus.norm(dim=-1, keepdim=True), atol=1e-4, rtol=0)
    radii = (capture[:, :, 3] - eye.mean(0)).abs().quantile(0.9, dim=0)
    offs = (c2w[:, :, 3] - eye.mean(0)).abs()
    assert (offs[:, 0] <= radii[0] + 1e-5).all() and (offs[:, 1] <= radii[1] + 1e-5).all()
    assert offs[:, 0].max() > 0.9 * radii[0]


def test_orbit_from_a_frontal_arc_stays_on_the_arc():
    # views spread over 60 degrees of azimuth (a DTU-like capture): the path must not go behind
    up = torch.tensor([0.0, 0.0, 1.0])
    ring = cp.orbit_path(torch.zeros(3), 3.0, up, n_frames=36, elevation_deg=25.0)[:6]  # 0..50 degrees
    orbit = cp.orbit_from_cameras(ring, torch.zeros(3), n_frames=24)
    azimuth = torch.rad2deg(torch.atan2(orbit[:, 1, 3], orbit[:, 0, 3]))
    seen = torch.rad2deg(torch.atan2(ring[:, 1, 3], ring[:, 0, 3]))
    assert float(azimuth.min()) >= float(seen.min()) - 1e-3 and float(azimuth.max()) <= float(seen.max()) + 1e-3
    assert float(azimuth.max() - azimuth.min()) > 0.9 * float(seen.max() - seen.min())
    _assert_rotations(orbit)
