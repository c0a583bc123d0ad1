"""Vectorized sphere tracing of the analytic scene through nerflite cameras.

Rays come from ``nerflite.cameras.generate_rays`` (OpenCV axes, pixel centres at +0.5), so every
image and every ground-truth correspondence follows nerflite's own convention; the writers only
convert cameras into the file formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from nerflite.cameras import Cameras, generate_rays
from nerflite.data.synthetic.shapes import Part, shade, union_sdf


def sphere_trace(
    sdf: Callable[[Tensor], Tensor],
    origins: Tensor,
    directions: Tensor,
    t_near: Tensor,
    t_far: Tensor,
    eps: float,
    max_steps: int,
    min_step: float = 0.0,
    refine: int = 0,
) -> tuple[Tensor, Tensor]:
    """March each ray by the SDF value until it is within ``eps`` of the surface or past ``t_far``.

    origins, directions (unit) [n, 3]; t_near, t_far [n]. Returns depths ``t`` [n] and ``hit`` [n].
    Finished rays leave the working set whenever half of it has finished. Steps are at least
    ``min_step`` so that rays grazing a surface do not stall; a ray that steps into the surface stops there
    (negative SDF) and ``refine`` steps of ``t += sdf`` (which converge from either side for an
    exact SDF) then bring each hit back onto the surface.
    """
    t = t_near.clone()
    hit = torch.zeros_like(t, dtype=torch.bool)
    idx = torch.nonzero(t_near < t_far).squeeze(-1)  # the rays in the working set  [k]
    o, d, tk, far = origins[idx], directions[idx], t[idx], t_far[idx]  # compacted working set
    run = torch.ones_like(tk, dtype=torch.bool)  # still marching
    hk = torch.zeros_like(run)
    for _ in range(max_steps):
        if idx.numel() == 0:
            break
        s = sdf(o + tk[:, None] * d)  # [k]
        done = run & (s < eps)
        tk = torch.where(run, tk + torch.where(done, s, s.clamp(min=min_step)), tk)
        hk |= done
        run &= ~done & (tk < far)
        n_run = int(run.sum())
        if n_run < len(run) // 2 or n_run == 0:  # compact the working set (cheaper than gathering every step)
            t[idx], hit[idx] = tk, hk
            idx, o, d, tk, far = idx[run], o[run], d[run], tk[run], far[run]
            hk = torch.zeros_like(tk, dtype=torch.bool)
            run = torch.ones_like(hk)
    t[idx], hit[idx] = tk, hk | hit[idx]
    idx = torch.nonzero(hit).squeeze(-1)
    for _ in range(refine):
        t[idx] = t[idx] + sdf(origins[idx] + t[idx, None] * directions[idx])
    return t, hit


def ray_sphere(origins: Tensor, directions: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [n] of unit rays through the sphere |x| = radius (t_near >= t_far: miss)."""
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    disc = b * b - c
    root = torch.sqrt(disc.clamp(min=0.0))
    t0, t1 = (-b - root).clamp(min=0.0), -b + root
    t1 = torch.where(disc > 0, t1, torch.zeros_like(t1))
    return t0, t1


@dataclass
class Hits:
    """First surface hits of a set of rays."""

    points: Tensor  # [n, 3] (undefined where not hit)
    hit: Tensor  # [n] bool
    zdepth: Tensor  # [n] depth along the camera's optical axis (inf where not hit)


