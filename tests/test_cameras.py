import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nerflite.cameras import Cameras, generate_rays, ndc_rays, opengl_to_opencv, project


def _random_cameras(n=4, seed=0, w=64, h=48):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    a, b, c, d = q.unbind(-1)
    R = torch.stack(
        [
            torch.stack([a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)], -1),
            torch.stack([2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)], -1),
            torch.stack([2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d], -1),
        ],
        -2,
    )
    t = torch.randn(n, 3, 1, generator=g, dtype=torch.float64)
    return Cameras(
        fx=torch.full((n,), 50.0, dtype=torch.float64) + torch.arange(n),
        fy=torch.full((n,), 55.0, dtype=torch.float64),
        cx=torch.full((n,), w / 2 + 1.5, dtype=torch.float64),
        cy=torch.full((n,), h / 2 - 2.0, dtype=torch.float64),
        width=torch.full((n,), w),
        height=torch.full((n,), h),
        c2w=torch.cat([R, t], -1),
    )


def test_principal_ray_is_forward_axis_and_directions_unit():
    cams = _random_cameras()
    idx = torch.arange(len(cams))
    # continuous coordinates exactly at the principal point
    rays = generate_rays(cams, idx, cams.cy.clone(), cams.cx.clone(), near=2.0, far=6.0)
    torch.testing.assert_close(rays.directions, cams.c2w[:, :, 2])
    torch.testing.assert_close(rays.origins, cams.c2w[:, :, 3])
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 48, (100,), generator=g)
    x = torch.randint(0, 64, (100,), generator=g)
    ci = torch.randint(0, 4, (100,), generator=g)
    rays = generate_rays(cams, ci, y, x, near=2.0, far=6.0)
    torch.testing.assert_close(rays.directions.norm(dim=-1), torch.ones(100, dtype=torch.float64))
    assert rays.near.shape == (100, 1) and float(rays.far[0]) == 6.0
    assert rays.camera_indices.shape == (100, 1)


def test_project_inverts_generate_rays_at_pixel_centres():
    cams = _random_cameras()
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 48, (200,), generator=g)
    x = torch.randint(0, 64, (200,), generator=g)
    ci = torch.randint(0, 4, (200,), generator=g)
    rays = generate_rays(cams, ci, y, x)
    pts = rays.origins + 3.7 * rays.directions
    xy, z = project(cams, ci, pts)
    torch.testing.assert_close(xy, torch.stack([x + 0.5, y + 0.5], -1).double())
    assert (z > 0).all()


def test_rescaled_keeps_rays_through_same_relative_position():
    cams = _random_cameras(w=64, h=48)
    half = cams.rescaled(32, 24)
    idx = torch.arange(4)
    # pixel (0, 0) corner of the small image == corner of the large one
    a = generate_rays(cams, idx, torch.zeros(4), torch.zeros(4))
    b = generate_rays(half, idx, torch.zeros(4), torch.zeros(4))
    torch.testing.assert_close(a.directions, b.directions)


def test_opengl_to_opencv_flips_y_and_z():
    c2w = torch.eye(4)[:3].unsqueeze(0)
    cv = opengl_to_opencv(c2w)
    assert torch.equal(cv[0, :, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])))


def test_ndc_matches_closed_form():
    # forward-facing camera at the origin looking down -z (OpenCV c2w = diag(1, -1, -1))
    W, H, f = 40, 30, 35.0
    c2w = torch.tensor([[[1.0, 0, 0, 0.1], [0, -1.0, 0, -0.2], [0, 0, -1.0, 0.3]]], dtype=torch.float64)
    cams = Cameras(*(torch.tensor([v], dtype=torch.float64) for v in (f, f, W / 2, H / 2)),
                   torch.tensor([W]), torch.tensor([H]), c2w)
    g = torch.Generator().manual_seed(3)
    y, x = torch.randint(0, H, (50,), generator=g), torch.randint(0, W, (50,), generator=g)
    rays = generate_rays(cams, torch.zeros(50, dtype=torch.long), y, x)
    ndc = ndc_rays(rays, f, f, W, H, near_plane=1.0)
    # closed form: a world point p = o + s d maps to (-f/(W/2) px/pz, -f/(H/2) py/pz, 1 + 2/pz)
    for s in (1.5, 3.0, 10.0):
        p = rays.origins + s * rays.directions
        expect = torch.stack([-f / (W / 2) * p[:, 0] / p[:, 2], -f / (H / 2) * p[:, 1] / p[:, 2], 1 + 2 / p[:, 2]], -1)
        # the NDC ray passes through the mapped point
        t = (expect[:, 2] - ndc.origins[:, 2]) / ndc.directions[:, 2]
        torch.testing.assert_close(ndc.origins + t[:, None] * ndc.directions, expect)
    # the near plane maps to z = -1, infinity to z = +1 at t = far
    torch.testing.assert_close(ndc.origins[:, 2], -torch.ones(50, dtype=torch.float64))
    end = ndc.origins + ndc.far * ndc.directions
    torch.testing.assert_close(end[:, 2], torch.ones(50, dtype=torch.float64))
    assert torch.equal(ndc.viewdirs, rays.viewdirs)
    assert math.isclose(float(ndc.near.abs().max()), 0.0)


