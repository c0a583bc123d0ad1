"""Synthetic scenes: closed-form sphere tracing and SDFs, ground truth on the surface, files in the
exact formats, and ground-truth correspondences that agree with every camera convention."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData

from nerflite.cameras import Cameras, project
from nerflite.data.images import read_image, read_mask
from nerflite.data.parsers import load_scene
from nerflite.data.synthetic import FORMATS, file_frame, generate
from nerflite.data.synthetic.__main__ import main as synthetic_main
from nerflite.data.synthetic.render import ray_sphere, sphere_trace
from nerflite.data.synthetic.shapes import (
    object_parts,
    sample_surface,
    sdf_box,
    sdf_sphere,
    sdf_torus,
    union_sdf,
    wall_part,
)

SMALL = {"views": 8, "size": 48}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return {fmt: generate(fmt, root / fmt, seed=1, **SMALL) for fmt in FORMATS}


def _f64(*v):
    return torch.tensor(v, dtype=torch.float64)


# --- closed forms ---------------------------------------------------------------------------------


def test_sphere_trace_hits_sphere_at_analytic_distance():
    g = torch.Generator().manual_seed(0)
    center, radius = _f64(0.1, -0.2, 0.3), 0.5
    n = 256
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    origins = center + 3.0 * d / torch.linalg.norm(d, dim=-1, keepdim=True)
    aim = center + 0.45 * (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5)  # inside the sphere
    dirs = aim - origins
    dirs = dirs / torch.linalg.norm(dirs, dim=-1, keepdim=True)
    t, hit = sphere_trace(
        lambda p: sdf_sphere(p, center, radius),
        origins,
        dirs,
        torch.zeros(n, dtype=torch.float64),
        torch.full((n,), 10.0, dtype=torch.float64),
        eps=1e-12,
        max_steps=200,
    )
    oc = origins - center
    b = (oc * dirs).sum(-1)
    t_exact = -b - torch.sqrt(b * b - ((oc * oc).sum(-1) - radius**2))
    assert hit.all()
    torch.testing.assert_close(t, t_exact, atol=1e-10, rtol=0)


def test_sphere_trace_misses_and_ray_sphere_bounds():
    origins = _f64(0.0, 0.0, -3.0).expand(2, 3)
    dirs = torch.stack([_f64(0.0, 0.0, 1.0), _f64(0.6, 0.0, 0.8)])  # the second one passes beside the sphere
    t0, t1 = ray_sphere(origins, dirs, 1.0)
    assert torch.allclose(t0[0], _f64(2.0)) and torch.allclose(t1[0], _f64(4.0))
    t, hit = sphere_trace(
        lambda p: sdf_sphere(p, _f64(0, 0, 0), 0.5),
        origins,
        dirs,
        torch.zeros(2, dtype=torch.float64),
        torch.full((2,), 10.0, dtype=torch.float64),
        1e-10,
        200,
    )
    assert hit.tolist() == [True, False]
    assert abs(float(t[0]) - 2.5) < 1e-9


def test_primitive_sdfs_at_known_points():
    c = _f64(0.2, -0.1, 0.4)
    eye = torch.eye(3, dtype=torch.float64)
    # sphere
    p = torch.stack([c, c + _f64(1.0, 0, 0), c + _f64(0, 0.3, 0.4)])
    torch.testing.assert_close(sdf_sphere(p, c, 0.5), _f64(-0.5, 0.5, 0.0))
    # axis-aligned box, half sizes (0.1, 0.2, 0.3): inside, face, edge and corner regions
    half = _f64(0.1, 0.2, 0.3)
    p = torch.stack(
        [
            c,
            c + _f64(0.6, 0, 0),
            c + _f64(0.4, 0.6, 0),
            c + _f64(0.1, 0.2, 0.3) + _f64(0.2, 0.2, 0.1),
            c + _f64(0.05, 0, 0),
        ]
    )
    expected = _f64(-0.1, 0.5, 0.5, 0.3, -0.05)
    torch.testing.assert_close(sdf_box(p, c, eye, half), expected)
    # a box rotated by 90 degrees about z swaps its x and y extents
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(sdf_box(c + _f64(0.0, 0.6, 0.0)[None], c, rz, half), _f64(0.5))
    # torus around z (major 0.5, minor 0.1): on the core circle, at the centre, on the axis above
    p = torch.stack([c + _f64(0.5, 0, 0), c, c + _f64(0, 0, 1.2), c + _f64(0, -0.7, 0)])
    torch.testing.assert_close(sdf_torus(p, c, eye, 0.5, 0.1), _f64(-0.1, 0.4, 1.3 - 0.1, 0.1))
    # the torus tilted by 90 degrees about x has its axis along y
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(sdf_torus(c + _f64(0, 1.2, 0)[None], c, rx, 0.5, 0.1), _f64(1.2))


def test_surface_samples_lie_on_the_surface_uniformly():
    parts = object_parts()
    g = torch.Generator().manual_seed(0)
    pts, normals, part = sample_surface(parts, 40000, g)
    assert union_sdf(parts, pts).abs().max() < 1e-9
    torch.testing.assert_close(torch.linalg.norm(normals, dim=-1), torch.ones(len(pts), dtype=torch.float64))
    # the torus touches nothing, so its share of the points is its share of the total area
    names = [p.name for p in parts]
    areas = {p.name: p.area for p in parts}
    torus_share = float((part == names.index("torus")).double().mean())
    assert abs(torus_share - areas["torus"] / sum(areas.values())) < 0.02
    # uniform on the sphere: the visible upper half keeps half of the sphere's samples
    assert sdf_sphere(pts, _f64(0, 0, 0), 0.85).max() < 0  # the object fits in the 0.85 ball
    wall = wall_part(1.4, 2.0, 1.5)
    w = wall.sample(1000, g)
    assert wall.sdf(w).abs().max() < 1e-12 and torch.allclose(w[:, 1], torch.full((1000,), 1.4, dtype=torch.float64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_gt_points_lie_on_the_true_surface(scenes, fmt):
    v = PlyData.read(str(scenes[fmt] / "gt_points.ply"))["vertex"]
    pts = torch.tensor(np.stack([v["x"], v["y"], v["z"]], -1), dtype=torch.float64)
    frame = file_frame(fmt)
    canon = (pts - frame.translation) @ frame.rotation / frame.scale  # file frame -> canonical
    parts = object_parts()
    if fmt == "llff":  # points on the wall are labelled with the last part index
        obj = torch.from_numpy(np.asarray(v["part"])) < len(parts)
        assert 0 < int(obj.sum()) < len(pts)
        canon = canon[obj]
    assert len(canon) > 1000
    # float32 in the file: 1e-4 is far above its rounding and far below any geometric error
    assert union_sdf(parts, canon).abs().max() < 1e-4


# --- the files, as their readers meet them --------------------------------------------------------


def test_blender_files(scenes):
    root = scenes["blender"]
    counts = {}
    for split in ("train", "val", "test"):
        meta = json.loads((root / f"transforms_{split}.json").read_text())
        assert set(meta) >= {"camera_angle_x", "frames"} and 0 < meta["camera_angle_x"] < math.pi
        for i, frame in enumerate(meta["frames"]):
            assert frame["file_path"] == f"./{split}/r_{i}"
            m = np.array(frame["transform_matrix"])
            assert m.shape == (4, 4) and np.allclose(m[3], [0, 0, 0, 1])
            assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-9)
            assert m[:3, 3] @ m[:3, 2] > 0  # OpenGL: the camera looks along -z, towards the origin
            img = read_image(root / f"{frame['file_path']}.png")
            assert img.shape == (SMALL["size"], SMALL["size"], 4)
            assert img[0, 0, 3] == 0 and img[..., 3].max() == 255  # transparent background, opaque object
        counts[split] = len(meta["frames"])
    assert counts == {"train": 8, "val": 2, "test": 2}


def test_llff_files(scenes):
    root = scenes["llff"]
    pb = np.load(root / "poses_bounds.npy")
    assert pb.shape == (8, 17)
    poses = pb[:, :15].reshape(-1, 3, 5)
    full = sorted((root / "images").iterdir())
    half = sorted((root / "images_2").iterdir())
    assert len(full) == len(half) == 8
    h, w = read_image(full[0]).shape[:2]
    assert (w, h) == (48, 36) and read_image(half[0]).shape[:2] == (18, 24)
    assert np.allclose(poses[:, :, 4], [h, w, poses[0, 2, 4]])  # hwf at full resolution
    assert np.all(pb[:, 15] > 0) and np.all(pb[:, 16] > pb[:, 15])
    # columns [down, right, back]: right x down = forward = -back
    assert np.allclose(np.cross(poses[:, :, 1], poses[:, :, 0]), -poses[:, :, 2])


def test_neus_files(scenes):
    root = scenes["neus"]
    cams = np.load(root / "cameras_sphere.npz")
    images = sorted((root / "image").iterdir())
    masks = sorted((root / "mask").iterdir())
    assert [p.name for p in images[:2]] == ["000000.png", "000001.png"]
    assert [p.name for p in masks[:2]] == ["000.png", "001.png"]
    assert len(images) == len(masks) == 8
    for i in range(8):
        assert cams[f"world_mat_{i}"].shape == (4, 4) and cams[f"scale_mat_{i}"].shape == (4, 4)
    s = cams["scale_mat_0"]
    frame = file_frame("neus")
    assert np.allclose(s, frame.matrix()) and s[0, 0] != 1.0 and np.any(s[:3, 3] != 0)
    img = read_image(images[0])
    assert img.shape == (36, 48, 3)
    raw = np.unique(read_image(masks[0]))
    assert set(raw.tolist()) == {0, 255}
    mask = read_mask(masks[0])
    outside = img[~mask]  # plain black background; antialiased edge pixels of coverage < 1/2 at most half bright
    assert outside.max() <= 128 and (outside == 0).all(-1).mean() > 0.9


# --- correspondences: every convention end to end -------------------------------------------------


def _reference_projection(fmt, root, corr):
    """Project the correspondences' world points with minimal readers of each format (independent of
    nerflite's parsers): continuous pixel coordinates [m, 2] in the named images."""
    pts, names, size = corr["points"], corr["image"], corr["image_size"]
    out = np.zeros((len(pts), 2))
    for i, (p, name, (w, h)) in enumerate(zip(pts, names, size)):
        if fmt == "blender":
            split, stem = name.split("/")
            meta = json.loads((root / f"transforms_{split}.json").read_text())
            frame = next(f for f in meta["frames"] if f["file_path"] == f"./{split}/{stem[:-4]}")
            c2w = np.array(frame["transform_matrix"])[:3] * np.array([1, -1, -1, 1])  # OpenGL -> OpenCV
            f = 0.5 * w / math.tan(0.5 * meta["camera_angle_x"])
            fx = fy = f
            cx, cy = w / 2, h / 2
        elif fmt == "llff":
            row = np.load(root / "poses_bounds.npy")[int(name.split("/")[1][:3])]
            pose = row[:15].reshape(3, 5)
            c2w = np.stack([pose[:, 1], pose[:, 0], -pose[:, 2], pose[:, 3]], -1)
            fx = fy = pose[2, 4] * w / pose[1, 4]
            cx, cy = w / 2, h / 2
        else:
            P = np.load(root / "cameras_sphere.npz")[f"world_mat_{int(name.split('/')[1][:6])}"]
            q = P[:3] @ np.append(p, 1.0)
            out[i] = q[:2] / q[2] + 0.5  # DTU: pixel centres at integers
            continue
        pc = c2w[:, :3].T @ (p - c2w[:, 3])
        out[i] = [fx * pc[0] / pc[2] + cx, fy * pc[1] / pc[2] + cy]
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_correspondences_match_reference_readers(scenes, fmt):
    corr = np.load(scenes[fmt] / "gt_correspondences.npz")
    assert len(corr["xy"]) > 100
    xy = _reference_projection(fmt, scenes[fmt], corr)
    assert np.abs(xy - corr["xy"]).max() < 1e-6
    # and the renderer drew the object there: inside the alpha / mask
    for name, (x, y) in zip(corr["image"][:50], corr["xy"][:50]):
        if fmt == "blender":
            assert read_image(scenes[fmt] / name)[int(y), int(x), 3] == 255
        elif fmt == "neus":
            assert read_mask(scenes[fmt] / "mask" / f"{int(name.split('/')[1][:6]):03d}.png")[int(y), int(x)]


