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
from tests.data.builders import (
    K_TRUE,
    SCALE_MAT,
    forward_row,
    look_at_opencv,
    make_blender,
    make_llff,
    make_neus,
    neus_cams,
    opencv_to_opengl_4x4,
    write_png,
)

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
    scene = load_scene(tmp_path, downscale=2, background=[0, 0, 0])
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
    scene = load_scene(DatasetConfig(format="blender", path=str(tmp_path), holdout=0))
    cams = scene.cameras
    torch.testing.assert_close(cams.fx, torch.tensor([20.0, 15.0]))
    torch.testing.assert_close(cams.fy, torch.tensor([22.0, 11.0]))
    torch.testing.assert_close(cams.cx, torch.tensor([9.0, 5.5]))
    torch.testing.assert_close(cams.cy, torch.tensor([7.0, 3.5]))
    assert cams.width.tolist() == [20, 10]


def test_blender_masks_distortion_and_rotation_repair(tmp_path):
    c2w = look_at_opencv([0.0, -4.0, 1.0])
    scaled = np.array(opencv_to_opengl_4x4(c2w))
    scaled[:3, :3] *= 1.01  # a slightly scaled rotation: repaired with a note
    frames = [
        {"file_path": "images/a", "mask_path": "masks/a.png", "transform_matrix": scaled.tolist()},
        {"file_path": "images/b", "mask_path": "masks/b.png", "transform_matrix": opencv_to_opengl_4x4(c2w)},
    ]
    meta = {"camera_angle_x": 0.8, "k1": 0.1, "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    for name in "ab":
        write_png(tmp_path / "images" / f"{name}.png", 16, 12)
        write_png(tmp_path / "masks" / f"{name}.png", 16, 12)
    # naming the camera file instead of its folder works too
    scene = load_scene(DatasetConfig(format="blender", path=str(tmp_path / "transforms.json"), holdout=0))
    assert [p.name for p in scene.mask_paths] == ["a.png", "b.png"]
    torch.testing.assert_close(scene.cameras.c2w[0], scene.cameras.c2w[1])
    notes = " ".join(scene.metadata["warnings"])
    assert "k1" in notes and "not orthonormal" in notes
    mirrored = np.array(opencv_to_opengl_4x4(c2w))
    mirrored[:3, 0] *= -1
    frames[1]["transform_matrix"] = mirrored.tolist()
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="transforms.json: camera 1: rotation has determinant -1"):
        load_scene(DatasetConfig(format="blender", path=str(tmp_path)))


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


def test_blender_single_file_capture_centred_on_its_focus(tmp_path):
    target = np.array([5.0, -3.0, 2.0])
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eyes = [target + [4 * np.cos(a), 4 * np.sin(a), 0.5] for a in angles]
    frames = []
    for i, eye in enumerate(eyes):
        write_png(tmp_path / "images" / f"{i}.png", 16, 12)
        frames.append({"file_path": f"images/{i}.png",
                       "transform_matrix": opencv_to_opengl_4x4(look_at_opencv(eye, target))})
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    scene = load_scene(tmp_path, format="blender")
    torch.testing.assert_close(scene.sphere_center, torch.tensor(target, dtype=torch.float32))
    assert (scene.near, scene.far) == (2.0, 6.0) and scene.metadata["warnings"] == []
    orbit = scene.render_c2w[:, :, 3] - scene.sphere_center
    torch.testing.assert_close(orbit.norm(dim=-1), torch.full((120,), math.hypot(4, 0.5)))


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
    "zero angle": (_json('{"camera_angle_x": 0, "frames": [{"file_path": "train/r_0", "transform_matrix": '
                         + EYE + "}]}"), "", "field of view"),
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


# ----------------------------------------------------------------------------- LLFF

def test_llff_column_reorder_rescale_and_ndc_frame(tmp_path):
    """Three cameras looking down -z around the origin: recentring is the identity, so the parsed
    poses are the written ones scaled by 1 / (min bound * 0.75)."""
    make_llff(tmp_path, [forward_row(-1.0), forward_row(0.0), forward_row(1.0)], bounds=(2.0, 10.0))
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    scale = 1.0 / (2.0 * 0.75)
    expected = np.stack([forward_row(-scale), forward_row(0.0), forward_row(scale)])
    expected = torch.tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(scene.cameras.c2w, expected, atol=1e-6, rtol=0)
    assert scene.ndc and scene.near == 0.0 and scene.far == 1.0
    assert scene.metadata["ndc_near_plane"] == 1.0 and scene.metadata["bounds"].min() == pytest.approx(4 / 3)
    np.testing.assert_allclose(scene.metadata["world_from_scene"], np.diag([1.5, 1.5, 1.5, 1.0]), atol=1e-12)
    no_ndc = load_scene(DatasetConfig(path=str(tmp_path), ndc=False))
    assert not no_ndc.ndc
    assert no_ndc.near == pytest.approx(0.9 * 2 * scale) and no_ndc.far == pytest.approx(10 * scale)


