"""instant-ngp / nerfstudio ``transforms.json``: one file, every frame, optional split lists.

The format (``dataset.format=transforms``, detected when a folder holds ``transforms.json`` and no
``transforms_train.json``, which stays Blender's) as instant-ngp's ``colmap2nerf.py`` and
nerfstudio's ``ns-process-data`` write it:

* Intrinsics ``fl_x, fl_y, cx, cy, w, h`` or ``camera_angle_x/y``, at the top level or per frame (a
  frame's keys win); ``cx, cy`` are continuous pixel coordinates (a centred principal point is
  ``w / 2``), the same convention as nerflite's. Images stored at another size than ``w, h``
  scale the intrinsics, with a warning worded as the COLMAP reader's (``common.check_sizes``);
  another aspect ratio is an error naming the image.
* Distortion ``k1, k2, k3, k4, p1, p2`` with nerfstudio's ``camera_model`` (``PINHOLE``,
  ``SIMPLE_PINHOLE``, ``OPENCV``, ``OPENCV_FISHEYE``) or instant-ngp's ``is_fisheye``: stored as
  ``Cameras.distortion`` [n, 6] in that order (k1, k2, k3, k4, p1, p2) and ``Cameras.fisheye`` [n]
  (OpenCV fisheye with k1..k4; radial-tangential otherwise), applied to rays (``nerflite.cameras``).
* ``file_path`` relative to the json's folder, with or without extension (``./images/x.png``,
  ``images/x``); ``mask_path`` likewise (all frames or none).
* ``transform_matrix``: camera-to-world in OpenGL axes (x right, y up, z back), converted once to
  nerflite's OpenCV axes. nerfstudio's ``applied_transform``, ``orientation_override`` and
  ``ply_file_path`` describe how the file's frame was made and are ignored.
* Splits: nerfstudio's ``train_filenames`` / ``val_filenames`` / ``test_filenames`` when present
  (test falls back to val), else every ``dataset.holdout``-th view is held out.
* Frames whose image is missing: an error naming how many and the first few, or, with
  ``dataset.skip_missing=true``, dropped (``metadata["skipped"]`` lists them, with a warning).
* ``time`` in [0, 1] on the frames (all of them, or none): a moving scene, ``Scene.times``.

Scene frame: the capture is moved so that its object sphere is the unit sphere at the origin
(``metadata["world_from_scene"]`` maps back to the file's frame). instant-ngp files (with
``aabb_scale``, ``scale`` or ``offset``) use instant-ngp's own convention: a file point ``x``
lands at ``ngp = perm(x) * scale + offset`` (``perm``: (x, y, z) -> (y, z, x); defaults scale
0.33, offset 0.5), the object fills the unit cube [0, 1]^3, and the whole scene the cube scaled
by ``aabb_scale`` about its centre. So the object sphere is the cube's inscribed sphere (centre
``perm^-1((0.5 - offset) / scale)``, radius ``0.5 / scale`` file units) and the scene box is
``[-aabb_scale, aabb_scale]^3`` in scene units (``metadata["aabb"]``, for models that contract or
grid the background). Other files are moved as the COLMAP parser moves a 360-degree capture
without sparse points (``colmap.normalisation``): the point the cameras look at becomes the
origin, their mean up axis +z, and the radius half the nearest camera distance. Bounds: near =
nearest camera distance - 1 (at least 0.05), far = farthest camera distance + 1 (scene units).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.camera_paths import orbit_from_cameras
from nerflite.cameras import opengl_to_opencv
from nerflite.data.images import image_size
from nerflite.data.parsers.blender import frame_intrinsics, frame_pose, frame_size, read_transforms, resolve_image
from nerflite.data.parsers.colmap import apply_similarity, normalisation
from nerflite.data.parsers.common import (
    check_sizes,
    clean_rotations,
    frame_time,
    holdout_splits,
    looks_forward,
    make_cameras,
    scaled_size,
    view_angles,
)
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")  # the order of Cameras.distortion
CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "OPENCV_FISHEYE")
NGP_KEYS = ("aabb_scale", "scale", "offset")
NGP_SCALE, NGP_OFFSET = 0.33, 0.5  # instant-ngp's defaults
SPLIT_KEYS = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}
SHOW_MISSING = 3  # missing images named in the error


def frame_distortion(meta: dict, frame: dict, json_path: Path, i: int) -> tuple[list[float], bool]:
    """(k1, k2, k3, k4, p1, p2) and whether the view is an OpenCV fisheye."""
    get = lambda key: frame.get(key, meta.get(key))  # noqa: E731
    model = str(get("camera_model") or ("OPENCV_FISHEYE" if get("is_fisheye") else "OPENCV")).upper()
    if model not in CAMERA_MODELS:
        raise DatasetError(json_path, f"frame {i}: camera_model {model!r} is not one of {', '.join(CAMERA_MODELS)}")
    try:
        coeffs = [float(get(k) or 0.0) for k in DISTORTION_KEYS]
    except (TypeError, ValueError):
        raise DatasetError(json_path, f"frame {i}: distortion coefficients are not numbers") from None
    if not np.isfinite(coeffs).all():
        raise DatasetError(json_path, f"frame {i}: distortion coefficients are not finite")
    if model in ("PINHOLE", "SIMPLE_PINHOLE"):
        coeffs = [0.0] * 6
    return coeffs, model == "OPENCV_FISHEYE"


def _key(name: str) -> str:
    """A file name as split lists and frames are matched: no './', no extension."""
    p = str(name).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return str(Path(p).with_suffix(""))


def _find(root: Path, file_path: str, json_path: Path) -> Path | None:
    try:
        return resolve_image(root, file_path, json_path)
    except DatasetError:
        return None


def split_lists(meta: dict, keys: list[str], holdout: int, json_path: Path) -> dict[str, list[int]]:
    """View indices per split from nerfstudio's ``*_filenames`` lists, else every Nth held out."""
    if not any(k in meta for k in SPLIT_KEYS.values()):
        return holdout_splits(len(keys), holdout)
    index = {k: i for i, k in enumerate(keys)}
    splits = {}
    for split, key in SPLIT_KEYS.items():
        names = meta.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise DatasetError(json_path, f"'{key}' is not a list of file names")
        splits[split] = [index[_key(n)] for n in names if _key(n) in index]  # skipped frames drop out
    if not splits.get("train"):
        raise DatasetError(json_path, "'train_filenames' names none of the frames present")
    splits.setdefault("val", splits.get("test") or list(splits["train"]))
    splits.setdefault("test", list(splits["val"]))
    return splits


