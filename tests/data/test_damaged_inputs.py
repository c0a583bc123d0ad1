"""Capture inputs that are damaged or read in the wrong frame: never a silent wrong result.

Each class of the readers and of ``process`` is checked through the commands a user runs
(``python -m nerflite.data.inspect``, ``python -m nerflite.data.process``, train.py): damaged
photos named and skipped, a COLMAP model without its points, LLFF 360-degree captures, MonoSDF's
layout, non-finite camera values and images of another size than their intrinsics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nerflite.data.inspect import main as inspect_main
from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers import load_scene
from nerflite.data.parsers.colmap_write import write_model
from nerflite.data.process.__main__ import main as process_main
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
    ring_eyes,
)
from tests.data.colmap_builders import make_colmap

REPO = Path(__file__).resolve().parents[2]


def command(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NERFLITE_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def inspect(capsys, path) -> tuple[int, dict | None, list[str]]:
    """(exit status, the JSON record or None, stderr lines) of ``python -m nerflite.data.inspect PATH --json``."""
    code = inspect_main([str(path), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]) if code == 0 else None, err.splitlines()


# ------------------------------------------------------------------------------------------------
# process: damaged photos


def _blocks(folder: Path, n: int, size=(128, 96)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        out.append(folder / f"IMG_{i}.jpg")
        cv2.imwrite(str(out[-1]), cv2.resize(small, size, interpolation=cv2.INTER_NEAREST))
    return out


def _damage(photos: list[Path]) -> dict[str, str]:
    """Three kinds of bad input among the photos: name -> the problem the warning gives."""
    data = photos[1].read_bytes()
    photos[1].write_bytes(data[: len(data) // 2])  # a copy cut short: libjpeg's "Premature end of JPEG file"
    photos[3].write_bytes(b"not a photo at all")
    cv2.imwrite(str(photos[5]), cv2.resize(cv2.imread(str(photos[5])), (64, 48)))
    return {photos[1].name: "image file is truncated", photos[3].name: "cannot decode image (corrupt or not an image)",
            photos[5].name: "is 64x48, most photos 128x96: one camera for all photos needs one size (--multi-camera "
                            "keeps photos of several sizes)"}


def test_process_names_and_skips_each_damaged_photo_before_copying_any(tmp_path, capsys):
    photos = _blocks(tmp_path / "photos", 8)
    bad = _damage(photos)
    for name in ("IMG_8.HEIC", "IMG_9.HEIC", "notes.txt"):  # photos in a format nerflite does not read, a note
        (tmp_path / "photos" / name).write_bytes(b"x")
    code = process_main([str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--threads", "1"])
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {tmp_path / 'photos'}: 3 file(s) that are not images nerflite reads are left out "
                        "(.heic: 2, .txt: 1; e.g. IMG_8.HEIC)"] + [
        f"warning: {tmp_path / 'photos' / name}: {problem}; skipped (--strict stops instead)"
        for name, problem in bad.items()]
    assert "[frames] 5 of 8 photos; 3 skipped (damaged or of another size)" in out
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(
        p.name for p in photos if p.name not in bad)  # no damaged file reached the dataset
    assert code == 1 and "structure from motion failed" in err  # (unrelated random photos: SfM has nothing to match)


def test_process_strict_stops_at_damaged_photos_in_one_line(tmp_path):
    photos = _blocks(tmp_path / "photos", 8)
    _damage(photos)
    proc = command("-m", "nerflite.data.process", str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--strict")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {photos[1]}: image file is truncated (and 2 more: IMG_3.jpg, IMG_5.jpg); without --strict such "
        "photos are skipped with a warning"]
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_process_too_few_usable_photos_and_a_damaged_video(tmp_path, capsys):
    photos = _blocks(tmp_path / "photos", 4)
    photos[0].write_bytes(photos[0].read_bytes()[:200])
    photos[2].write_bytes(b"")
    assert process_main([str(tmp_path / "photos"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"error: {tmp_path / 'photos'}: only 2 image(s) usable (2 skipped): structure from motion "
                       "needs at least 3") and len(err) == 3
    import imageio.v3 as iio

    from nerflite.data.process import frames

    clip = np.stack([cv2.imread(str(p))[..., ::-1] for p in _blocks(tmp_path / "f", 30)])
    iio.imwrite(tmp_path / "v.mp4", clip, fps=10, plugin="FFMPEG", quality=8)
    data = bytearray((tmp_path / "v.mp4").read_bytes())
    mid = (data.find(b"mdat") + data.find(b"moov")) // 2
    data[mid : mid + 3000] = bytes(3000)  # damage in the middle of the stream: the decoder drops frames
    (tmp_path / "v.mp4").write_bytes(bytes(data))
    said = []
    kept = frames.video_frames(tmp_path / "v.mp4", None, said.append)
    assert len(said) == 1 and said[0].startswith(f"warning: {tmp_path / 'v.mp4'}: decodes to {len(kept)} frames, "
                                                 "but its header declares 30: the file is damaged")


# ------------------------------------------------------------------------------------------------
# COLMAP without points3D


@pytest.fixture(scope="module")
def colmap_pair(tmp_path_factory):
    """A forward-facing and a 360-degree COLMAP capture, each with and without its points3D.bin."""
    root = tmp_path_factory.mktemp("colmap")
    out = {}
    for kind, kw in (("forward", dict(forward=True)), ("orbit", dict())):
        make_colmap(root / kind, views=8, size=32, **kw)
        shutil.copytree(root / kind, root / f"{kind}_no_points")
        (root / f"{kind}_no_points" / "sparse" / "0" / "points3D.bin").unlink()
        out[kind] = (root / kind, root / f"{kind}_no_points")
    return out


@pytest.mark.parametrize("kind", ["forward", "orbit"])
def test_colmap_without_points_says_so_and_keeps_the_scale(colmap_pair, kind, capsys):
    with_points, without = colmap_pair[kind]
    code, rec, _ = inspect(capsys, without)
    assert code == 0 and rec["ndc"] == (kind == "forward")
    assert rec["warnings"][0] == ("sparse/0/points3D.bin is missing: the scene's frame, scale and bounds come from the "
                                  "cameras alone (guessed from where their views converge), and forward-facing vs 360 "
                                  "from their directions")
    capture = next(w for w in rec["warnings"] if "capture (" in w)
    if kind == "forward":  # no claim about points that are not there
        assert capture.startswith("forward-facing capture (views within")
        assert capture.endswith("; no sparse points): rays in NDC")
    else:
        assert capture.startswith("360-degree capture (views up to")
    a, b = load_scene(with_points), load_scene(without)  # cameras as far from the content as the points put them
    dist = [float((s.cameras.c2w[:, :, 3] - s.sphere_center).norm(dim=-1).mean()) for s in (a, b)]
    assert 0.5 < dist[1] / dist[0] < 2.0, dist


def test_colmap_without_points_and_parallel_views_stops_in_one_line(colmap_pair, tmp_path, capsys):
    root = tmp_path / "parallel"
    shutil.copytree(colmap_pair["forward"][1], root)
    model = cio.read_model(root / "sparse" / "0")
    for i, im in model.images.items():  # every camera looks the same way: no depth where views converge
        im.qvec, im.tvec = np.array([1.0, 0, 0, 0]), np.array([0.1 * i, 0.05 * (i % 3), 0.0])
    write_model(model, root / "sparse" / "0", ".bin")
    (root / "sparse" / "0" / "points3D.bin").unlink()
    code, _, err = inspect(capsys, root)
    assert code == 1 and err == [
        f"error: {root / 'sparse' / '0' / 'points3D.bin'}: no sparse points, and the cameras' views do not converge "
        "on a point: the scene's scale and bounds cannot be told from the cameras alone (restore the model's "
        "points3D file)"]


# ------------------------------------------------------------------------------------------------
# The frame of a capture: LLFF 360-degree captures, MonoSDF's layout


def _llff_ring(root: Path) -> Path:
    cams = [look_at_opencv(e, up=(0.0, 0.0, 1.0)) for e in ring_eyes(12)]  # all around the object
    make_llff(root, cams, bounds=(2.0, 6.0))
    return root


def test_an_llff_360_capture_is_spherified_and_training_says_so(tmp_path):
    root = _llff_ring(tmp_path / "ring")
    scene = load_scene(root)
    assert not scene.ndc and scene.sphere_radius == 1.0
    assert scene.metadata["warnings"] == [
        "360-degree capture (views up to 69 deg from their mean direction, 0 of 12 within 45): normalised into the "
        "unit sphere, rays in scene units (no NDC)"]
    make_llff(tmp_path / "fwd", [forward_row(x) for x in np.linspace(-1, 1, 6)])
    forward = load_scene(tmp_path / "fwd")
    assert forward.ndc and forward.metadata["warnings"] == []  # a plain forward-facing capture: NDC, nothing to say
    proc = command("train.py", f"dataset.path={root}", f"output_root={tmp_path / 'out'}", "dataset.downscale=1",
                   "trainer.steps=1", "trainer.eval_every=0", "trainer.test_at_end=false",
                   "trainer.final_eval_images=1", "trainer.progress=false", "model.netdepth=1", "model.netdepth_fine=1",
                   "model.skips=[]", "datamanager.rays_per_batch=16", "trainer.device=cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"warning: dataset {root}: 360-degree capture (views up to 69 deg" in proc.stderr


def test_a_forward_facing_transforms_capture_says_how_it_is_read(tmp_path):
    path = _transforms(tmp_path)
    meta = json.loads(path.read_text())
    for frame, x in zip(meta["frames"], np.linspace(-1, 1, 4)):  # a row of cameras looking at a wall
        frame["transform_matrix"] = opencv_to_opengl_4x4(look_at_opencv((x, 0.0, 0.0), (0.0, 0.0, -8.0), (0, 1, 0)))
    path.write_text(json.dumps(meta))
    scene = load_scene(tmp_path)
    assert not scene.ndc and scene.metadata["warnings"] == [
        "forward-facing capture (views within 7 deg of their mean direction): read as an object capture, in the unit "
        f"sphere around where the views converge (this format has no NDC); content farther than far={scene.far:.3g} "
        "is not sampled"]


def _monosdf(root: Path, size=(40, 30)) -> Path:
    """MonoSDF's layout of a NeuS capture: cameras.npz beside NNNNNN_rgb.png and its cue files."""
    make_neus(root, K_TRUE, neus_cams(4), SCALE_MAT, name="cameras.npz")
    for i, p in enumerate(sorted((root / "image").iterdir())):
        cv2.imwrite(str(root / f"{i:06d}_rgb.png"), cv2.resize(cv2.imread(str(p)), size))
        np.save(root / f"{i:06d}_depth.npy", np.ones((4, 4)))
        np.save(root / f"{i:06d}_normal.npy", np.ones((3, 4, 4)))
    shutil.rmtree(root / "image"), shutil.rmtree(root / "mask")
    return root


