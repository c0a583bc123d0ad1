"""Readers of moving scenes: D-NeRF (Blender files with a time per frame), transforms.json with
times, Nerfies / HyperNeRF captures (round trip against cameras written and projected
independently, skew, pixel aspect and lens terms included); detection; one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerflite.cameras import Cameras, generate_rays, project
from nerflite.data.parsers import DatasetConfig, DatasetError, detect_format, load_scene
from nerflite.data.parsers.nerfies_write import Capture, write_capture
from tests.data.builders import look_at_opencv, make_blender, ring_eyes, write_png

# ------------------------------------------------------------------------------------- D-NeRF


def make_dnerf(root: Path, n: int = 4) -> dict[str, list[float]]:
    """A Blender folder (train, val, test) whose frames carry a time; returns the times per split."""
    metas = make_blender(root, n=n, splits=("train", "val", "test"))
    times = {}
    for k, (split, meta) in enumerate(metas.items()):
        times[split] = [round((3 * i + k) / (3 * n), 6) for i in range(n)]
        for frame, t in zip(meta["frames"], times[split]):
            frame["time"] = t
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return times


def test_dnerf_reads_a_time_per_view_and_blender_cameras(tmp_path):
    times = make_dnerf(tmp_path)
    assert detect_format(tmp_path) == "dnerf"
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    assert scene.format == "dnerf" and scene.is_dynamic and scene.appearance_ids is None
    assert scene.times.dtype == torch.float32
    for split in ("train", "val", "test"):
        got = scene.times[scene.split(split)].tolist()
        assert got == pytest.approx(times[split], abs=1e-7)
    static = load_scene(DatasetConfig(path=str(tmp_path), format="blender"))  # the same files, moments ignored
    assert static.format == "blender" and not static.is_dynamic and static.times is None
    assert any("'time'" in w for w in static.metadata["warnings"])
    assert torch.equal(static.cameras.c2w, scene.cameras.c2w) and torch.equal(static.cameras.fx, scene.cameras.fx)
    assert static.splits == scene.splits and (static.near, static.far) == (scene.near, scene.far)


def test_a_blender_folder_without_times_stays_blender(tmp_path):
    make_blender(tmp_path, n=3)
    assert detect_format(tmp_path) == "blender"
    assert not load_scene(DatasetConfig(path=str(tmp_path))).is_dynamic


def _set_time(root: Path, frame: int, value, drop: bool = False) -> Path:
    path = root / "transforms_val.json"
    meta = json.loads(path.read_text())
    if drop:
        del meta["frames"][frame]["time"]
    else:
        meta["frames"][frame]["time"] = value
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("value,drop,says", [
    (None, True, "frame 2 (./val/r_2) has no 'time'"),
    (float("nan"), False, "frame 2 (./val/r_2): time nan is not a finite number"),
    (1.5, False, "frame 2 (./val/r_2): time 1.5 is outside [0, 1]"),
    (-0.1, False, "time -0.1 is outside [0, 1]"),
    ("soon", False, "time 'soon' is not a finite number"),
])
def test_dnerf_time_errors_name_the_file_and_frame(tmp_path, value, drop, says):
    make_dnerf(tmp_path)
    path = _set_time(tmp_path, 2, value, drop)
    with pytest.raises(DatasetError) as e:
        load_scene(DatasetConfig(path=str(tmp_path)))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and says in msg and "\n" not in msg, msg


# ------------------------------------------------------------------------------ transforms.json


def make_transforms(root: Path, times: list[float | None]) -> Path:
    frames = []
    for i, (eye, t) in enumerate(zip(ring_eyes(len(times)), times)):
        write_png(root / "images" / f"f_{i}.png", 16, 12)
        m = np.eye(4)
        m[:3, :4] = look_at_opencv(eye)
        m[:3, 1:3] *= -1
        frame = {"file_path": f"images/f_{i}.png", "transform_matrix": m.tolist()}
        if t is not None:
            frame["time"] = t
        frames.append(frame)
    path = root / "transforms.json"
    path.write_text(json.dumps({"fl_x": 14.0, "fl_y": 14.0, "cx": 8.0, "cy": 6.0, "w": 16, "h": 12,
                                "frames": frames}))
    return path


def test_transforms_json_with_times_is_dynamic(tmp_path):
    times = [0.0, 0.5, 0.25, 1.0, 0.75]
    make_transforms(tmp_path, times)
    scene = load_scene(tmp_path)
    assert scene.format == "transforms" and scene.is_dynamic
    assert scene.times.tolist() == times
    (tmp_path / "images" / "f_2.png").unlink()  # a dropped frame drops its time with it
    kept = load_scene(tmp_path, skip_missing=True)
    assert kept.times.tolist() == [0.0, 0.5, 1.0, 0.75]
    static = tmp_path / "static"
    make_transforms(static, [None] * 3)
    assert not load_scene(static).is_dynamic


def test_transforms_json_with_some_times_names_the_frame_without(tmp_path):
    path = make_transforms(tmp_path, [0.0, 0.3, None, 1.0])
    with pytest.raises(DatasetError, match=r"frame 2 \(images/f_2.png\) has no 'time'") as e:
        load_scene(tmp_path)
    assert str(e.value).startswith(str(path))


# ------------------------------------------------------------------------------ Nerfies / HyperNeRF

W, H = 48, 32
CENTER, SCALE = np.array([0.7, -1.2, 2.0]), 0.4
TIME_IDS = [4, 0, 9, 2, 7, 5]  # not in item order, not starting at 0 or ending at the count
IDS = [f"frame_{k:03d}" for k in range(len(TIME_IDS))]


def nerfies_cameras() -> Cameras:
    """Cameras in the capture's world (around CENTER), each with its own skew, aspect and lens."""
    n = len(IDS)
    c2w = torch.stack([torch.from_numpy(look_at_opencv(CENTER + e, CENTER)) for e in ring_eyes(n, 3.0, 1.0)])
    k = torch.arange(n, dtype=torch.float64)
    dist = torch.stack([-0.05 + 0.02 * k, 0.01 * k, 0.003 * k, 0 * k, 0.002 - 0.001 * k, -0.003 + 0.0008 * k], -1)
    return Cameras(fx=30.0 + k, fy=(30.0 + k) * (1.0 + 0.02 * k), cx=W / 2 + 0.3 * k, cy=H / 2 - 0.2 * k,
                   width=torch.full((n,), W), height=torch.full((n,), H), c2w=c2w, distortion=dist,
                   skew=0.4 * k - 1.0)


