"""COLMAP parser on folders made from known cameras: parsed cameras must project the true surface
where the images show it, the normalisation must fit the models' assumptions, and broken inputs
must end in one clear error naming the file."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from nerflite.cameras import project
from nerflite.data import inspect as inspector
from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers import detect_format, load_scene
from nerflite.data.parsers.colmap_write import write_model
from nerflite.data.scene import DatasetError
from tests.data.builders import make_llff
from tests.data.colmap_builders import make_colmap, reprojection_error, to_scene

VARIANTS = {
    "pinhole_bin": dict(),
    # lens variants: close enough and large enough that ignoring the lens misses by over 0.5 px
    "distorted_txt": dict(lenses=("opencv", "fisheye", "simple_radial"), ext=".txt", size=64, radius=2.2),
    "downscaled_files": dict(lenses=("opencv",), file_scale=0.5, size=112, radius=2.2),
    "multi_camera": dict(lenses=("pinhole", "opencv", "fisheye", "pinhole"), views=12, size=64, radius=2.2),
    "forward_facing": dict(forward=True, lenses=("opencv",)),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """name -> Truth of a COLMAP folder, each built once per module."""
    cache = {}

    def get(name: str, **kw):
        if name not in cache:
            cache[name] = make_colmap(tmp_path_factory.mktemp("colmap") / name, **(VARIANTS.get(name, {}) | kw))
        return cache[name]

    return get


def _copy(truth, tmp_path):
    dst = tmp_path / "scene"
    shutil.copytree(truth.root, dst)
    return dst


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parsed_cameras_project_the_surface_within_half_a_pixel(made, name):
    truth = made(name)
    assert detect_format(truth.root) == "colmap"
    scene = load_scene(str(truth.root))
    assert scene.format == "colmap" and len(scene) == len(truth.names)
    err = reprojection_error(scene, truth)
    assert err < 0.5, err
    print(f"{name}: max reprojection error {err:.2e} px over {len(truth.view)} surface points")
    lens = any(m != "PINHOLE" for m in (c.model for c in truth.model.cameras.values()))
    assert (scene.cameras.distortion is not None) == lens
    if lens:  # the lens matters: the same cameras without it fail the bar
        pinhole = replace(scene, cameras=replace(scene.cameras, distortion=None, fisheye=None))
        assert reprojection_error(pinhole, truth) > 0.5


def test_several_cameras_give_per_image_intrinsics_and_lenses(made):
    truth = made("multi_camera")
    scene = load_scene(str(truth.root))
    cams = scene.cameras
    assert torch.unique(cams.fx).numel() == 4  # the pinhole cameras 1 and 4 differ in focal
    assert cams.fisheye.tolist() == [i % 4 == 2 for i in range(12)]
    assert cams.distortion[0].abs().sum() == 0 and cams.distortion[1, 0] == pytest.approx(-0.3)
    info = scene.metadata["colmap"]
    assert [c["model"] for c in info["cameras"]] == ["PINHOLE", "OPENCV", "OPENCV_FISHEYE", "PINHOLE"]
    assert [c["images"] for c in info["cameras"]] == [3, 3, 3, 3]


def test_downscaled_files_scale_intrinsics_and_say_so(made):
    truth = made("downscaled_files")
    scene = load_scene(str(truth.root))
    assert scene.cameras.width[0] == 56 and scene.cameras.fx[0] == pytest.approx(1.1 * 112 / 2)
    assert any("0.5x the size of their camera" in w for w in scene.metadata["warnings"])
    half = load_scene(str(truth.root), downscale=2)  # resized again on decode
    assert half.cameras.width[0] == 28 and half.downscale == 2 and half.cameras.fx[0] == pytest.approx(1.1 * 28)


def test_normalisation_360_fits_the_unit_sphere_and_maps_back(made):
    truth = made("pinhole_bin")
    scene = load_scene(str(truth.root))
    assert not scene.ndc and scene.sphere_radius == 1.0
    surface = to_scene(scene, truth.surface)
    r = surface.norm(dim=-1)
    assert (r < 1.0).float().mean() > 0.995 and r.max() < 1.05  # the object fills the unit sphere
    assert r.max() > 0.8
    centers = scene.cameras.c2w[:, :, 3].double()
    assert (centers.norm(dim=-1) > 1.5).all()  # cameras outside it
    d = (surface[None] - centers[:, None]).norm(dim=-1)  # every surface point is within near..far
    assert scene.near < d.min() and d.max() < scene.far and scene.near < centers.norm(dim=-1).min() - 1.0
    # the mean camera up is +z in the scene frame
    up = -scene.cameras.c2w[:, :, 1].double().mean(0)
    assert up[2] > 0.8 * up.norm()
    # world_from_scene maps the scene cameras back onto COLMAP's
    w = torch.from_numpy(scene.metadata["world_from_scene"])
    back = centers @ w[:3, :3].T + w[:3, 3]
    file_c2w = [np.linalg.inv(np.vstack([np.hstack([cio.qvec_to_rotmat(im.qvec), im.tvec[:, None]]), [0, 0, 0, 1]]))
                for im in sorted(truth.model.images.values(), key=lambda im: im.name)]
    torch.testing.assert_close(back, torch.tensor(np.array([m[:3, 3] for m in file_c2w])), atol=1e-4, rtol=0)
    assert scene.render_c2w is not None and len(scene.render_c2w) == 120


def test_normalisation_forward_facing_is_llff_like(made):
    truth = made("forward_facing")
    scene = load_scene(str(truth.root))
    assert scene.ndc and (scene.near, scene.far) == (0.0, 1.0)
    assert (scene.cameras.c2w[:, 2, 2] < -0.9).all()  # every camera looks down -z
    assert any("forward-facing capture" in w for w in scene.metadata["warnings"])
    surface = to_scene(scene, truth.world).float()
    assert (surface[:, 2] < -1.0).all()  # the content lies beyond the NDC near plane at z = -1
    assert surface[:, 2].max() == pytest.approx(-1 / 0.75, rel=0.15)  # nearest at 1 / bd_factor
    assert scene.metadata["bounds"].shape == (len(scene), 2)
    plain = load_scene(str(truth.root), ndc=False)
    d = (surface[None] - plain.cameras.c2w[:, None, :, 3]).norm(dim=-1)
    assert not plain.ndc and plain.near < d.min() and d.max() < plain.far
    sph = load_scene(str(truth.root), spherify=True)  # forced 360 treatment
    assert not sph.ndc and sph.sphere_radius == 1.0


def test_outliers_in_points3d_do_not_move_the_frame(made):
    clean = load_scene(str(made("pinhole_bin").root))
    truth = made("outliers", outliers=60)
    noisy = load_scene(str(truth.root))
    assert reprojection_error(noisy, truth) < 0.5
    info = noisy.metadata["colmap"]
    assert info["points"] - info["inlier_points"] >= 30  # the far-away ones are dropped
    for key in ("near", "far"):
        assert getattr(noisy, key) == pytest.approx(getattr(clean, key), rel=0.05)
    assert noisy.metadata["colmap"]["scale"] == pytest.approx(clean.metadata["colmap"]["scale"], rel=0.05)


def test_unregistered_images_and_several_submodels(made, tmp_path):
    truth = made("unregistered", unregistered=4, views=10)
    scene = load_scene(str(truth.root))
    assert len(scene) == 10 and all("unplaced" not in p.name for p in scene.image_paths)
    assert any("only 10 of 14 image files" in w for w in scene.metadata["warnings"])
    info = scene.metadata["colmap"]
    assert (info["registered"], info["image_files"]) == (10, 14)
    # a second, smaller sub-model: the larger one is used, with a note
    root = _copy(made("pinhole_bin"), tmp_path)
    small = cio.read_model(root / "sparse" / "0")
    small.images = {k: v for k, v in list(small.images.items())[:3]}
    shutil.move(root / "sparse" / "0", root / "sparse" / "1")
    write_model(small, root / "sparse" / "0", ".txt")
    scene = load_scene(str(root))
    assert len(scene) == 10 and scene.metadata["colmap"]["model"] == "sparse/1"
    assert any("using sparse/1 with the most registered images (10; 0: 3)" in w for w in scene.metadata["warnings"])
    # the model files right in sparse/ (COLMAP's image_undistorter layout)
    shutil.rmtree(root / "sparse" / "0")
    for f in (root / "sparse" / "1").iterdir():
        shutil.move(f, root / "sparse" / f.name)
    (root / "sparse" / "1").rmdir()
    assert load_scene(str(root)).metadata["colmap"]["model"] == "sparse"


def test_holdout_masks_and_image_folders(made, tmp_path):
    root = _copy(made("pinhole_bin"), tmp_path)
    scene = load_scene(str(root))
    assert scene.splits["test"] == [0, 8] and len(scene.splits["train"]) == 8
    assert load_scene(str(root), holdout=0).splits["train"] == list(range(10))
    (root / "masks").mkdir()
    for i, p in enumerate(scene.image_paths):  # both ways COLMAP users name masks
        name = p.name + ".png" if i % 2 else p.stem + ".jpg"
        cv2.imwrite(str(root / "masks" / name), np.full((30, 40), 255, np.uint8))
    masked = load_scene(str(root))
    assert masked.has_masks and masked.mask_paths[1].name == "frame_001.png.png"
    assert masked.mask_paths[0].name == "frame_000.jpg"
    assert not load_scene(str(root), masks=False).has_masks
    (root / "masks" / "frame_003.png.png").unlink()
    with pytest.raises(DatasetError, match="mask is missing") as e:
        load_scene(str(root))
    assert "frame_003" in str(e.value.path)
    shutil.rmtree(root / "masks")
    # images_2/ holds the half-size photos: downscale=2 reads them as they are
    (root / "images_2").mkdir()
    for p in scene.image_paths:
        cv2.imwrite(str(root / "images_2" / p.name), cv2.resize(cv2.imread(str(p)), (20, 15)))
    half = load_scene(str(root), downscale=2)
    assert half.metadata["image_folder"] == "images_2" and half.downscale == 1.0
    assert half.cameras.width[0] == 20 and not any("size of their camera" in w for w in half.metadata["warnings"])


def test_llff_folder_with_a_sparse_model_stays_llff(tmp_path):
    from tests.data.builders import look_at_opencv

    make_llff(tmp_path, [look_at_opencv((x, 0.0, 4.0), (0.0, 0.0, 0.0), (0, -1, 0)) for x in (-0.2, 0.0, 0.2)])
    (tmp_path / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "sparse" / "0" / "cameras.bin").write_bytes(b"")
    assert detect_format(tmp_path) == "llff"


def _broken(made, tmp_path, what):
    root = _copy(made("pinhole_bin"), tmp_path)
    model = root / "sparse" / "0"
    if what == "truncated":
        path = model / "images.bin"
        path.write_bytes(path.read_bytes()[:300])
    elif what == "missing_images_bin":
        path = model / "images.bin"
        path.unlink()
    elif what == "missing_image_file":
        path = root / "images" / "frame_004.png"
        path.unlink()
    elif what == "unsupported_model":
        m = cio.read_model(model)
        m.cameras[1] = cio.Camera(1, "FOV", 40, 30, np.array([44.0, 44.0, 20.0, 15.0, 0.1]))
        write_model(m, model, ".bin")
        path = model / "cameras.bin"
    elif what == "zero_registered":
        m = cio.read_model(model)
        m.images = {}
        write_model(m, model, ".bin")
        path = model / "images.bin"
    return root, path


@pytest.mark.parametrize("what, message", [
    ("truncated", "file is truncated"),
    ("missing_images_bin", "COLMAP images file is missing"),
    ("missing_image_file", "image file is missing \\(registered in images.bin\\)"),
    ("unsupported_model", "camera 1 uses the FOV model which nerflite does not support"),
    ("zero_registered", "no registered images"),
])
def test_broken_inputs_are_one_clear_error_naming_the_file(made, tmp_path, what, message):
    root, path = _broken(made, tmp_path, what)
    with pytest.raises(DatasetError, match=message) as e:
        load_scene(str(root))
    assert e.value.path == path
    assert "\n" not in str(e.value)


def test_no_model_and_no_points(made, tmp_path):
    root = _copy(made("pinhole_bin"), tmp_path)
    (root / "sparse" / "0" / "points3D.bin").unlink()  # poses only: bounds from the camera spread
    scene = load_scene(str(root))
    assert any("no sparse points" in w for w in scene.metadata["warnings"])
    assert reprojection_error(scene, made("pinhole_bin")) < 0.5
    centers = scene.cameras.c2w[:, :, 3].norm(dim=-1)
    assert scene.near < centers.min() - 0.9 and scene.far > centers.max() + 0.9
    shutil.rmtree(root / "sparse")
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        load_scene(str(root))
    with pytest.raises(DatasetError, match="no COLMAP model") as e:
        load_scene(str(root), format="colmap")
    assert e.value.path == root / "sparse" / "0"


def test_inspector_reports_registration_cameras_and_lens(made, capsys):
    truth = made("unregistered", unregistered=4, views=10)
    assert inspector.main([str(truth.root), "--json"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["format"] == "colmap" and rec["colmap"]["registered"] == 10 and rec["colmap"]["image_files"] == 14
    assert rec["colmap"]["cameras"][0]["model"] == "PINHOLE" and rec["distortion"] is False
    assert any("only 10 of 14" in w for w in rec["warnings"])
    assert "registered  10 of 14 image files" in out
    truth = made("multi_camera")
    assert inspector.main([str(truth.root), "--json"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["distortion"] is True and len(rec["colmap"]["cameras"]) == 4
    assert "OPENCV_FISHEYE" in out and "k1 -0.3" in out
    print(out.strip().splitlines()[-1])


def test_project_agrees_with_opencv_on_a_parsed_distorted_camera(made):
    """The parsed lens, applied by OpenCV to scene-frame points, lands on the same pixels."""
    truth = made("downscaled_files")
    scene = load_scene(str(truth.root))
    c = scene.cameras
    i = 3
    pts = to_scene(scene, truth.world[truth.view == i])
    xy, _ = project(replace(c, **{k: getattr(c, k).double() for k in ("fx", "fy", "cx", "cy", "c2w")},
                            distortion=c.distortion.double()), torch.full((len(pts),), i), pts)
    R = c.c2w[i, :, :3].double().numpy()
    rvec, _ = cv2.Rodrigues(R.T)
    K = c.intrinsics()[i].double().numpy()
    d = c.distortion[i].double().numpy()
    ref, _ = cv2.projectPoints(pts.numpy(), rvec, -R.T @ c.c2w[i, :, 3].double().numpy(), K,
                               np.array([d[0], d[1], d[4], d[5], d[2]]))
    assert np.abs(ref.reshape(-1, 2) - xy.numpy()).max() < 1e-3


def test_a_lens_that_folds_over_inside_the_image_is_a_warning_and_rays_stay_finite(made, tmp_path):
    root = _copy(made("pinhole_bin"), tmp_path)
    model = cio.read_model(root / "sparse" / "0")
    model.cameras[1] = cio.Camera(1, "OPENCV", 40, 30, np.array([20.0, 20.0, 20.0, 15.0, -0.5, 0.0, 0.0, 0.0]))
    write_model(model, root / "sparse" / "0", ".bin")
    scene = load_scene(str(root))
    assert any("camera 1's lens model folds over near the image border" in w for w in scene.metadata["warnings"])
    from nerflite.cameras import generate_rays

    y, x = torch.meshgrid(torch.arange(30), torch.arange(40), indexing="ij")
    rays = generate_rays(scene.cameras, torch.zeros(1200, dtype=torch.long), y.reshape(-1), x.reshape(-1))
    assert torch.isfinite(rays.directions).all()
    assert not any("folds over" in w for w in load_scene(str(made("multi_camera").root)).metadata["warnings"])
