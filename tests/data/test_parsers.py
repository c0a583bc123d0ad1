"""Parsers: each file convention converted into nerflite's, checked against known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nerflite.cameras import generate_rays, project
from nerflite.data.parsers import DatasetConfig, detect_format, load_scene
from nerflite.data.scene import DatasetError
from tests.data.builders import look_at_opencv, make_blender, opencv_to_opengl_4x4, write_png

# ----------------------------------------------------------------------------- Blender


def test_blender_principal_ray_hits_origin_and_focal_from_angle(tmp_path):
    make_blender(tmp_path, n=4, width=16, height=12, angle_x=0.8)
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    cams = scene.cameras
    assert scene.format == "blender" and len(scene) == 4
    torch.testing.assert_close(cams.fx, torch.full((4,), 8.0 / math.tan(0.4)))
    torch.testing.assert_close(cams.fy, cams.fx)
    torch.testing.assert_close(cams.cx, torch.full((4,), 8.0))
    torch.testing.assert_close(cams.cy, torch.full((4,), 6.0))
    assert cams.width.tolist() == [16] * 4 and cams.height.tolist() == [12] * 4
    # the ray through the principal point passes through the origin, which the cameras look at
    idx = torch.arange(4)
    rays = generate_rays(cams, idx, cams.cy.clone(), cams.cx.clone())
    to_origin = -rays.origins / rays.origins.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(rays.directions, to_origin, atol=1e-6, rtol=0)
    # world +z (Blender's up) projects above the image centre: OpenCV y grows downwards
    xy, z = project(cams, idx, torch.tensor([[0.0, 0.0, 0.5]]).expand(4, 3))
    assert (xy[:, 1] < cams.cy).all() and (z > 0).all()
    assert scene.near == 2.0 and scene.far == 6.0 and scene.background == (1.0, 1.0, 1.0)
    assert 0 < scene.sphere_radius <= 2.0
    assert np.allclose(scene.metadata["world_from_scene"], np.eye(4))


def test_blender_train_only_holds_out_every_8th(tmp_path):
    make_blender(tmp_path, n=17)
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    assert scene.splits["val"] == [0, 8, 16] and scene.splits["test"] == [0, 8, 16]
    assert len(scene.splits["train"]) == 14 and not set(scene.splits["train"]) & {0, 8, 16}
    scene = load_scene(DatasetConfig(path=str(tmp_path), holdout=0))
    assert scene.splits["train"] == list(range(17)) == scene.splits["test"]


def test_blender_three_splits_and_file_names(tmp_path):
    make_blender(tmp_path, n=3, splits=("train", "val", "test"), ext_in_json=True)
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    assert scene.splits == {"train": [0, 1, 2], "val": [3, 4, 5], "test": [6, 7, 8]}
    names = [p.relative_to(tmp_path).as_posix() for p in scene.image_paths[3:5]]
    assert names == ["val/r_0.png", "val/r_1.png"]


def test_blender_downscale_scales_intrinsics(tmp_path):
    make_blender(tmp_path, n=2, width=16, height=12, angle_x=0.8)
    scene = load_scene(DatasetConfig(path=str(tmp_path), downscale=2, background=[0, 0, 0]))
    torch.testing.assert_close(scene.cameras.fx, torch.full((2,), 4.0 / math.tan(0.4)))
    torch.testing.assert_close(scene.cameras.cx, torch.full((2,), 4.0))
    assert scene.cameras.width.tolist() == [8, 8] and scene.cameras.height.tolist() == [6, 6]
    assert scene.downscale == 2 and scene.background == (0.0, 0.0, 0.0)


def test_blender_single_transforms_json_with_pixel_intrinsics(tmp_path):
    """The one-file style: fl_x/fl_y/cx/cy/w/h globally, overridden per frame; images stored at
    half the recorded w/h scale the intrinsics."""
    c2w = look_at_opencv([0.0, -3.0, 0.5])
    frames = [
        {"file_path": "images/a.png", "transform_matrix": opencv_to_opengl_4x4(c2w)},
        {"file_path": "images/b.jpg", "transform_matrix": opencv_to_opengl_4x4(c2w), "fl_x": 30, "cx": 11},
    ]
    meta = {"fl_x": 20.0, "fl_y": 22.0, "cx": 9.0, "cy": 7.0, "w": 20, "h": 14, "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    write_png(tmp_path / "images" / "a.png", 20, 14)
    write_png(tmp_path / "images" / "b.jpg", 10, 7)  # stored at half the recorded size
    scene = load_scene(DatasetConfig(path=str(tmp_path), holdout=0))
    cams = scene.cameras
    torch.testing.assert_close(cams.fx, torch.tensor([20.0, 15.0]))
    torch.testing.assert_close(cams.fy, torch.tensor([22.0, 11.0]))
    torch.testing.assert_close(cams.cx, torch.tensor([9.0, 5.5]))
    torch.testing.assert_close(cams.cy, torch.tensor([7.0, 3.5]))
    assert cams.width.tolist() == [20, 10]


def test_blender_bounds_follow_scale_of_small_captures(tmp_path):
    make_blender(tmp_path, n=4)
    for p in tmp_path.glob("transforms_*.json"):  # shrink the capture: cameras ~1 unit away
        meta = json.loads(p.read_text())
        for f in meta["frames"]:
            m = np.array(f["transform_matrix"])
            m[:3, 3] /= 4.272
            f["transform_matrix"] = m.tolist()
        p.write_text(json.dumps(meta))
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    assert scene.near == pytest.approx(0.5, abs=1e-3) and scene.far == pytest.approx(1.5, abs=1e-3)
    assert scene.sphere_radius == pytest.approx(0.5, abs=1e-3) and scene.metadata["warnings"]


def test_blender_render_path_orbits_and_looks_at_centre(tmp_path):
    make_blender(tmp_path, n=8)
    scene = load_scene(DatasetConfig(path=str(tmp_path), render_frames=10))
    path = scene.render_c2w
    assert path.shape == (10, 3, 4)
    centers = path[:, :, 3]
    torch.testing.assert_close(centers.norm(dim=-1), torch.full((10,), math.hypot(4.0, 1.5)))
    to_centre = -centers / centers.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(path[:, :, 2], to_centre, atol=1e-6, rtol=0)
    assert (path[:, 2, 1] < 0).all()  # image down points down in the world


EYE = json.dumps(np.eye(4).tolist())


def _json(text):
    return lambda root: (root / "transforms_train.json").write_text(text)


BLENDER_BREAKS = {
    "missing image": (lambda r: (r / "train" / "r_1.png").unlink(), "r_1", "missing"),
    "no frames": (_json('{"camera_angle_x": 0.8}'), "", "frames"),
    "bad json": (_json('{"frames": [}'), "", "JSON"),
    "bad matrix": (_json('{"camera_angle_x": 1, "frames": [{"file_path": "a", "transform_matrix": [[1]]}]}'),
                   "", "4x4"),
    "no focal": (_json('{"frames": [{"file_path": "train/r_0", "transform_matrix": ' + EYE + "}]}"),
                 "", "focal"),
    "not an image": (lambda r: (r / "train" / "r_2.png").write_bytes(b"not a png"), "r_2.png", "header"),
}


@pytest.mark.parametrize("case", list(BLENDER_BREAKS))
def test_blender_bad_inputs_name_the_file(tmp_path, case):
    breaks, names, says = BLENDER_BREAKS[case]
    names = names or "transforms_train.json"
    make_blender(tmp_path, n=3)
    breaks(tmp_path)
    with pytest.raises(DatasetError) as e:
        load_scene(DatasetConfig(path=str(tmp_path)))
    assert names in str(e.value) and says in str(e.value)


# ----------------------------------------------------------------------------- detection


def test_detect_format_and_bad_folders(tmp_path):
    make_blender(tmp_path / "b", n=2)
    assert detect_format(tmp_path / "b") == "blender"
    (tmp_path / "l").mkdir()
    np.save(tmp_path / "l" / "poses_bounds.npy", np.zeros((2, 17)))
    assert detect_format(tmp_path / "l") == "llff"
    (tmp_path / "n").mkdir()
    np.savez(tmp_path / "n" / "cameras_sphere.npz", world_mat_0=np.eye(4))
    assert detect_format(tmp_path / "n") == "neus"
    with pytest.raises(DatasetError, match="does not exist") as e:
        load_scene(DatasetConfig(path=str(tmp_path / "nope")))
    assert "nope" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        load_scene(DatasetConfig(path=str(tmp_path / "empty")))
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_scene(DatasetConfig(path=str(tmp_path / "b"), format="colmap"))


def test_dataset_config_is_a_structured_config():
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(DatasetConfig)
    cfg.path = "x"
    cfg.background = [0.5, 0.5, 0.5]
    assert OmegaConf.to_object(cfg).background == [0.5, 0.5, 0.5]
