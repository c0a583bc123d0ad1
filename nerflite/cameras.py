"""Cameras, ray generation and the NDC transform.

The one internal camera convention (OpenCV)
-------------------------------------------
* Camera axes: x right, y down, z forward (the camera looks along +z).
* ``c2w`` [n, 3, 4] maps camera coordinates to world coordinates: ``X_w = R @ X_c + t``.
* Pixel coordinates are continuous, with the top-left corner of the image at (0, 0); the centre of
  the pixel in row ``y``, column ``x`` (integers) is at ``(x + 0.5, y + 0.5)``.
* Intrinsics ``fx, fy, cx, cy`` are in pixels of the images the camera describes, with ``cx, cy``
  in the same continuous coordinates (so a centred principal point is ``cx = width / 2``).

Every parser converts its file format into this convention in exactly one function, and nothing
downstream ever sees another convention.

Scene scale
-----------
Ray directions are unit vectors, so depths, ``near`` and ``far`` are Euclidean distances along
the ray. The classic NeRF code uses directions with a z component of -1 (depth along the optical
axis) and Blender bounds near=2, far=6; nerflite keeps the numbers 2 and 6 but reads them as
distances. At the image corners of lego (camera_angle_x 0.69 rad) the two differ by under 7%, and
the object (radius < 1.5 around the origin, seen from cameras at radius 4) lies well inside both.
For forward-facing scenes the NDC transform below maps rays into the unit cube, where ``near = 0``
and ``far`` is the length of the NDC direction, which reproduces the classic ``t in [0, 1]``
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from nerflite.rays import RayBundle


@dataclass
class Cameras:
    """Pinhole cameras, one row per view, in the OpenCV convention described above."""

    fx: Tensor  # [n] float
    fy: Tensor  # [n] float
    cx: Tensor  # [n] float
    cy: Tensor  # [n] float
    width: Tensor  # [n] int64
    height: Tensor  # [n] int64
    c2w: Tensor  # [n, 3, 4] float
    distortion: Tensor | None = None  # [n, k] reserved for lens distortion (not applied yet)

    def __post_init__(self) -> None:
        n = self.c2w.shape[0]
        if self.c2w.shape[1:] != (3, 4):
            raise ValueError(f"c2w must be [n, 3, 4], got {tuple(self.c2w.shape)}")
        for name in ("fx", "fy", "cx", "cy", "width", "height"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be [{n}], got {tuple(getattr(self, name).shape)}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        sel = lambda t: None if t is None else t[index]  # noqa: E731
        return Cameras(
            sel(self.fx), sel(self.fy), sel(self.cx), sel(self.cy),
            sel(self.width), sel(self.height), sel(self.c2w), sel(self.distortion),
        )

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device) -> Cameras:
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Cameras(
            mv(self.fx), mv(self.fy), mv(self.cx), mv(self.cy),
            mv(self.width), mv(self.height), mv(self.c2w), mv(self.distortion),
        )

    def rescaled(self, width: Tensor | int, height: Tensor | int) -> Cameras:
        """The same views for images resized to ``width`` x ``height`` pixels."""
        width = torch.as_tensor(width, dtype=torch.int64).expand(len(self)).clone()
        height = torch.as_tensor(height, dtype=torch.int64).expand(len(self)).clone()
        sx = width.to(self.fx.dtype) / self.width.to(self.fx.dtype)
        sy = height.to(self.fy.dtype) / self.height.to(self.fy.dtype)
        return replace(
            self, fx=self.fx * sx, cx=self.cx * sx, fy=self.fy * sy, cy=self.cy * sy,
            width=width, height=height,
        )

    def intrinsics(self) -> Tensor:
        """K matrices [n, 3, 3]."""
        K = torch.zeros(len(self), 3, 3, dtype=self.fx.dtype, device=self.device)
        K[:, 0, 0], K[:, 1, 1] = self.fx, self.fy
        K[:, 0, 2], K[:, 1, 2] = self.cx, self.cy
        K[:, 2, 2] = 1.0
        return K

    def centers(self) -> Tensor:
        """Camera centres in world coordinates [n, 3]."""
        return self.c2w[:, :, 3]

    @staticmethod
    def cat(cams: list[Cameras]) -> Cameras:
        has_dist = all(c.distortion is not None for c in cams)
        return Cameras(
            *(torch.cat([getattr(c, k) for c in cams]) for k in ("fx", "fy", "cx", "cy", "width", "height", "c2w")),
            distortion=torch.cat([c.distortion for c in cams]) if has_dist else None,
        )


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Camera-to-world [..., 3, 4] from OpenGL/Blender axes (x right, y up, z back) to OpenCV axes."""
    out = c2w.clone()
    out[..., :3, 1:3] *= -1.0
    return out


