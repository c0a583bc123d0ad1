"""Scene frame and bounds of a COLMAP reconstruction, from its cameras and sparse points.

Steps (``frame_scene``; ``scene_from_world`` records them, its inverse is the scene's
``metadata["world_from_scene"]``):

1. Inlier points: sparse points inside the per-axis [1st, 99th] percentile box, so stray
   far-away or near-camera points do not move the frame.
2. Forward-facing or 360: forward-facing when the cameras look within 45 degrees of their mean
   viewing direction (80% of them at least: a few others are named as damaged poses) and 95% of
   the inlier points lie in front of the mean camera (never with ``spherify``; without points the
   directions alone decide: ``common.looks_forward``, the LLFF reader's rule too). A note says which was chosen and why
   (``common.capture_note``, as the LLFF reader's).
3. Forward-facing: the mean camera becomes the identity looking down -z (as LLFF), and the scale
   puts the nearest content (1st percentile of the inlier depths) at ``1 / bd_factor``; NDC when
   ``ndc``. 360: the point nearest all optical axes (else the median point) becomes the origin, the
   mean camera up axis +z, and the scale makes the content radius 1 (1.1 x the 99th-percentile
   inlier distance from the origin, at most 0.9 x the nearest camera's distance).
   Without points (a model without its points3D file) the cameras alone set the frame, which needs
   views that converge on a point (else an error): forward-facing, the content is taken from 0.5 to
   1.5 x the depth where they converge; 360, that point is the origin and the radius half the
   nearest camera's distance. Either keeps the cameras about as far from the content as the
   points would (a test compares both on one capture).
4. Per-view bounds: the 1st and 99th percentiles of the distances (and z-depths) of the inlier
   points each image observes, times 0.9 and 1.1; ``near``/``far`` are their extremes (360:
   widened to cover the unit sphere). Without points they follow step 3's guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from nerflite.camera_paths import focus_depth_from_bounds, orbit_from_cameras, spiral_path
from nerflite.data.parsers.colmap_io import Points3D
from nerflite.data.parsers.common import capture_note, converging_point, looks_forward, normalize, view_angles
from nerflite.data.scene import DatasetError

if TYPE_CHECKING:
    from nerflite.data.parsers import DatasetConfig

FRONT_FRACTION = 0.95  # forward-facing: at least this share of the inlier points in front of the mean camera


@dataclass
class Framing:
    scene_from_world: np.ndarray  # [4, 4] similarity from COLMAP's world to the scene frame
    c2w: np.ndarray  # [n, 3, 4] cameras in the scene frame
    forward: bool  # forward-facing capture
    ndc: bool  # rays in NDC
    near: float  # distance along unit rays (0 in NDC)
    far: float  # (1 in NDC)
    center: np.ndarray  # [3] bounding sphere
    radius: float
    bounds: np.ndarray  # [n, 2] per-view near / far depths along the optical axis (scene units)
    render: Tensor  # [m, 3, 4] default render path
    scale: float  # scene units per COLMAP unit
    inliers: int  # sparse points used


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
        focus = converging_point(c2w)
        if near is None and focus is not None:  # from the cameras alone: content from 0.5 to 1.5 x that depth
            near = 0.5 * float((focus - mean_c) @ mean_f)
            notes.append(f"no sparse points: the content is assumed from 0.5 to 1.5 times the depth where the views "
                         f"converge ({2 * near:.3g} units in front of the mean camera); set dataset.near / dataset.far "
                         "(ndc=false) if this is wrong")
        elif near is None:
            spread = float(np.linalg.norm(centers - mean_c, axis=1).max()) or 1.0
            near = 10.0 * spread
            notes.append("no sparse points in front of the cameras: the nearest content is guessed at 10x "
                         "the camera spread (set dataset.near / dataset.far if this is wrong)")
        scale = 1.0 / (near * (bd_factor if bd_factor > 0 else 1.0))
        return np.diag([scale, scale, scale, 1.0]) @ move
    center = converging_point(c2w)
    if center is None:
        center = np.median(pts, axis=0) if len(pts) else centers.mean(0)
    cam_d = np.linalg.norm(centers - center, axis=1)
    if cam_d.min() < 1e-9:
        center = np.median(pts, axis=0) if len(pts) else centers.mean(0)
        cam_d = np.linalg.norm(centers - center, axis=1)
    up = -normalize(c2w[:, :, 1].sum(0))
    x = fwd.mean(0) - (fwd.mean(0) @ up) * up  # the mean view, horizontal, becomes +x
    if np.linalg.norm(x) < 1e-3:  # every camera looks straight down (or up)
        x = np.eye(3)[np.argmin(np.abs(up))] - up[np.argmin(np.abs(up))] * up
    x = normalize(x)
    frame = np.eye(4)
    frame[:3, :3] = np.stack([x, np.cross(up, x), up], 1)
    frame[:3, 3] = center
    if len(pts):
        radius = min(1.1 * float(np.percentile(np.linalg.norm(pts - center, axis=1), 99)), 0.9 * float(cam_d.min()))
    else:
        radius = 0.5 * float(cam_d.min())
        notes.append("no sparse points: the content is assumed within half the nearest camera's distance of "
                     "the point the cameras look at (set dataset.radius if this is wrong)")
    radius = radius if radius > 0 else 1.0
    return np.diag([1 / radius, 1 / radius, 1 / radius, 1.0]) @ np.linalg.inv(frame)


def frame_scene(c2w: np.ndarray, pts: Points3D, observed: list[np.ndarray], cfg: DatasetConfig,
                notes: list[str], points_file: Path | None = None) -> Framing:
    """The scene frame and bounds for cameras [n, 3, 4] (COLMAP world, nerflite axes) and sparse
    points; ``observed[i]`` indexes the points view ``i`` sees. Without points the frame comes from
    the cameras alone (step 3), which needs views that converge: else a DatasetError naming
    ``points_file``."""
    good = inlier_points(pts.xyz)
    fwd = normalize(c2w[:, :, 2])
    mean_f = normalize(fwd.sum(0))
    front = float(((pts.xyz[good] - c2w[:, :, 3].mean(0)) @ mean_f > 0).mean()) if good.any() else None
    angles = view_angles(c2w)
    forward = bool(not cfg.spherify and looks_forward(angles) and (front is None or front >= FRONT_FRACTION))
    if front is None and converging_point(c2w) is None:
        raise DatasetError(points_file or "points3D", "no sparse points, and the cameras' views do not converge on a "
                                                      "point: the scene's scale and bounds cannot be told from the "
                                                      "cameras alone (restore the model's points3D file)")
    scene_from_world = normalisation(c2w, pts.xyz[good], forward, cfg.bd_factor, notes)
    c2w = apply_similarity(scene_from_world, c2w)
    xyz = pts.xyz @ scene_from_world[:3, :3].T + scene_from_world[:3, 3]
    z_b, d_b = view_bounds(c2w, [i[good[i]] for i in observed], xyz)
    cam_d = np.linalg.norm(c2w[:, :, 3], axis=1)
    if forward:
        nearest = 1.0 / max(cfg.bd_factor, 1e-6)  # where the normalisation put the nearest content
        z_b = fill_bounds(z_b, (nearest, 3.0 * nearest if front is None else 100.0))  # no points: 0.5 .. 1.5 x focus
        d_b = fill_bounds(d_b, (float(z_b[:, 0].min()), 1.5 * float(z_b[:, 1].max())))
        ndc = bool(cfg.ndc)
        points = "; no sparse points" if front is None else f", {100 * front:.0f}% of the points in front"
        notes.append(capture_note(True, angles, ndc, points))
        mid = 0.5 * (z_b.min() + z_b.max())
        center, radius = np.array([0.0, 0.0, -mid]), 0.5 * (z_b.max() - z_b.min()) + float(cam_d.max())
        focus = focus_depth_from_bounds(float(z_b.min()) * 0.9, float(z_b.max()) * 5.0)
        render = spiral_path(torch.from_numpy(c2w), focus, cfg.render_frames)
        near, far = (0.0, 1.0) if ndc else (float(d_b[:, 0].min()), float(d_b[:, 1].max()))
    else:  # 360: the bounds also cover the unit sphere around the origin
        ndc, center, radius = False, np.zeros(3), 1.0
        why = ("dataset.spherify=true" if cfg.spherify else f"only {100 * front:.0f}% of the points in front of the "
               "cameras" if looks_forward(angles) else "")
        notes.append(capture_note(False, angles, False, why))
        d_b = fill_bounds(d_b, (float(cam_d.min()) - 1.0, float(cam_d.max()) + 1.0))
        z_b = fill_bounds(z_b, (float(d_b[:, 0].min()), float(d_b[:, 1].max())))
        near = max(min(float(d_b[:, 0].min()), float(cam_d.min()) - 1.0), 0.01 * float(cam_d.min()))
        far = max(float(d_b[:, 1].max()), float(cam_d.max()) + 1.0)
        render = orbit_from_cameras(torch.from_numpy(c2w), torch.zeros(3, dtype=torch.float64), cfg.render_frames)
    scale = float(np.cbrt(np.linalg.det(scene_from_world[:3, :3])))
    return Framing(scene_from_world, c2w, forward, ndc, near, far, center, float(radius), z_b, render, scale,
                   int(good.sum()))
