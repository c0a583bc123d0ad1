"""transforms.json (instant-ngp / nerfstudio) parser: files written from known cameras of the
synthetic scene, parsed back; the known surface must project where the renderer saw it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from nerflite.cameras import project
from nerflite.data.inspect import main as inspect_main
from nerflite.data.parsers import DatasetConfig, DatasetError, detect_format, load_scene
from nerflite.data.synthetic import generate
from tests.data.builders import write_png
from tests.data.transforms_files import copy_images, write_transforms

VIEWS = 8


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic Blender scene: (root, train cameras in the file frame, train image names)."""
    root = generate("blender", tmp_path_factory.mktemp("syn") / "blender", views=VIEWS, size=48)
    gt = load_scene(root, format="blender")
    idx = gt.split("train")
    return root, gt.cameras[torch.tensor(idx)], [f"train/{gt.image_paths[i].name}" for i in idx]


def capture(synthetic, out, flavour, **kw):
    root, cams, names = synthetic
    images = copy_images(root, names, out)
    write_transforms(out, cams, images, flavour, **kw)
    return images


def reprojection_error(scene, root) -> float:
    """Largest distance (px) between where the renderer saw ground-truth surface points and where
    the parsed cameras project them (points taken into the scene frame)."""
    corr = np.load(root / "gt_correspondences.npz")
    keep = np.array([n.startswith("train/") for n in corr["image"]])
    view = torch.tensor([int(n.split("_")[-1].split(".")[0]) for n in corr["image"][keep]])  # train/r_<i>
    world = np.concatenate([corr["points"][keep], np.ones((keep.sum(), 1))], 1)  # [m, 4]
    pts = torch.from_numpy((world @ np.linalg.inv(scene.metadata["world_from_scene"]).T)[:, :3])
    cams = replace(scene.cameras, fx=scene.cameras.fx.double(), fy=scene.cameras.fy.double(),
                   cx=scene.cameras.cx.double(), cy=scene.cameras.cy.double(), c2w=scene.cameras.c2w.double())
    xy, z = project(cams, view, pts)
    assert (z > 0).all()
    return float((xy - torch.from_numpy(corr["xy"][keep])).norm(dim=-1).max())


def test_instant_ngp_flavour_projects_known_surface(synthetic, tmp_path):
    """Shared intrinsics at the top, './images/x' without extension, aabb_scale and a non-default
    scale/offset: the object sphere follows instant-ngp's unit cube; surface projects within 0.5 px."""
    capture(synthetic, tmp_path, "ngp", extra={"scale": 0.25, "offset": [0.5, 0.7, 0.4]})
    assert detect_format(tmp_path) == "transforms"
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    assert scene.format == "transforms" and len(scene) == VIEWS
    assert scene.splits["val"] == [0] and scene.splits["train"] == list(range(1, VIEWS))  # every 8th held out
    wfs = scene.metadata["world_from_scene"]
    # instant-ngp: ngp = (y, z, x) * scale + offset; the cube [0, 1]^3 centre 0.5 is the file point
    # (x, y, z) = ((0.5 - 0.4) / 0.25, (0.5 - 0.5) / 0.25, (0.5 - 0.7) / 0.25), half side 0.5 / 0.25
    np.testing.assert_allclose(wfs[:3, 3], [0.4, 0.0, -0.8], atol=1e-12)
    np.testing.assert_allclose(np.diag(wfs)[:3], [2.0, 2.0, 2.0])
    assert scene.metadata["aabb"] == [-4.0] * 3 + [4.0] * 3
    assert scene.sphere_radius == 1.0 and scene.near > 0 and scene.far > scene.near
    assert reprojection_error(scene, synthetic[0]) < 0.01  # exact geometry: far inside 0.5 px
    assert scene.cameras.distortion is None and scene.background == (1.0, 1.0, 1.0)