def scene_from_world(meta: dict, c2w: np.ndarray, json_path: Path) -> np.ndarray:
    """4x4 similarity from the file's frame into the scene frame (object in the unit sphere)."""
    if not any(k in meta for k in NGP_KEYS):  # as the COLMAP parser moves a 360-degree capture without points
        return normalisation(c2w, np.zeros((0, 3)), forward=False, bd_factor=1.0, notes=[])
    try:
        scale = float(meta.get("scale", NGP_SCALE))
        offset = np.broadcast_to(np.asarray(meta.get("offset", NGP_OFFSET), np.float64), (3,))
    except (TypeError, ValueError):
        raise DatasetError(json_path, "'scale' / 'offset' are not numbers") from None
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(offset).all()):
        raise DatasetError(json_path, f"'scale' must be a positive number, got {meta.get('scale')}")
    c = (0.5 - offset) / scale  # the cube's centre in instant-ngp's axes (y, z, x of the file)
    m = np.eye(4) * (2.0 * scale)  # half side 0.5 / scale -> 1
    m[:3, 3] = -np.array([c[2], c[0], c[1]]) * 2.0 * scale
    m[3, 3] = 1.0
    return m


def _aabb_scale(meta: dict, json_path: Path) -> float | None:
    if "aabb_scale" not in meta:
        return None
    try:
        value = float(meta["aabb_scale"])
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value >= 1):
        raise DatasetError(json_path, f"'aabb_scale' must be a number >= 1, got {meta['aabb_scale']!r}")
    return value


