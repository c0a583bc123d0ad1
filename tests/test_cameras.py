import math

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