def test_llff_focal_scaled_to_images_on_disk(tmp_path):
    cams = [forward_row(x) for x in (-0.5, 0.0, 0.5)]
    make_llff(tmp_path, cams, width=64, height=48, focal=50.0,
              folders={"images": (64, 48), "images_4": (16, 12)})
    s4 = load_scene(DatasetConfig(path=str(tmp_path), downscale=4))
    assert s4.metadata["image_folder"] == "images_4" and s4.downscale == 1.0
    torch.testing.assert_close(s4.cameras.fx, torch.full((3,), 12.5))
    torch.testing.assert_close(s4.cameras.fy, torch.full((3,), 12.5))
    torch.testing.assert_close(s4.cameras.cx, torch.full((3,), 8.0))
    torch.testing.assert_close(s4.cameras.cy, torch.full((3,), 6.0))
    assert s4.cameras.width.tolist() == [16] * 3 and s4.cameras.height.tolist() == [12] * 3
    # no images_8/: resize the images_4/ ones by 2
    s8 = load_scene(DatasetConfig(path=str(tmp_path), downscale=8))
    assert s8.metadata["image_folder"] == "images_4" and s8.downscale == 2.0
    torch.testing.assert_close(s8.cameras.fx, torch.full((3,), 6.25))
    assert s8.cameras.width.tolist() == [8] * 3
    s1 = load_scene(DatasetConfig(path=str(tmp_path)))
    assert s1.metadata["image_folder"] == "images"
    torch.testing.assert_close(s1.cameras.fx, torch.full((3,), 50.0))
    # only a downscaled folder: the parser uses it and says so
    (tmp_path / "images").rename(tmp_path / "full")
    only4 = load_scene(DatasetConfig(path=str(tmp_path)))
    assert only4.metadata["image_folder"] == "images_4" and "images_4" in only4.metadata["warnings"][0]


