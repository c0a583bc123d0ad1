"""Blender / NeRF-synthetic format: ``transforms_{train,val,test}.json`` or one ``transforms.json``.

Each json has ``frames``, each frame a ``file_path`` (relative to the dataset folder, with or
without extension or a leading ``./``) and a 4x4 camera-to-world ``transform_matrix`` in
OpenGL/Blender axes (x right, y up, z back). Intrinsics come from ``camera_angle_x`` (horizontal
field of view: ``fx = (W / 2) / tan(angle / 2)``) or from ``fl_x, fl_y, cx, cy`` (pixels) with
optional ``w, h``; any of these keys may sit at the top of the file or in a frame (a frame's keys
win). Without ``cx, cy`` the principal point is the image centre, ``cx = W / 2``.

Scale: the classic scenes are centred at the origin with cameras about 4 units away, and the
classic bounds are near 2, far 6 (nerflite reads them as distances along unit rays). The bounding
sphere is centred at the origin with the largest radius whose every point lies within
[near, far] of every camera (1.97 for lego), so rays clipped to the sphere and rays clipped to
near/far see the same content. When the cameras are not between 2 and 6 units from the origin
(a differently scaled capture), bounds follow the scale instead: radius = half the nearest
camera distance, near = nearest distance - radius, far = farthest distance + radius (this rule
gives 2 / 6 on the classic scenes too). A single-file capture is centred (sphere centre, render
orbit) on the point its cameras look at, when nearly all of them face one point; the coordinates
themselves are never moved.

D-NeRF (``dataset.format=dnerf``, ``load_dnerf``): the same files with a ``time`` in [0, 1] on every
frame (each frame another moment of the motion): ``Scene.times``, in the order of the views.
``dataset.format=blender`` on such a folder reads it as a static scene (the times are ignored).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.camera_paths import orbit_from_cameras
from nerflite.cameras import opengl_to_opencv
from nerflite.data.images import image_size
from nerflite.data.parsers.common import (
    IMAGE_EXTENSIONS,
    check_finite,
    check_sizes,
    clean_rotations,
    focus_point,
    frame_time,
    holdout_splits,
    make_cameras,
    scaled_size,
)
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

SPLITS = ("train", "val", "test")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
CLASSIC_NEAR, CLASSIC_FAR = 2.0, 6.0


def read_transforms(path: Path) -> dict:
    """The parsed json, checked to hold a non-empty ``frames`` list."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(path, "file is missing") from None
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read file ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise DatasetError(path, "no 'frames' list (not a Blender transforms file)")
    return meta


def resolve_image(root: Path, file_path: str, json_path: Path) -> Path:
    """The image a frame's ``file_path`` names, trying common extensions when it has none."""
    p = Path(str(file_path).replace("\\", "/"))
    p = p if p.is_absolute() else root / p
    if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
        return p
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG"):
        candidate = p.with_name(p.name + ext)
        if candidate.is_file():
            return candidate
    if p.is_file():
        return p
    raise DatasetError(p, f"image file is missing (listed in {json_path.name})")


def frame_intrinsics(meta: dict, frame: dict, width: int, height: int, json_path: Path, i: int) -> tuple:
    """(fx, fy, cx, cy) in pixels of the image on disk (``width`` x ``height``)."""
    try:
        return _intrinsics(lambda key: frame.get(key, meta.get(key)), width, height, json_path, i)
    except (TypeError, ValueError, ZeroDivisionError):
        raise DatasetError(json_path, f"frame {i}: intrinsics are not valid numbers") from None


def _intrinsics(get, width: int, height: int, json_path: Path, i: int) -> tuple:
    ref_w, ref_h = recorded_size(get, width, height, json_path, i)
    fx = fy = None
    if get("fl_x") is not None:
        fx = float(get("fl_x"))
    elif get("camera_angle_x") is not None:
        fx = ref_w / 2.0 / _tan_half(float(get("camera_angle_x")), json_path, i)
    if get("fl_y") is not None:
        fy = float(get("fl_y"))
    elif get("camera_angle_y") is not None:
        fy = ref_h / 2.0 / _tan_half(float(get("camera_angle_y")), json_path, i)
    if fx is None and fy is None:
        raise DatasetError(json_path, f"frame {i} has no focal length (camera_angle_x or fl_x)")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    cx = float(get("cx")) if get("cx") is not None else ref_w / 2.0
    cy = float(get("cy")) if get("cy") is not None else ref_h / 2.0
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
        raise DatasetError(json_path, f"frame {i} has invalid intrinsics fx={fx} fy={fy} cx={cx} cy={cy}")
    sx, sy = width / ref_w, height / ref_h  # images stored at another size than the recorded w/h
    return fx * sx, fy * sy, cx * sx, cy * sy