# --- lens distortion ---------------------------------------------------------------------------
RADTAN = [-0.12, 0.03, -0.002, 0.0, 0.002, -0.001]  # k1 k2 k3 k4 p1 p2: a wide-angle phone lens
FISHEYE = [0.1, -0.05, 0.02, -0.01, 0.0, 0.0]  # k1..k4 of an OpenCV fisheye calibration


def _lens_cameras(w=640, h=480):
    """Three views: radial-tangential, fisheye, and no distortion, all posed randomly."""
    cams = _random_cameras(n=3, w=w, h=h)
    dist = torch.tensor([RADTAN, FISHEYE, [0.0] * 6], dtype=torch.float64)
    cams = Cameras(cams.fx * 6, cams.fy * 6, cams.cx, cams.cy, cams.width, cams.height, cams.c2w,
                   distortion=dist, fisheye=torch.tensor([False, True, False]))
    return cams


def _opencv_project(cams, i, pts):
    """Reference pixels [m, 2] from cv2.projectPoints / cv2.fisheye.projectPoints (world points)."""
    cv2 = pytest.importorskip("cv2")
    R = cams.c2w[i, :, :3].numpy()
    rvec, _ = cv2.Rodrigues(R.T)
    tvec = -R.T @ cams.c2w[i, :, 3].numpy()
    K, d = cams.intrinsics()[i].numpy(), cams.distortion[i].numpy()
    P = np.ascontiguousarray(pts.numpy().reshape(-1, 1, 3))
    if bool(cams.fisheye[i]):
        ref, _ = cv2.fisheye.projectPoints(P, rvec, tvec, K, d[:4])
    else:
        ref, _ = cv2.projectPoints(P, rvec, tvec, K, np.array([d[0], d[1], d[4], d[5], d[2]]))
    return torch.from_numpy(ref.reshape(-1, 2))


def _pixels(cams, i, m=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, generator=g, dtype=torch.float64) * float(cams.width[i])
    y = torch.rand(m, generator=g, dtype=torch.float64) * float(cams.height[i])
    return y, x


@pytest.mark.parametrize("i", [0, 1, 2])
def test_lens_rays_hit_opencv_projection_within_tiny_error(i):
    """Points on rays through known pixels project back (with OpenCV as reference) onto those pixels."""
    cams = _lens_cameras()
    y, x = _pixels(cams, i)
    idx = torch.full_like(y, i, dtype=torch.long)
    rays = generate_rays(cams, idx, y, x)
    pts = rays.origins + torch.linspace(0.5, 8.0, len(y), dtype=torch.float64)[:, None] * rays.directions
    ref = _opencv_project(cams, i, pts)
    err_cv = (ref - torch.stack([x, y], -1)).norm(dim=-1).max()
    xy, z = project(cams, idx, pts)
    err_ours = (xy - torch.stack([x, y], -1)).norm(dim=-1).max()
    assert err_cv < 1e-6 and err_ours < 1e-6 and (z > 0).all(), (float(err_cv), float(err_ours))
    # the distortion is real: the same pixels through a pinhole camera miss by many pixels
    if i < 2:
        pin = generate_rays(replace(cams[i], distortion=None, fisheye=None), torch.zeros_like(idx), y, x)
        far = pin.origins + 3.0 * pin.directions
        assert (_opencv_project(cams, i, far) - torch.stack([x, y], -1)).norm(dim=-1).max() > 5.0


def test_lens_float32_rays_within_a_hundredth_of_a_pixel():
    cams = _lens_cameras()
    c32 = Cameras(*(getattr(cams, k).float() for k in ("fx", "fy", "cx", "cy")), cams.width, cams.height,
                  cams.c2w.float(), cams.distortion.float(), cams.fisheye)
    for i in range(3):
        y, x = _pixels(cams, i, seed=i)
        rays = generate_rays(c32, torch.full_like(y, i, dtype=torch.long), y.float(), x.float())
        pts = (rays.origins + 2.0 * rays.directions).double()
        assert (_opencv_project(cams, i, pts) - torch.stack([x, y], -1)).norm(dim=-1).max() < 0.01