def load_transforms(cfg: DatasetConfig) -> Scene:
    root = Path(cfg.path)
    json_path = root / "transforms.json"
    meta = read_transforms(json_path)
    if not meta["frames"]:
        raise DatasetError(json_path, "'frames' is empty")
    frames, images, missing = [], [], []
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise DatasetError(json_path, f"frame {i} has no file_path")
        image = _find(root, frame["file_path"], json_path)
        if image is None:
            missing.append(str(frame["file_path"]))
        else:
            frames.append((i, frame)), images.append(image)
    notes: list[str] = []
    if missing:
        first = ", ".join(missing[:SHOW_MISSING]) + (", ..." if len(missing) > SHOW_MISSING else "")
        if not cfg.skip_missing or not images:
            hint = "set dataset.skip_missing=true to train on the others" if images else "no image is present"
            raise DatasetError(json_path, f"{len(missing)} of {len(meta['frames'])} listed images are missing "
                                          f"({first}); {hint}")
        notes.append(f"skipped {len(missing)} of {len(meta['frames'])} frames whose image is missing ({first})")

    fx, fy, cx, cy, widths, heights, poses, dist, fisheye, masks, on_disk, recorded = ([] for _ in range(12))
    timed = any("time" in frame for _, frame in frames)
    times = [frame_time(frame, json_path, i) for i, frame in frames] if timed else None
    for (i, frame), image in zip(frames, images):
        poses.append(frame_pose(frame, json_path, i))
        w, h = image_size(image)
        intr = frame_intrinsics(meta, frame, w, h, json_path, i)
        on_disk.append((w, h)), recorded.append(frame_size(meta, frame, w, h, json_path, i))
        w2, h2 = scaled_size(w, h, cfg.downscale)
        sx, sy = w2 / w, h2 / h
        fx.append(intr[0] * sx), fy.append(intr[1] * sy), cx.append(intr[2] * sx), cy.append(intr[3] * sy)
        widths.append(w2), heights.append(h2)
        coeffs, fish = frame_distortion(meta, frame, json_path, i)
        dist.append(coeffs), fisheye.append(fish)
        mask = frame.get("mask_path")
        masks.append(resolve_image(root, mask, json_path) if mask else None)
    check_sizes(images, np.array(on_disk, np.float64), np.array(recorded, np.float64), json_path, notes)
    if any(masks) and not all(masks):
        notes.append(f"only {sum(map(bool, masks))} of {len(masks)} frames have a mask_path: masks ignored")

    c2w = clean_rotations(np.stack(poses), json_path, notes)  # [n, 3, 4] OpenGL
    c2w = opengl_to_opencv(torch.from_numpy(c2w)).numpy()  # [n, 3, 4] the one axis conversion
    move = scene_from_world(meta, c2w, json_path)
    c2w = apply_similarity(move, c2w)  # [n, 3, 4] scene frame: object in the unit sphere
    world_from_scene = np.linalg.inv(move)
    dist_c = np.linalg.norm(c2w[:, :, 3], axis=-1)  # [n]
    angles = view_angles(c2w)
    if looks_forward(angles) and not any(k in meta for k in NGP_KEYS):  # the COLMAP / LLFF readers' rule
        notes.append(f"forward-facing capture (views within {angles.max():.0f} deg of their mean direction): read "
                     "as an object capture, in the unit sphere around where the views converge (this format has no "
                     f"NDC); content farther than far={float(dist_c.max()) + 1.0:.3g} is not sampled")
    aabb_scale = _aabb_scale(meta, json_path)
    lens = np.any(dist) or any(fisheye)
    cams = make_cameras(fx, fy, cx, cy, widths, heights, c2w, np.asarray(dist) if lens else None,
                        np.asarray(fisheye) if lens else None)
    background = (1.0, 1.0, 1.0) if cfg.background is None else tuple(float(c) for c in cfg.background)
    return Scene(
        format="transforms",
        root=root,
        image_paths=images,
        cameras=cams,
        splits=split_lists(meta, [_key(f["file_path"]) for _, f in frames], cfg.holdout, json_path),
        mask_paths=masks if all(masks) else None,
        near=max(float(dist_c.min()) - 1.0, 0.05),
        far=float(dist_c.max()) + 1.0,
        background=background,
        sphere_center=torch.zeros(3),
        sphere_radius=1.0,
        ndc=False,
        render_c2w=orbit_from_cameras(torch.from_numpy(c2w), torch.zeros(3, dtype=torch.float64),
                                      cfg.render_frames).float(),
        downscale=float(cfg.downscale),
        metadata={
            "world_from_scene": world_from_scene,
            "split_files": {"train": json_path.name},
            "aabb": None if aabb_scale is None else [-aabb_scale] * 3 + [aabb_scale] * 3,
            "fisheye": [bool(f) for f in fisheye],
            "skipped": missing,
            "warnings": notes,
        },
        times=None if times is None else torch.tensor(times, dtype=torch.float32),
    )