def recorded_size(get, width: int, height: int, json_path: Path, i: int) -> tuple[float, float]:
    """The size the intrinsics refer to: explicit ``w``/``h`` when given, else the image itself."""
    ref_w, ref_h = float(get("w") or width), float(get("h") or height)
    if not (math.isfinite(ref_w) and math.isfinite(ref_h) and ref_w > 0 and ref_h > 0):
        raise DatasetError(json_path, f"frame {i}: w and h must be positive numbers, got {get('w')}, {get('h')}")
    return ref_w, ref_h


def frame_size(meta: dict, frame: dict, width: int, height: int, json_path: Path, i: int) -> tuple[float, float]:
    """``recorded_size`` of a frame (its keys win over the file's)."""
    try:
        return recorded_size(lambda key: frame.get(key, meta.get(key)), width, height, json_path, i)
    except (TypeError, ValueError):
        raise DatasetError(json_path, f"frame {i}: w and h are not numbers") from None


def _tan_half(angle: float, json_path: Path, i: int) -> float:
    if not 0.0 < angle < math.pi:
        raise DatasetError(json_path, f"frame {i}: field of view {angle} is not between 0 and pi radians")
    return math.tan(angle / 2.0)


def frame_pose(frame: dict, json_path: Path, i: int) -> np.ndarray:
    """The frame's OpenGL camera-to-world as float64 [3, 4]."""
    if "transform_matrix" not in frame:
        raise DatasetError(json_path, f"frame {i} has no transform_matrix")
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(json_path, f"frame {i}: transform_matrix is not a numeric matrix") from None
    if m.shape not in ((4, 4), (3, 4)):
        raise DatasetError(json_path, f"frame {i}: transform_matrix must be a 4x4 matrix, got shape {m.shape}")
    return check_finite(m[:3, :4], json_path, f"frame {i}: transform_matrix")


def capture_center(c2w: np.ndarray) -> np.ndarray:
    """Centre of a single-file capture: the point the cameras look at when (nearly) all of them
    face it, else the origin."""
    focus = focus_point(c2w)
    in_front = np.einsum("ni,ni->n", focus - c2w[:, :, 3], c2w[:, :, 2]) > 0  # [n]
    return focus if len(c2w) >= 3 and in_front.mean() >= 0.9 else np.zeros(3)


def load_dnerf(cfg: DatasetConfig) -> Scene:
    """A D-NeRF scene: Blender files whose every frame has a ``time`` in [0, 1]."""
    return load_blender(cfg, dynamic=True)


