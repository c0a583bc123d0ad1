"""``python -m nerflite.data.process``: photos of a synthetic capture with known cameras go through
COLMAP's structure from motion; the recovered cameras must match the truth after a similarity
alignment. Video round trip, blur selection and the errors a user meets."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerflite.data.inspect import main as inspect_main
from nerflite.data.parsers import load_scene
from nerflite.data.process import frames
from nerflite.data.process.__main__ import main
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_NERF, TINY_RUN, compose_config
from tests.data.process_capture import render_capture

pycolmap = pytest.importorskip("pycolmap")


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |dst - (s R src + t)|^2 over points [n, 3] (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    R = u @ sign @ vt
    s = float(np.trace(np.diag(d) @ sign) / (a**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def pose_errors(model_dir: Path, names: list[str], c2w_true: np.ndarray) -> tuple[float, float, int]:
    """(max rotation error in degrees, max centre error / rig diameter, registered count) of the
    COLMAP model against the true OpenCV c2w [n, 3, 4], after aligning camera centres."""
    rec = pycolmap.Reconstruction(model_dir)
    est = {}
    for i in rec.reg_image_ids():
        im = rec.images[i]
        cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
        R_w2c = cfw.rotation.matrix()
        est[im.name] = (R_w2c.T, im.projection_center())  # c2w rotation, centre
    idx = [k for k, n in enumerate(names) if n in est]
    c_est = np.stack([est[names[k]][1] for k in idx])
    c_true = c2w_true[idx, :, 3]
    s, R, t = umeyama(c_est, c_true)
    pos = np.linalg.norm(s * c_est @ R.T + t - c_true, axis=1).max()
    diameter = max(np.linalg.norm(c_true[:, None] - c_true[None], axis=-1).max(), 1e-9)
    rot = []
    for k in idx:
        delta = c2w_true[k, :, :3].T @ (R @ est[names[k]][0])
        rot.append(np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))))
    return float(max(rot)), float(pos / diameter), len(idx)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def process_capture(root: Path, views: int, size: int, *extra) -> tuple:
    """Render the capture, run the command line on it: (true cameras, names, dataset, summary, text)."""
    cams, names = render_capture(root / "photos", views=views, size=size)
    out = root / "dataset"
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = main([str(root / "photos"), "--out", str(out), "--json", "--threads", "2", *map(str, extra)])
    assert code == 0, err.getvalue()
    text = buf.getvalue()
    return cams, names, out, json.loads(text.strip().splitlines()[-1]), text


def check_capture(processed, views, size):
    cams, names, out, summary, text = processed
    assert f"registered  {views} / {views} images" in text and "[sfm 3/3] incremental mapping" in text
    assert summary["registered"] == views and summary["mean_reprojection_error_px"] < 1.0
    rot, pos, n = pose_errors(out / "sparse" / "0", names, cams.c2w.double().numpy())
    assert n == views and rot < 1.0 and pos < 0.01, (rot, pos)
    for f in (2, 4, 8):
        img = cv2.imread(str(out / f"images_{f}" / names[0]))
        assert img.shape[:2] == (round(size / f),) * 2
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    return summary


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    return process_capture(tmp_path_factory.mktemp("capture"), 20, 192)


def test_process_recovers_known_cameras(processed):
    """20 photos at 192 px: every view registered, cameras within 1 degree and 1% of the rig."""
    summary = check_capture(processed, 20, 192)
    assert summary["camera_model"] == "SIMPLE_RADIAL" and summary["cameras"] == 1
    assert set(summary["seconds"]) == {"frames", "features", "matching", "mapping", "downscale"}


def test_processed_folder_inspects_and_trains(processed, tmp_path, capsys):
    """The output needs no other step: detected as COLMAP, parsed with the recovered cameras,
    inspected, and trained by the default config given only dataset.path."""
    cams, names, out, _, _ = processed
    scene = load_scene(out)
    assert scene.format == "colmap" and [p.name for p in scene.image_paths] == names
    c2w_true = cams.c2w.double().numpy()
    s, R, t = umeyama(scene.cameras.c2w[:, :, 3].double().numpy(), c2w_true[:, :, 3])
    rel = np.einsum("nji,jk,nkl->nil", c2w_true[:, :, :3], R, scene.cameras.c2w[:, :, :3].double().numpy())
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angle.max() < 1.0
    assert inspect_main([str(out), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["format"] == "colmap" and rec["n_views"] == 20
    cfg = compose_config([f"dataset.path={out}", "dataset.downscale=4", f"output_root={tmp_path / 'outputs'}",
                          *TINY_NERF, *TINY_RUN])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared box
    try:
        result = train(cfg)
    finally:
        torch.set_num_threads(threads)
    assert result.step == 6 and all(math.isfinite(v) for v in result.losses)


@pytest.mark.slow
def test_process_recovers_known_cameras_undistorted_opencv(tmp_path):
    """32 photos at 256 px, OPENCV camera, undistorted output (pinhole model, originals kept)."""
    check_capture(process_capture(tmp_path, 32, 256, "--camera-model", "OPENCV", "--undistort"), 32, 256)
    rec = pycolmap.Reconstruction(tmp_path / "dataset" / "sparse" / "0")
    assert {c.model_name for c in rec.cameras.values()} == {"PINHOLE"}
    assert (tmp_path / "dataset" / "colmap" / "distorted" / "images").is_dir()


@pytest.mark.slow
def test_process_video_keeps_sharp_frames_and_recovers_cameras(tmp_path, capsys):
    """A phone-style video: each of 24 views of the orbit followed by two blurred copies, as an
    MP4; --frames 24 keeps the sharp copy of every view, sequential matching, one camera."""
    cams, names = render_capture(tmp_path / "views", views=24, size=192)
    clip = []
    for name in names:
        img = cv2.cvtColor(cv2.imread(str(tmp_path / "views" / name)), cv2.COLOR_BGR2RGB)
        clip += [img, cv2.GaussianBlur(img, (0, 0), 2.0), cv2.GaussianBlur(img, (0, 0), 3.0)]
    iio.imwrite(tmp_path / "orbit.mp4", np.stack(clip), fps=24, plugin="FFMPEG", quality=9)
    out = tmp_path / "dataset"
    code, text, err = run(capsys, tmp_path / "orbit.mp4", "--out", out, "--frames", 24, "--json", "--threads", 2)
    assert code == 0, err
    summary = json.loads(text.strip().splitlines()[-1])
    assert "[frames] 24 of 72 video frames" in text and "sequential matching" in text
    frame_names = [f"frame_{3 * k:05d}.png" for k in range(24)]  # the sharp copies
    assert sorted(p.name for p in (out / "images").iterdir()) == frame_names
    assert summary["registered"] == 24 and summary["cameras"] == 1
    rot, pos, n = pose_errors(out / "sparse" / "0", frame_names, cams.c2w.double().numpy())
    assert n == 24 and rot < 1.0 and pos < 0.01, (rot, pos)


# ----------------------------------------------------------------------------- frames


def _textured(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)  # blocks: strong edges


def test_sharpness_and_selection_pick_sharp_frames():
    sharp = [_textured(i) for i in range(12)]
    blurred = {1, 2, 4, 7, 9, 10}
    imgs = [cv2.GaussianBlur(im, (0, 0), 2.5) if i in blurred else im for i, im in enumerate(sharp)]
    scores = [frames.sharpness(im) for im in imgs]
    assert min(scores[i] for i in range(12) if i not in blurred) > 3 * max(scores[i] for i in blurred)
    # 6 segments of two: each keeps its sharp member
    assert frames.select_sharp(scores, 6) == [0, 3, 5, 6, 8, 11]
    assert frames.select_sharp(scores, None) == list(range(12)) == frames.select_sharp(scores, 40)
    assert [len(s) for s in frames.segments(10, 4)] == [2, 3, 3, 2]  # edges 0, 2, 5, 8, 10


def test_video_round_trip_and_sharp_pick(tmp_path):
    """Frames written to an MP4 come back: count, size, content; --frames keeps the sharp ones."""
    clip = [_textured(i) for i in range(18)]
    blurred = set(range(0, 18, 3))  # each group of three candidates has one blurred frame first
    clip = [cv2.GaussianBlur(im, (0, 0), 3.0) if i in blurred else im for i, im in enumerate(clip)]
    video = tmp_path / "clip.mp4"
    iio.imwrite(video, np.stack(clip), fps=10, plugin="FFMPEG", quality=10)
    assert frames.video_frame_count(video) == 18
    back = frames.video_frames(video, None)
    assert [i for i, _ in back] == list(range(18)) and back[0][1].shape == (96, 128, 3)
    err = np.mean([np.abs(f.astype(float) - c).mean() for (_, f), c in zip(back, clip)])
    assert err < 6.0, err  # lossy codec, same content
    picked = frames.video_frames(video, 6)  # 18 candidates, 6 groups of three
    assert len(picked) == 6 and not ({i for i, _ in picked} & blurred)


# ----------------------------------------------------------------------------- errors


def _photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), _textured(i))
    return folder


ERRORS = {
    "missing input": (lambda t: t / "nowhere", "input does not exist"),
    "empty folder": (lambda t: (t / "empty").mkdir() or t / "empty", "no images in the folder"),
    "two images": (lambda t: _photos(t / "two", 2), "only 2 image(s): structure from motion needs at least 3"),
    "unreadable video": (lambda t: _file(t / "v.mp4", "not a video"), "cannot read the video"),
    "not a video": (lambda t: _file(t / "notes.txt", "hi"), "not a folder of photos"),
    "nothing registered": (lambda t: _noise(t / "noise"), "structure from motion failed"),
}


def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _noise(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    return folder


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_user_errors_are_one_line(tmp_path, capsys, case):
    make, says = ERRORS[case]
    src = make(tmp_path)
    code, out, err = run(capsys, src, "--out", tmp_path / "out", "--threads", "2")
    assert code == 1 and says in err and err.count("\n") == 1, err
    assert err.startswith(f"error: {src}")


def test_output_folder_not_empty_needs_overwrite(tmp_path, capsys):
    src = _photos(tmp_path / "p", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, err = run(capsys, src, "--out", out)
    assert code == 1 and err == f"error: {out}: output folder is not empty (pass --overwrite to replace its contents)\n"
    assert (out / "keep.txt").is_file()
    code, _, err = run(capsys, src, "--out", out, "--frames", "2")
    assert code == 1 and "frames must be at least 3" in err
