"""Writers of the three dataset formats, from cameras in nerflite's convention.

Each function converts nerflite cameras (OpenCV axes, pixel centres at +0.5, in the file's world
frame) into one format's convention, in one place:

* Blender: ``transform_matrix`` is camera-to-world in OpenGL axes (x right, y up, z back);
  ``camera_angle_x = 2 atan(W / (2 fx))``; principal point at the image centre.
* LLFF: ``poses_bounds.npy`` rows are a 3x5 matrix flattened row-major: columns [down, right,
  back, centre, (H, W, focal)] at full resolution, then the view's near and far depth.
* NeuS/DTU: ``world_mat = K [R | t]`` (world-to-camera, OpenCV axes) with pixel centres at integer
  coordinates, so K holds ``cx - 0.5, cy - 0.5``; ``scale_mat`` maps the unit sphere onto the object.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from nerflite.cameras import Cameras


def to_uint8(img: Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write uint8 [H, W, 3] RGB or [H, W, 4] RGBA as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = cv2.COLOR_RGBA2BGRA if rgb.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, code)):
        raise OSError(f"{path}: cannot write PNG")


def blender_frames(cameras: Cameras, split: str, start: int = 0, times: list[float] | None = None) -> list[dict]:
    """``frames`` entries of a transforms_<split>.json (OpenGL camera-to-world, 4x4; D-NeRF: ``time``)."""
    frames = []
    for i in range(len(cameras)):
        c2w = cameras.c2w[i].double().clone()  # [3, 4] OpenCV
        c2w[:, 1:3] *= -1.0  # -> OpenGL axes: y up, z back
        mat = torch.cat([c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)]).tolist()
        frames.append(
            {
                "file_path": f"./{split}/r_{start + i}",
                "rotation": 0.012566370614359171,
                **({} if times is None else {"time": float(times[i])}),
                "transform_matrix": mat,
            }
        )
    return frames


def write_blender_split(out: Path, split: str, cameras: Cameras, rgba: np.ndarray,
                        times: list[float] | None = None) -> list[str]:
    """Write ``transforms_<split>.json`` (D-NeRF: a ``time`` per frame) and its RGBA PNGs; returns the
    image paths relative to ``out``."""
    fx, w = float(cameras.fx[0]), int(cameras.width[0])
    meta = {"camera_angle_x": 2.0 * math.atan(w / (2.0 * fx)), "frames": blender_frames(cameras, split, times=times)}
    (out / f"transforms_{split}.json").write_text(json.dumps(meta, indent=4))
    names = []
    for i, frame in enumerate(meta["frames"]):
        name = frame["file_path"][2:] + ".png"
        write_png(out / name, rgba[i])
        names.append(name)
    return names


def llff_poses_bounds(cameras: Cameras, full_hw: tuple[int, int], near: Tensor, far: Tensor) -> np.ndarray:
    """N x 17 array: 3x5 [down, right, back, centre, hwf] flattened, then near, far."""
    c2w = cameras.c2w.double()  # [n, 3, 4] OpenCV: columns right, down, forward, centre
    n = len(cameras)
    cols = torch.stack([c2w[:, :, 1], c2w[:, :, 0], -c2w[:, :, 2], c2w[:, :, 3]], -1)  # [n, 3, 4]
    hwf = torch.tensor([full_hw[0], full_hw[1], 0.0], dtype=torch.float64).repeat(n, 1)
    hwf[:, 2] = cameras.fx.double()
    pose = torch.cat([cols, hwf[:, :, None]], -1)  # [n, 3, 5]
    return torch.cat([pose.reshape(n, 15), near.double()[:, None], far.double()[:, None]], -1).numpy()


def write_llff(out: Path, cameras: Cameras, rgb: np.ndarray, near: Tensor, far: Tensor) -> list[str]:
    """Write ``poses_bounds.npy``, ``images/`` (full size) and ``images_2/`` (half size, area filter)."""
    h, w = rgb.shape[1:3]
    np.save(out / "poses_bounds.npy", llff_poses_bounds(cameras, (h, w), near, far))
    names = []
    for i in range(len(rgb)):
        write_png(out / "images" / f"{i:03d}.png", rgb[i])
        write_png(
            out / "images_2" / f"{i:03d}.png",
            cv2.resize(rgb[i], (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        )
        names.append(f"images/{i:03d}.png")
    return names


def dtu_world_mats(cameras: Cameras) -> np.ndarray:
    """4x4 ``world_mat`` per view [n, 4, 4]: K [R | t] with DTU's integer pixel centres."""
    c2w = cameras.c2w.double()
    R, c = c2w[:, :, :3], c2w[:, :, 3]
    w2c = torch.cat([R.transpose(1, 2), -(R.transpose(1, 2) @ c[:, :, None])], -1)  # [n, 3, 4]
    K = cameras.intrinsics().double().clone()  # [n, 3, 3]
    K[:, 0, 2] -= 0.5
    K[:, 1, 2] -= 0.5
    P = torch.zeros(len(cameras), 4, 4, dtype=torch.float64)
    P[:, :3] = K @ w2c
    P[:, 3, 3] = 1.0
    return P.numpy()


