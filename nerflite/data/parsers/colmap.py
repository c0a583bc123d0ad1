"""COLMAP format: ``images/`` (optionally ``images_2/4/8``, ``masks/``) and a sparse model.

The model is ``sparse/0/`` (or ``sparse/`` itself) with cameras, images and points3D in ``.bin``
or ``.txt`` (``colmap_io``); when ``sparse/`` holds several sub-models, the one with the most
registered images is used (with a note). Only registered images are views, sorted by name; each
view has its own intrinsics (several cameras per model are fine), scaled to the size of the image
files actually read (people downscale photos after SfM) and by ``downscale``. Lens distortion is
kept (``nerflite.cameras``: rays are distorted, images never resampled).

Conversion into nerflite's frame (``metadata["world_from_scene"]`` maps back to COLMAP's world):
1. COLMAP poses are world-to-camera with OpenCV axes already: ``c2w = [R^T | -R^T t]``
   (``colmap_c2w``, the one conversion).
2. Inlier points: sparse points inside the per-axis [1st, 99th] percentile box, so stray
   far-away or near-camera points do not move the frame.
3. Forward-facing captures (every camera within 45 degrees of the mean viewing direction and 95%
   of the inlier points in front of the mean camera, unless ``spherify``): the mean camera becomes
   the identity looking down -z (as LLFF), then the scale puts the nearest view bound at
   ``1 / bd_factor``; NDC when ``ndc``.
   360-degree captures: the point nearest all optical axes (else the median point) becomes the
   origin, the mean camera up axis +z, and the scale makes the content radius 1 (the 99th
   percentile inlier distance from the origin, at most 0.9 x the nearest camera's distance).
4. Per-view bounds: the 1st and 99th percentiles of the distances (and z-depths) of the inlier
   points each image observes, times 0.9 and 1.1; ``near``/``far`` are their extremes (360:
   widened to cover the unit sphere). Without points they are guessed from the camera spread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.camera_paths import focus_depth_from_bounds, orbit_from_cameras, spiral_path
from nerflite.cameras import N_DISTORTION
from nerflite.data.images import image_size
from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers.common import (
    IMAGE_EXTENSIONS, focus_point, holdout_splits, make_cameras, natural_key, normalize, scaled_size,
)
from nerflite.data.parsers.llff import NDC_NEAR_PLANE, choose_folder
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
             "FULL_OPENCV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")  # FULL_OPENCV only with k4 = k5 = k6 = 0
FORWARD_COS = np.cos(np.radians(45.0))  # forward-facing: every view within this of the mean direction
MIN_REGISTERED = 0.8  # warn when fewer image files than this are registered


def find_model(root: Path, notes: list[str]) -> Path:
    """The model folder: ``sparse/`` when it holds the files, else its sub-model with most images."""
    sparse = root / "sparse"
    if cio.model_extension(sparse):
        return sparse
    subs = sorted((d for d in sparse.iterdir() if d.is_dir() and cio.model_extension(d)), key=natural_key) \
        if sparse.is_dir() else []
    if not subs:
        raise DatasetError(sparse / "0", "no COLMAP model: expected sparse/0/ (or sparse/) with cameras, "
                                          "images and points3D (.bin or .txt)")
    if len(subs) == 1:
        return subs[0]
    counts = [len(cio.read_model(d, points=False).images) for d in subs]
    best = int(np.argmax(counts))
    others = ", ".join(f"{d.name}: {k}" for d, k in zip(subs, counts) if d != subs[best])
    notes.append(f"sparse/ holds {len(subs)} models: using sparse/{subs[best].name} with the most registered "
                 f"images ({counts[best]}; {others})")
    return subs[best]


def camera_intrinsics(cam: cio.Camera, source: Path) -> tuple[float, float, float, float, np.ndarray, bool]:
    """``fx, fy, cx, cy``, distortion [6] (k1, k2, k3, k4, p1, p2) and fisheye of a COLMAP camera."""
    p, d = cam.params, np.zeros(N_DISTORTION)
    m = cam.model
    if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        fx = fy = p[0]
        cx, cy, k = p[1], p[2], p[3:]
        d[: len(k)] = k
        return fx, fy, cx, cy, d, m.endswith("FISHEYE")
    if m in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE") or (m == "FULL_OPENCV" and not np.any(p[9:12])):
        if m in ("OPENCV", "FULL_OPENCV"):
            d[[0, 1, 4, 5]] = p[4:8]  # k1, k2, p1, p2
            d[2] = p[8] if m == "FULL_OPENCV" else 0.0  # k3
        elif m == "OPENCV_FISHEYE":
            d[:4] = p[4:8]
        return p[0], p[1], p[2], p[3], d, m == "OPENCV_FISHEYE"
    why = "with k4..k6 (rational radial terms) " if m == "FULL_OPENCV" else ""
    raise DatasetError(source, f"camera {cam.id} uses the {m} model {why}which nerflite does not support "
                               f"(supported: {', '.join(SUPPORTED)}); undistort with `colmap image_undistorter`")


def colmap_c2w(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """nerflite camera-to-worlds [n, 3, 4] from COLMAP world-to-camera quaternions [n, 4], translations [n, 3]."""
    R = np.stack([cio.qvec_to_rotmat(q) for q in qvec])  # world-to-camera [n, 3, 3]
    Rt = np.transpose(R, (0, 2, 1))
    return np.concatenate([Rt, -Rt @ tvec[:, :, None]], axis=2)


def apply_similarity(m: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Move camera-to-worlds [n, 3, 4] by a similarity ``m`` (4x4, uniform scale)."""
    rot = m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3]))
    return np.concatenate([rot @ c2w[:, :, :3], m[:3, :3] @ c2w[:, :, 3:] + m[:3, 3:]], axis=2)