def make_nerfies(root: Path, scales=(1, 2), appearance=True, val=True) -> Capture:
    cams = nerfies_cameras()
    cap = Capture(ids=IDS, time_ids=TIME_IDS, train_ids=IDS[::2] + IDS[1:4:2] if val else IDS[:4],
                  val_ids=[IDS[5]] if val else [], center=CENTER.tolist(), scale=SCALE, near=0.3, far=2.5,
                  appearance_ids=[10 + 2 * k for k in range(len(IDS))] if appearance else None)
    write_capture(root, cams, cap)
    for f in scales:
        for item in IDS:
            write_png(root / "rgb" / f"{f}x" / f"{item}.png", W // f, H // f)
    if not appearance:  # a capture without appearance ids
        meta = json.loads((root / "metadata.json").read_text())
        for m in meta.values():
            del m["appearance_id"]
        (root / "metadata.json").write_text(json.dumps(meta))
    return cap


def nerfies_project(cam: dict, points: np.ndarray) -> np.ndarray:
    """Nerfies' own projection of world points [m, 3] with a camera file's dict (written out here
    independently of nerflite: its documented formulas, pixel centres at +0.5)."""
    R, pos = np.asarray(cam["orientation"]), np.asarray(cam["position"])
    local = (points - pos) @ R.T
    x, y = local[:, 0] / local[:, 2], local[:, 1] / local[:, 2]
    k1, k2, k3 = cam["radial_distortion"]
    p1, p2 = cam["tangential_distortion"]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + k3 * r2))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + 2.0 * p2 * x * y + p1 * (r2 + 2.0 * y * y)
    f, a = cam["focal_length"], cam["pixel_aspect_ratio"]
    px, py = cam["principal_point"]
    return np.stack([f * xd + cam["skew"] * yd + px, f * a * yd + py], -1)


