"""Tiny hand-made datasets in each file format, for parser and inspector tests.

Each builder writes a few small PNGs and the camera file of its format from cameras given in
nerflite's convention, so tests can compare what the parser returns with what went in.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_png(path: Path, width: int, height: int, channels: int = 3, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, channels), value, np.uint8)
    img[: height // 2, : width // 2] = 255 - value  # some structure
    assert cv2.imwrite(str(path), img)
    return path


def look_at_opencv(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV c2w [3, 4] looking from ``eye`` at ``target``."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z, eye], 1)


def ring_eyes(n: int, radius: float = 4.0, height: float = 1.5) -> list[np.ndarray]:
    return [
        np.array([radius * np.cos(a), radius * np.sin(a), height])
        for a in np.linspace(0, 2 * np.pi, n, endpoint=False)
    ]


def opencv_to_opengl_4x4(c2w: np.ndarray) -> list[list[float]]:
    m = np.eye(4)
    m[:3, :4] = c2w
    m[:3, 1:3] *= -1
    return m.tolist()


def make_blender(root: Path, n=4, width=16, height=12, angle_x=0.8, splits=("train",), rgba=True,
                 ext_in_json=False) -> dict:
    """transforms_{split}.json with ``n`` views each on a ring around the origin (Blender z up)."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in splits:
        frames = []
        for i, eye in enumerate(ring_eyes(n)):
            write_png(root / split / f"r_{i}.png", width, height, 4 if rgba else 3)
            frames.append({
                "file_path": f"./{split}/r_{i}" + (".png" if ext_in_json else ""),
                "transform_matrix": opencv_to_opengl_4x4(look_at_opencv(eye)),
            })
        meta = {"camera_angle_x": angle_x, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
        out[split] = meta
    return out


def make_llff(root: Path, c2w_cv: list[np.ndarray], width=64, height=48, focal=50.0, bounds=(2.0, 10.0),
              folders=None) -> np.ndarray:
    """poses_bounds.npy from OpenCV cameras, recorded at ``width`` x ``height``; ``folders`` maps
    a folder name to its image size (default: ``images/`` at full size). Returns the array."""
    folders = folders or {"images": (width, height)}
    rows = []
    for c2w in c2w_cv:
        x, y, z, t = c2w[:, 0], c2w[:, 1], c2w[:, 2], c2w[:, 3]
        pose = np.stack([y, x, -z, t, [height, width, focal]], axis=1)  # [down, right, back, t, hwf]
        rows.append(np.concatenate([pose.reshape(-1), bounds]))
    arr = np.array(rows)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "poses_bounds.npy", arr)
    for name, (w, h) in folders.items():
        for i in range(len(c2w_cv)):
            write_png(root / name / f"IMG_{i:04d}.png", w, h)
    return arr


def make_neus(root: Path, K: np.ndarray, c2w_scene: list[np.ndarray], scale_mat: np.ndarray,
              width=40, height=30, n_masks=None, name="cameras_sphere.npz") -> None:
    """A NeuS dataset whose cameras, in the normalised frame, are ``c2w_scene`` (OpenCV) with
    intrinsics ``K`` in nerflite's +0.5 pixel-centre convention."""
    K_file = K.copy()
    K_file[:2, 2] -= 0.5  # the format puts pixel centres at integers
    K4 = np.eye(4)
    K4[:3, :3] = K_file
    mats = {}
    for i, c2w in enumerate(c2w_scene):
        w2c = np.eye(4)
        w2c[:3, :3] = c2w[:, :3].T
        w2c[:3, 3] = -c2w[:, :3].T @ c2w[:, 3]
        mats[f"world_mat_{i}"] = 3.7 * K4 @ w2c @ np.linalg.inv(scale_mat)  # any overall scale
        mats[f"scale_mat_{i}"] = scale_mat
        write_png(root / "image" / f"{i:06d}.png", width, height)
    for i in range(len(c2w_scene) if n_masks is None else n_masks):
        write_png(root / "mask" / f"{i:03d}.png", width, height, value=255)
    np.savez(root / name, **mats)


FORWARD = np.diag([1.0, -1.0, -1.0])  # OpenCV camera looking down -z with image-up = +y
K_TRUE = np.array([[100.0, 0.0, 21.0], [0.0, 102.0, 14.5], [0.0, 0.0, 1.0]])  # +0.5 pixel centres
SCALE_MAT = np.array([[50.0, 0, 0, 3.0], [0, 50.0, 0, -2.0], [0, 0, 50.0, 600.0], [0, 0, 0, 1]])


def forward_row(x: float) -> np.ndarray:
    """A forward-facing OpenCV camera at (x, 0, 0) looking down -z."""
    return np.concatenate([FORWARD, [[x], [0.0], [0.0]]], axis=1)


def neus_cams(n=5) -> list[np.ndarray]:
    """Cameras on an arc 3 units from the origin, looking at it (unit-sphere frame)."""
    eyes = [np.array([3 * np.cos(a), -0.5, 3 * np.sin(a)]) for a in np.linspace(-1.0, 1.0, n)]
    return [look_at_opencv(e, up=(0.0, -1.0, 0.0)) for e in eyes]
