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


def check_finite(values, source: Path, what: str, names: list[str] | None = None, row: str = "row") -> np.ndarray:
    """``values`` as float64, or a DatasetError naming ``what`` and its first non-finite entry (NaN
    or infinity): by ``names`` (of the entries of a vector, of the columns of a matrix) where given,
    else by index; a matrix's rows are called ``row``."""
    arr = np.asarray(values, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if not len(bad):
        return arr
    at = tuple(int(i) for i in bad[0])
    col = at[-1] if at else 0
    entry = names[col] if names and col < len(names) else (f"column {col}" if arr.ndim == 2 else f"entry {col}")
    where = f"{row} {at[0]}, {entry}" if arr.ndim == 2 else entry
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise DatasetError(source, f"{what} holds a non-finite value: {arr[at]} at {where}{more}")


def check_sizes(paths: list[Path], on_disk: np.ndarray, recorded: np.ndarray, source: Path, notes: list[str],
                expected: float = 1.0) -> None:
    """Image files against the size their intrinsics were recorded for ([n, 2] width, height each;
    ``expected``: the scale the image folder should have, e.g. 1/4 for ``images_4/``). Another
    aspect ratio is an error naming the first such file; another scale a note (the readers scale
    the intrinsics to the files). COLMAP, transforms.json / Blender and LLFF all say it this way."""
    sx, sy = on_disk[:, 0] / recorded[:, 0], on_disk[:, 1] / recorded[:, 1]
    if np.any(np.abs(sx / sy - 1) > 0.01):
        i = int(np.argmax(np.abs(sx / sy - 1)))
        raise DatasetError(paths[i], f"is {on_disk[i, 0]:g}x{on_disk[i, 1]:g} but its camera in {source.name} is "
                                     f"{recorded[i, 0]:g}x{recorded[i, 1]:g}: not the same aspect ratio (cropped "
                                     "or rotated after calibration?)")
    off = np.flatnonzero(np.abs(sx / expected - 1) > 0.01)
    if len(off):
        i = off[0]
        notes.append(f"{len(off)} images are {sx[i]:.3g}x the size of their camera in {source.name} (e.g. "
                     f"{paths[i].name}: {on_disk[i, 0]:g}x{on_disk[i, 1]:g}, camera {recorded[i, 0]:g}x"
                     f"{recorded[i, 1]:g}): intrinsics scaled to the files")


FORWARD_ANGLE = 45.0  # forward-facing: views within this many degrees of their mean direction ...
FORWARD_SHARE = 0.8  # ... at least this share of them (a few others: damaged poses, named in a note)


def view_angles(c2w: np.ndarray) -> np.ndarray:
    """Each camera's angle in degrees [n] from the cameras' mean viewing direction (c2w [n, 3, 4],
    any axis convention: the sign of the third column does not change the angles)."""
    fwd = normalize(c2w[:, :3, 2])
    mean = normalize(fwd.sum(0))
    return np.degrees(np.arccos(np.clip(fwd @ mean, -1.0, 1.0)))


def looks_forward(angles: np.ndarray) -> bool:
    """Forward-facing (as opposed to 360-degree) by the viewing directions: the COLMAP and LLFF readers' rule."""
    return len(angles) > 1 and float((angles <= FORWARD_ANGLE).mean()) >= FORWARD_SHARE


def converging_point(c2w: np.ndarray, share: float = 0.9) -> np.ndarray | None:
    """The point the optical axes converge on (``focus_point``; OpenCV c2w [n, 3, 4], +z forward)
    when it lies in front of at least ``share`` of the cameras, else None (parallel or diverging views)."""
    focus = focus_point(c2w)
    if len(c2w) < 2 or not np.isfinite(focus).all():
        return None
    in_front = ((focus - c2w[:, :, 3]) * normalize(c2w[:, :, 2])).sum(1) > 0
    return focus if in_front.mean() >= share else None


def capture_note(forward: bool, angles: np.ndarray, ndc: bool, why: str = "") -> str:
    """The one line the COLMAP and LLFF readers give about the frame they chose for a capture
    (``angles``: ``view_angles``; ``why`` adds to or, for a 360-degree one, replaces the reason)."""
    within = angles <= FORWARD_ANGLE
    if forward:
        spread = f"views within {angles.max():.0f} deg of their mean direction"
        if not within.all():
            off = np.flatnonzero(~within).tolist()
            spread = (f"{int(within.sum())} of {len(angles)} views within {FORWARD_ANGLE:.0f} deg of their mean "
                      f"direction; view(s) {', '.join(map(str, off[:6]))} look up to {angles.max():.0f} deg away: "
                      "damaged poses?")
        rays = "rays in NDC" if ndc else "ndc=false: rays in scene units, far may be large"
        return f"forward-facing capture ({spread}{why}): {rays}"
    why = why or (f"views up to {angles.max():.0f} deg from their mean direction, {int(within.sum())} of "
                  f"{len(angles)} within {FORWARD_ANGLE:.0f}")
    return f"360-degree capture ({why}): normalised into the unit sphere, rays in scene units (no NDC)"
