"""Helpers shared by the parsers: file lookup, splits, camera assembly and default render paths.

All pose math here is float64 numpy in nerflite's OpenCV convention (x right, y down, z forward);
tensors are made once, in ``make_cameras``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from nerflite.cameras import Cameras
from nerflite.data.scene import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def require_dir(path: Path, what: str = "folder") -> Path:
    """``path`` when it is an existing folder, else a DatasetError naming it."""
    if not path.exists():
        raise DatasetError(path, f"{what} does not exist")
    if not path.is_dir():
        raise DatasetError(path, f"{what} is not a folder")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural sort order (``img2.png`` before ``img10.png``)."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> list:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", path.name)]


def holdout_splits(n: int, every: int) -> dict[str, list[int]]:
    """Hold out views 0, every, 2*every, ... for val and test; ``every <= 0`` (or too few views)
    evaluates on the training views."""
    if every <= 0 or n < 2:
        idx = list(range(n))
        return {"train": idx, "val": list(idx), "test": list(idx)}
    held = [i for i in range(n) if i % every == 0]
    train = [i for i in range(n) if i % every != 0]
    return {"train": train, "val": held, "test": list(held)}


def frame_time(frame: dict, source: Path, i: int) -> float:
    """The moment of frame ``i`` of ``source`` (a transforms file): its ``time``, a number in [0, 1]."""
    where = f"frame {i}" + (f" ({frame['file_path']})" if "file_path" in frame else "")
    if "time" not in frame:
        raise DatasetError(source, f"{where} has no 'time' (every frame of a dynamic scene needs one in [0, 1])")
    value = frame["time"]
    try:
        t = float(value) if not isinstance(value, (bool, str)) else float("nan")
    except (TypeError, ValueError):
        t = float("nan")
    if not math.isfinite(t):
        raise DatasetError(source, f"{where}: time {value!r} is not a finite number")
    if not -1e-6 <= t <= 1.0 + 1e-6:
        raise DatasetError(source, f"{where}: time {t} is outside [0, 1]")
    return min(max(t, 0.0), 1.0)


def scaled_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """Image size after dividing by ``downscale`` (rounded, at least one pixel)."""
    return max(1, int(round(width / downscale))), max(1, int(round(height / downscale)))


def make_cameras(
    fx: np.ndarray, fy: np.ndarray, cx: np.ndarray, cy: np.ndarray,
    width: np.ndarray, height: np.ndarray, c2w: np.ndarray,
    distortion: np.ndarray | None = None, fisheye: np.ndarray | None = None,
) -> Cameras:
    """Cameras (float32 intrinsics and poses, int64 sizes) from per-view numpy arrays; c2w [n, 3, 4],
    optional lens ``distortion`` [n, 6] (k1, k2, k3, k4, p1, p2) and ``fisheye`` [n] bool."""
    f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32)  # noqa: E731
    i64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    return Cameras(
        fx=f32(fx), fy=f32(fy), cx=f32(cx), cy=f32(cy), width=i64(width), height=i64(height),
        c2w=f32(np.asarray(c2w)[:, :3, :4]),
        distortion=None if distortion is None else f32(distortion),
        fisheye=None if fisheye is None else torch.as_tensor(np.asarray(fisheye, dtype=bool)),
    )


def clean_rotations(c2w: np.ndarray, source: Path, notes: list[str]) -> np.ndarray:
    """Camera-to-worlds [n, 3, 4] with exactly orthonormal rotations (nearest rotation by SVD).

    Rotations that carry a scale or shear are repaired with a note; a reflection (det < 0: the file
    uses another handedness) or a degenerate matrix is an error.
    """
    R = c2w[:, :, :3]
    det = np.linalg.det(R)
    if (det <= 0).any():
        i = int(np.flatnonzero(det <= 0)[0])
        raise DatasetError(source, f"camera {i}: rotation has determinant {det[i]:.3g}, not +1")
    u, _, vt = np.linalg.svd(R)
    nearest = u @ vt  # [n, 3, 3]
    err = np.abs(nearest - R).max(axis=(1, 2))
    if err.max() > 1e-3:
        notes.append(f"{source.name}: {int((err > 1e-3).sum())} camera rotations were not orthonormal "
                     f"(up to {err.max():.2g} off); replaced by the nearest rotation")
    return np.concatenate([nearest, c2w[:, :, 3:]], axis=2)


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def focus_point(c2w: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis [3]."""
    d = normalize(c2w[:, :3, 2])  # [n, 3]
    o = c2w[:, :3, 3]  # [n, 3]
    A = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # [n, 3, 3] projectors orthogonal to d
    lhs, rhs = A.sum(0), (A @ o[:, :, None]).sum(0)[:, 0]
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0]
