"""The live viewer: camera maths, the time budget, and real clients over viser's WebSocket
protocol (frames equal render.py's pixels, training unchanged by watching it, pause, ports)."""

from __future__ import annotations

import math
import re
import socket
import threading
import time
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from websockets.exceptions import ConnectionClosed

from nerflite.engine.config import RenderConfig
from nerflite.engine.hooks import StepHooks
from nerflite.engine.render import load_run, path_cameras, render
from nerflite.engine.trainer import train
from nerflite.view import open_run, parse_args, serve
from nerflite.viewer.client import ViewerClient
from nerflite.viewer.config import ViewConfig, ViewerConfig, expand_shorthand
from nerflite.viewer.frames import (
    BrowserCamera,
    Budget,
    browser_cameras,
    frame_size,
    ray_bounds,
    rotation_from_wxyz,
    wxyz_from_rotation,
)
from nerflite.viewer.launch import start_viewer
from tests.app.helpers import TINY_NEUS, TINY_RUN, compose_config


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def frame_like(client, ref: np.ndarray, what: str):
    """Wait for a frame equal to ``ref`` (viser keeps only the newest of frames queued together,
    so a quick preview may be superseded before it leaves: frames are waited for, not counted)."""
    wait_for(lambda: np.array_equal(client.next_frame(timeout_s=60), ref), timeout_s=60, what=what)


def browser_camera_of(cams, i: int) -> BrowserCamera:
    """The browser camera that shows what render.py's camera ``i`` shows."""
    c2w = cams.c2w[i].double().numpy()
    h, w = int(cams.height[i]), int(cams.width[i])
    fov = 2.0 * math.atan(h / (2.0 * float(cams.fy[i])))
    return BrowserCamera(wxyz_from_rotation(c2w[:, :3]), tuple(float(v) for v in c2w[:, 3]), fov, w, h)


@pytest.fixture
def served(tmp_path):
    """run folder -> (viewer, client connected to it), served from a thread; both closed after the test."""
    opened = []

    def open_(run, **overrides):
        cfg = ViewConfig(run=str(run), port=0, image_format="png", **overrides)
        viewer, model = open_run(cfg)
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(viewer, model, stop), daemon=True)
        thread.start()
        client = ViewerClient(f"ws://127.0.0.1:{viewer.server.get_port()}")
        opened.append((client, stop, thread))
        return viewer, client

    yield open_
    for client, stop, thread in opened:
        client.close()
        stop.set()
        thread.join(timeout=10)


# ------------------------------------------------------------------------------------------------
# Pure pieces


def test_quaternions_round_trip_and_browser_cameras_match_render_py_intrinsics():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        q = torch.randn(4, generator=g, dtype=torch.float64)
        R = rotation_from_wxyz(q.numpy())
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(rotation_from_wxyz(wxyz_from_rotation(R)), R, atol=1e-12)
    # the four branches of Shepperd's method: rotations by pi about each axis and the identity
    for R in (np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])):
        np.testing.assert_allclose(rotation_from_wxyz(wxyz_from_rotation(R)), R, atol=1e-12)

    cam = BrowserCamera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -4.0), fov=2 * math.atan(0.5), width=40, height=30)
    one = browser_cameras(cam, 40, 30)
    # tan(fov / 2) = 0.5, so the focal length is (30 / 2) / 0.5 = 30 px; square pixels; centred
    assert float(one.fy[0]) == pytest.approx(30.0) and float(one.fx[0]) == pytest.approx(30.0)
    assert (float(one.cx[0]), float(one.cy[0])) == (20.0, 15.0)
    assert one.c2w.dtype == torch.float32 and torch.equal(one.c2w[0, :, 3], torch.tensor([0.0, 0.0, -4.0]))


def test_frame_size_keeps_the_aspect_and_never_exceeds_the_canvas():
    assert frame_size(800, 600, 64) == (64, 48)
    assert frame_size(600, 800, 64) == (48, 64)
    assert frame_size(30, 20, 64) == (30, 20)  # never larger than the canvas
    assert frame_size(1000, 1, 10) == (10, 1)