def load_blender(cfg: DatasetConfig, dynamic: bool = False) -> Scene:
    root = Path(cfg.path)
    split_files = {s: root / f"transforms_{s}.json" for s in SPLITS}
    if split_files["train"].is_file():
        present = {s: p for s, p in split_files.items() if p.is_file()}
    elif (root / "transforms.json").is_file():
        present = {"train": root / "transforms.json"}
    else:
        raise DatasetError(root / "transforms_train.json", "missing (and no transforms.json)")

    paths, fx, fy, cx, cy, widths, heights, poses, times = [], [], [], [], [], [], [], [], []
    mask_paths: list[Path | None] = []
    on_disk, recorded = [], []  # [w, h] of each image file, and the w, h its intrinsics are for
    notes: list[str] = []
    split_idx: dict[str, list[int]] = {}
    for split, json_path in present.items():
        meta = read_transforms(json_path)
        if not meta["frames"] and split == "train":
            raise DatasetError(json_path, "'frames' is empty")
        split_idx[split] = []
        for i, frame in enumerate(meta["frames"]):
            if not isinstance(frame, dict) or "file_path" not in frame:
                raise DatasetError(json_path, f"frame {i} has no file_path")
            pose = frame_pose(frame, json_path, i)
            if dynamic:
                times.append(frame_time(frame, json_path, i))
            elif "time" in frame and not any("'time'" in n for n in notes):
                notes.append(f"{json_path.name}: frames carry 'time': read as a static scene "
                             "(dataset.format=dnerf reads the moments)")
            image = resolve_image(root, frame["file_path"], json_path)
            w, h = image_size(image)
            intr = frame_intrinsics(meta, frame, w, h, json_path, i)
            on_disk.append((w, h)), recorded.append(frame_size(meta, frame, w, h, json_path, i))
            w2, h2 = scaled_size(w, h, cfg.downscale)
            sx, sy = w2 / w, h2 / h
            mask = frame.get("mask_path")
            mask_paths.append(resolve_image(root, mask, json_path) if mask else None)
            distortion = [k for k in DISTORTION_KEYS if abs(float(frame.get(k, meta.get(k)) or 0.0)) > 1e-9]
            if distortion and not any("distortion" in n for n in notes):
                notes.append(f"{json_path.name}: lens distortion ({', '.join(distortion)}) is not modelled: "
                             "undistort the images first")
            split_idx[split].append(len(paths))
            paths.append(image)
            fx.append(intr[0] * sx), fy.append(intr[1] * sy), cx.append(intr[2] * sx), cy.append(intr[3] * sy)
            widths.append(w2), heights.append(h2), poses.append(pose)

    check_sizes(paths, np.array(on_disk, np.float64), np.array(recorded, np.float64),
                present["train"] if len(present) == 1 else root / "transforms_*.json", notes)
    if any(mask_paths) and not all(mask_paths):
        with_mask = sum(map(bool, mask_paths))
        notes.append(f"only {with_mask} of {len(paths)} frames have a mask_path: masks ignored")
    if set(split_idx) == {"train"}:  # train only: hold out every Nth view
        splits = holdout_splits(len(paths), cfg.holdout)
    else:
        splits = {"train": split_idx["train"]}
        val = split_idx.get("val") or split_idx.get("test") or split_idx["train"]
        splits["val"] = val
        splits["test"] = split_idx.get("test") or val

    source = next(iter(present.values())) if len(present) == 1 else root
    c2w = clean_rotations(np.stack(poses), source, notes)
    c2w = opengl_to_opencv(torch.from_numpy(c2w)).numpy()  # [n, 3, 4] the one axis conversion
    single_file = present["train"].name == "transforms.json"
    center = capture_center(c2w) if single_file else np.zeros(3)
    dist = np.linalg.norm(c2w[:, :, 3] - center, axis=-1)
    near = CLASSIC_NEAR if cfg.near is None else float(cfg.near)
    far = CLASSIC_FAR if cfg.far is None else float(cfg.far)
    radius = min(float(dist.min()) - near, far - float(dist.max()))
    if radius <= 0:
        radius = float(dist.min()) / 2.0
        near = float(dist.min()) - radius if cfg.near is None else near
        far = float(dist.max()) + radius if cfg.far is None else far
        notes.append(
            f"cameras are {dist.min():.3g}-{dist.max():.3g} units from the scene centre, outside the classic "
            f"near/far 2/6: using near {near:.3g}, far {far:.3g}, radius {radius:.3g} from camera distances"
        )
    background = (1.0, 1.0, 1.0) if cfg.background is None else tuple(float(c) for c in cfg.background)
    return Scene(
        format="dnerf" if dynamic else "blender",
        root=root,
        image_paths=paths,
        cameras=make_cameras(fx, fy, cx, cy, widths, heights, c2w),
        splits=splits,
        mask_paths=[m for m in mask_paths if m is not None] if all(mask_paths) else None,
        near=near,
        far=far,
        background=background,
        sphere_center=torch.as_tensor(center, dtype=torch.float32),
        sphere_radius=radius,
        ndc=False,
        render_c2w=orbit_from_cameras(torch.from_numpy(c2w), torch.as_tensor(center), cfg.render_frames).float(),
        downscale=float(cfg.downscale),
        metadata={
            "world_from_scene": np.eye(4),
            "split_files": {s: p.name for s, p in present.items()},
            "warnings": notes,
        },
        times=torch.tensor(times, dtype=torch.float32) if dynamic else None,
    )
