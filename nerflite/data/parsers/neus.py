"""NeuS / DTU format: ``cameras_sphere.npz`` (or ``cameras.npz``), ``image/`` and optional ``mask/``.

MonoSDF's layout of the same cameras (``cameras.npz`` beside ``000000_rgb.png`` ..., with monocular
depth / normal cues as ``.npy`` files, which are not used) is read too when its cameras fit its
image files; MonoSDF's DTU release keeps the cameras of the full 1600x1200 photos and crops and
resizes in its loader, which nerflite refuses in one line (a principal point outside the image
means cameras made for images of another size, in any layout).

The npz holds, per image i (sorted file order), ``world_mat_i``: the 4x4 projection
K [R | t] from world points to pixels, and ``scale_mat_i``: a similarity that maps the unit sphere
onto the object of interest. ``P = world_mat @ scale_mat`` projects points of the normalised
frame (object inside the unit sphere), so decomposing P gives cameras directly in that frame:
nerflite's scene frame here, with ``metadata["world_from_scene"] = scale_mat_0`` mapping back to
the dataset's world (the frame of DTU's ground-truth points).

The projection matrices put pixel centres at integer coordinates; nerflite puts them at +0.5,
so ``cx, cy`` get +0.5 (the one place this happens). Masks are images thresholded at 127 when
decoded (``nerflite.data.images.decode_mask``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nerflite.camera_paths import orbit_from_cameras
from nerflite.data.images import image_size
from nerflite.data.parsers.common import (
    IMAGE_EXTENSIONS,
    check_finite,
    holdout_splits,
    list_images,
    make_cameras,
    natural_key,
    scaled_size,
)
from nerflite.data.scene import DatasetError, Scene

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

IMAGE_DIRS = ("image", "images", "rgb")
MASK_DIRS = ("mask", "masks")


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a 3x4 projection ``P ~ K [R | -R C]`` into K (upper triangular, positive diagonal,
    K[2, 2] = 1), the world-to-camera rotation R (det +1) and the camera centre C (RQ by hand)."""
    M = P[:, :3]
    if np.linalg.det(M) < 0:  # P is defined up to scale, sign included
        P, M = -P, -M
    flip = np.eye(3)[::-1]
    Q, U = np.linalg.qr((flip @ M).T)  # (flip M)^T = Q U  =>  M = (flip U^T flip) (flip Q^T)
    K, R = flip @ U.T @ flip, flip @ Q.T
    signs = np.diag(np.sign(np.diag(K)))
    K, R = K @ signs, signs @ R
    center = -np.linalg.solve(M, P[:, 3])
    return K / K[2, 2], R, center


def read_cameras_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(path, f"cannot read camera file ({e})") from None


def find_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def camera_matrix(cams: dict, key: str, path: Path, n_images: int) -> np.ndarray:
    if key not in cams:
        raise DatasetError(path, f"no {key} ({n_images} images need world_mat_i and scale_mat_i each)")
    m = cams[key]
    if m.shape not in ((4, 4), (3, 4)):
        raise DatasetError(path, f"{key} must be a 4x4 matrix, got shape {m.shape}")
    return np.vstack([check_finite(m[:3], path, key), [0.0, 0.0, 0.0, 1.0]])