def test_monosdf_layout_is_read_when_its_cameras_fit_its_images_and_refused_when_cropped(tmp_path, capsys):
    make_neus(tmp_path / "neus", K_TRUE, neus_cams(4), SCALE_MAT)
    code, rec, _ = inspect(capsys, _monosdf(tmp_path / "mono"))
    assert code == 0 and rec["format"] == "neus" and rec["n_views"] == 4 and rec["cx"] == 21.0
    assert rec["warnings"] == ["MonoSDF layout (4 *_rgb.png beside cameras.npz): its *_depth.npy, *_normal.npy files "
                               "(monocular cues, masks) are not used"]
    neus, mono = load_scene(tmp_path / "neus"), load_scene(tmp_path / "mono")
    assert np.allclose(neus.cameras.c2w, mono.cameras.c2w) and np.allclose(neus.cameras.fx, mono.cameras.fx)
    code, _, err = inspect(capsys, _monosdf(tmp_path / "cropped", size=(16, 16)))  # files cropped after calibration
    assert code == 1 and len(err) == 1 and err[0].startswith(
        f"error: {tmp_path / 'cropped' / 'cameras.npz'}: world_mat_0 puts the principal point at (21.0, 14.5), "
        "outside its 16x16 image 000000_rgb.png: this looks like MonoSDF's layout")
    assert "nerflite does not support that" in err[0]