def _points_in_view(cam: dict, m: int, seed: int) -> np.ndarray:
    """World points in front of the camera, spread over its image."""
    rng = np.random.default_rng(seed)
    R, pos = np.asarray(cam["orientation"]), np.asarray(cam["position"])
    local = np.concatenate([rng.uniform(-0.35, 0.35, (m, 2)), np.ones((m, 1))], 1) * rng.uniform(1.0, 4.0, (m, 1))
    return local @ R + pos  # R^T local + position


def test_nerfies_round_trip_projects_like_nerfies_itself(tmp_path):
    make_nerfies(tmp_path)
    assert detect_format(tmp_path) == "nerfies"
    scene = load_scene(tmp_path)
    assert scene.format == "nerfies" and scene.is_dynamic and len(scene) == len(IDS)
    assert scene.cameras.skew is not None and scene.cameras.distortion is not None
    to_scene = np.linalg.inv(scene.metadata["world_from_scene"])
    for i, item in enumerate(IDS):
        cam = json.loads((tmp_path / "camera" / f"{item}.json").read_text())
        world = _points_in_view(cam, 50, i)
        expect = nerfies_project(cam, world)  # [50, 2]
        pts = torch.from_numpy(world @ to_scene[:3, :3].T + to_scene[:3, 3]).float()  # the scene frame
        xy, _ = project(scene.cameras, torch.full((50,), i), pts)
        assert np.abs(xy.double().numpy() - expect).max() < 2e-3, item
        rays = generate_rays(scene.cameras, torch.full((50,), i), torch.from_numpy(expect[:, 1]).float(),
                             torch.from_numpy(expect[:, 0]).float())
        to_pt = pts - rays.origins
        miss = torch.linalg.norm(torch.linalg.cross(to_pt, rays.directions, dim=-1), dim=-1)
        assert float(miss.max()) < 2e-4 * float(torch.linalg.norm(to_pt, dim=-1).max()), item
    # the scene frame is (x - center) * scale; near / far already in it
    np.testing.assert_allclose(scene.cameras.c2w[:, :, 3].double().numpy(),
                               (nerfies_cameras().c2w[:, :, 3].numpy() - CENTER) * SCALE, atol=1e-6)
    assert (scene.near, scene.far) == (0.3, 2.5) and scene.downscale == 1.0
    # time ids normalised over the capture (min 0, max 9), appearance ids as written
    assert scene.times.tolist() == pytest.approx([t / 9 for t in TIME_IDS])
    assert scene.appearance_ids.tolist() == [10 + 2 * k for k in range(len(IDS))]
    assert scene.metadata["time_ids"] == TIME_IDS
    assert scene.splits["train"] == [0, 2, 4, 1, 3] and scene.splits["val"] == [5] == scene.splits["test"]


