"""Moving synthetic scenes (``motion.py``) written as D-NeRF and Nerfies / HyperNeRF captures.

Monocular, as real dynamic captures are: every frame is another moment seen by another camera.

* ``dnerf``: Blender files with a ``time`` per frame. ``views`` training frames at moments
  ``i / (views - 1)`` from cameras orbiting the scene as time goes on; val and test frames (``max(2,
  views // 8)`` each) at moments of their own between those, from cameras of their own. RGBA PNGs
  (alpha = coverage), the canonical frame as world.
* ``nerfies``: ``views`` frames in time order (``time_id`` k), every 8th (k = 4, 12, ...) a val frame;
  4:3 images with a lens: fy = 1.02 fx (pixel aspect), skew 0.6 px, radial and tangential
  distortion; ``rgb/1x/``, ``rgb/2x/``, ``rgb/4x/`` on black. The capture's world is the canonical
  frame scaled by 2 and moved by (1.5, -0.5, 0.8); ``scene.json`` undoes it, so the parsed scene
  frame is the canonical one.

Ground truth: ``gt_correspondences.npz`` as for the static formats (``image``, ``xy``, ``points`` in
the capture's world, ``image_size``) plus ``time`` [m], each point's moment; the geometry at any
moment is ``motion.moving_sdf`` / ``motion.moving_surface`` (canonical frame).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import torch
from torch import Tensor

from nerflite.cameras import Cameras
from nerflite.data.parsers.nerfies_write import Capture, write_capture
from nerflite.data.synthetic import rigs, writers
from nerflite.data.synthetic.motion import moving_parts
from nerflite.data.synthetic.render import Rendering, correspondences, render_views

DYNAMIC_FORMATS = ("dnerf", "nerfies")
DEFAULT_VIEWS = {"dnerf": 32, "nerfies": 36}
IMAGE_FOLDERS = {"dnerf": ("train", "val", "test"), "nerfies": ("rgb", "camera")}
NERFIES_SCALE, NERFIES_OFFSET = 2.0, (1.5, -0.5, 0.8)  # capture world = canonical * scale + offset
NERFIES_VAL_EVERY = 8  # frames 4, 12, 20, ... are val frames
NERFIES_FACTORS = (1, 2, 4)  # rgb/<F>x/ folders written (when at least 8 px wide)
CORR_PER_VIEW = 150


def render_moments(cams: Cameras, times: list[float]) -> Rendering:
    """Every view of ``cams`` rendered at its own moment (float32 tracing, as for static scenes)."""
    parts = [render_views(moving_parts(t), cams[i : i + 1], bound=1.0, far=0.0) for i, t in enumerate(times)]
    return Rendering(*(torch.cat([getattr(r, k) for r in parts]) for k in ("rgb", "alpha", "zdepth", "hit")))


def moment_correspondences(cams: Cameras, times: list[float], rendering: Rendering, views: list[int],
                           gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Surface points seen in ``views``, each traced in the scene at that view's moment: view index
    [m], continuous pixel ``xy`` [m, 2], canonical points [m, 3], moments [m] (float64)."""
    out = [], [], [], []
    for v in views:
        one = Rendering(*(getattr(rendering, k)[v : v + 1] for k in ("rgb", "alpha", "zdepth", "hit")))
        ci, xy, pts = correspondences(moving_parts(times[v]), cams[v : v + 1], [0], one, CORR_PER_VIEW, 1.0, 0.0, gen)
        for acc, x in zip(out, (ci + v, xy, pts, torch.full((len(ci),), float(times[v]), dtype=torch.float64))):
            acc.append(x)
    return tuple(torch.cat(a) for a in out)