def test_ray_bounds_follow_a_camera_beyond_the_training_distances(tiny_scene):
    from nerflite.engine.setup import build_scene

    scene = build_scene(compose_config([f"dataset.path={tiny_scene('blender')}"]).dataset)  # near 2, far 6
    assert (scene.near, scene.far) == (2.0, 6.0)
    assert ray_bounds(scene, (0.0, 0.0, 4.0), (3.5, 4.5)) == (2.0, 6.0)  # within: the scene's own
    assert ray_bounds(scene, (0.0, 0.0, 8.5), (3.5, 4.5)) == pytest.approx((6.0, 10.0))  # 4 farther out
    assert ray_bounds(scene, (0.0, 0.0, 1.5), (3.5, 4.5)) == pytest.approx((0.0, 4.0))  # 2 nearer


def test_budget_keeps_the_viewer_to_its_share_of_wall_time():
    """Simulated clock: 10 ms training steps, 35 ms chunks rendered while credit lasts."""
    for share in (0.05, 0.1, 0.3):
        now = [0.0]
        budget = Budget(share, cap_s=0.5, clock=lambda now=now: now[0])
        for _ in range(20000):
            now[0] += 0.010  # a training step
            budget.earn()
            while budget.available():
                now[0] += 0.035
                budget.spend(0.035)
        # long-run share within the granularity of one chunk over the 200 s simulated
        assert budget.share_used() == pytest.approx(share, abs=0.01)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="viewer.budget"):
            Budget(bad)


def test_viewer_config_checks_and_the_command_line_shorthand():
    assert expand_shorthand(["viewer=true", "viewer.port=9000", "trainer.steps=3"]) == [
        "viewer.enabled=true", "viewer.port=9000", "trainer.steps=3"]
    cfg = compose_config(expand_shorthand(["viewer=true", "viewer.port=9001"]))
    assert cfg.viewer.enabled and cfg.viewer.port == 9001 and cfg.viewer.host == "127.0.0.1"
    assert not compose_config([]).viewer.enabled
    for bad, key in (({"budget": 0.0}, "viewer.budget"), ({"image_format": "gif"}, "viewer.image_format"),
                     ({"max_res": 0}, "viewer.max_res")):
        with pytest.raises(ValueError, match=key):
            ViewerConfig(**bad)
    with pytest.raises(ValueError, match="prot"):
        parse_args(["run=x", "prot=1"])
    with pytest.raises(ValueError, match="run="):
        parse_args(["port=1"])
    assert parse_args(["run=outputs/a", "port=8123"]).port == 8123