@pytest.mark.parametrize("downscale,folder,resize", [(2, "2x", 1.0), (4, "2x", 2.0), (1, "1x", 1.0)])
def test_nerfies_downscale_reads_the_matching_folder(tmp_path, downscale, folder, resize):
    make_nerfies(tmp_path)
    full = load_scene(tmp_path)
    scene = load_scene(tmp_path, downscale=downscale)
    assert scene.metadata["image_folder"] == f"rgb/{folder}" and scene.downscale == resize
    assert scene.image_paths[0].parent.name == folder
    assert int(scene.cameras.width[0]) == W // downscale and int(scene.cameras.height[0]) == H // downscale
    pts = torch.tensor([[0.1, -0.05, 0.0], [0.0, 0.1, 0.1]])
    idx = torch.tensor([3, 3])
    a, _ = project(full.cameras, idx, pts)
    b, _ = project(scene.cameras, idx, pts)
    torch.testing.assert_close(b, a / downscale, atol=1e-4, rtol=0)


def test_nerfies_without_appearance_ids_or_val_ids(tmp_path):
    make_nerfies(tmp_path, appearance=False, val=False)
    scene = load_scene(tmp_path, holdout=2)
    assert scene.appearance_ids is None and scene.is_dynamic
    assert scene.splits["train"] == [1, 3] and scene.splits["val"] == [0, 2]  # every 2nd train id held out


def _edit_json(path: Path, fn) -> Path:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


NERFIES_ERRORS = {
    "no metadata entry": (lambda r: _edit_json(r / "metadata.json", lambda d: d.pop(IDS[3])),
                          "metadata.json", f"no entry for id '{IDS[3]}'"),
    "no time": (lambda r: _edit_json(r / "metadata.json", lambda d: [d[IDS[1]].pop(k) for k in ("time_id", "warp_id")]),
                "metadata.json", "has no numeric 'time_id'"),
    "some appearance": (lambda r: _edit_json(r / "metadata.json", lambda d: d[IDS[2]].pop("appearance_id")),
                        "metadata.json", f"id '{IDS[2]}' has no 'appearance_id'"),
    "reflection": (lambda r: _edit_json(r / "camera" / f"{IDS[1]}.json",
                                        lambda d: d.update(orientation=(-np.asarray(d["orientation"])).tolist())),
                   f"camera/{IDS[1]}.json", "'orientation' is not a rotation matrix"),
    "no focal": (lambda r: _edit_json(r / "camera" / f"{IDS[0]}.json", lambda d: d.pop("focal_length")),
                 f"camera/{IDS[0]}.json", "no 'focal_length'"),
    "camera missing": (lambda r: (r / "camera" / f"{IDS[4]}.json").unlink(), f"camera/{IDS[4]}.json",
                       "file is missing"),
    "image missing": (lambda r: (r / "rgb" / "1x" / f"{IDS[2]}.png").unlink(), f"rgb/1x/{IDS[2]}.png",
                      "image file is missing"),
    "aspect": (lambda r: write_png(r / "rgb" / "1x" / f"{IDS[0]}.png", W, W), f"rgb/1x/{IDS[0]}.png",
               "does not have the aspect ratio"),
    "bounds": (lambda r: _edit_json(r / "scene.json", lambda d: d.update(near=3.0)), "scene.json",
               "0 <= near < far"),
    "unknown val id": (lambda r: _edit_json(r / "dataset.json", lambda d: d["val_ids"].append("nope")),
                       "dataset.json", "id 'nope' of train_ids / val_ids is not in 'ids'"),
    "fisheye": (lambda r: _edit_json(r / "camera" / f"{IDS[0]}.json", lambda d: d.update(projection_type="fisheye")),
                f"camera/{IDS[0]}.json", "projection_type 'fisheye' is not supported"),
}


@pytest.mark.parametrize("case", sorted(NERFIES_ERRORS))
def test_nerfies_errors_are_one_line_naming_the_file(tmp_path, case):
    make_nerfies(tmp_path)
    make, file, says = NERFIES_ERRORS[case]
    make(tmp_path)
    with pytest.raises(DatasetError) as e:
        load_scene(tmp_path, format="nerfies")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / file}: ") and says in msg and "\n" not in msg, msg


