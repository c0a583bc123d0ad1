"""The viewer on scenes that move: a Time slider and Play for dynamic scenes only, frames at the
slider's moment (render.py's pixels at time=T), Play stepping through time frame by frame, a
training frustum's moment on click, and the same during training (within the budget)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nerflite.engine.evaluate import render_image
from nerflite.engine.render import camera_rays, load_run
from nerflite.engine.setup import build_model, build_scene
from nerflite.viewer.client import ViewerClient
from nerflite.viewer.config import ViewerConfig
from nerflite.viewer.frames import browser_cameras, picture
from nerflite.viewer.launch import start_viewer
from tests.app.helpers import TINY_RUN, compose_config
from tests.app.test_viewer import browser_camera_of, frame_like, served, wait_for  # noqa: F401  (a fixture)


def _sent_moments(viewer) -> list[float]:
    """The moment of every frame ``viewer`` sends from now on (read off its rays), in order."""
    moments: list[float] = []
    send = viewer._send

    def spy(job, model):
        moments.append(float(job.rays.extras["time"][0, 0]))
        return send(job, model)

    viewer._send = spy
    return moments


def test_static_scenes_get_no_time_controls(tiny_scene, one_thread):
    cfg = compose_config([f"dataset.path={tiny_scene('blender')}", *TINY_RUN])
    scene = build_scene(cfg.dataset)
    viewer = start_viewer(ViewerConfig(port=0), scene, build_model(cfg.model, scene), chunk=256, total_steps=None)
    client = ViewerClient(f"ws://127.0.0.1:{viewer.server.get_port()}")
    try:
        wait_for(lambda: "Output" in client.gui, what="the output dropdown")  # made after Time and Play
        assert "Time" not in client.gui and "Play" not in client.gui and viewer.timeline is None
    finally:
        client.close()
        viewer.close()


def test_the_time_slider_shows_the_browser_camera_at_that_moment(dynamic_run, served, model_sees, one_thread):  # noqa: F811
    run, scene = dynamic_run("dnerf")
    viewer, client = served(run, preview_res=8, still_s=0.2)
    wait_for(lambda: "Time" in client.gui and "Play" in client.gui, what="the time controls")
    props = client.gui["Time"]["props"]
    assert (props["min"], props["max"], client.gui["Time"]["value"]) == (0.0, 1.0, 0.0)
    view = scene.splits["test"][0]
    moment = float(scene.times[view])
    cam = browser_camera_of(scene.cameras, view)  # the test view's camera, 24 x 24
    client.send_camera(cam)  # (viser counts a browser as connected from its first camera on)
    client.next_frame()
    moments = _sent_moments(viewer)
    client.set_value("Time", moment)
    wait_for(lambda: viewer.timeline.time == moment, what="the slider's moment")
    _, _, model, _ = load_run(run, None, torch.device("cpu"))
    rays = camera_rays(scene, browser_cameras(cam, 24, 24), 0, moment)
    frame_like(client, picture(render_image(model, rays, 24, 24, 512), "rgb"), "the frame at the slider's moment")
    assert moments and set(moments) == {moment} and moment in model_sees

    # a training frustum clicked: the camera and the slider jump to that view and its moment
    train = scene.split("train")
    client.send({"type": "SceneNodeClickMessage", "name": "/cameras/0003", "instance_index": None,
                 "ray_origin": [0.0, 0.0, 0.0], "ray_direction": [0.0, 0.0, 1.0], "screen_pos": [0.5, 0.5],
                 "modifier": None})
    jumped = float(scene.times[train[3]])
    wait_for(lambda: viewer.timeline.time == jumped, what="the jump to the view's moment")
    assert viewer.timeline.slider.value == pytest.approx(jumped)
    wait_for(lambda: moments.count(jumped) >= 2, what="the quick and the refined frame of that moment")


def test_play_steps_through_time_frame_by_frame(dynamic_run, served, model_sees, one_thread):  # noqa: F811
    run, scene = dynamic_run("dnerf")
    viewer, client = served(run, preview_res=8, max_res=8, still_s=0.0, play_frames=4)
    moments = _sent_moments(viewer)
    wait_for(lambda: "Play" in client.gui, what="the play checkbox")
    client.send_camera(browser_camera_of(scene.cameras, 0))
    wait_for(lambda: moments, what="a first frame")
    client.set_value("Play", True)
    wait_for(lambda: len(moments) >= 8, timeout_s=60, what="eight frames")
    # one frame per moment, each 1/4 after the last, from 1 back to 0
    start = moments.index(0.25) - 1
    played = moments[start : start + 7]
    assert played[0] == 0.0 and played == [0.0, 0.25, 0.5, 0.75, 1.0, 0.0, 0.25], moments
    assert {0.0, 0.25, 0.5, 0.75, 1.0} <= model_sees
    client.set_value("Play", False)
    wait_for(lambda: not viewer.timeline.playing, what="Play off")
    time.sleep(0.3)
    stopped = viewer.timeline.time
    time.sleep(0.5)
    assert viewer.timeline.time == stopped and viewer.timeline.slider.value == pytest.approx(stopped)


def test_the_slider_while_training_renders_within_the_budget(dynamic_run, model_sees, one_thread):
    """The training loop's hook (``after_step``) renders the moment of the slider, between steps."""
    run, scene = dynamic_run("dnerf")
    _, scene, model, _ = load_run(run, None, torch.device("cpu"))
    model.train()
    cfg = ViewerConfig(port=0, image_format="png", preview_res=8, still_s=0.0, budget=0.5)
    viewer = start_viewer(cfg, scene, model, chunk=512, total_steps=1000)
    client = ViewerClient(f"ws://127.0.0.1:{viewer.server.get_port()}")
    try:
        wait_for(lambda: "Time" in client.gui and "Pause training" in client.gui, what="the controls")
        cam = browser_camera_of(scene.cameras, 0)
        client.send_camera(cam)
        wait_for(lambda: viewer.clients, what="the browser")
        client.set_value("Time", 0.75)
        wait_for(lambda: viewer.timeline.time == 0.75, what="the slider's moment")
        model_sees.clear()
        step = 0
        while client.frames.qsize() < 2 and step < 5000:  # a preview, then the refined frame
            step += 1
            viewer.after_step(step, model, {"train/loss": 0.1})
            time.sleep(0.005)  # "training"
        assert client.frames.qsize() >= 2 and model_sees == {0.75}
        assert model.training  # put back in train mode after each chunk
        rays = camera_rays(scene, browser_cameras(cam, 24, 24), 0, 0.75)
        model.eval()
        ref = picture(render_image(model, rays, 24, 24, 512), "rgb")
        frames = [client.next_frame() for _ in range(client.frames.qsize())]
        np.testing.assert_array_equal(frames[-1], ref)
    finally:
        client.close()
        viewer.close()