def pixel_directions(cameras: Cameras, cam_idx: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Unnormalized camera-space directions [n, 3] with z = 1 through pixels (y, x).

    Integer ``y, x`` address pixel centres (+0.5); floating ``y, x`` are continuous coordinates.
    """
    dtype = cameras.fx.dtype
    if not torch.is_floating_point(x):
        x = x.to(dtype) + 0.5
    if not torch.is_floating_point(y):
        y = y.to(dtype) + 0.5
    u = (x - cameras.cx[cam_idx]) / cameras.fx[cam_idx]  # [n]
    v = (y - cameras.cy[cam_idx]) / cameras.fy[cam_idx]  # [n]
    return torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [n, 3]


def generate_rays(
    cameras: Cameras,
    cam_idx: Tensor,
    y: Tensor,
    x: Tensor,
    near: float | Tensor = 0.0,
    far: float | Tensor = 1.0,
) -> RayBundle:
    """Rays through pixels ``(y, x)`` of views ``cam_idx`` (each [n]); vectorized over all rays.

    ``near`` / ``far`` are distances along the unit directions: floats or [n] tensors.
    """
    cam_idx = cam_idx.long()
    d_cam = pixel_directions(cameras, cam_idx, y, x)  # [n, 3]
    c2w = cameras.c2w[cam_idx]  # [n, 3, 4]
    d_world = torch.einsum("nij,nj->ni", c2w[:, :, :3], d_cam)  # [n, 3]
    directions = d_world / torch.linalg.norm(d_world, dim=-1, keepdim=True)
    origins = c2w[:, :, 3]  # [n, 3]
    n = origins.shape[0]
    near_t = torch.as_tensor(near, dtype=origins.dtype, device=origins.device).expand(n).reshape(n, 1)
    far_t = torch.as_tensor(far, dtype=origins.dtype, device=origins.device).expand(n).reshape(n, 1)
    return RayBundle(
        origins=origins,
        directions=directions,
        viewdirs=directions,
        near=near_t.clone(),
        far=far_t.clone(),
        camera_indices=cam_idx.reshape(n, 1),
    )


def project(cameras: Cameras, cam_idx: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points [n, 3] into views ``cam_idx`` [n].

    Returns continuous pixel coordinates ``xy`` [n, 2] (pixel centres at +0.5) and depth along the
    optical axis [n].
    """
    c2w = cameras.c2w[cam_idx.long()]  # [n, 3, 4]
    R, t = c2w[:, :, :3], c2w[:, :, 3]
    p_cam = torch.einsum("nji,nj->ni", R, points - t)  # R^T (p - t)   [n, 3]
    z = p_cam[:, 2]
    x = cameras.fx[cam_idx] * p_cam[:, 0] / z + cameras.cx[cam_idx]
    y = cameras.fy[cam_idx] * p_cam[:, 1] / z + cameras.cy[cam_idx]
    return torch.stack([x, y], dim=-1), z


def ndc_rays(rays: RayBundle, fx: float, fy: float, width: int, height: int, near_plane: float = 1.0) -> RayBundle:
    """Map forward-facing rays into normalized device coordinates (NeRF paper, appendix C).

    The world frame is the forward-facing one: cameras look roughly along -z and the scene lies at
    z < -near_plane. Origins are first moved onto the plane z = -near_plane, then

        o' = (-fx/(W/2) * ox/oz, -fy/(H/2) * oy/oz, 1 + 2 n / oz)
        d' = (-fx/(W/2) * (dx/dz - ox/oz), -fy/(H/2) * (dy/dz - oy/oz), -2 n / oz)

    The classic code samples t in [0, 1] along d'. nerflite keeps unit directions, so the result
    has ``directions = d' / |d'|``, ``near = 0`` and ``far = |d'|``, which covers the same points.
    ``viewdirs`` stay the world viewing directions.
    """
    o, d = rays.origins, rays.directions
    t = -(near_plane + o[:, 2]) / d[:, 2]
    o = o + t[:, None] * d
    ax, ay = -2.0 * fx / width, -2.0 * fy / height
    o_ndc = torch.stack([ax * o[:, 0] / o[:, 2], ay * o[:, 1] / o[:, 2], 1.0 + 2.0 * near_plane / o[:, 2]], -1)
    d_ndc = torch.stack(
        [
            ax * (d[:, 0] / d[:, 2] - o[:, 0] / o[:, 2]),
            ay * (d[:, 1] / d[:, 2] - o[:, 1] / o[:, 2]),
            -2.0 * near_plane / o[:, 2],
        ],
        -1,
    )
    length = torch.linalg.norm(d_ndc, dim=-1, keepdim=True)  # [n, 1]
    return RayBundle(
        origins=o_ndc,
        directions=d_ndc / length,
        viewdirs=rays.viewdirs,
        near=torch.zeros_like(length),
        far=length,
        camera_indices=rays.camera_indices,
        extras=dict(rays.extras),
    )