@pytest.mark.parametrize("fmt, downscale", [("blender", 1), ("llff", 1), ("llff", 2), ("neus", 1)])
def test_gt_surface_projects_through_parsed_cameras(scenes, fmt, downscale):
    """THE convention test: parsed cameras put the known surface where the renderer drew it.

    World points (dataset frame) go into the parser's scene frame through the inverse of
    ``world_from_scene`` and are projected with ``nerflite.cameras.project``; they must land on the
    pixel coordinates the renderer traced them from (LLFF at full size and from images_2/).
    """
    root = scenes[fmt]
    scene = load_scene(root, format=fmt, downscale=downscale)
    corr = np.load(root / "gt_correspondences.npz")
    rel = {p.resolve().relative_to(root.resolve()).as_posix(): i for i, p in enumerate(scene.image_paths)}
    keep = np.array([name in rel for name in corr["image"]])
    assert keep.sum() > 100, f"no correspondence names the parsed images {list(rel)[:3]}"
    idx = torch.tensor([rel[n] for n in corr["image"][keep]])
    scene_from_world = np.linalg.inv(scene.metadata["world_from_scene"])
    pts = corr["points"][keep] @ scene_from_world[:3, :3].T + scene_from_world[:3, 3]
    cams: Cameras = scene.cameras
    xy, depth = project(cams, idx, torch.as_tensor(pts, dtype=cams.c2w.dtype))
    size = torch.as_tensor(corr["image_size"][keep])
    assert torch.equal(cams.width[idx], size[:, 0]) and torch.equal(cams.height[idx], size[:, 1])
    assert (depth > 0).all()
    # exact conventions agree to rounding; a half-pixel convention slip would be 0.5 px off
    err = (xy.double() - torch.as_tensor(corr["xy"][keep])).abs().max()
    assert err < 0.01, f"{fmt}: parsed cameras are off by {float(err):.4f} px"


def test_cli_writes_a_dataset_and_replaces_an_older_one(tmp_path, capsys):
    out = tmp_path / "neus"
    assert synthetic_main(["--format", "neus", "--out", str(out), "--views", "5", "--size", "16"]) == 0
    assert synthetic_main(["--format", "neus", "--out", str(out), "--views", "3", "--size", "16"]) == 0
    assert str(out) in capsys.readouterr().out
    assert len(list((out / "image").iterdir())) == len(list((out / "mask").iterdir())) == 3
    assert "world_mat_2" in np.load(out / "cameras_sphere.npz") and "world_mat_3" not in np.load(
        out / "cameras_sphere.npz"
    )
    with pytest.raises(SystemExit):
        synthetic_main(["--format", "colmap", "--out", str(out)])
    with pytest.raises(ValueError, match="views"):
        generate("llff", out, views=0)
