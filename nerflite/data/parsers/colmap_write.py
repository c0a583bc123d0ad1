"""Writers of COLMAP sparse models, binary and text (``write_model``): the round-trip tests'
fixtures and anyone converting cameras they know into COLMAP's layout. Imports flow one way: the
reader (``colmap_io``) knows nothing of the writers.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from nerflite.data.parsers.colmap_io import _KEYPOINT, CAMERA_MODELS, Model


def write_bin(model: Model, folder: Path) -> None:
    """cameras.bin, images.bin, points3D.bin of ``model`` in ``folder`` (COLMAP's binary layout)."""
    out = [struct.pack("<Q", len(model.cameras))]
    for c in model.cameras.values():
        out.append(struct.pack("<IiQQ", c.id, CAMERA_MODELS[c.model][0], c.width, c.height))
        out.append(np.asarray(c.params, "<f8").tobytes())
    (folder / "cameras.bin").write_bytes(b"".join(out))
    out = [struct.pack("<Q", len(model.images))]
    for im in model.images.values():
        out.append(struct.pack("<I7dI", im.id, *im.qvec, *im.tvec, im.camera_id) + im.name.encode() + b"\0")
        kp = np.zeros(len(im.xys), _KEYPOINT)
        kp["xy"], kp["id"] = im.xys, im.point3D_ids
        out.append(struct.pack("<Q", len(kp)) + kp.tobytes())
    (folder / "images.bin").write_bytes(b"".join(out))
    p = model.points
    out = [struct.pack("<Q", len(p))]
    for i in range(len(p)):
        t = p.track[p.offsets[i] : p.offsets[i + 1]]
        out.append(struct.pack("<Q3d3BdQ", p.ids[i], *p.xyz[i], *p.rgb[i], p.error[i], len(t)))
        out.append(np.asarray(t, "<i4").tobytes())
    (folder / "points3D.bin").write_bytes(b"".join(out))


def write_txt(model: Model, folder: Path) -> None:
    """cameras.txt, images.txt, points3D.txt of ``model`` in ``folder`` (exact float round trip)."""
    num = lambda a: " ".join(repr(float(v)) for v in a)  # noqa: E731  (repr: exact round trip)
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(model.cameras)}"]
    lines += [f"{c.id} {c.model} {c.width} {c.height} {num(c.params)}" for c in model.cameras.values()]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)", f"# Number of images: {len(model.images)}"]
    for im in model.images.values():
        lines.append(f"{im.id} {num(im.qvec)} {num(im.tvec)} {im.camera_id} {im.name}")
        lines.append(" ".join(f"{float(x)!r} {float(y)!r} {int(k)}" for (x, y), k in zip(im.xys, im.point3D_ids)))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    p = model.points
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {len(p)}"]
    for i in range(len(p)):
        t = p.track[p.offsets[i] : p.offsets[i + 1]].reshape(-1)
        lines.append(f"{p.ids[i]} {num(p.xyz[i])} {' '.join(map(str, p.rgb[i]))} {float(p.error[i])!r} "
                     + " ".join(map(str, t)))
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def write_model(model: Model, folder: str | Path, ext: str = ".bin") -> Path:
    """Write ``model`` as cameras/images/points3D ``ext`` (``.bin`` or ``.txt``) into ``folder``."""
    folder = Path(folder)
    if ext not in (".bin", ".txt"):
        raise ValueError(f"ext must be '.bin' or '.txt', got {ext!r}")
    folder.mkdir(parents=True, exist_ok=True)
    (write_bin if ext == ".bin" else write_txt)(model, folder)
    return folder