def cast(
    parts: list[Part],
    cameras: Cameras,
    cam_idx: Tensor,
    y: Tensor,
    x: Tensor,
    bound: float | None,
    far: float,
    eps: float,
    min_step: float = 0.0,
    refine: int = 0,
    max_steps: int = 300,
    chunk: int = 1 << 19,
) -> Hits:
    """Trace the rays through pixels ``(y, x)`` of views ``cam_idx`` (integer y, x: pixel centres).

    ``bound``: radius of a sphere around the origin that holds the whole scene (rays start where
    they enter it); None traces from the camera up to ``far``. The cameras' dtype sets the precision.
    """
    out_p, out_h, out_z = [], [], []
    for s in range(0, cam_idx.shape[0], chunk):
        rays = generate_rays(cameras, cam_idx[s : s + chunk], y[s : s + chunk], x[s : s + chunk])
        o, d = rays.origins, rays.directions  # [k, 3]
        if bound is None:
            t0, t1 = torch.zeros_like(o[:, 0]), torch.full_like(o[:, 0], far)
        else:
            t0, t1 = ray_sphere(o, d, bound)
        t, hit = sphere_trace(lambda p: union_sdf(parts, p), o, d, t0, t1, eps, max_steps, min_step, refine)
        forward = cameras.c2w[rays.camera_indices[:, 0], :, 2]  # [k, 3]
        z = t * (d * forward).sum(-1)
        out_p.append(o + t[:, None] * d)
        out_h.append(hit)
        out_z.append(torch.where(hit, z, torch.full_like(z, float("inf"))))
    return Hits(torch.cat(out_p), torch.cat(out_h), torch.cat(out_z))


def _with_dtype(cameras: Cameras, dtype: torch.dtype) -> Cameras:
    """The same cameras with floating fields in ``dtype`` (which sets the tracing precision)."""
    c = cameras
    f = lambda t: t.to(dtype)  # noqa: E731
    dist = None if c.distortion is None else f(c.distortion)
    skew = None if c.skew is None else f(c.skew)
    return replace(c, fx=f(c.fx), fy=f(c.fy), cx=f(c.cx), cy=f(c.cy), c2w=f(c.c2w), distortion=dist, skew=skew)


@dataclass
class Rendering:
    rgb: Tensor  # [v, h, w, 3] float in [0, 1], straight (not premultiplied) colour, 0 where empty
    alpha: Tensor  # [v, h, w] pixel coverage in [0, 1]
    zdepth: Tensor  # [v, h, w] depth along the optical axis at the pixel centre (inf: no hit)
    hit: Tensor  # [v, h, w] bool: the ray through the pixel centre hits the scene


def _edges(hit: Tensor, part: Tensor, zdepth: Tensor) -> Tensor:
    """Pixels [v, h, w] on either side of a silhouette, a part boundary or a depth jump (4-neighbours)."""
    z = torch.where(hit, zdepth, torch.full_like(zdepth, 1e6))
    edge = torch.zeros_like(hit)
    for dim in (1, 2):  # rows, then columns: compare each pixel with the next one
        n = hit.shape[dim] - 1
        pairs = [(t.narrow(dim, 0, n), t.narrow(dim, 1, n)) for t in (hit, part, z)]
        (ha, hb), (pa, pb), (za, zb) = pairs
        jump = (ha != hb) | (pa != pb) | (torch.maximum(za, zb) > 1.03 * torch.minimum(za, zb))
        edge.narrow(dim, 0, n).logical_or_(jump)
        edge.narrow(dim, 1, n).logical_or_(jump)
    return edge


