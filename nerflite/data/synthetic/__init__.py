"""Synthetic datasets with exactly known geometry, in the Blender, LLFF and NeuS/DTU formats, and
moving ones in the D-NeRF and Nerfies formats (``dynamic.py``, ``motion.py``).

``generate(format, out)`` renders a small textured analytic scene (a checkered box, a striped
sphere sunk into it, a banded torus; plus a wall behind them for the forward-facing LLFF scene) by
sphere tracing, and writes a dataset exactly as that format's users meet it, plus ground truth:

* ``gt_points.ply``: points uniform on the true surface, in the dataset's own world frame.
* ``gt_correspondences.npz``: for a few views, pixel coordinates (nerflite's continuous
  convention, pixel centres at +0.5) of surface hits and their world points (dataset frame).

The scene is modelled in a canonical frame (z up, object within 0.85 of the origin); each format
has its own world frame (``file_frame``): Blender keeps the canonical one, LLFF applies a rigid
motion and a scale (so recentring and rescaling matter), NeuS a scale and an offset (so
``scale_mat`` is not trivial). See docs/synthetic.md.
"""

from __future__ import annotations

import math
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerflite.cameras import Cameras, generate_rays
from nerflite.data.synthetic import dynamic, rigs, writers
from nerflite.data.synthetic.render import correspondences, render_views
from nerflite.data.synthetic.shapes import Part, object_parts, sample_surface, wall_part

FORMATS = ("blender", "llff", "neus")  # static scenes (gt_points.ply); moving ones: DYNAMIC_FORMATS
DYNAMIC_FORMATS = dynamic.DYNAMIC_FORMATS  # ("dnerf", "nerfies"): the moving scene of motion.py
DEFAULT_VIEWS = {
    "blender": 32,
    "llff": 20,
    "neus": 32,
    **dynamic.DEFAULT_VIEWS,
}  # blender, dnerf: training views (val, test: views // 8 each)
DEFAULT_SIZE = 80  # image width in pixels
# ground-truth surface points, uniform over the whole surface (LLFF: about 1/7 of them on the object)
N_POINTS = {"blender": 20000, "llff": 60000, "neus": 20000}
IMAGE_FOLDERS = {"blender": ("train", "val", "test"), "llff": ("images", "images_2"), "neus": ("image", "mask"),
                 **dynamic.IMAGE_FOLDERS}
CORR_PER_VIEW = 200  # ground-truth correspondences per chosen view
WALL_Y = 1.4  # LLFF: the wall's front face (canonical y)
LLFF_DISTANCE = 3.2  # LLFF: cameras in the plane y = -LLFF_DISTANCE


@dataclass
class Similarity:
    """x_file = scale * rotation @ x_canonical + translation."""

    scale: float
    rotation: Tensor  # [3, 3] float64
    translation: Tensor  # [3] float64

    def points(self, p: Tensor) -> Tensor:
        return self.scale * p.double() @ self.rotation.T + self.translation  # [m, 3]

    def vectors(self, v: Tensor) -> Tensor:
        return v.double() @ self.rotation.T

    def cameras(self, cams: Cameras) -> Cameras:
        c2w = cams.c2w.double()
        R = self.rotation @ c2w[:, :, :3]
        t = self.points(c2w[:, :, 3])
        return replace(cams, c2w=torch.cat([R, t[:, :, None]], -1))

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation.numpy()
        m[:3, 3] = self.translation.numpy()
        return m