def test_written_camera_file_holds_the_nerfies_terms(tmp_path):
    make_nerfies(tmp_path)
    cam = json.loads((tmp_path / "camera" / f"{IDS[2]}.json").read_text())
    assert cam["skew"] == pytest.approx(-0.2) and cam["pixel_aspect_ratio"] == pytest.approx(1.04)
    assert cam["focal_length"] == 32.0 and cam["image_size"] == [W, H]
    assert cam["radial_distortion"] == pytest.approx([-0.01, 0.02, 0.006])
    assert cam["tangential_distortion"] == pytest.approx([0.0, -0.0014])
    R = np.asarray(cam["orientation"])
    assert abs(np.linalg.det(R) - 1) < 1e-9 and math.isclose(np.abs(R @ R.T - np.eye(3)).max(), 0, abs_tol=1e-12)


# ------------------------------------------------------------------------------ inspector


def _inspect(capsys, root, *args) -> tuple[str, dict]:
    from nerflite.data.inspect import main

    assert main([str(root), "--json", *map(str, args)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return "\n".join(out[:-1]), json.loads(out[-1])


def test_inspector_reports_the_moments_of_a_moving_scene(tmp_path, capsys):
    make_nerfies(tmp_path / "nerfies")
    text, rec = _inspect(capsys, tmp_path / "nerfies")
    assert rec["format"] == "nerfies" and rec["time"] == {"min": 0.0, "max": 1.0, "distinct": 6, "appearance_ids": 6}
    assert "time        moments 0 to 1, 6 distinct over 6 views (a moving scene); 6 appearance ids" in text
    # the val view's moment (time id 5) lies inside the training ones (0 to 9): no warning
    assert not any("training moments" in w for w in rec["warnings"])
    times = make_dnerf(tmp_path / "dnerf")
    text, rec = _inspect(capsys, tmp_path / "dnerf")
    every = times["train"] + times["val"] + times["test"]
    assert rec["time"] == {"min": min(every), "max": max(every), "distinct": len(set(every)), "appearance_ids": None}
    # val and test moments beyond the last training one: the model would extrapolate in time
    assert any("outside the training moments" in w for w in rec["warnings"]), rec["warnings"]
    make_blender(tmp_path / "static", n=3)
    text, rec = _inspect(capsys, tmp_path / "static")
    assert rec["time"] is None and "time " not in text


# ------------------------------------------------------------------------------ real data


@pytest.mark.slow
def test_real_dnerf_standup_reads_and_its_rays_carry_time(shared_data):
    from nerflite.data.datamanager import DataManager, DataManagerConfig

    root = shared_data("dnerf_standup")
    assert detect_format(root) == "dnerf"
    scene = load_scene(root, downscale=8)
    assert scene.format == "dnerf" and scene.is_dynamic
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 150, "val": 20, "test": 20}
    for split in ("train", "val", "test"):
        frames = json.loads((root / f"transforms_{split}.json").read_text())["frames"]
        assert scene.times[scene.split(split)].tolist() == pytest.approx([f["time"] for f in frames], abs=1e-7)
    train_t = scene.times[scene.split("train")]
    assert float(train_t.min()) == 0.0 and float(train_t.max()) == 1.0 and len(set(train_t.tolist())) == 150
    assert int(scene.cameras.width[0]) == 100 and (scene.near, scene.far) == (2.0, 6.0)
    dist = torch.linalg.norm(scene.cameras.c2w[:, :, 3], dim=-1)
    assert float(dist.min()) > 3.9 and float(dist.max()) < 4.2
    dm = DataManager(scene, DataManagerConfig(rays_per_batch=512, cache="disk", workers=1, images_per_chunk=8),
                     "cpu")
    try:
        rays, batch = dm.next_train(0)
        assert torch.equal(rays.extras["time"][:, 0], scene.times[batch["indices"][:, 0]])
        view, rays, batch = dm.next_eval_image(0)
        assert len(rays) == 100 * 100 and torch.all(rays.extras["time"] == scene.times[view])
    finally:
        dm.close()