def monosdf_images(root: Path) -> list[Path]:
    """MonoSDF's layout: ``NNNNNN_rgb.png`` (with ``_depth.npy``, ``_normal.npy``, ``_mask.npy``)
    beside ``cameras.npz``, no image folder. Its images, in view order ([] for other layouts)."""
    return sorted((p for p in root.glob("*_rgb.*") if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)


def check_principal_point(K: np.ndarray, w: int, h: int, image: Path, cam_path: Path, i: int, monosdf: bool) -> None:
    """A projection whose principal point lies outside its image belongs to images of another size
    (cropped or resized after calibration): reading it would put every ray in the wrong place."""
    cx, cy = K[0, 2] + 0.5, K[1, 2] + 0.5
    if 0.0 <= cx <= w and 0.0 <= cy <= h:
        return
    where = f"world_mat_{i} puts the principal point at ({cx:.1f}, {cy:.1f}), outside its {w}x{h} image {image.name}"
    if monosdf:
        raise DatasetError(cam_path, f"{where}: this looks like MonoSDF's layout (cameras.npz with *_rgb.png), whose "
                                     "cameras are for the images before its loader crops and resizes them "
                                     "(center_crop_type); nerflite does not support that: use the NeuS / IDR release "
                                     "of the scene (image/, mask/, cameras_sphere.npz)")
    raise DatasetError(cam_path, f"{where}: the cameras are for images of another size (cropped or resized after "
                                 "calibration?)")


def load_neus(cfg: DatasetConfig) -> Scene:
    root = Path(cfg.path)
    notes: list[str] = []
    candidates = (cfg.cameras_file, "cameras_sphere.npz", "cameras.npz")
    cam_path = next((root / name for name in candidates if (root / name).is_file()), None)
    if cam_path is None:
        raise DatasetError(root / cfg.cameras_file, "camera file is missing (and no cameras.npz)")
    image_dir = find_dir(root, IMAGE_DIRS)
    monosdf = monosdf_images(root) if image_dir is None else []
    if image_dir is None and not monosdf:
        raise DatasetError(root / "image", "image folder is missing (expected image/, images/ or rgb/, or "
                                           "MonoSDF's NNNNNN_rgb.png files beside the camera file)")
    images = list_images(image_dir) if image_dir is not None else monosdf
    if not images:
        raise DatasetError(image_dir, "no images in the folder")
    n = len(images)
    mask_dir = find_dir(root, MASK_DIRS) if cfg.masks and image_dir is not None else None
    masks = None
    if mask_dir is not None:
        masks = list_images(mask_dir)
        if len(masks) != n:
            raise DatasetError(mask_dir, f"{len(masks)} masks but {n} images in {image_dir.name}/")
    if monosdf:
        cues = sorted({p.name.split("_", 1)[1] for p in root.glob("*_*.*") if p.suffix == ".npy"})
        unused = f": its {', '.join('*_' + c for c in cues)} files (monocular cues, masks) are not used" if cues else ""
        notes.append(f"MonoSDF layout ({n} *_rgb.png beside {cam_path.name}){unused}")

    cams = read_cameras_npz(cam_path)
    if "world_mat_0" not in cams:
        raise DatasetError(cam_path, "no world_mat_0 (not a NeuS/IDR camera file)")
    extra = sum(1 for k in cams if k.startswith("world_mat_") and k[10:].isdigit() and int(k[10:]) >= n)
    if extra:
        notes.append(f"{cam_path.name} has {extra} more cameras than the {n} images in {image_dir.name}/")
    scale_0 = camera_matrix(cams, "scale_mat_0", cam_path, n) if "scale_mat_0" in cams else np.eye(4)
    if "scale_mat_0" not in cams:
        notes.append(f"{cam_path.name} has no scale_mat_i: the world frame is used as it is (not normalised)")

    fx, fy, cx, cy, widths, heights, c2w = [], [], [], [], [], [], []
    for i, image in enumerate(images):
        world = camera_matrix(cams, f"world_mat_{i}", cam_path, n)
        scale = camera_matrix(cams, f"scale_mat_{i}", cam_path, n) if f"scale_mat_{i}" in cams else scale_0
        P = (world @ scale)[:3, :4]
        if not np.linalg.cond(P[:, :3]) < 1e10:  # also catches NaN / inf
            raise DatasetError(cam_path, f"world_mat_{i} @ scale_mat_{i} is singular (not a camera)")
        K, R, center = decompose_projection(P)
        if abs(K[0, 1]) > 1e-3 * K[0, 0]:
            notes.append(f"view {i}: skew {K[0, 1]:.3g} px of the projection matrix is ignored")
        w, h = image_size(image)
        check_principal_point(K, w, h, image, cam_path, i, monosdf)
        w2, h2 = scaled_size(w, h, cfg.downscale)
        sx, sy = w2 / w, h2 / h
        fx.append(K[0, 0] * sx), fy.append(K[1, 1] * sy)
        cx.append((K[0, 2] + 0.5) * sx), cy.append((K[1, 2] + 0.5) * sy)  # integer -> +0.5 pixel centres
        widths.append(w2), heights.append(h2)
        c2w.append(np.concatenate([R.T, center[:, None]], axis=1))
    c2w = np.stack(c2w)  # [n, 3, 4] OpenCV axes already (P = K [R | t] is OpenCV's model)

    dist = np.linalg.norm(c2w[:, :, 3], axis=-1)
    if dist.min() <= 1.0:
        notes.append(f"a camera is {dist.min():.3g} from the centre, inside the unit sphere")
    return Scene(
        format="neus",
        root=root,
        image_paths=images,
        cameras=make_cameras(fx, fy, cx, cy, widths, heights, c2w),
        splits=holdout_splits(n, cfg.holdout),
        near=float(max(dist.min() - 1.0, 0.05 * dist.min())),
        far=float(dist.max() + 1.0),
        mask_paths=masks,
        background=(0.0, 0.0, 0.0) if cfg.background is None else tuple(float(c) for c in cfg.background),
        sphere_center=torch.zeros(3),
        sphere_radius=1.0,
        ndc=False,
        render_c2w=orbit_from_cameras(torch.from_numpy(c2w), torch.zeros(3), cfg.render_frames).float(),
        downscale=float(cfg.downscale),
        metadata={
            "world_from_scene": scale_0,
            "cameras_file": cam_path.name,
            "warnings": notes,
        },
    )