def _axis_angle(axis: tuple, angle: float) -> Tensor:
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / torch.linalg.norm(a)
    K = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def file_frame(format: str) -> Similarity:
    """The dataset world frame of each format, relative to the canonical frame."""
    if format == "blender":
        return Similarity(1.0, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    if format == "llff":
        return Similarity(1.7, _axis_angle((1.0, 2.0, 3.0), 0.6), torch.tensor([0.8, -2.0, 0.5], dtype=torch.float64))
    if format == "neus":
        return Similarity(2.5, torch.eye(3, dtype=torch.float64), torch.tensor([0.6, -0.4, 1.3], dtype=torch.float64))
    raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def _llff_wall(cams: Cameras) -> Part:
    """A wall just larger than the union of the views' footprints on the plane y = WALL_Y."""
    n = len(cams)
    w, h = float(cams.width[0]), float(cams.height[0])
    cx = torch.tensor([0.0, w, 0.0, w], dtype=torch.float64).repeat(n)
    cy = torch.tensor([0.0, 0.0, h, h], dtype=torch.float64).repeat(n)
    rays = generate_rays(cams, torch.arange(n).repeat_interleave(4), cy, cx)
    t = (WALL_Y - rays.origins[:, 1]) / rays.directions[:, 1]
    hit = rays.origins + t[:, None] * rays.directions  # [4n, 3]
    return wall_part(WALL_Y, float(hit[:, 0].abs().max()) + 0.3, float(hit[:, 2].abs().max()) + 0.3)


def _rgba(r) -> np.ndarray:
    return writers.to_uint8(torch.cat([r.rgb, r.alpha[..., None]], -1))


@contextmanager
def _one_thread():
    """Run torch single-threaded inside the block, restoring the caller's setting afterwards.

    Tracing runs thousands of small elementwise kernels; intra-op threads only add synchronisation,
    and on a busy 2-core machine waiting for a descheduled thread made generation ten times slower
    (about 1 s for a default scene on one thread, 10 s on two, measured under load).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate(format: str, out: str | Path, views: int | None = None, size: int | None = None, seed: int = 0) -> Path:
    """Render the synthetic scene and write it as a ``format`` dataset in ``out``; returns ``out``.

    ``views``: number of views (Blender, D-NeRF: training views, plus views // 8 (at least 2) for each
    of val and test); ``size``: image width in pixels; ``seed``: camera jitter and sample draws.
    ``dnerf`` and ``nerfies`` write the moving scene (``motion.py``), one moment per frame.
    """
    with _one_thread():
        return _write(format, out, views, size, seed)


def _write(format: str, out: str | Path, views: int | None, size: int | None, seed: int) -> Path:
    if format not in FORMATS + DYNAMIC_FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS + DYNAMIC_FORMATS}")
    views = DEFAULT_VIEWS[format] if views is None else int(views)
    size = DEFAULT_SIZE if size is None else int(size)
    if views < 1 or size < 8:
        raise ValueError(f"need views >= 1 and size >= 8, got views={views}, size={size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in IMAGE_FOLDERS[format]:  # images of an earlier run would not match the new cameras
        shutil.rmtree(out / folder, ignore_errors=True)
    gen = torch.Generator().manual_seed(seed)
    if format in DYNAMIC_FORMATS:
        dynamic.write_dynamic(format, out, views, size, gen)
        return out
    frame = file_frame(format)
    parts = object_parts()
    corr_views: list[int]
    image_names: list[str]

    if format == "blender":
        n_hold = max(2, views // 8)
        counts = {"train": views, "val": n_hold, "test": n_hold}
        c2w = torch.cat([rigs.orbit(k, 4.0, (10.0, 65.0), gen) for k in counts.values()])
        f = 0.5 * size / math.tan(0.275)  # camera_angle_x = 0.55 rad
        cams = rigs.intrinsics(len(c2w), size, size, f, f, size / 2, size / 2, c2w)
        r = render_views(parts, cams, bound=1.0, far=0.0)
        rgba = _rgba(r)
        image_names, start = [], 0
        for split, k in counts.items():
            image_names += writers.write_blender_split(
                out, split, frame.cameras(cams[start : start + k]), rgba[start : start + k]
            )
            start += k
        corr_views = [0, 1, views + n_hold]  # two training views and the first test view
    elif format == "llff":
        w, h = _even(size), _even(size * 0.75)
        c2w = rigs.forward_facing(views, LLFF_DISTANCE, (0.45, 0.3), WALL_Y, gen)
        cams = rigs.intrinsics(views, w, h, 1.2 * w, 1.2 * w, w / 2, h / 2, c2w)
        parts = parts + [_llff_wall(cams)]
        r = render_views(parts, cams, bound=None, far=4.0 * (LLFF_DISTANCE + WALL_Y))
        if not bool(r.hit.all()):
            raise RuntimeError("llff: some pixels see no surface (the wall is too small)")
        z = r.zdepth.reshape(views, -1) * frame.scale
        image_names = writers.write_llff(
            out, frame.cameras(cams), writers.to_uint8(r.rgb), z.min(1).values, z.max(1).values
        )
        corr_views = sorted({0, views // 2, views - 1})
    else:  # neus
        w, h = _even(size), _even(size * 0.75)
        c2w = rigs.orbit(views, 3.0, (5.0, 60.0), gen)
        cams = rigs.intrinsics(views, w, h, 1.15 * w, 1.16 * w, w / 2 + 0.8, h / 2 - 0.6, c2w)
        r = render_views(parts, cams, bound=1.0, far=0.0)
        rgb = writers.to_uint8(r.rgb * r.alpha[..., None])  # on a black background
        mask = np.where(r.alpha.numpy() >= 0.5, 255, 0).astype(np.uint8)
        image_names = writers.write_neus(out, frame.cameras(cams), rgb, mask, frame.matrix())
        corr_views = sorted({0, views // 3, (2 * views) // 3})

    # ground truth, in the dataset's world frame
    pts, nrm, part = sample_surface(parts, N_POINTS[format], gen)  # uniform over the whole surface
    writers.write_points_ply(
        out / "gt_points.ply", frame.points(pts), frame.vectors(nrm), part, [p.name for p in parts]
    )
    ci, xy, world = correspondences(
        parts,
        cams,
        corr_views,
        r,
        CORR_PER_VIEW,
        bound=None if format == "llff" else 1.0,
        far=4.0 * (LLFF_DISTANCE + WALL_Y),
        gen=gen,
    )
    names = [image_names[i] for i in ci.tolist()]
    size_wh = torch.stack([cams.width[ci], cams.height[ci]], -1)
    world = frame.points(world)
    if format == "llff":  # the same points in the half-size images
        names += [n.replace("images/", "images_2/") for n in names]
        xy, world, size_wh = (
            torch.cat([xy, xy / 2]),
            torch.cat([world, world]),
            torch.cat([size_wh, size_wh // 2]),
        )
    writers.write_correspondences(out / "gt_correspondences.npz", names, xy, world, size_wh)
    return out