# ------------------------------------------------------------------------------------------------
# Non-finite camera values, images of another size than their intrinsics


def _transforms(root: Path, **frame0) -> Path:
    make_blender(root, n=4, width=16, height=12)
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["frames"][0].update(frame0)
    (root / "transforms_train.json").unlink()
    (root / "transforms.json").write_text(json.dumps(meta, allow_nan=True))
    return root / "transforms.json"


def _nan_in(fmt: str, root: Path, colmap: Path) -> tuple[Path, str]:
    """Put one NaN into a camera file of ``fmt`` (COLMAP: a copy of ``colmap``): (the file, the message's problem)."""
    if fmt == "transforms":
        m = np.eye(4)
        m[1, 3] = np.nan
        return _transforms(root, transform_matrix=m.tolist()), "frame 0: transform_matrix holds a non-finite " \
                                                                 "value: nan at row 1, column 3"
    if fmt == "neus":
        make_neus(root, K_TRUE, neus_cams(4), SCALE_MAT)
        cams = dict(np.load(root / "cameras_sphere.npz"))
        cams["world_mat_2"][0, 1] = np.inf
        np.savez(root / "cameras_sphere.npz", **cams)
        return root / "cameras_sphere.npz", "world_mat_2 holds a non-finite value: inf at row 0, column 1"
    if fmt == "llff":
        arr = make_llff(root, [forward_row(x) for x in np.linspace(-1, 1, 4)])
        arr[2, 16] = np.nan
        np.save(root / "poses_bounds.npy", arr)
        return root / "poses_bounds.npy", "the array holds a non-finite value: nan at row (image) 2, far"
    shutil.copytree(colmap, root)
    model = cio.read_model(root / "sparse" / "0")
    model.images[3].tvec = np.array([0.0, np.nan, 1.0])
    write_model(model, root / "sparse" / "0", ".txt")
    for ext in ("cameras", "images", "points3D"):
        (root / "sparse" / "0" / f"{ext}.bin").unlink()
    return root / "sparse" / "0" / "images.txt", "image frame_002.png's pose holds a non-finite value: nan at TY"


