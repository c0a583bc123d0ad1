"""Write a Nerfies / HyperNeRF capture (the layout ``nerfies.py`` reads) from nerflite cameras.

The inverse of ``nerfies.opencv_camera``, in one place: ``orientation = R^T`` of the OpenCV
camera-to-world ``[R | t]``, ``position = t``, ``focal_length = fx``, ``pixel_aspect_ratio = fy / fx``,
``principal_point = (cx, cy)`` (pixel centres at +0.5 in both conventions), ``skew``,
``radial_distortion = (k1, k2, k3)``, ``tangential_distortion = (p1, p2)``, ``image_size = (w, h)``.
Cameras are given in the capture's own world (before ``scene.json``'s ``(x - center) * scale``).
The synthetic generator and ``python -m nerflite.data.process VIDEO --dynamic`` write through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerflite.cameras import Cameras


def camera_json(cameras: Cameras, i: int) -> dict:
    """View ``i`` of ``cameras`` (OpenCV c2w, world frame) as a Nerfies camera file."""
    c2w = cameras.c2w[i].double().numpy()
    fx, fy = float(cameras.fx[i]), float(cameras.fy[i])
    d = np.zeros(6) if cameras.distortion is None else cameras.distortion[i].double().numpy()
    if (cameras.fisheye is not None and bool(cameras.fisheye[i])) or abs(d[3]) > 0:
        raise ValueError(f"view {i}: Nerfies cameras have no fisheye model nor k4")
    return {
        "orientation": c2w[:, :3].T.tolist(),
        "position": c2w[:, 3].tolist(),
        "focal_length": fx,
        "principal_point": [float(cameras.cx[i]), float(cameras.cy[i])],
        "skew": 0.0 if cameras.skew is None else float(cameras.skew[i]),
        "pixel_aspect_ratio": fy / fx,
        "radial_distortion": [float(d[0]), float(d[1]), float(d[2])],
        "tangential_distortion": [float(d[4]), float(d[5])],
        "image_size": [int(cameras.width[i]), int(cameras.height[i])],
    }


@dataclass
class Capture:
    """What a capture records besides its cameras and photos (one entry per item)."""

    ids: list[str]  # item names: camera/<id>.json, rgb/<F>x/<id>.png
    time_ids: list[int]  # each item's moment (any increasing clock: frame index, ...)
    train_ids: list[str]
    val_ids: list[str]
    center: list[float]  # scene.json: the scene frame is (x - center) * scale
    scale: float
    near: float  # scene units
    far: float
    appearance_ids: list[int] | None = None  # default: the time ids
    camera_ids: list[int] | None = None  # default: 0
    extra_scene: dict = field(default_factory=dict)  # more scene.json keys (e.g. "bbox")


def write_capture(out: Path, cameras: Cameras, capture: Capture) -> None:
    """``dataset.json``, ``metadata.json``, ``scene.json`` and ``camera/<id>.json``; the photos are the
    caller's (``rgb/<F>x/<id>.png``)."""
    c = capture
    n = len(c.ids)
    if len(cameras) != n or len(c.time_ids) != n:
        raise ValueError(f"{n} ids, {len(cameras)} cameras and {len(c.time_ids)} time ids")
    out = Path(out)
    (out / "camera").mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(c.ids):
        (out / "camera" / f"{item}.json").write_text(json.dumps(camera_json(cameras, i), indent=2))
    appearance = c.time_ids if c.appearance_ids is None else c.appearance_ids
    cams = [0] * n if c.camera_ids is None else c.camera_ids
    metadata = {item: {"time_id": int(t), "warp_id": int(t), "appearance_id": int(a), "camera_id": int(k)}
                for item, t, a, k in zip(c.ids, c.time_ids, appearance, cams)}
    dataset = {"count": n, "num_exemplars": len(c.train_ids), "ids": c.ids, "train_ids": c.train_ids,
               "val_ids": c.val_ids}
    scene = {"center": [float(v) for v in c.center], "scale": float(c.scale), "near": float(c.near),
             "far": float(c.far), **c.extra_scene}
    for name, data in (("metadata.json", metadata), ("dataset.json", dataset), ("scene.json", scene)):
        (out / name).write_text(json.dumps(data, indent=2))
