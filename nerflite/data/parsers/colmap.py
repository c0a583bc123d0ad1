"""COLMAP format: ``images/`` (optionally ``images_2/4/8``, ``masks/``) and a sparse model.

The model is ``sparse/0/`` (or ``sparse/`` itself) with cameras, images and points3D in ``.bin``
or ``.txt`` (``colmap_io``); when ``sparse/`` holds several sub-models, the one with the most
registered images is used (with a note). Only registered images are views, sorted by name; each
view has its own intrinsics (several cameras per model are fine), scaled to the size of the image
files actually read (people downscale photos after SfM) and by ``downscale``. Lens distortion is
kept (``nerflite.cameras``: rays are distorted, images never resampled).

Poses: COLMAP stores world-to-camera transforms with OpenCV axes already, so
``c2w = [R^T | -R^T t]`` (``colmap_c2w``, the one conversion). The scene frame, bounds and the
forward-facing / 360 choice come from ``colmap_frame`` (documented there);
``metadata["world_from_scene"]`` maps scene coordinates back to COLMAP's world.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.cameras import N_DISTORTION, Cameras, generate_rays, project
from nerflite.data.images import image_size
from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers.colmap_frame import apply_similarity, frame_scene, normalisation
from nerflite.data.parsers.common import (
    IMAGE_EXTENSIONS,
    check_finite,
    check_sizes,
    holdout_splits,
    make_cameras,
    natural_key,
    scaled_size,
)
from nerflite.data.parsers.llff import NDC_NEAR_PLANE, choose_folder
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
             "FULL_OPENCV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")  # FULL_OPENCV only with k4 = k5 = k6 = 0
POSE_NAMES = ["QW", "QX", "QY", "QZ", "TX", "TY", "TZ"]  # an images file's pose columns
MIN_REGISTERED = 0.8  # warn when fewer image files than this are registered


def probe(root: Path) -> tuple[bool, bool]:
    """(a model under ``sparse/``, an image folder) for format detection. LLFF releases ship the
    COLMAP model their ``poses_bounds.npy`` was made from: there the model does not count (LLFF
    wins; ``dataset.format=colmap`` reads the model instead)."""
    sparse = root / "sparse"
    if (root / "poses_bounds.npy").is_file() or not sparse.is_dir():
        return False, False
    model = bool(cio.model_extension(sparse)) or any(d.is_dir() and cio.model_extension(d) for d in sparse.iterdir())
    return model, (root / "images").is_dir() or any(d.is_dir() for d in root.glob("images_*"))


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
    check_finite(p, source, f"camera {cam.id}'s parameters", cio.PARAM_NAMES.get(cam.model))
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


def observed_points(images: list[cio.Image], ids: np.ndarray) -> list[np.ndarray]:
    """Per image, the indices [k] into the model's points of those its keypoints observe."""
    order = np.argsort(ids)
    out = []
    for im in images:
        want = im.point3D_ids[im.point3D_ids >= 0]
        if len(ids) == 0 or len(want) == 0:
            out.append(np.zeros(0, np.int64))
            continue
        j = order[np.clip(np.searchsorted(ids, want, sorter=order), 0, len(ids) - 1)]
        out.append(j[ids[j] == want])
    return out


def _mask_of(folder: Path, name: str) -> Path | None:
    stem = folder / Path(name).with_suffix("")
    cands = [folder / (name + ".png")] + [stem.with_name(stem.name + e) for e in IMAGE_EXTENSIONS]
    return next((c for c in cands if c.is_file()), None)


def find_masks(root: Path, names: list[str]) -> list[Path] | None:
    """``masks/NAME.png`` or ``masks/`` + NAME's stem with any image extension; None without ``masks/``."""
    folder = root / "masks"
    if not folder.is_dir():
        return None
    out = [_mask_of(folder, name) for name in names]
    if None in out:
        i = out.index(None)
        raise DatasetError(folder / (names[i] + ".png"), f"mask is missing ({out.count(None)} of {len(names)} "
                           "images have none; expected masks/NAME.png or the image's stem with any image extension)")
    return out


