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

Lens distortion: rays are distorted, images never resampled
------------------------------------------------------------
``Cameras.distortion`` [n, 6] holds ``(k1, k2, k3, k4, p1, p2)`` per view (zeros: none) and
``Cameras.fisheye`` [n] bool picks the lens model of each view; either may be None (all zeros,
no fisheye), and a pinhole dataset carries neither, so it pays nothing. On normalised pinhole
coordinates ``(u, v) = (x / z, y / z)`` of a camera-space point:

* radial-tangential (OpenCV, COLMAP's SIMPLE_RADIAL / RADIAL / OPENCV; ``k4`` unused)::

      r2 = u^2 + v^2,  radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3
      u_d = u radial + 2 p1 u v + p2 (r2 + 2 u^2)
      v_d = v radial + p1 (r2 + 2 v^2) + 2 p2 u v

* fisheye (OpenCV ``cv2.fisheye``, COLMAP's OPENCV_FISHEYE, equidistant; ``p1, p2`` unused)::

      theta = atan2(sqrt(x^2 + y^2), z),  theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
      (u_d, v_d) = theta_d / sqrt(x^2 + y^2) * (x, y)

and pixels are ``(fx u_d + skew v_d + cx, fy v_d + cy)``: ``Cameras.skew`` [n] (None: 0) is the
intrinsic matrix's ``K[0, 1]`` (pixels), applied after the lens as in Nerfies' camera model.
``project`` applies the model forward; ``generate_rays`` inverts it per ray with a fixed number
of vectorised Newton steps (2x2 for the radial-tangential model, scalar in theta for the fisheye
one, which also covers fields of view beyond 180 degrees), so images are used exactly as
captured: no resampling blur, no cropped borders, no extra decode work, and nothing synchronises
with the host. Render paths for novel views are pinhole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from nerflite.lens import LENS_ITERATIONS, N_DISTORTION, distort, undistort
from nerflite.rays import RayBundle

__all__ = ["LENS_ITERATIONS", "N_DISTORTION", "Cameras", "distort", "generate_rays", "ndc_rays", "project", "undistort"]



@dataclass
class Cameras:
    """Cameras, one row per view, in the OpenCV convention described above (pinhole plus optional lens)."""

    fx: Tensor  # [n] float
    fy: Tensor  # [n] float
    cx: Tensor  # [n] float
    cy: Tensor  # [n] float
    width: Tensor  # [n] int64
    height: Tensor  # [n] int64
    c2w: Tensor  # [n, 3, 4] float
    distortion: Tensor | None = None  # [n, 6] (k1, k2, k3, k4, p1, p2), zeros = none
    fisheye: Tensor | None = None  # [n] bool: OpenCV fisheye (equidistant) model using k1..k4
    skew: Tensor | None = None  # [n] float: K[0, 1] in pixels (x += skew * v_d), None = 0

    def __post_init__(self) -> None:
        n = self.c2w.shape[0]
        if self.c2w.shape[1:] != (3, 4):
            raise ValueError(f"c2w must be [n, 3, 4], got {tuple(self.c2w.shape)}")
        for name in ("fx", "fy", "cx", "cy", "width", "height"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be [{n}], got {tuple(getattr(self, name).shape)}")
        if self.distortion is not None and self.distortion.shape != (n, N_DISTORTION):
            raise ValueError(f"distortion must be [{n}, {N_DISTORTION}], got {tuple(self.distortion.shape)}")
        if self.fisheye is not None and (self.fisheye.shape != (n,) or self.fisheye.dtype != torch.bool):
            raise ValueError(f"fisheye must be [{n}] bool, got {tuple(self.fisheye.shape)} {self.fisheye.dtype}")
        if self.skew is not None and self.skew.shape != (n,):
            raise ValueError(f"skew must be [{n}], got {tuple(self.skew.shape)}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        sel = lambda t: None if t is None else t[index]  # noqa: E731
        return Cameras(
            sel(self.fx), sel(self.fy), sel(self.cx), sel(self.cy),
            sel(self.width), sel(self.height), sel(self.c2w), sel(self.distortion), sel(self.fisheye), sel(self.skew),
        )

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device) -> Cameras:
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Cameras(
            mv(self.fx), mv(self.fy), mv(self.cx), mv(self.cy),
            mv(self.width), mv(self.height), mv(self.c2w), mv(self.distortion), mv(self.fisheye), mv(self.skew),
        )

    def rescaled(self, width: Tensor | int, height: Tensor | int) -> Cameras:
        """The same views for images resized to ``width`` x ``height`` pixels (the lens is unchanged:
        distortion acts on normalised coordinates)."""
        width = torch.as_tensor(width, dtype=torch.int64).expand(len(self)).clone()
        height = torch.as_tensor(height, dtype=torch.int64).expand(len(self)).clone()
        sx = width.to(self.fx.dtype) / self.width.to(self.fx.dtype)
        sy = height.to(self.fy.dtype) / self.height.to(self.fy.dtype)
        return replace(
            self, fx=self.fx * sx, cx=self.cx * sx, fy=self.fy * sy, cy=self.cy * sy,
            width=width, height=height, skew=None if self.skew is None else self.skew * sx,
        )

    def intrinsics(self) -> Tensor:
        """K matrices [n, 3, 3]."""
        K = torch.zeros(len(self), 3, 3, dtype=self.fx.dtype, device=self.device)
        K[:, 0, 0], K[:, 1, 1] = self.fx, self.fy
        if self.skew is not None:
            K[:, 0, 1] = self.skew
        K[:, 0, 2], K[:, 1, 2] = self.cx, self.cy
        K[:, 2, 2] = 1.0
        return K

    def centers(self) -> Tensor:
        """Camera centres in world coordinates [n, 3]."""
        return self.c2w[:, :, 3]

    @property
    def has_lens(self) -> bool:
        """Whether any view may be distorted (rays then go through the lens model)."""
        return self.distortion is not None or self.fisheye is not None

    def lens(self) -> tuple[Tensor, Tensor]:
        """``distortion`` [n, 6] and ``fisheye`` [n] bool, with zeros / False where they are None."""
        n, dev = len(self), self.device
        dist = self.distortion if self.distortion is not None else torch.zeros(n, N_DISTORTION, device=dev)
        fish = self.fisheye if self.fisheye is not None else torch.zeros(n, dtype=torch.bool, device=dev)
        return dist.to(self.fx.dtype), fish

    @staticmethod
    def cat(cams: list[Cameras]) -> Cameras:
        """One Cameras of all rows; views without a lens get zeros / False where others have one."""
        lens = [c.lens() for c in cams] if any(c.has_lens for c in cams) else None
        skewed = any(c.skew is not None for c in cams)
        return Cameras(
            *(torch.cat([getattr(c, k) for c in cams]) for k in ("fx", "fy", "cx", "cy", "width", "height", "c2w")),
            distortion=torch.cat([d for d, _ in lens]) if lens else None,
            fisheye=torch.cat([f for _, f in lens]) if lens else None,
            skew=torch.cat([torch.zeros_like(c.fx) if c.skew is None else c.skew for c in cams]) if skewed else None,
        )


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Camera-to-world [..., 3, 4] from OpenGL/Blender axes (x right, y up, z back) to OpenCV axes."""
    out = c2w.clone()
    out[..., :3, 1:3] *= -1.0
    return out


def pixel_directions(cameras: Cameras, cam_idx: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Camera-space directions [n, 3] through pixels (y, x), not unit: z = 1 for pinhole and
    radial-tangential views, ``(sin theta * u, sin theta * v, cos theta)`` for fisheye ones.

    Integer ``y, x`` address pixel centres (+0.5); floating ``y, x`` are continuous coordinates.
    """
    dtype = cameras.fx.dtype
    if not torch.is_floating_point(x):
        x = x.to(dtype) + 0.5
    if not torch.is_floating_point(y):
        y = y.to(dtype) + 0.5
    v = (y - cameras.cy[cam_idx]) / cameras.fy[cam_idx]  # [n]
    if cameras.skew is not None:
        x = x - cameras.skew[cam_idx].to(dtype) * v
    u = (x - cameras.cx[cam_idx]) / cameras.fx[cam_idx]  # [n]
    if not cameras.has_lens:
        return torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [n, 3]
    dist, fish = _lens_rows(cameras, cam_idx)
    return undistort(torch.stack([u, v], -1), dist, fish)


def _lens_rows(cameras: Cameras, cam_idx: Tensor) -> tuple[Tensor, Tensor | None]:
    """``distortion`` [n, 6] (zeros where None) and ``fisheye`` [n] (None: no fisheye view) of rows ``cam_idx``."""
    if cameras.distortion is None:
        dist = torch.zeros(cam_idx.shape[0], N_DISTORTION, dtype=cameras.fx.dtype, device=cam_idx.device)
    else:
        dist = cameras.distortion[cam_idx].to(cameras.fx.dtype)
    return dist, None if cameras.fisheye is None else cameras.fisheye[cam_idx]


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
    return RayBundle(
        origins=origins,
        directions=directions,
        viewdirs=directions,
        near=_bound_column(near, origins),
        far=_bound_column(far, origins),
        camera_indices=cam_idx.reshape(n, 1),
    )


def _bound_column(value: float | Tensor, like: Tensor) -> Tensor:
    """near / far as [n, 1] beside ``like`` [n, 3]. A number is filled in on the device (a copy of it
    from the host would wait for the device's queued work: one sync per training batch)."""
    n = like.shape[0]
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=like.dtype).expand(n).reshape(n, 1).clone()
    return torch.full((n, 1), float(value), dtype=like.dtype, device=like.device)


def project(cameras: Cameras, cam_idx: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points [n, 3] into views ``cam_idx`` [n].

    Returns continuous pixel coordinates ``xy`` [n, 2] (pixel centres at +0.5), through the lens
    model when the cameras have one, and depth along the optical axis [n].
    """
    cam_idx = cam_idx.long()
    c2w = cameras.c2w[cam_idx]  # [n, 3, 4]
    R, t = c2w[:, :, :3], c2w[:, :, 3]
    p_cam = torch.einsum("nji,nj->ni", R, points - t)  # R^T (p - t)   [n, 3]
    z = p_cam[:, 2]
    if cameras.has_lens:
        u, v = distort(p_cam, *_lens_rows(cameras, cam_idx)).unbind(-1)
    else:
        u, v = p_cam[:, 0] / z, p_cam[:, 1] / z
    x = cameras.fx[cam_idx] * u + cameras.cx[cam_idx]
    if cameras.skew is not None:
        x = x + cameras.skew[cam_idx].to(x.dtype) * v
    y = cameras.fy[cam_idx] * v + cameras.cy[cam_idx]
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
