"""LLFF format: ``poses_bounds.npy`` and ``images/``, ``images_4/``, ``images_8/``... Forward-facing
captures, and 360-degree ones (mip-NeRF 360's scenes use the same files).

``poses_bounds.npy`` is an N x 17 array, one row per image in sorted file order: a 3x5 matrix
(row-major) whose first four columns are a camera-to-world [R | t] with the camera axes in the
order [down, right, back], and whose fifth column is [H, W, focal] of the full-size photos;
then the near and far scene depth bounds of that view.

Conversion into nerflite's frame, step by step (``scene_from_world`` records each step):
1. Columns [down, right, back] -> [right, up, back] (OpenGL axes).
2. Scale the world by ``1 / (min bound * bd_factor)`` so the nearest content sits at depth
   1 / bd_factor (1.33 with the usual 0.75), beyond the NDC near plane at 1.
3. Recentre: the average camera pose becomes the identity, so cameras sit around the origin and
   look down -z, the frame ``nerflite.cameras.ndc_rays`` expects.
4. Spherify 360-degree captures: move the point nearest to all optical axes to the origin and
   scale the cameras to a mean distance of 1. NDC is then off. A capture is 360-degree when
   more than 20% of the views look over 45 degrees away from the mean direction (the COLMAP
   reader's rule, ``common.looks_forward``), or with ``spherify=true``; a note says so, and names
   the few views of a forward-facing capture that look elsewhere (``common.capture_note``).
5. OpenGL -> OpenCV camera axes (``nerflite.cameras.opengl_to_opencv``).

Intrinsics: downscaled folders keep the full-size focal in the file, so ``fx`` is scaled by the
width of the images actually used over the W recorded in the file (``fy`` likewise with H); the
principal point is the image centre, ``cx, cy = W / 2, H / 2``. ``downscale`` F picks
``images_F/`` when it exists, else resizes from the nearest finer folder.

Masks (360-degree object captures): a ``masks/`` folder holds one mask per image with the same
file name up to the extension (``match_masks``); ``dataset.masks=false`` ignores it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.camera_paths import focus_depth_from_bounds, orbit_from_cameras, spiral_path
from nerflite.cameras import opengl_to_opencv
from nerflite.data.images import image_size
from nerflite.data.parsers.common import (
    FORWARD_ANGLE,
    IMAGE_EXTENSIONS,
    capture_note,
    check_finite,
    check_sizes,
    clean_rotations,
    focus_point,
    holdout_splits,
    list_images,
    looks_forward,
    make_cameras,
    normalize,
    scaled_size,
    view_angles,
)
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

NDC_NEAR_PLANE = 1.0
# the 17 columns of poses_bounds.npy: the 3x5 matrix row by row (4 pose columns and H / W / focal), then the bounds
COLUMNS = [f"pose[{r}][{c}]" if c < 4 else ("H", "W", "focal")[r] for r in range(3) for c in range(5)] + ["near", "far"]


def read_poses_bounds(path: Path) -> np.ndarray:
    """The N x 17 float64 array, checked."""
    if not path.is_file():
        raise DatasetError(path, "file is missing")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(path, f"cannot read numpy array ({e})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        shape = getattr(arr, "shape", None)
        raise DatasetError(path, f"expected an N x 17 array (3x5 pose + 2 bounds per image), not {shape}")
    arr = check_finite(arr, path, "the array", COLUMNS, row="row (image)")
    if (arr[:, 15:17] <= 0).any() or (arr[:, [4, 9, 14]] <= 0).any():  # bounds, [H, W, focal]
        raise DatasetError(path, "bounds and the [H, W, focal] column must be positive")
    return arr


def image_folders(root: Path) -> dict[int, Path]:
    """Downscale factor -> folder: ``images/`` is 1, ``images_N/`` is N."""
    found = {}
    if (root / "images").is_dir():
        found[1] = root / "images"
    for d in root.iterdir():
        m = re.fullmatch(r"images_(\d+)", d.name)
        if m and d.is_dir() and int(m.group(1)) > 0:
            found[int(m.group(1))] = d
    return found


def choose_folder(root: Path, downscale: float, notes: list[str]) -> tuple[Path, float]:
    """The folder to read and the resize factor still to apply to its images."""
    folders = image_folders(root)
    if not folders:
        raise DatasetError(root / "images", "image folder is missing (expected images/ or images_N/)")
    for k, folder in folders.items():
        if abs(k - downscale) < 1e-6:
            return folder, 1.0
    finer = [k for k in folders if k < downscale]
    if finer:
        k = max(finer)
        return folders[k], downscale / k
    k = min(folders)
    wanted = "images" if downscale == 1 else f"images_{downscale:g}"
    smaller = k / downscale
    notes.append(f"no {wanted}/ for downscale {downscale:g}: using {folders[k].name}/ ({smaller:g}x smaller)")
    return folders[k], 1.0


MASK_DIRS = ("masks",)  # not mask/: that is the NeuS layout, often beside an LLFF conversion


def _stem(path: Path) -> str:
    """A file's name without its image extensions (``IMG_1.JPG.png`` and ``IMG_1.png`` -> ``IMG_1``)."""
    name = path.name
    while Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        name = Path(name).stem
    return name