def write_neus(out: Path, cameras: Cameras, rgb: np.ndarray, mask: np.ndarray, scale_mat: np.ndarray) -> list[str]:
    """Write ``cameras_sphere.npz``, ``image/000000.png`` ... and ``mask/000.png`` ... (0/255)."""
    h, w = rgb.shape[1:3]
    world = dtu_world_mats(cameras)
    cam = np.array([[2.0 / w, 0, -1, 0], [0, 2.0 / h, -1, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # pixels -> [-1, 1]
    mats = {}
    for i in range(len(cameras)):
        mats[f"world_mat_{i}"], mats[f"world_mat_inv_{i}"] = world[i], np.linalg.inv(world[i])
        mats[f"scale_mat_{i}"], mats[f"scale_mat_inv_{i}"] = scale_mat, np.linalg.inv(scale_mat)
        mats[f"camera_mat_{i}"], mats[f"camera_mat_inv_{i}"] = cam, np.linalg.inv(cam)
    np.savez(out / "cameras_sphere.npz", **mats)
    names = []
    for i in range(len(rgb)):
        write_png(out / "image" / f"{i:06d}.png", rgb[i])
        write_png(out / "mask" / f"{i:03d}.png", np.repeat(mask[i][:, :, None], 3, -1))
        names.append(f"image/{i:06d}.png")
    return names


def write_points_ply(path: Path, points: Tensor, normals: Tensor, part: Tensor, part_names: list[str]) -> None:
    """Binary PLY point set: x, y, z, nx, ny, nz (float32) and ``part`` (uint8 index into part_names)."""
    dtype = [(k, "f4") for k in ("x", "y", "z", "nx", "ny", "nz")] + [("part", "u1")]
    v = np.empty(len(points), dtype=dtype)
    for j, k in enumerate("xyz"):
        v[k] = points[:, j].numpy()
        v["n" + k] = normals[:, j].numpy()
    v["part"] = part.numpy().astype(np.uint8)
    comments = [
        "nerflite synthetic ground truth: points uniform on the true surface (dataset world frame)",
        "parts: " + " ".join(part_names),
    ]
    PlyData([PlyElement.describe(v, "vertex")], comments=comments).write(str(path))


def write_correspondences(path: Path, image: list[str], xy: Tensor, points: Tensor, size: Tensor,
                          time: Tensor | None = None) -> None:
    """``gt_correspondences.npz``: image [m] (path relative to the dataset), xy [m, 2] continuous
    pixel coordinates (pixel centres at +0.5), points [m, 3] world points (dataset frame),
    image_size [m, 2] (width, height) of the image the xy refer to; moving scenes: time [m]."""
    np.savez(
        path,
        image=np.array(image),
        xy=xy.double().numpy(),
        points=points.double().numpy(),
        image_size=size.long().numpy(),
        **({} if time is None else {"time": time.double().numpy()}),
    )