def test_fisheye_beyond_ninety_degrees_round_trips():
    wide = [0.02, -0.005, 0.001, 0.0, 0.0, 0.0]  # an equidistant lens, monotonic beyond 120 degrees
    cams = _lens_cameras()[1]
    cams.distortion = torch.tensor([wide], dtype=torch.float64)
    # camera-space points at 100 and 120 degrees off the axis (behind the image plane)
    ang = torch.tensor([0.3, 1.2, 1.75, 2.1], dtype=torch.float64)
    p_cam = torch.stack([torch.sin(ang) * 0.6, torch.sin(ang) * 0.8, torch.cos(ang)], -1) * 2.0
    R, t = cams.c2w[0, :, :3], cams.c2w[0, :, 3]
    pts = p_cam @ R.T + t
    idx = torch.zeros(4, dtype=torch.long)
    xy, z = project(cams, idx, pts)
    # OpenCV's fisheye model works on x / z, so it agrees only in front of the camera
    torch.testing.assert_close(xy[:2], _opencv_project(cams, 0, pts)[:2])
    k = torch.tensor(wide[:4], dtype=torch.float64)
    theta_d = ang * (1 + k[0] * ang**2 + k[1] * ang**4 + k[2] * ang**6 + k[3] * ang**8)  # closed form
    expect = torch.stack([cams.fx * theta_d * 0.6 + cams.cx, cams.fy * theta_d * 0.8 + cams.cy], -1)
    torch.testing.assert_close(xy, expect)
    rays = generate_rays(cams, idx, xy[:, 1], xy[:, 0])
    torch.testing.assert_close(rays.directions, (pts - t) / (pts - t).norm(dim=-1, keepdim=True))
    assert (z[2:] < 0).all()


def test_zero_distortion_is_exactly_pinhole_and_lens_fields_travel():
    cams = _random_cameras()
    lens = Cameras(cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height, cams.c2w,
                   distortion=torch.zeros(4, 6, dtype=torch.float64))
    idx = torch.arange(4).repeat(25)
    y, x = torch.randint(0, 48, (100,)), torch.randint(0, 64, (100,))
    torch.testing.assert_close(generate_rays(lens, idx, y, x).directions, generate_rays(cams, idx, y, x).directions)
    # indexing, rescaling, device moves and concatenation keep (or fill in) the lens
    both = Cameras.cat([_lens_cameras()[0:2], cams[1], lens[3]])
    assert both.distortion.shape == (4, 6) and both.fisheye.tolist() == [False, True, False, False]
    assert both.distortion[2].abs().sum() == 0
    assert torch.equal(both.distortion[1], torch.tensor(FISHEYE, dtype=torch.float64))
    assert torch.equal(both.rescaled(32, 24).distortion, both.distortion)
    assert torch.equal(both[1].fisheye, torch.tensor([True])) and both.to("cpu").fisheye is not None
    assert Cameras.cat([cams, cams]).distortion is None
    with pytest.raises(ValueError, match="distortion must be"):
        Cameras(cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height, cams.c2w, distortion=torch.zeros(4, 4))
    with pytest.raises(ValueError, match="fisheye must be"):
        Cameras(cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height, cams.c2w, fisheye=torch.zeros(4))


def test_rescaled_lens_camera_keeps_rays():
    cams = _lens_cameras()
    half = cams.rescaled(320, 240)
    idx = torch.arange(3)
    y, x = torch.tensor([10.0, 200.0, 470.0]), torch.tensor([630.0, 5.0, 320.0])
    a = generate_rays(cams, idx, y, x)
    b = generate_rays(half, idx, y / 2, x / 2)
    torch.testing.assert_close(a.directions, b.directions)


def test_skew_projects_by_hand_and_rays_invert_it():
    """``skew`` is K[0, 1], applied after the lens: x = fx u_d + skew v_d + cx (Nerfies' camera)."""
    cams = _lens_cameras()
    skewed = replace(cams, skew=torch.tensor([3.5, -2.0, 0.0], dtype=torch.float64))
    g = torch.Generator().manual_seed(5)
    idx = torch.tensor([0, 1, 0, 1, 2, 2])
    p_cam = torch.cat([torch.rand(6, 2, generator=g, dtype=torch.float64) - 0.5, torch.ones(6, 1, dtype=torch.float64)],
                      -1) * 3.0  # [6, 3] in front of the cameras
    R, t = skewed.c2w[idx, :, :3], skewed.c2w[idx, :, 3]
    pts = torch.einsum("nij,nj->ni", R, p_cam) + t
    xy_plain, _ = project(cams, idx, pts)
    xy, _ = project(skewed, idx, pts)
    v_d = (xy_plain[:, 1] - cams.cy[idx]) / cams.fy[idx]  # the distorted normalised y
    torch.testing.assert_close(xy[:, 0], xy_plain[:, 0] + skewed.skew[idx] * v_d)
    torch.testing.assert_close(xy[:, 1], xy_plain[:, 1])
    rays = generate_rays(skewed, idx, xy[:, 1], xy[:, 0])
    torch.testing.assert_close(rays.directions, (pts - t) / (pts - t).norm(dim=-1, keepdim=True))
    # K carries it; indexing, rescaling and concatenation keep it (zeros where a camera has none)
    assert float(skewed.intrinsics()[0, 0, 1]) == 3.5
    assert torch.equal(skewed.rescaled(320, 240).skew, skewed.skew / 2)
    both = Cameras.cat([skewed[0], cams[1]])
    assert both.skew.tolist() == [3.5, 0.0] and Cameras.cat([cams, cams]).skew is None
    half = skewed.rescaled(320, 240)
    torch.testing.assert_close(generate_rays(half, idx, xy[:, 1] / 2, xy[:, 0] / 2).directions, rays.directions)
