"""``process --dynamic``: the posed frames of a moving scene, written as a Nerfies / HyperNeRF capture.

Structure from motion can only place cameras against what does not move: a moving scene needs a
static background filling a good part of every frame (as in the HyperNeRF captures: a person or an
object moving in a still room), otherwise the moving parts' features pull the poses wrong or
nothing registers. The moving parts' sparse points are junk either way; they only feed the bounds.

After the usual pipeline has written COLMAP's layout, ``to_nerfies`` turns the folder into the
capture ``nerflite.data.parsers.nerfies`` reads (so the folder holds one format only):

* ``rgb/1x/`` is ``images/``, ``rgb/2x|4x|8x/`` are ``images_2|4|8/``; each frame's id is its file
  name without extension; the COLMAP model moves to ``colmap/model/``.
* ``metadata.json``: ``time_id`` = the frame's index in the video (photos: its position in name
  order), so the parser's time is the frame's timestamp normalised to [0, 1] over the kept frames
  (a constant frame rate assumed); ``appearance_id`` = the time id (one per frame);
  ``camera_id`` = COLMAP's camera id.
* ``camera/<id>.json``: each registered frame's camera from the model (``nerfies_write``: lens kept;
  fisheye models have no Nerfies form, hence ``--dynamic`` refuses them up front).
* ``dataset.json``: the registered frames in time order, all in ``train_ids``; ``val_ids`` empty,
  so the parser holds out every ``dataset.holdout``-th frame for evaluation.
* ``scene.json``: HyperNeRF's recipe on the sparse points (inliers of the 1st-99th percentile box):
  ``center`` the middle of their 10th-90th percentile box, ``scale`` one over its diagonal;
  ``near`` / ``far`` the extremes of every view's 1st / 99th percentile point distance (x 0.9 / x 1.1),
  in scene units.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers.colmap import camera_intrinsics, colmap_c2w, observed_points
from nerflite.data.parsers.colmap_frame import fill_bounds, inlier_points, view_bounds
from nerflite.data.parsers.common import make_cameras
from nerflite.data.parsers.nerfies_write import Capture, write_capture
from nerflite.data.scene import DatasetError

FISHEYE_MODELS = ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "FOV", "THIN_PRISM_FISHEYE")


def frame_time_ids(kind: str, picked: list, names: list[str], photos: list[Path] | None = None) -> dict[str, int]:
    """Each kept frame's clock, by the name it was written under: a video frame's index in the video
    (``picked``: (index, rgb) pairs), a photo's position in its folder's name order (``photos``)."""
    if kind == "video":
        return {name: int(i) for name, (i, _) in zip(names, picked)}
    order = {p: k for k, p in enumerate(photos or picked)}
    return {name: order[p] for name, p in zip(names, picked)}


def scene_frame(xyz: np.ndarray) -> tuple[np.ndarray, float]:
    """(center [3], scale) from sparse points [m, 3]: the middle of the inliers' 10th-90th percentile
    box, and one over its diagonal."""
    pts = xyz[inlier_points(xyz)] if len(xyz) else xyz
    if len(pts) < 3:
        raise DatasetError("sparse/0", "too few sparse points to frame the scene")
    lo, hi = np.percentile(pts, 10, axis=0), np.percentile(pts, 90, axis=0)
    diag = float(np.linalg.norm(hi - lo))
    return (lo + hi) / 2, 1.0 / diag if diag > 0 else 1.0


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))


def to_nerfies(out: Path, time_ids: dict[str, int]) -> dict:
    """Turn the COLMAP layout in ``out`` into a Nerfies capture (module docstring); returns a summary."""
    model_dir = out / "sparse" / "0"
    model = cio.read_model(model_dir)
    images = sorted(model.images.values(), key=lambda im: (time_ids.get(im.name, 1 << 62), im.name))
    missing = [im.name for im in images if im.name not in time_ids]
    if missing:
        raise DatasetError(model_dir, f"registered image {missing[0]} is not one of the kept frames")
    ids = [Path(im.name).stem for im in images]
    if len(set(ids)) != len(ids):
        raise DatasetError(out / "images", "two frames share a name up to the extension")
    c2w = colmap_c2w(np.stack([im.qvec for im in images]), np.stack([im.tvec for im in images]))  # [n, 3, 4]
    cams_file = model_dir / f"cameras{cio.model_extension(model_dir)}"
    intr = [camera_intrinsics(model.cameras[im.camera_id], cams_file) for im in images]
    if any(fish for *_, fish in intr):
        raise DatasetError(model_dir, "a fisheye camera has no Nerfies form: process with --undistort")
    cams = [model.cameras[im.camera_id] for im in images]
    cameras = make_cameras([i[0] for i in intr], [i[1] for i in intr], [i[2] for i in intr], [i[3] for i in intr],
                           [c.width for c in cams], [c.height for c in cams], c2w, np.stack([i[4] for i in intr]))
    cameras = replace(cameras, c2w=torch.as_tensor(c2w))  # float64: the files keep COLMAP's precision

    xyz = model.points.xyz
    center, scale = scene_frame(xyz)
    _, dist = view_bounds(c2w, observed_points(images, model.points.ids), xyz)
    spread = float(np.linalg.norm(c2w[:, :, 3] - c2w[:, :, 3].mean(0), axis=1).max()) or 1.0
    dist = fill_bounds(dist, (0.1 * spread, 10.0 * spread))
    near, far = float(dist[:, 0].min()) * scale, float(dist[:, 1].max()) * scale
    times = [time_ids[im.name] for im in images]
    write_capture(out, cameras, Capture(
        ids=ids, time_ids=times, train_ids=ids, val_ids=[], center=center.tolist(), scale=scale, near=near, far=far,
        appearance_ids=times, camera_ids=[im.camera_id for im in images],
    ))
    _move(out / "images", out / "rgb" / "1x")
    for f in (2, 4, 8):
        _move(out / f"images_{f}", out / "rgb" / f"{f}x")
    _move(model_dir, out / "colmap" / "model")
    shutil.rmtree(out / "sparse", ignore_errors=True)
    return {"format": "nerfies", "frames": len(ids), "first_time_id": min(times), "last_time_id": max(times),
            "center": [round(float(v), 6) for v in center], "scale": round(scale, 6),
            "near": round(near, 6), "far": round(far, 6)}
