"""``process --dynamic``: each kept frame's time (its timestamp, normalised) goes into the dataset it
writes, a Nerfies capture whose cameras are COLMAP's: checked on a COLMAP model of known cameras
(fast) and, slow, end to end on a generated video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nerflite.cameras import project
from nerflite.data.parsers import detect_format, load_scene
from nerflite.data.process import ProcessConfig, dynamic, process
from nerflite.data.scene import DatasetError
from tests.data.colmap_builders import make_colmap


def test_frame_time_ids_are_video_indices_or_name_order(tmp_path):
    picked = [(0, None), (7, None), (12, None), (30, None)]
    names = [f"frame_{i:05d}.png" for i, _ in picked]
    ids = dynamic.frame_time_ids("video", picked, names)
    assert ids == {"frame_00000.png": 0, "frame_00007.png": 7, "frame_00012.png": 12, "frame_00030.png": 30}
    photos = [Path(f"p/img{k}.jpg") for k in (1, 2, 5, 10, 11)]  # name order: img2 before img10
    kept = [photos[1], photos[3], photos[4]]
    assert dynamic.frame_time_ids("photos", kept, ["img2.jpg", "img10.jpg", "img11.jpg"], photos) == {
        "img2.jpg": 1, "img10.jpg": 3, "img11.jpg": 4}


@pytest.mark.parametrize("lenses", [("simple_radial",), ("opencv", "pinhole")])
def test_a_colmap_model_becomes_a_nerfies_capture_with_the_frames_times(tmp_path, lenses):
    truth = make_colmap(tmp_path, views=8, size=40, lenses=lenses)
    for f in (2, 4):  # the downscaled copies process writes
        (tmp_path / f"images_{f}").mkdir()
        for name in truth.names:
            img = cv2.imread(str(tmp_path / "images" / name))
            cv2.imwrite(str(tmp_path / f"images_{f}" / name), cv2.resize(img, (40 // f, 30 // f),
                                                                          interpolation=cv2.INTER_AREA))
    clock = [12, 3, 30, 9, 0, 21, 15, 27]  # video frame index of each image (not in name order)
    info = dynamic.to_nerfies(tmp_path, dict(zip(truth.names, clock)))
    assert info["frames"] == 8 and (info["first_time_id"], info["last_time_id"]) == (0, 30)
    assert detect_format(tmp_path) == "nerfies"  # the COLMAP model moved to colmap/model/
    assert (tmp_path / "colmap" / "model").is_dir() and not (tmp_path / "sparse").exists()
    scene = load_scene(tmp_path)
    order = np.argsort(clock)
    assert [p.name for p in scene.image_paths] == [truth.names[i] for i in order]  # items in time order
    assert scene.times.tolist() == pytest.approx([clock[i] / 30 for i in order])
    assert scene.appearance_ids.tolist() == sorted(clock)
    # the cameras are COLMAP's: the known surface projects where the images show it (lens included)
    view_of = {name: k for k, name in enumerate(p.name for p in scene.image_paths)}
    idx = torch.tensor([view_of[truth.names[v]] for v in truth.view])
    to_scene = np.linalg.inv(scene.metadata["world_from_scene"])
    pts = truth.world @ to_scene[:3, :3].T + to_scene[:3, 3]
    xy, depth = project(scene.cameras, idx, torch.from_numpy(pts).float())
    assert (depth > 0).all() and float((xy.double() - torch.from_numpy(truth.xy)).abs().max()) < 0.02
    # every view's sparse points lie between near and far (scene units)
    d = np.linalg.norm(pts - scene.cameras.c2w[idx, :, 3].double().numpy(), axis=1)
    assert scene.near <= d.min() and d.max() <= scene.far
    assert scene.near > 0 and scene.far < 20 * scene.near
    half = load_scene(tmp_path, downscale=2)
    assert half.image_paths[0].parent.name == "2x" and int(half.cameras.width[0]) == 20


def test_a_fisheye_model_is_refused_in_one_line(tmp_path):
    truth = make_colmap(tmp_path, views=4, size=32, lenses=("fisheye",))
    with pytest.raises(DatasetError, match="fisheye camera has no Nerfies form"):
        dynamic.to_nerfies(tmp_path, {n: k for k, n in enumerate(truth.names)})
    with pytest.raises(ValueError, match="no OPENCV_FISHEYE lens"):
        process(ProcessConfig(input=str(tmp_path / "images"), out=str(tmp_path / "o"), dynamic=True,
                              camera_model="OPENCV_FISHEYE"))


@pytest.mark.slow
def test_process_video_dynamic_end_to_end(tmp_path, capsys):
    """A video of 18 views (each followed by a blurred copy): --dynamic --frames 18 keeps the sharp
    frames, poses them, and writes a Nerfies capture whose times are the frames' timestamps."""
    pytest.importorskip("pycolmap")
    import imageio.v3 as iio

    from nerflite.data.process.__main__ import main
    from tests.data.process_capture import render_capture

    _, names = render_capture(tmp_path / "views", views=18, size=160)
    clip = []
    for name in names:
        img = cv2.cvtColor(cv2.imread(str(tmp_path / "views" / name)), cv2.COLOR_BGR2RGB)
        clip += [img, cv2.GaussianBlur(img, (0, 0), 3.0)]
    iio.imwrite(tmp_path / "walk.mp4", np.stack(clip), fps=12, plugin="FFMPEG", quality=9)
    out = tmp_path / "capture"
    code = main([str(tmp_path / "walk.mp4"), "--out", str(out), "--frames", "18", "--dynamic", "--json",
                 "--threads", "2"])
    text = capsys.readouterr().out
    assert code == 0, text
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["nerfies"]["format"] == "nerfies" and "Nerfies capture" in text
    assert detect_format(out) == "nerfies"
    scene = load_scene(out)
    frame_index = [int(p.stem.split("_")[1]) for p in scene.image_paths]  # the sharp copies: 0, 2, 4, ...
    assert all(i % 2 == 0 for i in frame_index) and len(scene) >= 16
    lo, hi = min(frame_index), max(frame_index)
    assert scene.times.tolist() == pytest.approx([(i - lo) / (hi - lo) for i in frame_index])
