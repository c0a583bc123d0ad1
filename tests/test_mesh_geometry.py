"""Mesh extraction and Chamfer evaluation on an analytic sphere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nerflite.geometry import (
    GeometryError,
    chamfer_distance,
    main,
    mesh_chamfer,
    read_ply,
    read_points,
    sample_surface,
)
from nerflite.mesh import extract_mesh, write_ply

CENTER = np.array([0.1, -0.2, 0.05])
RADIUS = 0.5


def sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.as_tensor(CENTER, dtype=x.dtype)).norm(dim=-1) - RADIUS


def sphere_points(n: int, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return CENTER + RADIUS * d / np.linalg.norm(d, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def sphere_mesh():
    # slab 16 < resolution 64: the mesh is stitched from four slabs
    return extract_mesh(sphere_sdf, [-1, -1, -1], [1, 1, 1], resolution=64, slab=16, chunk=10000)


def test_marching_cubes_sphere_is_within_a_voxel(sphere_mesh):
    voxel = 2.0 / 63
    mesh = sphere_mesh
    radii = np.linalg.norm(mesh.vertices - CENTER, axis=-1)
    assert np.abs(radii - RADIUS).max() < 0.1 * voxel  # vertices interpolate the exact level set
    res = mesh_chamfer(mesh.vertices, mesh.faces, sphere_points(20000), n_samples=20000)
    assert res["chamfer"] < 0.25 * voxel, res
    # the same mesh scaled by 10% about the centre (0.05 off the sphere) is well above a voxel
    scaled = CENTER + 1.1 * (mesh.vertices - CENTER)
    off = mesh_chamfer(scaled, mesh.faces, sphere_points(20000), n_samples=20000)
    assert off["chamfer"] > voxel


def test_stitched_mesh_is_closed_and_faces_point_outwards(sphere_mesh):
    mesh = sphere_mesh
    f = mesh.faces
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # watertight: every edge shared by exactly two faces
    assert len(mesh.vertices) - len(counts) + len(f) == 2  # Euler characteristic of a sphere
    tri = mesh.vertices[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = (normals * (tri.mean(1) - CENTER)).sum(-1)
    assert (outward > 0).all()


def test_world_transform_and_ply_round_trip(sphere_mesh, tmp_path):
    m = np.diag([2.0, 2.0, 2.0, 1.0])
    m[:3, 3] = [1.0, 2.0, 3.0]
    moved = sphere_mesh.transformed(m)
    np.testing.assert_allclose(moved.vertices, sphere_mesh.vertices * 2 + [1, 2, 3])
    direct = extract_mesh(sphere_sdf, [-1, -1, -1], [1, 1, 1], resolution=64, slab=16, world_from_scene=m)
    np.testing.assert_allclose(direct.vertices, moved.vertices)
    moved.colors = np.full((len(moved.vertices), 3), 200, np.uint8)
    write_ply(tmp_path / "m.ply", moved)
    verts, faces = read_ply(tmp_path / "m.ply")
    np.testing.assert_allclose(verts, moved.vertices, atol=1e-5)  # float32 in the file
    np.testing.assert_array_equal(faces, moved.faces)
    # a reflection keeps the faces facing outwards
    mirrored = sphere_mesh.transformed(np.diag([-1.0, 1.0, 1.0, 1.0]))
    tri = mirrored.vertices[mirrored.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    c = CENTER * [-1, 1, 1]  # the mirrored centre
    assert ((normals * (tri.mean(1) - c)).sum(-1) > 0).all()


def test_vertex_colours_and_empty_level_set():
    mesh = extract_mesh(sphere_sdf, [-1, -1, -1], [1, 1, 1], resolution=24,
                        color_fn=lambda p: (p - p + 0.5))
    assert mesh.colors is not None and (mesh.colors == 128).all()
    empty = extract_mesh(lambda p: p.norm(dim=-1) + 1.0, [-1, -1, -1], [1, 1, 1], resolution=16)
    assert len(empty.vertices) == 0 and len(empty.faces) == 0


def test_surface_samples_are_area_weighted():
    # two unit squares' worth of triangles: one of area 1, one of area 3 (scaled copy)
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [10 + 3**0.5, 0, 0], [10, 3**0.5, 0.0]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    pts = sample_surface(verts, faces, 40000, seed=1)
    frac_big = (pts[:, 0] >= 10).mean()
    assert abs(frac_big - 0.75) < 0.01
    small = pts[pts[:, 0] < 10]
    assert (small[:, 0] + small[:, 1] <= 1 + 1e-9).all() and (small[:, :2] >= 0).all()


def test_chamfer_of_shifted_points_and_max_dist():
    gt = sphere_points(4000)
    res = chamfer_distance(gt + [0.01, 0, 0], gt)
    assert res["chamfer"] == pytest.approx(0.01, abs=2e-3)
    outliers = np.concatenate([gt, np.full((100, 3), 50.0)])
    assert chamfer_distance(outliers, gt)["accuracy"] > 1.0
    assert chamfer_distance(outliers, gt, max_dist=1.0)["accuracy"] < 1e-9


def test_cli_reports_chamfer_and_names_bad_files(sphere_mesh, tmp_path, capsys):
    write_ply(tmp_path / "mesh.ply", sphere_mesh)
    gt = sphere_points(5000)
    from nerflite.mesh import Mesh

    write_ply(tmp_path / "gt.ply", Mesh(gt, np.zeros((0, 3), np.int64)))
    np.testing.assert_allclose(read_points(tmp_path / "gt.ply"), gt, atol=1e-6)
    assert main([str(tmp_path / "mesh.ply"), str(tmp_path / "gt.ply"), "--n-samples", "5000", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["chamfer"] < 0.02  # 5000 reference points: ~0.01 mean spacing
    assert main([str(tmp_path / "nope.ply"), str(tmp_path / "gt.ply")]) == 2
    assert "nope.ply: file is missing" in capsys.readouterr().err
    (tmp_path / "bad.ply").write_text("not a ply")
    with pytest.raises(GeometryError, match="bad.ply"):
        read_ply(tmp_path / "bad.ply")