@pytest.mark.parametrize("fmt", ["transforms", "neus", "llff", "colmap"])
def test_a_non_finite_camera_value_is_named_with_its_place(tmp_path, fmt, capsys, colmap_pair):
    path, problem = _nan_in(fmt, tmp_path / fmt, colmap_pair["orbit"][0])
    code, _, err = inspect(capsys, tmp_path / fmt)
    assert code == 1 and err == [f"error: {path}: {problem}"]


def test_images_of_another_size_than_recorded_are_said_alike_by_transforms_and_colmap(tmp_path, capsys, colmap_pair):
    _transforms(tmp_path / "t", w=32, h=24)  # frame 0 records twice the size of its file
    code, rec, _ = inspect(capsys, tmp_path / "t")
    assert code == 0 and rec["warnings"] == [
        "1 images are 0.5x the size of their camera in transforms.json (e.g. r_0.png: 16x12, camera 32x24): "
        "intrinsics scaled to the files"]
    shutil.copytree(colmap_pair["orbit"][0], tmp_path / "c")
    for p in (tmp_path / "c" / "images").iterdir():  # the photos downscaled after SfM
        cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (16, 12)))
    code, rec, _ = inspect(capsys, tmp_path / "c")
    assert code == 0 and rec["warnings"][0] == (
        "8 images are 0.5x the size of their camera in cameras.bin (e.g. frame_000.png: 16x12, camera 32x24): "
        "intrinsics scaled to the files")
    _transforms(tmp_path / "a", w=16, h=16)  # another aspect ratio: not a rescaled copy
    code, _, err = inspect(capsys, tmp_path / "a")
    assert code == 1 and err == [f"error: {tmp_path / 'a' / 'train' / 'r_0.png'}: is 16x12 but its camera in "
                                 "transforms.json is 16x16: not the same aspect ratio (cropped or rotated after "
                                 "calibration?)"]