def match_masks(root: Path, folder: Path, images: list[Path]) -> list[Path] | None:
    """One mask per image from ``masks/`` (360-degree object captures), matched by file stem, or None
    without a mask folder. The stems are the images' own, or those of ``images/`` when a
    downscaled folder renamed its files (same sorted order). Any image without a mask, or a mask
    without an image, is a DatasetError naming the mask folder."""
    mask_dir = next((root / n for n in MASK_DIRS if (root / n).is_dir()), None)
    if mask_dir is None:
        return None
    by_stem = {_stem(p): p for p in list_images(mask_dir)}
    names = [_stem(p) for p in images]
    full = root / "images"
    if folder != full and full.is_dir() and not set(names) & set(by_stem):
        originals = list_images(full)
        if len(originals) == len(images):
            names = [_stem(p) for p in originals]
    missing = [n for n in names if n not in by_stem]
    if missing:
        raise DatasetError(mask_dir, f"no mask for image {missing[0]} ({len(missing)} of {len(names)} images have "
                           "none; masks are matched to images by file name without extension)")
    extra = sorted(set(by_stem) - set(names))
    if extra:
        raise DatasetError(by_stem[extra[0]], f"mask without an image of that name in {folder.name}/ "
                           f"({len(extra)} such masks)")
    return [by_stem[n] for n in names]


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """4x4 OpenGL camera-to-world at the mean centre, with the mean back (z) and up (y) axes."""
    center = c2w[:, :, 3].mean(0)
    back = normalize(c2w[:, :, 2].sum(0))
    right = normalize(np.cross(c2w[:, :, 1].sum(0), back))
    up = np.cross(back, right)
    out = np.eye(4)
    out[:3, :4] = np.stack([right, up, back, center], 1)
    return out


def spherify_transform(c2w: np.ndarray) -> np.ndarray:
    """4x4 ``scene_from_world`` putting the optical axes' meeting point at the origin, the mean
    camera direction on +z, and the cameras at root-mean-square distance 1."""
    center = focus_point(c2w)
    up = normalize((c2w[:, :, 3] - center).mean(0))
    a = normalize(np.cross(np.array([0.1, 0.2, 0.3]), up))
    b = np.cross(up, a)
    frame = np.eye(4)
    frame[:3, :4] = np.stack([a, b, up, center], 1)
    moved = np.linalg.inv(frame)
    pos = (moved[:3, :3] @ c2w[:, :, 3].T).T + moved[:3, 3]
    rad = float(np.sqrt(np.mean(np.sum(pos**2, -1))))
    return np.diag([1 / rad, 1 / rad, 1 / rad, 1.0]) @ moved