def inlier_points(xyz: np.ndarray) -> np.ndarray:
    """Bool [m]: inside the per-axis [1st, 99th] percentile box (all of them when there are few)."""
    if len(xyz) < 20:
        return np.ones(len(xyz), bool)
    lo, hi = np.percentile(xyz, 1, axis=0), np.percentile(xyz, 99, axis=0)
    return np.all((xyz >= lo) & (xyz <= hi), axis=1)


def view_bounds(c2w: np.ndarray, obs: list[np.ndarray], xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-view [near, far] z-depths and distances [n, 2] from the points each view sees (NaN: none)."""
    z_b, d_b = np.full((len(c2w), 2), np.nan), np.full((len(c2w), 2), np.nan)
    for i, idx in enumerate(obs):
        rel = xyz[idx] - c2w[i, :, 3]  # [k, 3]
        z = rel @ c2w[i, :, 2]
        keep = z > 0
        if keep.sum() >= 3:
            z_b[i] = np.percentile(z[keep], [1, 99]) * [0.9, 1.1]
            d_b[i] = np.percentile(np.linalg.norm(rel[keep], axis=1), [1, 99]) * [0.9, 1.1]
    return z_b, d_b


def observed(images: list[cio.Image], ids: np.ndarray, good: np.ndarray) -> list[np.ndarray]:
    """Per image, the indices [k] into the points of the inlier points its keypoints observe."""
    order = np.argsort(ids)
    out = []
    for im in images:
        want = im.point3D_ids[im.point3D_ids >= 0]
        if len(ids) == 0 or len(want) == 0:
            out.append(np.zeros(0, np.int64))
            continue
        j = order[np.clip(np.searchsorted(ids, want, sorter=order), 0, len(ids) - 1)]
        out.append(j[(ids[j] == want) & good[j]])
    return out


def fill_bounds(b: np.ndarray, guess: tuple[float, float]) -> np.ndarray:
    """Views without points take the others' extremes, or ``guess`` when no view has points."""
    ok = ~np.isnan(b[:, 0])
    fallback = (b[ok, 0].min(), b[ok, 1].max()) if ok.any() else guess
    return np.where(ok[:, None], b, np.asarray(fallback)[None])


def normalisation(c2w: np.ndarray, pts: np.ndarray, forward: bool, bd_factor: float, notes: list[str]) -> np.ndarray:
    """4x4 ``scene_from_world`` (step 3 of the module docstring) for cameras [n, 3, 4] and inlier points [m, 3]."""
    centers, fwd = c2w[:, :, 3], normalize(c2w[:, :, 2])
    if forward:
        mean_c, mean_f = centers.mean(0), normalize(fwd.sum(0))
        right = normalize(np.cross(mean_f, -normalize(c2w[:, :, 1].sum(0))))  # forward x up
        down = np.cross(mean_f, right)
        frame = np.eye(4)
        frame[:3, :3] = np.stack([right, -down, -mean_f], 1)  # scene axes: x right, y up, z back
        frame[:3, 3] = mean_c
        move = np.linalg.inv(frame)
        depth = (pts - mean_c) @ mean_f if len(pts) else np.zeros(0)
        near = np.percentile(depth[depth > 0], 1) if (depth > 0).sum() >= 3 else None
        if near is None:
            spread = float(np.linalg.norm(centers - mean_c, axis=1).max()) or 1.0
            near = 10.0 * spread
            notes.append("no sparse points in front of the cameras: the nearest content is guessed at 10x "
                         "the camera spread (set dataset.near / dataset.far if this is wrong)")
        scale = 1.0 / (near * (bd_factor if bd_factor > 0 else 1.0))
        return np.diag([scale, scale, scale, 1.0]) @ move
    center = focus_point(c2w)
    cam_d = np.linalg.norm(centers - center, axis=1)
    in_front = ((center - centers) * fwd).sum(1) > 0
    if not np.isfinite(center).all() or in_front.mean() < 0.9 or cam_d.min() < 1e-9:
        center = np.median(pts, axis=0) if len(pts) else centers.mean(0)
        cam_d = np.linalg.norm(centers - center, axis=1)
    up = -normalize(c2w[:, :, 1].sum(0))
    a = normalize(np.cross(up, fwd.mean(0) if abs(fwd.mean(0) @ up) < 0.99 * np.linalg.norm(fwd.mean(0))
                           else np.array([1.0, 0.0, 0.0])))
    frame = np.eye(4)
    frame[:3, :3] = np.stack([a, np.cross(up, a), up], 1)
    frame[:3, 3] = center
    if len(pts):
        radius = min(float(np.percentile(np.linalg.norm(pts - center, axis=1), 99)), 0.9 * float(cam_d.min()))
    else:
        radius = 0.5 * float(cam_d.min())
        notes.append("no sparse points: the content is assumed within half the nearest camera's distance of "
                     "the point the cameras look at (set dataset.radius if this is wrong)")
    radius = radius if radius > 0 else 1.0
    return np.diag([1 / radius, 1 / radius, 1 / radius, 1.0]) @ np.linalg.inv(frame)


def find_masks(root: Path, names: list[str]) -> list[Path] | None:
    """``masks/NAME`` with any image extension, or ``masks/NAME.png``; None without ``masks/``."""
    folder = root / "masks"
    if not folder.is_dir():
        return None
    out = []
    for name in names:
        stem = folder / Path(name).with_suffix("")
        cands = [folder / (name + ".png")] + [stem.with_name(stem.name + e) for e in IMAGE_EXTENSIONS]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            missing = sum(1 for n in names if not any(c.is_file() for c in
                          [folder / (n + ".png")] + [folder / (Path(n).stem + e) for e in IMAGE_EXTENSIONS]))
            raise DatasetError(stem.with_suffix(".png"), f"mask is missing ({missing} of {len(names)} images "
                               "have none; expected masks/<name>.png or the image's stem with any image extension)")
        out.append(hit)
    return out


def load_colmap(cfg: DatasetConfig) -> Scene:
    root = Path(cfg.path)
    notes: list[str] = []
    model_dir = find_model(root, notes)
    ext = cio.model_extension(model_dir)
    model = cio.read_model(model_dir)
    cams_file, imgs_file = model_dir / f"cameras{ext}", model_dir / f"images{ext}"
    images = sorted(model.images.values(), key=lambda im: natural_key(Path(im.name)))
    if not images:
        raise DatasetError(imgs_file, "no registered images (the reconstruction holds no posed image)")
    folder, resize = choose_folder(root, cfg.downscale, notes)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}
    paths = [folder / im.name for im in images]
    for im, p in zip(images, paths):
        if im.camera_id not in model.cameras:
            raise DatasetError(imgs_file, f"image {im.name} uses camera {im.camera_id}, which is not in {cams_file.name}")
        if not p.is_file():
            raise DatasetError(p, f"image file is missing (registered in {imgs_file.name})")
    n = len(images)
    if n < MIN_REGISTERED * len(files):
        notes.append(f"only {n} of {len(files)} image files in {folder.name}/ are registered in "
                     f"{model_dir.relative_to(root)} ({100 * n / len(files):.0f}%): the others have no pose and are unused")

    # intrinsics of each view, scaled to its file, then by `resize`
    per_cam = {cid: camera_intrinsics(c, cams_file) for cid, c in model.cameras.items()
               if any(im.camera_id == cid for im in images)}
    sizes = np.array([image_size(p) for p in paths], np.float64)  # [n, 2] on disk
    model_wh = np.array([[model.cameras[im.camera_id].width, model.cameras[im.camera_id].height] for im in images],
                        np.float64)
    sx, sy = sizes[:, 0] / model_wh[:, 0], sizes[:, 1] / model_wh[:, 1]
    if np.any(np.abs(sx / sy - 1) > 0.01):
        i = int(np.argmax(np.abs(sx / sy - 1)))
        raise DatasetError(paths[i], f"is {sizes[i, 0]:g}x{sizes[i, 1]:g} but its camera {images[i].camera_id} in "
                                     f"{cams_file.name} is {model_wh[i, 0]:g}x{model_wh[i, 1]:g}: not the same "
                                     "aspect ratio (cropped or rotated after SfM?)")
    expect = 1.0 / float(folder.name.split("_")[1]) if folder.name != "images" else 1.0
    off = np.flatnonzero(np.abs(sx / expect - 1) > 0.01)
    if len(off):
        i = off[0]
        notes.append(f"{len(off)} images are {sx[i]:.3g}x the size of their camera in {cams_file.name} (e.g. "
                     f"{images[i].name}: {sizes[i, 0]:g}x{sizes[i, 1]:g}, camera {model_wh[i, 0]:g}x"
                     f"{model_wh[i, 1]:g}): intrinsics scaled to the files")
    out_wh = np.array([scaled_size(w, h, resize) for w, h in sizes], np.float64)
    k = np.array([per_cam[im.camera_id][:4] for im in images])  # [n, 4] fx, fy, cx, cy at the model size
    s = out_wh / model_wh  # [n, 2]
    dist = np.stack([per_cam[im.camera_id][4] for im in images])
    fish = np.array([per_cam[im.camera_id][5] for im in images])

    # poses, points, frame
    c2w = colmap_c2w(np.stack([im.qvec for im in images]), np.stack([im.tvec for im in images]))
    if not np.all(np.isfinite(c2w)):
        raise DatasetError(imgs_file, "camera poses contain NaN or infinite values")
    pts = model.points
    good = inlier_points(pts.xyz)
    fwd = normalize(c2w[:, :, 2])
    mean_f = normalize(fwd.sum(0))
    front = ((pts.xyz[good] - c2w[:, :, 3].mean(0)) @ mean_f > 0).mean() if good.any() else 1.0
    forward = bool(not cfg.spherify and n > 1 and (fwd @ mean_f).min() > FORWARD_COS and front >= 0.95)
    scene_from_world = normalisation(c2w, pts.xyz[good], forward, cfg.bd_factor, notes)
    c2w = apply_similarity(scene_from_world, c2w)
    scale = float(np.cbrt(np.linalg.det(scene_from_world[:3, :3])))
    xyz = pts.xyz @ scene_from_world[:3, :3].T + scene_from_world[:3, 3]
    z_b, d_b = view_bounds(c2w, observed(images, pts.ids, good), xyz)
    cam_d = np.linalg.norm(c2w[:, :, 3], axis=1)
    if forward:
        z_b = fill_bounds(z_b, (1.0 / max(cfg.bd_factor, 1e-6), 100.0))
        d_b = fill_bounds(d_b, (float(z_b[:, 0].min()), 1.5 * float(z_b[:, 1].max())))
        ndc = bool(cfg.ndc)
        angle = np.degrees(np.arccos(np.clip((fwd @ mean_f).min(), -1, 1)))
        notes.append(f"forward-facing capture (views within {angle:.0f} deg of their mean direction, "
                     f"{100 * front:.0f}% of the points in front)"
                     + (": rays in NDC" if ndc else "; ndc=false: rays in scene units, far may be large"))
        mid = 0.5 * (z_b.min() + z_b.max())
        center, radius = np.array([0.0, 0.0, -mid]), 0.5 * (z_b.max() - z_b.min()) + float(cam_d.max())
        focus = focus_depth_from_bounds(float(z_b.min()) * 0.9, float(z_b.max()) * 5.0)
        render = spiral_path(torch.from_numpy(c2w), focus, cfg.render_frames)
        near, far = (0.0, 1.0) if ndc else (float(d_b[:, 0].min()), float(d_b[:, 1].max()))
    else:  # 360: the bounds also cover the unit sphere around the origin
        ndc, center, radius = False, np.zeros(3), 1.0
        d_b = fill_bounds(d_b, (float(cam_d.min()) - 1.0, float(cam_d.max()) + 1.0))
        z_b = fill_bounds(z_b, (float(d_b[:, 0].min()), float(d_b[:, 1].max())))
        near = max(min(float(d_b[:, 0].min()), float(cam_d.min()) - 1.0), 0.01 * float(cam_d.min()))
        far = max(float(d_b[:, 1].max()), float(cam_d.max()) + 1.0)
        render = orbit_from_cameras(torch.from_numpy(c2w), torch.zeros(3, dtype=torch.float64), cfg.render_frames)

    names = [im.name for im in images]
    used = sorted(per_cam)
    info = {
        "model": model_dir.relative_to(root).as_posix(), "format": ext[1:], "registered": n, "image_files": len(files),
        "points": len(pts), "inlier_points": int(good.sum()), "forward_facing": forward, "scale": scale,
        "cameras": [{"id": int(c), "model": model.cameras[c].model, "width": model.cameras[c].width,
                     "height": model.cameras[c].height, "params": [float(v) for v in model.cameras[c].params],
                     "images": sum(im.camera_id == c for im in images)} for c in used],
    }
    return Scene(
        format="colmap", root=root, image_paths=paths,
        cameras=make_cameras(k[:, 0] * s[:, 0], k[:, 1] * s[:, 1], k[:, 2] * s[:, 0], k[:, 3] * s[:, 1],
                             out_wh[:, 0], out_wh[:, 1], c2w, dist if np.any(dist) or fish.any() else None,
                             fish if fish.any() else None),
        splits=holdout_splits(n, cfg.holdout), near=near, far=far,
        mask_paths=find_masks(root, names) if cfg.masks else None,
        background=(0.0, 0.0, 0.0) if cfg.background is None else tuple(float(c) for c in cfg.background),
        sphere_center=torch.as_tensor(center, dtype=torch.float32), sphere_radius=float(radius), ndc=ndc,
        render_c2w=render.float(), downscale=float(resize),
        metadata={"world_from_scene": np.linalg.inv(scene_from_world), "image_folder": folder.name,
                  "bounds": z_b, "ndc_near_plane": NDC_NEAR_PLANE, "warnings": notes, "colmap": info},
    )
