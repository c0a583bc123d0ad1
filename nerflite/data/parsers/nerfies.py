"""Nerfies / HyperNeRF captures (``dataset.format=nerfies``): a moving scene, one moment per photo.

```
capture/
  dataset.json        {"ids": [...], "train_ids": [...], "val_ids": [...]}
  metadata.json       {id: {"time_id" (or "warp_id"), "appearance_id", "camera_id"}, ...}
  scene.json          {"center": [3], "scale": s, "near": n, "far": f}
  camera/<id>.json    one camera per photo (below)
  rgb/1x/<id>.png     the photos; rgb/2x/, rgb/4x/ ... the same, 2, 4 ... times smaller
```

Camera files (Nerfies' ``Camera``): ``orientation`` [3x3] is the world-to-camera rotation (its
rows are the camera axes in the world), ``position`` [3] the camera centre; camera axes x right,
y down, z forward (OpenCV's). A point's normalised coordinates ``(u, v) = (x / z, y / z)`` of
``orientation @ (p - position)`` go through ``radial_distortion`` (k1, k2, k3) and
``tangential_distortion`` (p1, p2) exactly as OpenCV's radial-tangential model, then
``pixel = (focal_length * u_d + skew * v_d + principal_point_x,
focal_length * pixel_aspect_ratio * v_d + principal_point_y)``, pixel centres at +0.5, for images
of ``image_size`` [w, h]. So the conversion (``opencv_camera``, the one place) is
``c2w = [orientation^T | position]``, ``fx = focal_length``, ``fy = focal_length *
pixel_aspect_ratio``, ``cx, cy = principal_point``, ``Cameras.skew = skew``,
``Cameras.distortion = (k1, k2, k3, 0, p1, p2)``; lens and skew are applied to rays
(``nerflite.cameras``), the photos are used as captured.

* ``dataset.downscale=F`` reads ``rgb/Fx/`` when it exists, else the nearest finer folder, resized;
  intrinsics are scaled from ``image_size`` to the images as used (skew with the width).
* Scene frame (``scene.json``): ``x_scene = (x - center) * scale``; ``near`` and ``far`` are already
  scene units. ``metadata["world_from_scene"]`` maps back. The bounding sphere is centred at the
  origin and holds every view's frustum between near and far.
* Time: ``time_id`` (``warp_id`` in older captures) normalised over the capture, the earliest 0 and
  the latest 1 (``Scene.times``); ``appearance_id`` -> ``Scene.appearance_ids``; the raw ids stay in
  ``metadata["time_ids"]``, ``metadata["camera_ids"]``.
* Splits: ``train_ids`` / ``val_ids`` (test = val); without ``train_ids`` every ``dataset.holdout``-th
  photo is held out, likewise among ``train_ids`` when ``val_ids`` is empty.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.camera_paths import orbit_from_cameras
from nerflite.data.dynamic import normalised_times
from nerflite.data.images import image_size
from nerflite.data.parsers.common import IMAGE_EXTENSIONS, clean_rotations, holdout_splits, make_cameras, scaled_size
from nerflite.data.parsers.llff import frustum_corners
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(path, "file is missing") from None
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read file ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(path, "expected a JSON object")
    return data


def _array(d: dict, key: str, shape: tuple, path: Path, default=None) -> np.ndarray:
    """``d[key]`` as a finite float64 array of ``shape`` (``default`` when absent, if given)."""
    if key not in d or d[key] is None:
        if default is None:
            raise DatasetError(path, f"no '{key}'")
        return np.asarray(default, np.float64).reshape(shape)
    try:
        a = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(path, f"'{key}' is not numeric") from None
    if a.shape == shape:
        pass
    elif key == "radial_distortion" and a.shape in ((1,), (2,)):  # fewer radial terms: the rest are 0
        a = np.concatenate([a, np.zeros(3 - a.shape[0])])
    else:
        raise DatasetError(path, f"'{key}' must have shape {list(shape)}, got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise DatasetError(path, f"'{key}' is not finite")
    return a


def opencv_camera(cam: dict, path: Path) -> dict:
    """One Nerfies camera file in nerflite's convention: ``c2w`` [3, 4], ``fx, fy, cx, cy, skew``,
    ``distortion`` [6] (k1, k2, k3, k4 = 0, p1, p2) and ``size`` (w, h), all for ``image_size``."""
    if str(cam.get("projection_type", "perspective")).lower() != "perspective":
        raise DatasetError(path, f"projection_type {cam['projection_type']!r} is not supported (perspective only)")
    R = _array(cam, "orientation", (3, 3), path)  # world-to-camera
    if np.linalg.det(R) <= 0 or np.abs(R @ R.T - np.eye(3)).max() > 1e-2:
        raise DatasetError(path, "'orientation' is not a rotation matrix")
    f = float(_array(cam, "focal_length", (), path))
    aspect = float(_array(cam, "pixel_aspect_ratio", (), path, 1.0))
    pp = _array(cam, "principal_point", (2,), path)
    w, h = _array(cam, "image_size", (2,), path)
    if not (f > 0 and aspect > 0 and w >= 1 and h >= 1):
        raise DatasetError(path, f"focal_length {f}, pixel_aspect_ratio {aspect} and image_size [{w:g}, {h:g}] "
                                 "must be positive")
    k = _array(cam, "radial_distortion", (3,), path, [0.0, 0.0, 0.0])
    p = _array(cam, "tangential_distortion", (2,), path, [0.0, 0.0])
    c2w = np.concatenate([R.T, _array(cam, "position", (3,), path)[:, None]], axis=1)
    return {"c2w": c2w, "fx": f, "fy": f * aspect, "cx": pp[0], "cy": pp[1],
            "skew": float(_array(cam, "skew", (), path, 0.0)),
            "distortion": np.array([k[0], k[1], k[2], 0.0, p[0], p[1]]), "size": (int(round(w)), int(round(h)))}


def scale_folders(root: Path) -> dict[int, Path]:
    """``rgb/<F>x/`` folders by factor F."""
    rgb = root / "rgb"
    found = {}
    for d in rgb.iterdir() if rgb.is_dir() else []:
        m = re.fullmatch(r"(\d+)x", d.name)
        if m and d.is_dir() and int(m.group(1)) > 0:
            found[int(m.group(1))] = d
    return dict(sorted(found.items()))


def choose_scale(root: Path, downscale: float, notes: list[str]) -> tuple[Path, float]:
    """The ``rgb/<F>x`` folder to read for ``downscale`` and the resize still to apply."""
    folders = scale_folders(root)
    if not folders:
        raise DatasetError(root / "rgb", "image folders are missing (expected rgb/1x/, rgb/2x/, ...)")
    finer = [k for k in folders if k <= downscale + 1e-6]
    if finer:
        k = max(finer)
        return folders[k], downscale / k
    k = min(folders)
    notes.append(f"no rgb/{downscale:g}x/ for downscale {downscale:g}: using rgb/{k}x/ ({k / downscale:g}x smaller)")
    return folders[k], 1.0


def find_image(folder: Path, item: str) -> Path:
    for ext in (".png",) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png"):
        for p in (folder / f"{item}{ext}", folder / f"{item}{ext.upper()}"):
            if p.is_file():
                return p
    raise DatasetError(folder / f"{item}.png", "image file is missing (listed in dataset.json)")


def _ids(data: dict, key: str, path: Path, required: bool) -> list[str] | None:
    if key not in data:
        if required:
            raise DatasetError(path, f"no '{key}' list")
        return None
    if not isinstance(data[key], list):
        raise DatasetError(path, f"'{key}' is not a list of ids")
    return [str(i) for i in data[key]]


def _splits(dataset: dict, ids: list[str], holdout: int, path: Path) -> dict[str, list[int]]:
    index = {item: i for i, item in enumerate(ids)}
    train, val = _ids(dataset, "train_ids", path, False), _ids(dataset, "val_ids", path, False) or []
    for item in (train or []) + val:
        if item not in index:
            raise DatasetError(path, f"id {item!r} of train_ids / val_ids is not in 'ids'")
    if train is None:
        return holdout_splits(len(ids), holdout)
    train_idx = [index[i] for i in train]
    if not train_idx:
        raise DatasetError(path, "'train_ids' is empty")
    if not val:
        held = holdout_splits(len(train_idx), holdout)
        return {s: [train_idx[j] for j in v] for s, v in held.items()}
    return {"train": train_idx, "val": [index[i] for i in val], "test": [index[i] for i in val]}


def _per_item(metadata: dict, ids: list[str], path: Path) -> tuple[list[float], list[int] | None, list]:
    """Time ids, appearance ids (None when no item has one) and camera ids, one per item."""
    times, appearance, cameras = [], [], []
    for item in ids:
        m = metadata.get(item)
        if not isinstance(m, dict):
            raise DatasetError(path, f"no entry for id {item!r}")
        t = m.get("time_id", m.get("warp_id"))
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise DatasetError(path, f"id {item!r} has no numeric 'time_id' (or 'warp_id')")
        a = m.get("appearance_id")
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or a != int(a)):
            raise DatasetError(path, f"id {item!r}: appearance_id {a!r} is not an integer")
        times.append(float(t)), appearance.append(a), cameras.append(m.get("camera_id"))
    given = [a is not None for a in appearance]
    if any(given) and not all(given):
        raise DatasetError(path, f"id {ids[given.index(False)]!r} has no 'appearance_id' (others have one)")
    return times, [int(a) for a in appearance] if all(given) else None, cameras


def _scene_frame(path: Path) -> tuple[np.ndarray, float, float, float]:
    scene = read_json(path)
    center = _array(scene, "center", (3,), path)
    scale = float(_array(scene, "scale", (), path))
    near, far = float(_array(scene, "near", (), path)), float(_array(scene, "far", (), path))
    if not (scale > 0 and 0 <= near < far):
        raise DatasetError(path, f"need scale > 0 and 0 <= near < far, got scale {scale}, near {near}, far {far}")
    return center, scale, near, far


def load_nerfies(cfg: DatasetConfig) -> Scene:
    root = Path(cfg.path)
    dataset_path = root / "dataset.json"
    dataset = read_json(dataset_path)
    ids = _ids(dataset, "ids", dataset_path, True)
    if not ids:
        raise DatasetError(dataset_path, "'ids' is empty")
    splits = _splits(dataset, ids, cfg.holdout, dataset_path)
    time_ids, appearance, camera_ids = _per_item(read_json(root / "metadata.json"), ids, root / "metadata.json")
    center, scale, near, far = _scene_frame(root / "scene.json")
    notes: list[str] = []
    folder, resize = choose_scale(root, float(cfg.downscale), notes)

    paths, fx, fy, cx, cy, skew, dist, widths, heights, c2w = ([] for _ in range(10))
    for item in ids:
        cam_path = root / "camera" / f"{item}.json"
        cam = opencv_camera(read_json(cam_path), cam_path)
        image = find_image(folder, item)
        w_file, h_file = image_size(image)
        w, h = scaled_size(w_file, h_file, resize)
        sx, sy = w / cam["size"][0], h / cam["size"][1]
        if abs(h - cam["size"][1] * sx) > max(1.0, 0.01 * h):  # another aspect ratio than rounding gives
            raise DatasetError(image, f"{w_file}x{h_file} does not have the aspect ratio of image_size "
                                      f"{list(cam['size'])} in camera/{item}.json")
        paths.append(image), widths.append(w), heights.append(h), c2w.append(cam["c2w"]), dist.append(cam["distortion"])
        fx.append(cam["fx"] * sx), fy.append(cam["fy"] * sy), cx.append(cam["cx"] * sx), cy.append(cam["cy"] * sy)
        skew.append(cam["skew"] * sx)

    poses = clean_rotations(np.stack(c2w), root / "camera", notes)  # [n, 3, 4] dataset world
    poses[:, :, 3] = (poses[:, :, 3] - center) * scale  # the scene frame: (x - center) * scale
    world_from_scene = np.eye(4) / scale
    world_from_scene[:3, 3], world_from_scene[3, 3] = center, 1.0
    lens = bool(np.any(dist))
    cams = make_cameras(fx, fy, cx, cy, widths, heights, poses, np.stack(dist) if lens else None)
    if any(abs(s) > 0 for s in skew):
        cams = replace(cams, skew=torch.as_tensor(np.asarray(skew), dtype=torch.float32))
    n = len(ids)
    bounds = np.tile([near, far], (n, 1))
    corners = frustum_corners(poses, *(np.asarray(a, np.float64) for a in (fx, fy, cx, cy, widths, heights)), bounds)
    background = (0.0, 0.0, 0.0) if cfg.background is None else tuple(float(c) for c in cfg.background)
    return Scene(
        format="nerfies",
        root=root,
        image_paths=paths,
        cameras=cams,
        splits=splits,
        near=near,
        far=far,
        background=background,
        sphere_center=torch.zeros(3),
        sphere_radius=float(np.linalg.norm(corners, axis=-1).max()),
        ndc=False,
        render_c2w=orbit_from_cameras(torch.from_numpy(poses), torch.zeros(3, dtype=torch.float64),
                                      cfg.render_frames).float(),
        downscale=float(resize),
        metadata={
            "world_from_scene": world_from_scene,
            "image_folder": f"rgb/{folder.name}",
            "time_ids": time_ids,
            "camera_ids": camera_ids,
            "warnings": notes,
        },
        times=normalised_times(time_ids),
        appearance_ids=None if appearance is None else torch.tensor(appearance, dtype=torch.int64),
    )