def _random_rotation(g: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(g.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("spherify", [False, True])
def test_llff_world_from_scene_undoes_recentre_and_rescale(tmp_path, spherify):
    g = np.random.default_rng(0)
    base = _random_rotation(g)
    cams = []
    for _ in range(9):  # roughly forward-facing, tilted rig in an arbitrary world frame
        angle = g.normal(scale=0.1, size=3)
        small = np.array([[1, -angle[2], angle[1]], [angle[2], 1, -angle[0]], [-angle[1], angle[0], 1]])
        u, _, vt = np.linalg.svd(small)
        cams.append(np.concatenate([base @ (u @ vt), (base @ g.normal(size=3) + [3, -2, 5])[:, None]], 1))
    make_llff(tmp_path, cams, bounds=(3.0, 40.0))
    scene = load_scene(DatasetConfig(path=str(tmp_path), spherify=spherify))
    W = scene.metadata["world_from_scene"]
    s = np.cbrt(np.linalg.det(W[:3, :3]))
    c2w = scene.cameras.c2w.double().numpy()
    for i, cam in enumerate(cams):
        np.testing.assert_allclose(W[:3, :3] @ c2w[i, :, 3] + W[:3, 3], cam[:, 3], atol=1e-4)
        np.testing.assert_allclose(W[:3, :3] @ c2w[i, :, :3] / s, cam[:, :3], atol=1e-5)
    if spherify:
        assert not scene.ndc and scene.sphere_radius == 1.0
        rms = np.sqrt(np.mean(np.sum(c2w[:, :, 3] ** 2, -1)))
        assert rms == pytest.approx(1.0, abs=1e-5)
    else:  # recentred: the mean camera sits at the origin and looks down -z
        np.testing.assert_allclose(c2w[:, :, 3].mean(0), 0.0, atol=1e-5)
        forward = c2w[:, :, 2].mean(0)
        assert forward[2] / np.linalg.norm(forward) < -0.99
        path = scene.render_c2w
        assert path.shape == (120, 3, 4) and (path[:, 2, 2] < -0.9).all()


def test_llff_holdout_every_8th(tmp_path):
    make_llff(tmp_path, [forward_row(x) for x in np.linspace(-1, 1, 17)])
    splits = load_scene(DatasetConfig(path=str(tmp_path))).splits
    assert splits["test"] == [0, 8, 16] == splits["val"] and len(splits["train"]) == 14


LLFF_BREAKS = {
    "wrong shape": (lambda r: np.save(r / "poses_bounds.npy", np.ones((3, 15))), "", "N x 17"),
    "not numpy": (lambda r: (r / "poses_bounds.npy").write_bytes(b"garbage"), "", "cannot read"),
    "extra image": (lambda r: write_png(r / "images" / "IMG_9999.png", 64, 48), "images", "4 images but"),
    "no images": (lambda r: [p.unlink() for p in (r / "images").iterdir()] and (r / "images").rmdir(),
                  "images", "missing"),
    "broken image": (lambda r: (r / "images" / "IMG_0001.png").write_bytes(b"\x89PNG"), "IMG_0001", "header"),
    "no bounds file": (lambda r: (r / "poses_bounds.npy").unlink(), None, "format"),
}


@pytest.mark.parametrize("case", list(LLFF_BREAKS))
def test_llff_bad_inputs_name_the_file(tmp_path, case):
    breaks, names, says = LLFF_BREAKS[case]
    make_llff(tmp_path, [forward_row(x) for x in (-1.0, 0.0, 1.0)])
    breaks(tmp_path)
    with pytest.raises(DatasetError) as e:
        load_scene(DatasetConfig(path=str(tmp_path)))
    names = tmp_path.name if names is None else names or "poses_bounds.npy"
    assert names in str(e.value) and says in str(e.value)
    if case == "wrong shape":
        with pytest.raises(DatasetError, match="poses_bounds.npy"):
            load_scene(DatasetConfig(path=str(tmp_path), format="llff"))


# ----------------------------------------------------------------------------- NeuS / DTU

def test_neus_projection_decomposes_back_to_k_r_t(tmp_path):
    cams = neus_cams()
    make_neus(tmp_path, K_TRUE, cams, SCALE_MAT)
    scene = load_scene(DatasetConfig(path=str(tmp_path), holdout=0))
    c = scene.cameras
    assert scene.format == "neus" and len(scene) == 5 and scene.has_masks
    torch.testing.assert_close(c.fx, torch.full((5,), 100.0))
    torch.testing.assert_close(c.fy, torch.full((5,), 102.0))
    torch.testing.assert_close(c.cx, torch.full((5,), 21.0))  # file's 20.5 + 0.5
    torch.testing.assert_close(c.cy, torch.full((5,), 14.5))
    torch.testing.assert_close(c.c2w, torch.tensor(np.stack(cams), dtype=torch.float32), atol=1e-5, rtol=0)
    np.testing.assert_allclose(scene.metadata["world_from_scene"], SCALE_MAT)
    assert scene.sphere_radius == 1.0 and scene.near == pytest.approx(math.hypot(3, 0.5) - 1)
    assert scene.far == pytest.approx(math.hypot(3, 0.5) + 1)
    assert [p.name for p in scene.mask_paths][:2] == ["000.png", "001.png"]
    # the views cover 2 radians of azimuth: the default path sweeps that arc, never the back
    centres = scene.render_c2w[:, :, 3].double()
    azimuth = torch.atan2(centres[:, 2], centres[:, 0])
    assert azimuth.min() >= -1.0 - 1e-4 and azimuth.max() <= 1.0 + 1e-4
    assert azimuth.max() - azimuth.min() > 1.9
    half = load_scene(DatasetConfig(path=str(tmp_path), downscale=2))
    torch.testing.assert_close(half.cameras.cx, torch.full((5,), 10.5))
    assert half.cameras.width.tolist() == [20] * 5 and half.splits["test"] == [0]


def test_neus_decomposition_handles_negative_scale_and_fallback_file(tmp_path):
    make_neus(tmp_path, K_TRUE, neus_cams(3), SCALE_MAT, name="cameras.npz")
    data = dict(np.load(tmp_path / "cameras.npz"))
    data["world_mat_1"] = -data["world_mat_1"]  # P is only defined up to scale, sign included
    np.savez(tmp_path / "cameras.npz", **data)
    scene = load_scene(DatasetConfig(path=str(tmp_path), masks=False))
    assert scene.mask_paths is None and scene.metadata["cameras_file"] == "cameras.npz"
    torch.testing.assert_close(scene.cameras.c2w[1], torch.tensor(neus_cams(3)[1], dtype=torch.float32),
                               atol=1e-5, rtol=0)


def _drop_key(root, key):
    data = dict(np.load(root / "cameras_sphere.npz"))
    del data[key]
    np.savez(root / "cameras_sphere.npz", **data)


NEUS_BREAKS = {
    "mask count": (lambda r: (r / "mask" / "002.png").unlink(), "mask", "2 masks but 3 images"),
    "no world_mat_0": (lambda r: _drop_key(r, "world_mat_0"), "cameras_sphere.npz", "world_mat_0"),
    "no world_mat_2": (lambda r: _drop_key(r, "world_mat_2"), "cameras_sphere.npz", "world_mat_2"),
    "not npz": (lambda r: (r / "cameras_sphere.npz").write_bytes(b"PK\x03\x04junk"), "cameras_sphere.npz",
                "cannot read"),
    "no image dir": (lambda r: (r / "image").rename(r / "pictures"), "image", "missing"),
    "singular": (lambda r: np.savez(r / "cameras_sphere.npz", world_mat_0=np.zeros((4, 4))),
                 "cameras_sphere.npz", "singular"),
    "missing image": (lambda r: (r / "image" / "000001.png").write_bytes(b""), "000001.png", "header"),
}


@pytest.mark.parametrize("case", list(NEUS_BREAKS))
def test_neus_bad_inputs_name_the_file(tmp_path, case):
    breaks, names, says = NEUS_BREAKS[case]
    make_neus(tmp_path, K_TRUE, neus_cams(3), SCALE_MAT)
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
        load_scene(DatasetConfig(path=str(tmp_path / "b"), format="mitsuba"))


def test_dataset_config_is_a_structured_config():
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(DatasetConfig)
    cfg.path = "x"
    cfg.background = [0.5, 0.5, 0.5]
    assert OmegaConf.to_object(cfg).background == [0.5, 0.5, 0.5]
