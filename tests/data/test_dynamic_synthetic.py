"""The moving synthetic scene: exact geometry at every moment, D-NeRF and Nerfies captures whose
parsed cameras and times put each known surface point, at its own moment, where it was drawn; a
static model trains on it (ignoring time)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nerflite.cameras import generate_rays, project
from nerflite.data.datamanager import DataManager, DataManagerConfig
from nerflite.data.dynamic import TIME
from nerflite.data.images import read_image
from nerflite.data.parsers import detect_format, load_scene
from nerflite.data.synthetic import DYNAMIC_FORMATS, generate
from nerflite.data.synthetic.__main__ import main as synthetic_main
from nerflite.data.synthetic.motion import (
    BOX_CENTER,
    BOX_HALF,
    SPHERE_RADIUS,
    TORUS_CENTER,
    TORUS_TILT,
    box_rotation,
    moving_parts,
    moving_sdf,
    moving_surface,
    sphere_center,
    torus_radii,
)

SMALL = {"views": 8, "size": 32}


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    root = tmp_path_factory.mktemp("moving")
    return {fmt: generate(fmt, root / fmt, seed=2, **SMALL) for fmt in DYNAMIC_FORMATS}


def _f64(*v):
    return torch.tensor(v, dtype=torch.float64)


# --- the geometry at every moment ----------------------------------------------------------------


def test_shapes_move_as_stated_and_their_sdfs_are_exact():
    sphere, box = moving_parts(0.5)[0].sdf, moving_parts(0.5)[1].sdf
    # the sphere slides on its line: its top at t is on the surface at t, inside or away at other moments
    for t in (0.0, 0.3, 1.0):
        top = sphere_center(t) + _f64(0, 0, SPHERE_RADIUS)
        assert abs(float(moving_parts(t)[0].sdf(top[None]))) < 1e-12
    torch.testing.assert_close(sphere_center(0.5), (sphere_center(0.0) + sphere_center(1.0)) / 2)
    assert float(sphere(sphere_center(0.5)[None])) == pytest.approx(-SPHERE_RADIUS)
    # the box turns a quarter turn about z: a face centre follows the rotation
    c = _f64(*BOX_CENTER)
    for t in (0.0, 0.5, 1.0):
        face = c + box_rotation(t) @ _f64(BOX_HALF, 0, 0)
        assert abs(float(moving_parts(t)[1].sdf(face[None]))) < 1e-12
    torch.testing.assert_close(box_rotation(1.0) @ _f64(1, 0, 0), box_rotation(0.0) @ _f64(0, 1, 0))
    # a point 0.1 outside a face, along its normal, is exactly 0.1 away
    assert float(box((c + box_rotation(0.5) @ _f64(0, 0, BOX_HALF + 0.1))[None])) == pytest.approx(0.1)
    # the torus grows: the outer point of its ring at t is on the surface at t, inside it later
    assert torus_radii(0.5) == pytest.approx((0.27, 0.09))
    tilt = torch.tensor([[1, 0, 0], [0, math.cos(TORUS_TILT), -math.sin(TORUS_TILT)],
                         [0, math.sin(TORUS_TILT), math.cos(TORUS_TILT)]], dtype=torch.float64)
    outer = lambda t: _f64(*TORUS_CENTER) + tilt @ _f64(sum(torus_radii(t)), 0, 0)  # noqa: E731
    assert abs(float(moving_parts(0.2)[2].sdf(outer(0.2)[None]))) < 1e-12
    assert float(moving_parts(1.0)[2].sdf(outer(0.2)[None])) < -0.01
    with pytest.raises(ValueError, match="time must be in"):
        moving_parts(1.5)


@pytest.mark.parametrize("t", [0.0, 0.4, 1.0])
def test_surface_samples_lie_on_the_surface_at_their_moment_only(t):
    g = torch.Generator().manual_seed(3)
    pts, normals, part = moving_surface(4000, t, g)
    assert moving_sdf(pts, t).abs().max() < 1e-12
    assert float(torch.linalg.norm(pts, dim=-1).max()) < 0.85  # everything in the 0.85 ball at every moment
    other = 1.0 - t if t != 0.4 else 0.9
    moved = moving_sdf(pts, other).abs()
    assert float((moved > 0.02).float().mean()) > 0.3  # the scene really moved in between
    # outward normals: a step along them leaves the surface by that step
    torch.testing.assert_close(moving_sdf(pts + 1e-4 * normals, t), torch.full((len(pts),), 1e-4, dtype=torch.float64),
                               atol=2e-6, rtol=0)


# --- the captures, through the parsers -------------------------------------------------------------


def test_dnerf_capture_is_monocular_with_own_eval_moments(captures):
    root = captures["dnerf"]
    assert detect_format(root) == "dnerf"
    scene = load_scene(root)
    n = SMALL["views"]
    assert scene.times[scene.split("train")].tolist() == pytest.approx([i / (n - 1) for i in range(n)])
    assert scene.times[scene.split("val")].tolist() == pytest.approx([0.25, 0.75])
    assert scene.times[scene.split("test")].tolist() == pytest.approx([0.125, 0.625])
    centres = scene.cameras.c2w[:, :, 3]
    assert torch.cdist(centres, centres).add(torch.eye(len(centres)) * 9).min() > 0.1  # every frame another camera
    meta = json.loads((root / "transforms_val.json").read_text())
    assert all("time" in f for f in meta["frames"])


def test_nerfies_capture_has_its_lens_and_a_canonical_scene_frame(captures):
    root = captures["nerfies"]
    assert detect_format(root) == "nerfies"
    scene = load_scene(root)
    n = SMALL["views"]
    assert scene.splits["val"] == [4] and scene.splits["train"] == [k for k in range(n) if k != 4]
    assert scene.times.tolist() == pytest.approx([k / (n - 1) for k in range(n)])
    assert scene.appearance_ids.tolist() == list(range(n))
    cams = scene.cameras
    assert cams.skew is not None and float(cams.skew[0]) == pytest.approx(0.6)
    assert float(cams.fy[0] / cams.fx[0]) == pytest.approx(1.02, rel=1e-6)
    assert cams.distortion[0].tolist() == pytest.approx([-0.04, 0.01, 0.002, 0.0, 0.0015, -0.001])
    # the scene frame is the canonical one: cameras 3.2 from the origin, the object at the origin
    assert torch.linalg.norm(cams.c2w[:, :, 3], dim=-1).tolist() == pytest.approx([3.2] * n, abs=1e-5)
    half = load_scene(root, downscale=2)
    assert half.image_paths[0].parent.name == "2x" and int(half.cameras.width[0]) == SMALL["size"] // 2


@pytest.mark.parametrize("fmt", DYNAMIC_FORMATS)
def test_known_surface_at_each_moment_projects_where_it_was_drawn(captures, fmt):
    """Each ground-truth point, on the surface at its own moment, projects through the parsed camera
    of its view onto the pixel it was traced from; the view's parsed time is that moment; the ray
    through the pixel passes through the point; and at another moment the point is off the surface."""
    root = captures[fmt]
    scene = load_scene(root)
    corr = np.load(root / "gt_correspondences.npz")
    rel = {p.resolve().relative_to(root.resolve()).as_posix(): i for i, p in enumerate(scene.image_paths)}
    idx = torch.tensor([rel[name] for name in corr["image"]])
    assert len(idx) > 100 and len(set(idx.tolist())) == 3
    torch.testing.assert_close(scene.times[idx].double(), torch.from_numpy(corr["time"]), atol=1e-7, rtol=0)
    to_scene = np.linalg.inv(scene.metadata["world_from_scene"])
    pts = corr["points"] @ to_scene[:3, :3].T + to_scene[:3, 3]  # [m, 3] scene frame (= canonical here)
    xy, depth = project(scene.cameras, idx, torch.from_numpy(pts).float())
    assert (depth > 0).all()
    assert float((xy.double() - torch.from_numpy(corr["xy"])).abs().max()) < 0.01
    for t in sorted(set(corr["time"].tolist())):
        sel = corr["time"] == t
        assert moving_sdf(torch.from_numpy(pts[sel]), t).abs().max() < 1e-5
        far_moment = 1.0 if t < 0.5 else 0.0
        assert float(moving_sdf(torch.from_numpy(pts[sel]), far_moment).abs().max()) > 0.02
    xy_t = torch.from_numpy(corr["xy"]).float()
    rays = generate_rays(scene.cameras, idx, xy_t[:, 1], xy_t[:, 0])
    to_pt = torch.from_numpy(pts).float() - rays.origins
    miss = torch.linalg.norm(torch.linalg.cross(to_pt, rays.directions, dim=-1), dim=-1)
    assert float(miss.max()) < 1e-4
    # and the images show the object there
    for name, (x, y) in zip(corr["image"][:40], corr["xy"][:40]):
        img = read_image(root / name)
        assert (img[int(y), int(x), 3] == 255) if img.shape[2] == 4 else img[int(y), int(x)].max() > 0


@pytest.mark.parametrize("fmt", DYNAMIC_FORMATS)
def test_training_rays_of_the_capture_carry_their_frames_time(captures, fmt):
    scene = load_scene(captures[fmt])
    dm = DataManager(scene, DataManagerConfig(rays_per_batch=256, workers=0), "cpu")
    rays, batch = dm.next_train(0)
    assert torch.equal(rays.extras[TIME][:, 0], scene.times[batch["indices"][:, 0]])
    if fmt == "nerfies":
        assert torch.equal(rays.extras["appearance_id"][:, 0], scene.appearance_ids[batch["indices"][:, 0]])
    dm.close()


def test_cli_writes_moving_scenes(tmp_path, capsys):
    for fmt in DYNAMIC_FORMATS:
        assert synthetic_main(["--format", fmt, "--out", str(tmp_path / fmt), "--views", "3", "--size", "16"]) == 0
        assert load_scene(tmp_path / fmt).is_dynamic
    assert "nerfies" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "nerfies" / "rgb").iterdir()) == ["1x", "2x"]  # 4x would be 4 px


def test_a_static_model_trains_on_a_moving_scene(captures, tmp_path, one_thread):
    """dataset=dnerf with model=nerf: the rays' time is ignored; training, eval and checkpoints work."""
    from nerflite.engine.trainer import train
    from tests.app.helpers import TINY_NERF, TINY_RUN, compose_config

    cfg = compose_config(["dataset=dnerf", f"dataset.path={captures['dnerf']}", "dataset.downscale=1",
                          f"output_root={tmp_path / 'outputs'}", *TINY_NERF, *TINY_RUN])
    assert cfg.name == "dnerf_nerf"
    result = train(cfg)
    assert result.step == 6 and math.isfinite(result.test["psnr"])
    assert (result.run_dir / "metrics_test.json").is_file()


def test_the_synthetic_config_group_generates_a_moving_scene(tmp_path):
    from nerflite.engine.setup import build_scene
    from tests.app.helpers import compose_config

    cfg = compose_config(["dataset.synthetic.format=nerfies", "dataset.synthetic.views=4",
                          "dataset.synthetic.size=16", f"dataset.path={tmp_path / 'moving'}"])
    scene = build_scene(cfg.dataset)
    assert scene.format == "nerfies" and scene.is_dynamic and len(scene) == 4