def transform_poses(m: np.ndarray, c2w: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move camera-to-worlds [n, 3, 4] and depth bounds [n, 2] by a similarity transform ``m`` (4x4)."""
    s = float(np.cbrt(np.linalg.det(m[:3, :3])))  # uniform scale
    rot = m[:3, :3] / s
    t = m[:3, :3] @ c2w[:, :, 3:4] + m[:3, 3:4]  # [n, 3, 1]
    return np.concatenate([rot @ c2w[:, :, :3], t], axis=2), bounds * s


def frustum_corners(c2w: np.ndarray, fx, fy, cx, cy, width, height, bounds: np.ndarray) -> np.ndarray:
    """The 8 corners of each view's frustum between its near and far bound: [n * 8, 3] points.

    ``c2w`` [n, 3, 4] OpenCV camera-to-world, intrinsics [n] each in pixels, ``bounds`` [n, 2] the
    views' depth bounds (z-depths along the optical axis, as LLFF records them)."""
    u = np.stack([np.zeros_like(width), width, np.zeros_like(width), width], 1)  # [n, 4] image corners
    v = np.stack([np.zeros_like(height), np.zeros_like(height), height, height], 1)
    rays = np.stack([(u - cx[:, None]) / fx[:, None], (v - cy[:, None]) / fy[:, None], np.ones_like(u)], -1)
    cam = rays[:, None] * bounds[:, :, None, None]  # [n, 2, 4, 3] camera points at z = near, far
    world = np.einsum("nij,nbkj->nbki", c2w[:, :, :3], cam) + c2w[:, None, None, :, 3]
    return world.reshape(-1, 3)


def enclosing_sphere(points: np.ndarray, iterations: int = 2000) -> tuple[np.ndarray, float]:
    """A near-minimal sphere (centre [3], radius) that contains every point of ``points`` [m, 3].

    Badoiu-Clarkson: start at the centre of the bounding box, step towards the farthest point by
    1 / (k + 1); the centre comes within about ``R / sqrt(k)`` of the minimal ball's, and the radius
    is the exact distance to the farthest point from it, so every point is inside.
    """
    center = 0.5 * (points.min(0) + points.max(0))
    for k in range(1, iterations + 1):
        far = points[np.argmax(np.sum((points - center) ** 2, -1))]
        center = center + (far - center) / (k + 1)
    return center, float(np.sqrt(np.max(np.sum((points - center) ** 2, -1))))


def load_llff(cfg: DatasetConfig) -> Scene:
    root = Path(cfg.path)
    pb_path = root / "poses_bounds.npy"
    arr = read_poses_bounds(pb_path)
    n = arr.shape[0]
    notes: list[str] = []
    folder, resize = choose_folder(root, cfg.downscale, notes)
    images = list_images(folder)
    if len(images) != n:
        raise DatasetError(folder, f"{len(images)} images but {pb_path.name} has {n} poses (they must match)")
    masks = match_masks(root, folder, images) if cfg.masks else None

    poses = arr[:, :15].reshape(n, 3, 5)  # [n, 3, 5]
    bounds = arr[:, 15:17].copy()  # [n, 2]
    rec_h, rec_w, focal = poses[:, 0, 4], poses[:, 1, 4], poses[:, 2, 4]  # [n] at the recorded size
    sizes = np.array([image_size(p) for p in images], dtype=np.float64)  # [n, 2] (w, h) on disk
    factor = float(folder.name.split("_")[1]) if folder.name != "images" else 1.0  # images_N/ holds 1/N-size copies
    check_sizes(images, sizes, np.stack([rec_w, rec_h], 1), pb_path, notes, 1.0 / factor)
    sx, sy = sizes[:, 0] / rec_w, sizes[:, 1] / rec_h
    out_wh = np.array([scaled_size(w, h, resize) for w, h in sizes], dtype=np.float64)  # [n, 2]
    fx = focal * sx * out_wh[:, 0] / sizes[:, 0]
    fy = focal * sy * out_wh[:, 1] / sizes[:, 1]

    # 1. [down, right, back] -> [right, up, back]
    c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)  # [n, 3, 4]
    c2w = clean_rotations(c2w, pb_path, notes)
    # forward-facing or 360, as the COLMAP reader tells them: every view within 45 degrees of the mean
    angles = view_angles(c2w)
    spherify = bool(cfg.spherify or not looks_forward(angles)) and n > 1
    # 2. rescale, 3. recentre, 4. spherify; each step also applied to scene_from_world
    scale = 1.0 / (bounds.min() * cfg.bd_factor) if cfg.bd_factor > 0 else 1.0
    scene_from_world = np.diag([scale, scale, scale, 1.0])
    c2w[:, :, 3] *= scale
    bounds *= scale
    recentre = np.linalg.inv(average_pose(c2w))
    c2w, bounds = transform_poses(recentre, c2w, bounds)
    scene_from_world = recentre @ scene_from_world
    if spherify:
        sphere = spherify_transform(c2w)
        c2w, bounds = transform_poses(sphere, c2w, bounds)
        scene_from_world = sphere @ scene_from_world

    c2w_cv = opengl_to_opencv(torch.from_numpy(c2w)).numpy()  # 5. the one axis conversion
    ndc = bool(cfg.ndc and not spherify)
    if spherify != bool(cfg.spherify) or angles.max() > FORWARD_ANGLE:  # not the plain forward-facing LLFF capture
        notes.append(capture_note(not spherify, angles, ndc, "dataset.spherify=true" if cfg.spherify else ""))
    if spherify:
        center, radius = np.zeros(3), 1.0
        render = orbit_from_cameras(torch.from_numpy(c2w_cv), torch.zeros(3), cfg.render_frames)
    else:
        # the sphere around everything the cameras see between their near and far bounds (the
        # world-space scene of NeuS and of NeRF with ndc=false): each view's frustum corners there
        corners = frustum_corners(c2w_cv, fx, fy, out_wh[:, 0] / 2, out_wh[:, 1] / 2, out_wh[:, 0],
                                  out_wh[:, 1], bounds)
        center, radius = enclosing_sphere(corners)
        # the classic spiral: focus between 0.9 x the nearest and 5 x the farthest bound, in disparity
        focus = focus_depth_from_bounds(float(bounds.min()) * 0.9, float(bounds.max()) * 5.0)
        render = spiral_path(torch.from_numpy(c2w_cv), focus, cfg.render_frames)
    return Scene(
        format="llff",
        root=root,
        image_paths=images,
        cameras=make_cameras(fx, fy, out_wh[:, 0] / 2, out_wh[:, 1] / 2, out_wh[:, 0], out_wh[:, 1], c2w_cv),
        splits=holdout_splits(n, cfg.llffhold),
        near=0.0 if ndc else float(bounds.min() * 0.9),
        far=1.0 if ndc else float(bounds.max()),
        mask_paths=masks,
        background=(0.0, 0.0, 0.0) if cfg.background is None else tuple(float(c) for c in cfg.background),
        sphere_center=torch.as_tensor(center, dtype=torch.float32),
        sphere_radius=float(radius),
        ndc=ndc,
        render_c2w=render.float(),
        downscale=float(resize),
        metadata={
            "world_from_scene": np.linalg.inv(scene_from_world),
            "image_folder": folder.name,
            "bounds": bounds,  # [n, 2] per-view near/far depths in scene units
            "ndc_near_plane": NDC_NEAR_PLANE,
            "warnings": notes,
        },
    )
