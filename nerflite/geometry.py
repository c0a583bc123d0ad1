"""Geometry evaluation: points on meshes, PLY reading, and the Chamfer distance.

Chamfer distance between a reconstructed surface (mesh vertices plus area-weighted samples of
its faces) and a reference point set, nearest neighbours by ``scipy.spatial.cKDTree``:

    accuracy     = mean over predicted points of the distance to the nearest reference point
    completeness = mean over reference points of the distance to the nearest predicted point
    chamfer      = (accuracy + completeness) / 2

As in the DTU protocol, ``max_dist`` (when given) leaves distances above it out of each mean
(outliers far from the observed surface), and ``downsample`` thins both point sets to at most one
point per ball of that radius first, so dense regions do not dominate. The DTU protocol also
crops predictions with per-scan observation masks, which ship with the DTU evaluation data, not
with nerflite; results here are therefore comparable in spirit, not digit for digit.

Command line (units are those of the files, millimetres for DTU)::

    python -m nerflite.geometry MESH.ply GT_POINTS.ply [--max-dist 20] [--downsample 0.2]
        [--n-samples 1000000] [--json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from plyfile import PlyData
from scipy.spatial import cKDTree

from nerflite.utils.cli import ArgumentParser


class GeometryError(Exception):
    """A PLY file that cannot be used: the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices [v, 3] float64 and faces [f, 3] int64 (None for a point cloud) of a PLY file."""
    path = Path(path)
    if not path.is_file():
        raise GeometryError(path, "file is missing")
    try:
        ply = PlyData.read(str(path))
    except Exception as e:  # plyfile raises several types for malformed files
        raise GeometryError(path, f"cannot read PLY ({e})") from None
    if "vertex" not in ply:
        raise GeometryError(path, "PLY has no vertex element")
    v = ply["vertex"]
    verts = np.stack([np.asarray(v[a], np.float64) for a in ("x", "y", "z")], -1)
    faces = None
    if "face" in ply and len(ply["face"].data):
        prop = ply["face"].data.dtype.names[0]  # vertex_indices or vertex_index
        faces = np.stack([np.asarray(f[:3], np.int64) for f in ply["face"].data[prop]])
    return verts, faces


def read_points(path: str | Path) -> np.ndarray:
    """The vertices [v, 3] of a PLY file (a point cloud such as ``gt_points.ply``, or a mesh)."""
    return read_ply(path)[0]


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points [n, 3] uniformly distributed over the mesh's area (faces picked by area,
    then uniform barycentric coordinates)."""
    tri = vertices[faces]  # [f, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    if len(faces) == 0 or area.sum() <= 0:
        return np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def downsample_points(points: np.ndarray, radius: float) -> np.ndarray:
    """Keep one point per voxel of edge ``radius`` (a fast, deterministic thinning)."""
    if radius <= 0 or len(points) == 0:
        return points
    keys = np.floor(points / radius).astype(np.int64)
    _, keep = np.unique(keys, axis=0, return_index=True)
    return points[np.sort(keep)]


def chamfer_distance(pred: np.ndarray, gt: np.ndarray, max_dist: float | None = None) -> dict[str, float]:
    """Accuracy, completeness and their mean between point sets [p, 3] and [g, 3] (see module doc)."""
    if len(pred) == 0 or len(gt) == 0:
        return {"accuracy": float("inf"), "completeness": float("inf"), "chamfer": float("inf")}
    d_pred, _ = cKDTree(gt).query(pred, workers=-1)  # [p]
    d_gt, _ = cKDTree(pred).query(gt, workers=-1)  # [g]
    if max_dist is not None:
        d_pred, d_gt = d_pred[d_pred < max_dist], d_gt[d_gt < max_dist]
    acc = float(d_pred.mean()) if len(d_pred) else float("inf")
    comp = float(d_gt.mean()) if len(d_gt) else float("inf")
    return {"accuracy": acc, "completeness": comp, "chamfer": 0.5 * (acc + comp)}


def mesh_chamfer(
    vertices: np.ndarray,
    faces: np.ndarray | None,
    gt_points: np.ndarray,
    n_samples: int = 200000,
    max_dist: float | None = None,
    downsample: float = 0.0,
    seed: int = 0,
) -> dict[str, float]:
    """Chamfer distance between a mesh (its vertices plus ``n_samples`` area-weighted surface
    samples; only the vertices for a point cloud) and reference points."""
    pred = vertices
    if faces is not None and len(faces) and n_samples > 0:
        pred = np.concatenate([vertices, sample_surface(vertices, faces, n_samples, seed)])
    return chamfer_distance(downsample_points(pred, downsample), downsample_points(gt_points, downsample),
                            max_dist)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m nerflite.geometry", description=__doc__.split("\n\n")[0])
    p.add_argument("mesh", help="reconstructed mesh (or point cloud) PLY, in the reference's frame")
    p.add_argument("gt", help="reference points PLY (e.g. gt_points.ply, or DTU's stl0NN_total.ply)")
    p.add_argument("--max-dist", type=float, default=None, help="leave out distances above this (DTU: 20 mm)")
    p.add_argument("--downsample", type=float, default=0.0,
                   help="thin both sets to one point per voxel of this edge (DTU: 0.2 mm)")
    p.add_argument("--n-samples", type=int, default=1000000, help="area-weighted samples on the mesh")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        verts, faces = read_ply(args.mesh)
        gt = read_points(args.gt)
    except GeometryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = mesh_chamfer(verts, faces, gt, args.n_samples, args.max_dist, args.downsample)
    if args.json:
        print(json.dumps(res))
    else:
        for k in ("accuracy", "completeness", "chamfer"):
            print(f"{k:>13}: {res[k]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