def _times(n: int, offset: float = 0.0) -> list[float]:
    """Moments of ``n`` frames: evenly over [0, 1] (offset 0), or inside the n cells of [0, 1]."""
    if offset == 0.0:
        return [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
    return [(i + offset) / n for i in range(n)]


def write_dnerf(out: Path, views: int, size: int, gen: torch.Generator) -> None:
    n_hold = max(2, views // 8)
    split_times = {"train": _times(views), "val": _times(n_hold, 0.5), "test": _times(n_hold, 0.25)}
    c2w = torch.cat([rigs.orbit(len(t), 4.0, (10.0, 65.0), gen) for t in split_times.values()])
    f = 0.5 * size / math.tan(0.275)  # camera_angle_x = 0.55 rad
    cams = rigs.intrinsics(len(c2w), size, size, f, f, size / 2, size / 2, c2w)
    times = [t for ts in split_times.values() for t in ts]
    r = render_moments(cams, times)
    rgba = writers.to_uint8(torch.cat([r.rgb, r.alpha[..., None]], -1))
    names, start = [], 0
    for split, ts in split_times.items():
        k = len(ts)
        names += writers.write_blender_split(out, split, cams[start : start + k], rgba[start : start + k], times=ts)
        start += k
    ci, xy, pts, t = moment_correspondences(cams, times, r, [0, views // 2, views + n_hold], gen)
    size_wh = torch.stack([cams.width[ci], cams.height[ci]], -1)
    writers.write_correspondences(out / "gt_correspondences.npz", [names[i] for i in ci.tolist()], xy, pts,
                                  size_wh, time=t)


def nerfies_cameras(views: int, size: int, gen: torch.Generator) -> Cameras:
    """Orbiting cameras (canonical frame) with Nerfies' terms: pixel aspect, skew and a lens."""
    w, h = size, max(2, 2 * round(size * 0.375))
    c2w = rigs.orbit(views, 3.2, (15.0, 50.0), gen)
    cams = rigs.intrinsics(views, w, h, 1.1 * w, 1.122 * w, w / 2 + 0.7, h / 2 - 0.4, c2w)
    lens = torch.tensor([-0.04, 0.01, 0.002, 0.0, 0.0015, -0.001], dtype=torch.float64)  # k1 k2 k3 k4 p1 p2
    return replace(cams, skew=torch.full((views,), 0.6, dtype=torch.float64), distortion=lens.repeat(views, 1))


def write_nerfies(out: Path, views: int, size: int, gen: torch.Generator) -> None:
    cams = nerfies_cameras(views, size, gen)
    times = _times(views)
    r = render_moments(cams, times)
    rgb = writers.to_uint8(r.rgb * r.alpha[..., None])  # on black
    ids = [f"{k:06d}" for k in range(views)]
    for f in NERFIES_FACTORS:
        if size // f < 8 and f > 1:
            continue
        for item, img in zip(ids, rgb):
            h, w = img.shape[:2]
            small = img if f == 1 else cv2.resize(img, (round(w / f), round(h / f)), interpolation=cv2.INTER_AREA)
            writers.write_png(out / "rgb" / f"{f}x" / f"{item}.png", small)
    offset = torch.tensor(NERFIES_OFFSET, dtype=torch.float64)
    position = NERFIES_SCALE * cams.c2w[:, :, 3] + offset  # [n, 3] in the capture's world
    world = replace(cams, c2w=torch.cat([cams.c2w[:, :, :3], position[:, :, None]], -1))
    val = [item for k, item in enumerate(ids) if k % NERFIES_VAL_EVERY == NERFIES_VAL_EVERY // 2]
    half = 0.85 * NERFIES_SCALE
    capture = Capture(ids=ids, time_ids=list(range(views)), train_ids=[i for i in ids if i not in val], val_ids=val,
                      center=offset.tolist(), scale=1.0 / NERFIES_SCALE, near=2.0, far=4.5,
                      extra_scene={"bbox": [(offset - half).tolist(), (offset + half).tolist()]})
    write_capture(out, world, capture)
    ci, xy, pts, t = moment_correspondences(cams, times, r, sorted({0, views // 3, views - 1}), gen)
    names = [f"rgb/1x/{ids[i]}.png" for i in ci.tolist()]
    size_wh = torch.stack([cams.width[ci], cams.height[ci]], -1)
    writers.write_correspondences(out / "gt_correspondences.npz", names, xy, NERFIES_SCALE * pts + offset, size_wh,
                                  time=t)


def write_dynamic(format: str, out: Path, views: int, size: int, gen: torch.Generator) -> None:
    """Write the moving scene as a ``format`` capture (``DYNAMIC_FORMATS``) into ``out``."""
    if format == "dnerf":
        write_dnerf(out, views, size, gen)
    else:
        write_nerfies(out, views, size, gen)
