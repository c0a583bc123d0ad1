"""Reader and writer of COLMAP sparse models, binary (``.bin``) and text (``.txt``), in numpy.

Follows COLMAP's documented formats (https://colmap.github.io/format.html) without needing COLMAP
or pycolmap. A model folder holds ``cameras``, ``images`` and ``points3D`` in one of the two forms:

* cameras: id, model, width, height and the model's parameters (``CAMERA_MODELS``).
* images: id, ``qvec`` (w, x, y, z) and ``tvec`` of the world-to-camera transform
  ``X_cam = R(qvec) X_world + tvec`` (camera axes x right, y down, z forward), camera id, file name
  relative to the image folder, and the 2D keypoints with the 3D point each one observes (-1: none).
* points3D: id, xyz, rgb, mean reprojection error and the track (image id, keypoint index).

Binary files are little-endian; ``.bin`` is read when both forms are present, as COLMAP does.
Every malformed file raises one ``DatasetError`` naming it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerflite.data.scene import DatasetError

_MODELS = [  # (COLMAP model id, name, parameter names), as in COLMAP's src/colmap/sensor/models.h
    (0, "SIMPLE_PINHOLE", "f cx cy"),
    (1, "PINHOLE", "fx fy cx cy"),
    (2, "SIMPLE_RADIAL", "f cx cy k"),
    (3, "RADIAL", "f cx cy k1 k2"),
    (4, "OPENCV", "fx fy cx cy k1 k2 p1 p2"),
    (5, "OPENCV_FISHEYE", "fx fy cx cy k1 k2 k3 k4"),
    (6, "FULL_OPENCV", "fx fy cx cy k1 k2 p1 p2 k3 k4 k5 k6"),
    (7, "FOV", "fx fy cx cy omega"),
    (8, "SIMPLE_RADIAL_FISHEYE", "f cx cy k"),
    (9, "RADIAL_FISHEYE", "f cx cy k1 k2"),
    (10, "THIN_PRISM_FISHEYE", "fx fy cx cy k1 k2 p1 p2 k3 k4 sx1 sy1"),
    (11, "RAD_TAN_THIN_PRISM_FISHEYE", "fx fy cx cy k0 k1 k2 k3 k4 k5 p0 p1 s0 s1 s2 s3"),
]
CAMERA_MODELS = {name: (mid, len(p.split())) for mid, name, p in _MODELS}  # name -> (id, number of parameters)
PARAM_NAMES = {name: p.split() for _, name, p in _MODELS}
MODEL_NAMES = {mid: name for name, (mid, _) in CAMERA_MODELS.items()}
FILES = ("cameras", "images", "points3D")


@dataclass
class Camera:
    id: int
    model: str  # a key of CAMERA_MODELS
    width: int
    height: int
    params: np.ndarray  # [p] float64, in COLMAP's order for the model


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # [4] float64 (w, x, y, z): world-to-camera rotation
    tvec: np.ndarray  # [3] float64: world-to-camera translation
    camera_id: int
    name: str  # path relative to the image folder
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [k, 2] float64 keypoints (pixels)
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [k] int64, -1: none


@dataclass
class Points3D:
    """All points of a model as arrays; point ``i``'s track is ``track[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # [m] int64
    xyz: np.ndarray  # [m, 3] float64
    rgb: np.ndarray  # [m, 3] uint8
    error: np.ndarray  # [m] float64 mean reprojection error (pixels)
    track: np.ndarray  # [t, 2] int64 (image id, keypoint index), all tracks back to back
    offsets: np.ndarray  # [m + 1] int64

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def empty() -> Points3D:
        return Points3D(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0),
                        np.zeros((0, 2), np.int64), np.zeros(1, np.int64))


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: Points3D


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation [3, 3] of a quaternion (w, x, y, z) (normalised first)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation [3, 3] (largest eigenvector method)."""
    (a, b, c), (d, e, f), (g, h, i) = np.asarray(R, np.float64)
    K = np.array([[a - e - i, d + b, g + c, h - f], [d + b, e - a - i, h + f, c - g],
                  [g + c, h + f, i - a - e, d - b], [h - f, c - g, d - b, a + e + i]]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


# -- reading ------------------------------------------------------------------------------------
class _Bin:
    """Bounds-checked little-endian reads from one file's bytes."""

    def __init__(self, path: Path):
        self.path, self.buf, self.pos = path, path.read_bytes(), 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise DatasetError(self.path, f"file is truncated (needs more than its {len(self.buf)} bytes)")
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if count < 0 or self.pos + size > len(self.buf):
            raise DatasetError(self.path, f"file is truncated (needs more than its {len(self.buf)} bytes)")
        out = np.frombuffer(self.buf, dtype, count, self.pos)
        self.pos += size
        return out

    def name(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise DatasetError(self.path, "file is truncated (an image name has no end)")
        out, self.pos = self.buf[self.pos : end].decode("utf-8", "replace"), end + 1
        return out


def _n_params(path: Path, model: str) -> int:
    if model not in CAMERA_MODELS:
        raise DatasetError(path, f"unknown camera model {model!r}")
    return CAMERA_MODELS[model][1]


def read_cameras_bin(path: Path) -> dict[int, Camera]:
    f, out = _Bin(path), {}
    for _ in range(f.take("Q")[0]):
        cid, mid, w, h = f.take("IiQQ")
        if mid not in MODEL_NAMES:
            raise DatasetError(path, f"camera {cid}: unknown camera model id {mid}")
        model = MODEL_NAMES[mid]
        out[cid] = Camera(cid, model, w, h, f.array(np.float64, _n_params(path, model)).copy())
    return out


_KEYPOINT = np.dtype([("xy", "<f8", 2), ("id", "<i8")])
_POINT = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8"), ("n", "<u8")])


def read_images_bin(path: Path) -> dict[int, Image]:
    f, out = _Bin(path), {}
    for _ in range(f.take("Q")[0]):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = f.take("I7dI")
        name = f.name()
        kp = f.array(_KEYPOINT, f.take("Q")[0])
        out[iid] = Image(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name,
                         kp["xy"].copy(), kp["id"].astype(np.int64))
    return out


def read_points3D_bin(path: Path) -> Points3D:
    f = _Bin(path)
    m = f.take("Q")[0]
    starts = np.zeros(m, np.int64)
    lengths = np.zeros(m, np.int64)
    for i in range(m):  # records have variable length: find where each starts, then gather at once
        starts[i] = f.pos
        f.pos += _POINT.itemsize - 8
        lengths[i] = f.take("Q")[0]
        f.pos += 8 * int(lengths[i])
    if f.pos > len(f.buf):
        raise DatasetError(path, f"file is truncated (needs more than its {len(f.buf)} bytes)")
    buf = np.frombuffer(f.buf, np.uint8)
    rec = buf[starts[:, None] + np.arange(_POINT.itemsize)].view(_POINT).reshape(m)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    first = np.repeat(starts + _POINT.itemsize - offsets[:-1] * 8, lengths) + np.arange(offsets[-1]) * 8
    track = buf[first[:, None] + np.arange(8)].view("<i4").reshape(-1, 2).astype(np.int64)
    return Points3D(rec["id"].astype(np.int64), rec["xyz"].copy(), rec["rgb"].copy(), rec["error"].copy(),
                    track, offsets)


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-comment lines; blank lines kept (images.txt uses them)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DatasetError(path, f"cannot read ({e.strerror})") from None
    return [(i + 1, ln.split()) for i, ln in enumerate(lines) if not ln.lstrip().startswith("#")]


def _parse(path: Path, line: int, fn, values):
    try:
        return fn(values)
    except (ValueError, IndexError, TypeError):
        raise DatasetError(path, f"line {line}: cannot read {' '.join(map(str, values))[:80]!r}") from None


def read_cameras_txt(path: Path) -> dict[int, Camera]:
    out = {}
    for ln, v in _rows(path):
        if not v:
            continue
        cid, model, w, h = _parse(path, ln, lambda v: (int(v[0]), v[1], int(v[2]), int(v[3])), v)
        n = _n_params(path, model)
        if len(v) != 4 + n:
            raise DatasetError(path, f"line {ln}: {model} needs {n} parameters, found {len(v) - 4}")
        out[cid] = Camera(cid, model, w, h, _parse(path, ln, lambda v: np.array(v[4:], np.float64), v))
    return out


def read_images_txt(path: Path) -> dict[int, Image]:
    rows, out, i = _rows(path), {}, 0
    while i < len(rows):
        ln, v = rows[i]
        if not v:
            i += 1
            continue
        if len(v) < 10:
            raise DatasetError(path, f"line {ln}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        iid, q, t, cid = _parse(path, ln, lambda v: (int(v[0]), np.array(v[1:5], np.float64),
                                                     np.array(v[5:8], np.float64), int(v[8])), v)
        name = " ".join(v[9:])  # names may contain spaces
        pts = rows[i + 1][1] if i + 1 < len(rows) else []
        kp = _parse(path, ln + 1, lambda p: np.array(p, np.float64).reshape(-1, 3), pts)
        out[iid] = Image(iid, q, t, cid, name, kp[:, :2].copy(), kp[:, 2].astype(np.int64))
        i += 2
    return out