def test_nerfstudio_flavour_per_frame_intrinsics_splits_masks(synthetic, tmp_path):
    """camera_model, per-frame intrinsics recorded at twice the size on disk, applied_transform /
    ply_file_path / orientation_override tolerated, split lists, masks."""
    root, cams, names = synthetic
    masks = [f"masks/{i}.png" for i in range(VIEWS)]
    for m in masks:
        write_png(tmp_path / m, 48, 48)
    splits = {"train": [0, 1, 2, 4, 5, 6], "val": [3], "test": [7]}
    capture(synthetic, tmp_path, "nerfstudio", scale_wh=2.0, masks=masks, splits=splits)
    scene = load_scene(tmp_path)
    assert scene.splits == splits
    assert [p.name for p in scene.mask_paths] == [f"{i}.png" for i in range(VIEWS)]
    torch.testing.assert_close(scene.cameras.fx, cams.fx)  # scaled back to the size on disk
    assert scene.cameras.width.tolist() == [48] * VIEWS
    assert reprojection_error(scene, root) < 0.01
    # no instant-ngp keys: centred on the point the cameras look at (the origin), unit radius at
    # half the nearest camera distance (cameras 4 units away), the cameras' mean up axis +z
    wfs = scene.metadata["world_from_scene"]
    np.testing.assert_allclose(wfs[:3, 3], 0.0, atol=1e-3)
    assert np.cbrt(np.linalg.det(wfs[:3, :3])) == pytest.approx(2.0, rel=1e-3) and scene.metadata["aabb"] is None
    up = -scene.cameras.c2w[:, :, 1].double().sum(0)
    assert float(up[2] / up.norm()) > 0.999
    half = load_scene(tmp_path, downscale=2)
    torch.testing.assert_close(half.cameras.fx, cams.fx / 2)


