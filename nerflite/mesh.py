"""Mesh extraction from a signed distance function: grid queries in slabs, marching cubes, PLY.

``extract_mesh(sdf_fn, bbox_min, bbox_max, resolution)`` samples the SDF on a
``resolution^3`` grid of the box (corners included), one slab of ``slab`` z-planes at a time,
and runs marching cubes (scikit-image, Lewiner) on each slab with a one-plane overlap with the
next. Only one slab of values (``slab * resolution^2`` floats) and one chunk of query points are
alive at a time, so memory stays bounded at 512^3 and beyond; the slabs' meshes are stitched by
merging the identical vertices on their shared planes. Faces are oriented so that their normals
point towards increasing SDF (outwards, for an SDF that is negative inside).

Vertex colours are optional: ``color_fn(points [m, 3]) -> [m, 3]`` in [0, 1] (the NeuS model's
``surface_color`` looks at each vertex head-on, along minus its normal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from skimage import measure
from torch import Tensor


@dataclass
class Mesh:
    vertices: np.ndarray  # [v, 3] float64
    faces: np.ndarray  # [f, 3] int64, counter-clockwise seen from outside
    colors: np.ndarray | None = None  # [v, 3] uint8

    def transformed(self, matrix: np.ndarray) -> Mesh:
        """The mesh with vertices mapped by a 4x4 similarity transform (e.g. ``world_from_scene``).
        A reflection (negative determinant) flips the faces so they keep facing outwards."""
        m = np.asarray(matrix, dtype=np.float64)
        verts = self.vertices @ m[:3, :3].T + m[:3, 3]
        faces = self.faces[:, ::-1].copy() if np.linalg.det(m[:3, :3]) < 0 else self.faces
        return replace(self, vertices=verts, faces=faces)


def _grid_axes(bbox_min: Sequence[float], bbox_max: Sequence[float], resolution: int) -> list[np.ndarray]:
    lo, hi = np.asarray(bbox_min, np.float64), np.asarray(bbox_max, np.float64)
    return [np.linspace(lo[i], hi[i], resolution) for i in range(3)]


def sdf_slab(sdf_fn: Callable[[Tensor], Tensor], xs: np.ndarray, ys: np.ndarray, zs: np.ndarray,
             chunk: int, device: torch.device | str) -> np.ndarray:
    """SDF values [len(xs), len(ys), len(zs)] (float32) on the grid xs x ys x zs, ``chunk`` points
    per call of ``sdf_fn`` (points [m, 3] float32 on ``device`` -> values [m])."""
    nx, ny, nz = len(xs), len(ys), len(zs)
    out = np.empty((nx, ny, nz), dtype=np.float32)
    flat = out.reshape(-1)
    gx, gy, gz = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in (xs, ys, zs))
    total = nx * ny * nz
    with torch.no_grad():
        for start in range(0, total, chunk):
            idx = torch.arange(start, min(start + chunk, total), device=device)
            i, rem = idx // (ny * nz), idx % (ny * nz)
            pts = torch.stack([gx[i], gy[rem // nz], gz[rem % nz]], -1)  # [m, 3]
            flat[start : start + len(idx)] = sdf_fn(pts).reshape(-1).float().cpu().numpy()
    return out


def extract_mesh(
    sdf_fn: Callable[[Tensor], Tensor],
    bbox_min: Sequence[float] | Tensor,
    bbox_max: Sequence[float] | Tensor,
    resolution: int = 512,
    level: float = 0.0,
    slab: int = 32,
    chunk: int = 262144,
    device: torch.device | str = "cpu",
    color_fn: Callable[[Tensor], Tensor] | None = None,
    world_from_scene: np.ndarray | None = None,
) -> Mesh:
    """Zero level set of ``sdf_fn`` inside the box as a triangle mesh (see the module docstring).

    ``resolution`` grid points per axis, ``slab`` z-planes of values per marching-cubes call,
    ``chunk`` points per ``sdf_fn`` call. ``sdf_fn``, ``color_fn`` and the box are in scene
    coordinates; ``world_from_scene`` (4x4, e.g. ``scene.metadata["world_from_scene"]``) maps the
    result to the dataset's world frame. Returns an empty mesh when the SDF does not cross
    ``level`` anywhere on the grid.
    """
    as_list = lambda b: b.detach().cpu().tolist() if isinstance(b, Tensor) else list(b)  # noqa: E731
    xs, ys, zs = _grid_axes(as_list(bbox_min), as_list(bbox_max), resolution)
    spacing = (xs[1] - xs[0], ys[1] - ys[0], zs[1] - zs[0])
    origin = np.array([xs[0], ys[0], zs[0]])
    verts_parts, faces_parts, n_verts = [], [], 0
    for z0 in range(0, resolution - 1, slab):
        z1 = min(z0 + slab, resolution - 1)  # planes z0..z1 inclusive: the next slab starts at z1
        values = sdf_slab(sdf_fn, xs, ys, zs[z0 : z1 + 1], chunk, device)  # [R, R, k]
        if values.min() > level or values.max() < level:
            continue
        verts, faces, _, _ = measure.marching_cubes(
            values, level=level, allow_degenerate=False
        )  # vertices in grid-index units of the slab
        verts_parts.append(verts.astype(np.float64) + np.array([0.0, 0.0, z0]))
        faces_parts.append(faces + n_verts)
        n_verts += len(verts)
    if not verts_parts:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    verts = np.concatenate(verts_parts)
    faces = np.concatenate(faces_parts).astype(np.int64)
    # stitch: vertices on a shared plane were computed twice from the same values (in index
    # units the plane's coordinate is an exact integer, so the copies are bitwise equal)
    verts, inverse = np.unique(verts, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    verts = origin + verts * np.asarray(spacing)
    mesh = Mesh(verts, faces)
    if color_fn is not None:
        mesh.colors = vertex_colors(color_fn, verts, chunk, device)
    return mesh if world_from_scene is None else mesh.transformed(world_from_scene)


def vertex_colors(color_fn: Callable[[Tensor], Tensor], vertices: np.ndarray, chunk: int,
                  device: torch.device | str) -> np.ndarray:
    """uint8 colours [v, 3] from ``color_fn`` (points [m, 3] -> rgb [m, 3] in [0, 1])."""
    out = np.empty((len(vertices), 3), dtype=np.uint8)
    for start in range(0, len(vertices), chunk):
        pts = torch.as_tensor(vertices[start : start + chunk], dtype=torch.float32, device=device)
        rgb = color_fn(pts).detach().float().clamp(0, 1).cpu().numpy()
        out[start : start + chunk] = np.round(rgb * 255).astype(np.uint8)
    return out


def write_ply(path: str | Path, mesh: Mesh) -> None:
    """Binary PLY with float32 vertices (+ uint8 red/green/blue when the mesh has colours)."""
    names = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if mesh.colors is not None:
        names += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(mesh.vertices), dtype=names)
    for i, axis in enumerate("xyz"):
        vertex[axis] = mesh.vertices[:, i]
    if mesh.colors is not None:
        for i, c in enumerate(("red", "green", "blue")):
            vertex[c] = mesh.colors[:, i]
    face = np.empty(len(mesh.faces), dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = mesh.faces
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))