def test_view_of_a_missing_run_is_one_line(tmp_path, capsys):
    from nerflite.view import main

    assert main([f"run={tmp_path / 'nothing'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run=") and "no such run folder" in err and "\n" not in err


def test_a_hook_that_fails_is_dropped_and_training_goes_on():
    calls = []

    class Broken:
        def after_step(self, step, model, scalars):
            raise RuntimeError("boom")

        def paused(self):
            return False

        def close(self):
            calls.append("closed")

    class Counting(Broken):
        def after_step(self, step, model, scalars):
            calls.append(step)

    hooks = StepHooks([Broken(), Counting()])
    with pytest.warns(UserWarning, match="boom"):
        hooks.after_step(1, None, {})
    hooks.after_step(2, None, {})
    assert calls == ["closed", 1, 2] and len(hooks.hooks) == 1
    assert not hooks.wait_while_paused(2, None)


# ------------------------------------------------------------------------------------------------
# Real clients


def test_client_gets_render_py_pixels_for_the_same_camera(tiny_cfg, served, tmp_path):
    run = train(tiny_cfg()).run_dir
    out = render(OmegaConf.structured(RenderConfig(run=str(run), path="orbit", frames=2, width=24,
                                                   out=str(tmp_path / "r"), video=False, device="cpu")))
    _, scene, _, _ = load_run(run, None, torch.device("cpu"))
    cams = path_cameras(scene, "orbit", 2, 1.0, 24)
    viewer, client = served(run, preview_res=8, still_s=1.0)

    client.send_camera(browser_camera_of(cams, 0))
    preview, refined = client.next_frame(), client.next_frame()
    assert preview.shape == (8, 8, 3)  # low resolution first, refined once the camera is still (1 s)
    assert client.formats[:2] == ["png", "png"]
    # PNG is lossless and the frame's chunks are render.py's, so every pixel is equal
    np.testing.assert_array_equal(refined, iio.imread(out / "rgb" / "00000.png"))

    wait_for(lambda: "Output" in client.gui, what="the output dropdown")
    assert client.gui["Output"]["props"]["options"] == ["rgb", "depth", "accumulation"]
    client.set_value("Output", "depth")
    frame_like(client, iio.imread(out / "depth" / "00000.png"), "render.py's depth picture")

    # moving to another camera: again render.py's pixels
    client.set_value("Output", "rgb")
    client.send_camera(browser_camera_of(cams, 1))
    ref = iio.imread(out / "rgb" / "00001.png")
    frame_like(client, ref, "render.py's second frame")

    # clicking a training frustum moves the browser's camera onto that training view
    n_before = len(client.messages)
    client.send({"type": "SceneNodeClickMessage", "name": "/cameras/0003", "instance_index": None,
                 "ray_origin": [0.0, 0.0, 0.0], "ray_direction": [0.0, 0.0, 1.0], "screen_pos": [0.5, 0.5],
                 "modifier": None})
    wait_for(lambda: "SetCameraLookAtMessage" in client.messages[n_before:], what="the jump")
    train_c2w = scene.cameras[scene.split("train")].c2w[3].double().numpy()
    np.testing.assert_allclose(client.last["SetCameraPositionMessage"]["position"], train_c2w[:, 3], atol=1e-6)
    look = np.asarray(client.last["SetCameraLookAtMessage"]["look_at"]) - train_c2w[:, 3]
    np.testing.assert_allclose(look / np.linalg.norm(look), train_c2w[:, 2], atol=1e-6)  # looking along its axis
    assert viewer.frames_sent >= 5

    # a second browser gets its own camera's frames, the first keeps its own
    other = ViewerClient(f"ws://127.0.0.1:{viewer.server.get_port()}")
    try:
        other.send_camera(browser_camera_of(cams, 0))
        client.send_camera(browser_camera_of(cams, 1))
        frame_like(other, iio.imread(out / "rgb" / "00000.png"), "the second browser's frame")
        frame_like(client, ref, "the first browser's frame")
    finally:
        other.close()


def test_training_with_a_client_watching_gives_the_same_losses_and_pauses(tiny_cfg, monkeypatch):
    steps = ["trainer.steps=30", "trainer.eval_every=0", "trainer.ckpt_every=30"]
    plain = train(tiny_cfg(*steps)).losses

    with socket.socket() as s:  # a free port for the viewer to take
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    watched: dict = {}
    real_from_config = StepHooks.from_config

    def connected_first(cfg, scene, model, is_main):
        """The real hooks, then a client connects (in its own thread) before step 0 runs."""
        hooks = real_from_config(cfg, scene, model, is_main)
        viewer = hooks.hooks[0]
        watched["viewer"] = viewer
        idle, idle_steps = viewer.idle, []  # idle runs only while the loop waits in its pause

        def spy(step, model):
            idle_steps.append(step)
            return idle(step, model)

        viewer.idle, watched["idle_steps"] = spy, idle_steps
        thread = threading.Thread(target=watch, args=(viewer,), daemon=True)
        thread.start()
        watched["thread"] = thread
        wait_for(lambda: viewer.clients, what="the client to connect")
        return hooks

    def watch(viewer):
        client = ViewerClient(f"ws://127.0.0.1:{viewer.server.get_port()}")
        watched["client"] = client
        scene_cams = viewer.scene.cameras
        client.send_camera(browser_camera_of(scene_cams, 0))
        client.next_frame()
        wait_for(lambda: "Pause training" in client.gui, what="the pause button")
        client.click("Pause training")
        step = wait_for(lambda: watched["idle_steps"] and watched["idle_steps"][0], what="the pause")
        for i in range(3):  # the camera moves while training waits; frames still come
            client.send_camera(browser_camera_of(scene_cams, 1 + i))
            client.next_frame()
        watched["paused_steps"] = (step, viewer.step, set(watched["idle_steps"]))
        client.click("Pause training")  # the same button, now labelled Resume
        k = 0
        while not watched.get("done"):
            try:
                client.send_camera(browser_camera_of(scene_cams, k % len(scene_cams)))
            except ConnectionClosed:  # training ended and closed the viewer
                break
            k += 1
            time.sleep(0.02)

    monkeypatch.setattr(StepHooks, "from_config", staticmethod(connected_first))
    with_viewer = train(tiny_cfg(*steps, "viewer.enabled=true", f"viewer.port={port}", "viewer.budget=0.5",
                                 "viewer.image_format=png", "viewer.preview_res=8", "viewer.still_s=0"))
    watched["done"] = True
    watched["thread"].join(timeout=10)
    client = watched["client"]
    client.close()

    assert with_viewer.losses == plain  # bit for bit: viewing consumes no training randomness
    first, last, idled = watched["paused_steps"]
    assert first == last and idled == {first} and 0 < first < 30  # training did not move while paused
    assert client.frames.qsize() + 4 <= watched["viewer"].frames_sent
    assert watched["viewer"].frames_sent >= 5


def test_a_port_in_use_takes_the_next_free_one(tiny_scene, capsys, one_thread):
    from nerflite.engine.setup import build_model, build_scene

    cfg = compose_config([f"dataset.path={tiny_scene('blender')}", *TINY_RUN])
    scene = build_scene(cfg.dataset)
    model = build_model(cfg.model, scene)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        viewer = start_viewer(ViewerConfig(port=taken), scene, model, chunk=256, total_steps=None)
        try:
            port = viewer.server.get_port()
            out = capsys.readouterr().out
            assert port > taken
            assert f"viewer: port {taken} is in use, using {port}" in out
            assert f"viewer: http://localhost:{port}" in out
        finally:
            viewer.close()


def test_a_viewer_that_cannot_start_leaves_training_alone(tiny_cfg):
    plain = train(tiny_cfg("trainer.steps=4", "trainer.eval_every=0")).losses
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing can listen there
        result = train(tiny_cfg("trainer.steps=4", "trainer.eval_every=0", "viewer.enabled=true",
                                "viewer.host=192.0.2.1"))
    assert result.losses == plain and result.step == 4
    assert any(re.search(r"viewer: not started \(cannot listen on 192\.0\.2\.1", str(w.message)) for w in caught)


def test_neus_runs_show_normals_and_extract_a_mesh(tiny_scene, tmp_path, served, one_thread):
    cfg = compose_config([
        "dataset=neus", "model=neus", f"dataset.path={tiny_scene('neus')}", "dataset.downscale=1",
        f"output_root={tmp_path / 'outputs'}", *TINY_NEUS, *TINY_RUN, "trainer.steps=2", "trainer.eval_every=0",
    ])
    run = train(cfg).run_dir
    viewer, client = served(run, preview_res=8, max_res=8, mesh_res=32)
    _, scene, _, _ = load_run(run, None, torch.device("cpu"))
    client.send_camera(browser_camera_of(path_cameras(scene, "orbit", 1, 1.0, 16), 0))
    assert max(client.next_frame().shape[:2]) == 8  # the longest side is max_res
    wait_for(lambda: "Extract mesh" in client.gui, what="the mesh button")
    assert "normals" in client.gui["Output"]["props"]["options"]
    client.set_value("Output", "normals")
    client.next_frame()
    client.click("Extract mesh")
    wait_for(lambda: "mesh at 32^3" in viewer.status, timeout_s=60, what="the mesh")
    # NeuS starts from a sphere (geometric initialisation), so after 2 steps there is a surface
    assert "vertices" in viewer.status, viewer.status
    wait_for(lambda: "GlbMessage" in client.messages, what="the mesh message")


def test_train_py_viewer_true_prints_the_url_and_python_m_view_reports_errors(tiny_scene, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.app.helpers import TINY_NERF

    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "train.py", "viewer=true", "viewer.port=0", f"dataset.path={tiny_scene('blender')}",
           f"output_root={tmp_path / 'outputs'}", *TINY_NERF, *TINY_RUN, "trainer.steps=2", "trainer.eval_every=0"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^viewer: http://localhost:\d+$", done.stdout, re.M), done.stdout
    assert "websockets" not in done.stdout + done.stderr
    view = subprocess.run([sys.executable, "-m", "nerflite.view", f"run={tmp_path / 'none'}"], cwd=repo,
                          capture_output=True, text=True, timeout=120, env=env)
    assert view.returncode == 1 and view.stderr.strip().startswith("error: run=")