@pytest.mark.parametrize("flavour, fisheye", [("nerfstudio", False), ("nerfstudio", True), ("ngp", True)])
def test_distortion_coefficients_and_fisheye_flag(synthetic, tmp_path, flavour, fisheye):
    lens = {"k1": 0.02, "k2": -0.01, "p1": 0.001, "p2": -0.002} if not fisheye else \
        {"k1": 0.05, "k2": 0.01, "k3": -0.003, "k4": 0.0005}
    capture(synthetic, tmp_path, flavour, distortion=lens, fisheye=fisheye)
    scene = load_scene(tmp_path)
    expected = torch.tensor([lens.get(k, 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2")])
    torch.testing.assert_close(scene.cameras.distortion, expected.expand(VIEWS, 6))
    assert scene.metadata["fisheye"] == [fisheye] * VIEWS == scene.cameras.fisheye.tolist()


def test_missing_images_named_then_skipped(synthetic, tmp_path, capsys):
    images = capture(synthetic, tmp_path, "ngp")
    for name in images[2:5]:
        (tmp_path / name).unlink()
    with pytest.raises(DatasetError) as e:
        load_scene(tmp_path)
    msg = str(e.value)
    assert "transforms.json: 3 of 8 listed images are missing (./images/r_2, ./images/r_3, ./images/r_4)" in msg
    assert "dataset.skip_missing=true" in msg and "\n" not in msg
    scene = load_scene(tmp_path, skip_missing=True)
    assert len(scene) == 5 and [p.name for p in scene.image_paths] == ["r_0.png", "r_1.png", "r_5.png",
                                                                       "r_6.png", "r_7.png"]
    assert reprojection_error(scene, synthetic[0]) < 0.01  # views 0 and 1 keep their cameras
    assert scene.metadata["skipped"] == ["./images/r_2", "./images/r_3", "./images/r_4"]
    assert inspect_main([str(tmp_path)]) == 1
    assert "3 of 8 listed images are missing" in capsys.readouterr().err
    assert inspect_main([str(tmp_path), "--json", "--skip-missing"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["format"] == "transforms" and rec["n_views"] == 5 and len(rec["skipped"]) == 3
    assert "WARNING     skipped 3 of 8 frames whose image is missing" in out


def _edit(key, value, frame=None):
    def apply(meta):
        target = meta if frame is None else meta["frames"][frame]
        if value is None:
            target.pop(key)
        else:
            target[key] = value
    return apply


BROKEN = {
    "camera model": (_edit("camera_model", "EQUIRECTANGULAR"), "camera_model 'EQUIRECTANGULAR' is not one of"),
    "aabb_scale": (_edit("aabb_scale", "big"), "'aabb_scale' must be a number >= 1"),
    "scale": (_edit("scale", -1), "'scale' must be a positive number"),
    "no pose": (_edit("transform_matrix", None, frame=1), "frame 1 has no transform_matrix"),
    "no focal": (lambda m: [m.pop(k) for k in ("fl_x", "fl_y")], "frame 0 has no focal length"),
    "split list": (_edit("train_filenames", ["elsewhere/a.png"]), "'train_filenames' names none of the frames"),
    "k1 text": (_edit("k1", "x"), "frame 0: distortion coefficients are not numbers"),
    "all missing": (_edit("frames", [{"file_path": "nope.png", "transform_matrix": np.eye(4).tolist()}]),
                    "1 of 1 listed images are missing (nope.png); no image is present"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_transforms_give_one_line(synthetic, tmp_path, case):
    capture(synthetic, tmp_path, "ngp")
    edit, says = BROKEN[case]
    meta = json.loads((tmp_path / "transforms.json").read_text())
    edit(meta)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError) as e:
        load_scene(tmp_path, skip_missing=True)
    assert str(e.value).startswith(str(tmp_path / "transforms.json")) and says in str(e.value)
    assert "\n" not in str(e.value)


def test_blender_split_files_stay_blender(synthetic, tmp_path):
    """transforms_train.json wins over a transforms.json beside it; format=blender still reads a
    lone transforms.json the classic way (coordinates not moved)."""
    root = synthetic[0]
    assert detect_format(root) == "blender"
    capture(synthetic, tmp_path, "ngp")
    scene = load_scene(tmp_path, format="blender")
    assert scene.format == "blender" and np.array_equal(scene.metadata["world_from_scene"], np.eye(4))


@pytest.mark.parametrize("model", ["nerf", "neus"])
def test_dataset_config_group(synthetic, tmp_path, model):
    """`dataset=transforms` composes with each model and its preset, and builds the scene."""
    from nerflite.engine.setup import build_scene
    from tests.app.helpers import compose_config

    images = capture(synthetic, tmp_path, "ngp")
    (tmp_path / images[0]).unlink()
    cfg = compose_config(["dataset=transforms", f"dataset.path={tmp_path}", "dataset.skip_missing=true",
                          f"model={model}"])
    assert cfg.name == f"transforms_{model}"
    scene = build_scene(cfg.dataset)
    assert scene.format == "transforms" and len(scene) == VIEWS - 1


def test_lens_per_frame_projects_known_surface(tmp_path):
    """Images rendered through OpenCV and fisheye lenses (two cameras), written as nerfstudio
    frames with per-frame camera_model and coefficients: the known surface projects through the
    parsed lenses where the renderer saw it (within 0.01 px; ignoring the lens is off by more)."""
    from nerflite.data.parsers.colmap import apply_similarity
    from tests.data.colmap_builders import make_colmap

    truth = make_colmap(tmp_path / "colmap", views=8, size=64, lenses=("opencv", "fisheye"))
    ref = load_scene(truth.root, format="colmap")  # the rendering cameras, in its scene frame
    c2w = apply_similarity(ref.metadata["world_from_scene"], ref.cameras.c2w.double().numpy())  # COLMAP frame
    cams = replace(ref.cameras, c2w=torch.from_numpy(c2w))
    out = tmp_path / "ns"
    images = copy_images(truth.root / "images", [p.name for p in ref.image_paths], out)
    write_transforms(out, cams, images, "nerfstudio")
    meta = json.loads((out / "transforms.json").read_text())
    for frame, d, fish in zip(meta["frames"], ref.cameras.distortion.tolist(), ref.cameras.fisheye.tolist()):
        frame.update(dict(zip(("k1", "k2", "k3", "k4", "p1", "p2"), d)), camera_model="OPENCV_FISHEYE" if fish
                     else "OPENCV")
    meta.pop("camera_model")
    (out / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(out)
    assert scene.cameras.fisheye.tolist() == ref.cameras.fisheye.tolist() and any(scene.cameras.fisheye.tolist())
    world = np.concatenate([truth.world, np.ones((len(truth.world), 1))], 1)
    pts = torch.from_numpy((world @ np.linalg.inv(scene.metadata["world_from_scene"]).T)[:, :3])
    index = {p.name: i for i, p in enumerate(scene.image_paths)}
    view = torch.tensor([index[truth.names[v]] for v in truth.view])
    c = scene.cameras
    dbl = replace(c, fx=c.fx.double(), fy=c.fy.double(), cx=c.cx.double(), cy=c.cy.double(), c2w=c.c2w.double(),
                  distortion=c.distortion.double())
    xy, z = project(dbl, view, pts)
    err = (xy - torch.from_numpy(truth.xy)).norm(dim=-1)
    pinhole, _ = project(replace(dbl, distortion=None, fisheye=None), view, pts)
    assert float((pinhole - xy).norm(dim=-1).max()) > 0.15  # the lens matters at these pixels
    assert (z > 0).all() and float(err.max()) < 0.01, float(err.max())  # exact geometry: far inside 0.5 px
