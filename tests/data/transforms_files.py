"""A writer of ``transforms.json`` in the two flavours users meet, from cameras in nerflite's
convention: instant-ngp's (``colmap2nerf.py``: shared intrinsics at the top, ``aabb_scale``,
``scale``/``offset``, ``is_fisheye``, paths without extension) and nerfstudio's
(``ns-process-data``: ``camera_model``, per-frame intrinsics, ``applied_transform``, split lists,
``mask_path``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nerflite.cameras import Cameras


def gl_matrix(c2w_cv: np.ndarray) -> list[list[float]]:
    """OpenCV c2w [3, 4] -> the file's OpenGL 4x4."""
    m = np.eye(4)
    m[:3, :4] = c2w_cv
    m[:3, 1:3] *= -1
    return m.tolist()


def copy_images(src: Path, names: list[str], out: Path, folder: str = "images") -> list[str]:
    """Copy ``src/name`` to ``out/folder/`` (flat); returns the new paths relative to ``out``."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    rel = []
    for name in names:
        shutil.copy(src / name, out / folder / Path(name).name)
        rel.append(f"{folder}/{Path(name).name}")
    return rel


def write_transforms(out: Path, cams: Cameras, images: list[str], flavour: str, *, scale_wh: float = 1.0,
                     distortion: dict | None = None, fisheye: bool = False, masks: list[str] | None = None,
                     splits: dict[str, list[int]] | None = None, extra: dict | None = None) -> Path:
    """Write ``out/transforms.json`` for ``cams`` (one per image, images relative to ``out``).

    ``scale_wh``: intrinsics recorded for images ``scale_wh`` times the size on disk (fl, c, w, h
    all scaled). ``distortion``: {k1: .., p1: ..}; ``fisheye``: the lens is OpenCV fisheye.
    """
    c2w = cams.c2w.double().numpy()
    intr = lambda i: {  # noqa: E731
        "fl_x": float(cams.fx[i]) * scale_wh, "fl_y": float(cams.fy[i]) * scale_wh,
        "cx": float(cams.cx[i]) * scale_wh, "cy": float(cams.cy[i]) * scale_wh,
        "w": int(cams.width[i]) * scale_wh, "h": int(cams.height[i]) * scale_wh,
    }
    lens = dict(distortion or {})
    frames = []
    if flavour == "ngp":
        meta = {**intr(0), **lens, "is_fisheye": fisheye, "aabb_scale": 4}
        for i, name in enumerate(images):
            frames.append({"file_path": "./" + str(Path(name).with_suffix("")), "sharpness": 30.0,
                           "transform_matrix": gl_matrix(c2w[i])})
    elif flavour == "nerfstudio":
        model = "OPENCV_FISHEYE" if fisheye else ("OPENCV" if lens else "PINHOLE")
        meta = {"camera_model": model, "applied_transform": np.eye(4)[:3].tolist(),
                "ply_file_path": "sparse_pc.ply", "orientation_override": "none"}
        for i, name in enumerate(images):
            frame = {"file_path": name, **intr(i), **lens, "transform_matrix": gl_matrix(c2w[i]), "colmap_im_id": i}
            if masks is not None:
                frame["mask_path"] = masks[i]
            frames.append(frame)
        for split, idx in (splits or {}).items():
            meta[f"{split}_filenames"] = [images[i] for i in idx]
    else:
        raise ValueError(flavour)
    meta.update(extra or {})
    meta["frames"] = frames
    path = out / "transforms.json"
    path.write_text(json.dumps(meta, indent=2))
    return path