def read_points3D_txt(path: Path) -> Points3D:
    rows = [(ln, v) for ln, v in _rows(path) if v]
    for ln, v in rows:
        if len(v) < 8 or (len(v) - 8) % 2:
            raise DatasetError(path, f"line {ln}: expected POINT3D_ID X Y Z R G B ERROR (IMAGE_ID POINT2D_IDX)...")
    if not rows:
        return Points3D.empty()
    count = np.array([len(v) for _, v in rows])  # tokens per line
    try:  # every number of the file in one conversion, then sliced
        vals = np.array([t for _, v in rows for t in v], np.float64)
    except ValueError:
        ln, v = next((ln, v) for ln, v in rows if not all(_is_number(t) for t in v))
        raise DatasetError(path, f"line {ln}: cannot read {' '.join(v)[:80]!r}") from None
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    fixed = vals[start[:, None] + np.arange(8)]  # [m, 8]
    in_track = np.ones(len(vals), bool)
    in_track[(start[:, None] + np.arange(8)).reshape(-1)] = False
    track = vals[in_track].astype(np.int64).reshape(-1, 2)
    offsets = np.concatenate([[0], np.cumsum((count - 8) // 2)]).astype(np.int64)
    return Points3D(fixed[:, 0].astype(np.int64), fixed[:, 1:4].copy(), fixed[:, 4:7].astype(np.uint8),
                    fixed[:, 7].copy(), track, offsets)


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


READERS = {
    ".bin": (read_cameras_bin, read_images_bin, read_points3D_bin),
    ".txt": (read_cameras_txt, read_images_txt, read_points3D_txt),
}


def model_extension(folder: Path) -> str | None:
    """``".bin"`` or ``".txt"``: the form of the model in ``folder`` (by its cameras file), else None."""
    for ext in (".bin", ".txt"):
        if (folder / f"cameras{ext}").is_file():
            return ext
    return None


def read_model(folder: str | Path, points: bool = True) -> Model:
    """The model in ``folder`` (``.bin`` preferred). A missing points3D file gives no points."""
    folder = Path(folder)
    ext = model_extension(folder)
    if ext is None:
        raise DatasetError(folder / "cameras.bin", "COLMAP cameras file is missing (cameras.bin or cameras.txt)")
    read_cams, read_imgs, read_pts = READERS[ext]
    if not (folder / f"images{ext}").is_file():
        raise DatasetError(folder / f"images{ext}", "COLMAP images file is missing")
    cameras, images = read_cams(folder / f"cameras{ext}"), read_imgs(folder / f"images{ext}")
    pts_path = folder / f"points3D{ext}"
    pts = read_pts(pts_path) if points and pts_path.is_file() else Points3D.empty()
    return Model(cameras, images, pts)