def lens_warnings(cams: Cameras, first_view: dict[int, int], source: Path, per_edge: int = 200) -> list[str]:
    """Cameras whose lens model cannot be inverted out to the image border (it folds over there):
    rays through the border pixels, projected back, must land within 0.1 px."""
    out = []
    for cid, v in first_view.items():
        c = cams[v]
        c = replace(c, **{k: getattr(c, k).double() for k in ("fx", "fy", "cx", "cy", "c2w")},
                    distortion=None if c.distortion is None else c.distortion.double())
        w, h = float(c.width[0]), float(c.height[0])
        t = torch.linspace(0, 1, per_edge, dtype=torch.float64)
        x = torch.cat([t * w, t * w, torch.zeros_like(t), torch.full_like(t, w)])
        y = torch.cat([torch.zeros_like(t), torch.full_like(t, h), t * h, t * h])
        idx = torch.zeros_like(x, dtype=torch.long)
        rays = generate_rays(c, idx, y, x)
        xy, _ = project(c, idx, rays.origins + rays.directions)
        err = (xy - torch.stack([x, y], -1)).norm(dim=-1).nan_to_num(float("inf"))
        if float(err.max()) > 0.1:
            i = int(err.argmax())
            out.append(f"{source.name}: camera {cid}'s lens model folds over near the image border (pixel "
                       f"({float(x[i]):.0f}, {float(y[i]):.0f}) cannot be undistorted): rays there are inexact")
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
            raise DatasetError(imgs_file,
                               f"image {im.name} uses camera {im.camera_id}, which is not in {cams_file.name}")
        if not p.is_file():
            raise DatasetError(p, f"image file is missing (registered in {imgs_file.name})")
    n = len(images)
    if n < MIN_REGISTERED * len(files):
        notes.append(f"only {n} of {len(files)} image files in {folder.name}/ are registered in "
                     f"{model_dir.relative_to(root)} ({100 * n / len(files):.0f}%): the others have no pose "
                     "and are unused")

    # intrinsics of each view, scaled to its file, then by `resize`
    per_cam = {cid: camera_intrinsics(c, cams_file) for cid, c in model.cameras.items()
               if any(im.camera_id == cid for im in images)}
    sizes = np.array([image_size(p) for p in paths], np.float64)  # [n, 2] on disk
    model_wh = np.array([[model.cameras[im.camera_id].width, model.cameras[im.camera_id].height] for im in images],
                        np.float64)
    expect = 1.0 / float(folder.name.split("_")[1]) if folder.name != "images" else 1.0
    check_sizes(paths, sizes, model_wh, cams_file, notes, expect)
    out_wh = np.array([scaled_size(w, h, resize) for w, h in sizes], np.float64)
    k = np.array([per_cam[im.camera_id][:4] for im in images])  # [n, 4] fx, fy, cx, cy at the model size
    s = out_wh / model_wh  # [n, 2]
    dist = np.stack([per_cam[im.camera_id][4] for im in images])
    fish = np.array([per_cam[im.camera_id][5] for im in images])

    # poses, points, frame
    for im in images:
        check_finite(np.concatenate([im.qvec, im.tvec]), imgs_file, f"image {im.name}'s pose", POSE_NAMES)
    c2w = colmap_c2w(np.stack([im.qvec for im in images]), np.stack([im.tvec for im in images]))
    pts, pts_file = model.points, model_dir / f"points3D{ext}"
    check_finite(pts.xyz, pts_file, "a point's position", ["X", "Y", "Z"], row="point")
    if not len(pts):
        what = "holds no points" if pts_file.is_file() else "is missing"
        notes.append(f"{pts_file.relative_to(root)} {what}: the scene's frame, scale and bounds come from the cameras "
                     "alone (guessed from where their views converge), and forward-facing vs 360 from their directions")
    fr = frame_scene(c2w, pts, observed_points(images, pts.ids), cfg, notes, pts_file)
    c2w = fr.c2w

    names = [im.name for im in images]
    used = sorted(per_cam)
    info = {
        "model": model_dir.relative_to(root).as_posix(), "format": ext[1:], "registered": n, "image_files": len(files),
        "points": len(pts), "inlier_points": fr.inliers, "forward_facing": fr.forward, "scale": fr.scale,
        "cameras": [{"id": int(c), "model": model.cameras[c].model, "width": model.cameras[c].width,
                     "height": model.cameras[c].height, "params": [float(v) for v in model.cameras[c].params],
                     "images": sum(im.camera_id == c for im in images)} for c in used],
    }
    cameras = make_cameras(k[:, 0] * s[:, 0], k[:, 1] * s[:, 1], k[:, 2] * s[:, 0], k[:, 3] * s[:, 1],
                           out_wh[:, 0], out_wh[:, 1], c2w, dist if np.any(dist) or fish.any() else None,
                           fish if fish.any() else None)
    if cameras.has_lens:
        notes += lens_warnings(cameras, {cid: [im.camera_id for im in images].index(cid) for cid in used}, cams_file)
    return Scene(
        format="colmap", root=root, image_paths=paths,
        cameras=cameras,
        splits=holdout_splits(n, cfg.holdout), near=fr.near, far=fr.far,
        mask_paths=find_masks(root, names) if cfg.masks else None,
        background=(0.0, 0.0, 0.0) if cfg.background is None else tuple(float(c) for c in cfg.background),
        sphere_center=torch.as_tensor(fr.center, dtype=torch.float32), sphere_radius=fr.radius, ndc=fr.ndc,
        render_c2w=fr.render.float(), downscale=float(resize),
        metadata={"world_from_scene": np.linalg.inv(fr.scene_from_world), "image_folder": folder.name,
                  "bounds": fr.bounds, "ndc_near_plane": NDC_NEAR_PLANE, "warnings": notes, "colmap": info},
    )


__all__ = ["apply_similarity", "camera_intrinsics", "colmap_c2w", "find_model", "load_colmap", "normalisation",
           "probe"]