def render_views(
    parts: list[Part], cameras: Cameras, bound: float | None, far: float, supersample: int = 2
) -> Rendering:
    """Render every view of ``cameras`` (all the same size) in float32.

    Pixels on silhouettes, part boundaries and depth jumps are re-traced with ``supersample`` ^ 2
    sub-pixel rays (light antialiasing): their alpha is the covered fraction, their colour the mean
    over covered sub-rays. Other pixels use the ray through their centre.
    """
    cams = _with_dtype(cameras, torch.float32)
    v, h, w = len(cams), int(cams.height[0]), int(cams.width[0])
    ci, yy, xx = torch.meshgrid(torch.arange(v), torch.arange(h), torch.arange(w), indexing="ij")
    # 1e-3 (canonical units) is under 1/20 pixel at these sizes; hits are then refined onto the surface
    hits = cast(parts, cams, ci.reshape(-1), yy.reshape(-1), xx.reshape(-1), bound, far, 1e-3, 2e-3, refine=3)
    rgb = torch.zeros(v * h * w, 3)
    part = torch.full((v * h * w,), -1, dtype=torch.int64)
    rgb[hits.hit], part[hits.hit] = shade(parts, hits.points[hits.hit], 1e-3)
    alpha = hits.hit.float()
    hit, zdepth = hits.hit.reshape(v, h, w), hits.zdepth.reshape(v, h, w)

    if supersample > 1:
        edge = _edges(hit, part.reshape(v, h, w), zdepth).reshape(-1)  # [v*h*w]
        sel = torch.nonzero(edge).squeeze(-1)  # [k]
        offs = (torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample  # sub-pixel centres
        oy, ox = torch.meshgrid(offs, offs, indexing="ij")
        oy, ox = oy.reshape(-1), ox.reshape(-1)  # [s*s]
        ss = oy.numel()
        sub_y = (yy.reshape(-1)[sel, None].float() + oy).reshape(-1)  # [k*s*s]
        sub_x = (xx.reshape(-1)[sel, None].float() + ox).reshape(-1)
        sub_c = ci.reshape(-1)[sel, None].expand(-1, ss).reshape(-1)
        sub = cast(parts, cams, sub_c, sub_y, sub_x, bound, far, 1e-3, 2e-3, refine=3)
        sub_rgb = torch.zeros(sub_c.shape[0], 3)
        sub_rgb[sub.hit] = shade(parts, sub.points[sub.hit], 1e-3)[0]
        cover = sub.hit.float().reshape(-1, ss)  # [k, s*s]
        total = sub_rgb.reshape(-1, ss, 3).sum(1)  # [k, 3]
        n_cov = cover.sum(-1)
        alpha[sel] = n_cov / ss
        rgb[sel] = torch.where(n_cov[:, None] > 0, total / n_cov.clamp(min=1)[:, None], torch.zeros_like(total))
    return Rendering(rgb.reshape(v, h, w, 3).clamp(0, 1), alpha.reshape(v, h, w), zdepth, hit)


def correspondences(
    parts: list[Part],
    cameras: Cameras,
    views: list[int],
    rendering: Rendering,
    per_view: int,
    bound: float | None,
    far: float,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Surface points seen in fully covered pixels, traced in float64 to within 1e-10 of the surface.

    Picks up to ``per_view`` pixels of alpha 1 in each of ``views``: the first half are seen through
    the pixel centres (pixel (y, x) at (x + 0.5, y + 0.5)), the rest through random points inside
    the pixels. Returns view indices [m], continuous pixel coordinates ``xy`` [m, 2] and the world
    points [m, 3] (canonical frame), all float64.
    """
    cams = _with_dtype(cameras, torch.float64)
    cis, ys, xs = [], [], []
    for vi in views:
        yx = torch.nonzero(rendering.alpha[vi] >= 1.0)  # [k, 2]
        pick = torch.randperm(len(yx), generator=gen)[:per_view]
        cis.append(torch.full((len(pick),), vi, dtype=torch.int64))
        ys.append(yx[pick, 0])
        xs.append(yx[pick, 1])
    ci, y, x = torch.cat(cis), torch.cat(ys), torch.cat(xs)
    offset = torch.rand(len(ci), 2, generator=gen, dtype=torch.float64)  # [m, 2] inside the pixel
    offset[: len(ci) // 2] = 0.5  # pixel centres
    xy = torch.stack([x.double(), y.double()], -1) + offset  # [m, 2]
    hits = cast(parts, cams, ci, xy[:, 1], xy[:, 0], bound, far, eps=1e-7, min_step=1e-6, refine=100)
    ok = hits.hit & (union_sdf(parts, hits.points).abs() < 1e-10)
    return ci[ok], xy[ok], hits.points[ok]
