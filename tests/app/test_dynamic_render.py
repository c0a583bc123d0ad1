"""render.py on runs whose scene moves: every frame's rays carry a moment (and appearance id), in
each mode (play, bullet time, the views' own moments), renders at a view's own moment equal the
trainer's eval of that view, and the time keys fail in one line where they mean nothing."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerflite.engine import evaluate
from nerflite.engine import render as render_module
from nerflite.engine.evaluate import evaluate_views, render_image
from nerflite.engine.logging import to_uint8
from nerflite.engine.render import camera_rays, load_run, render, train_cameras
from nerflite.engine.setup import build_datamanager
from nerflite.engine.trainer import train
from tests.app.helpers import compose_config
from tests.app.test_errors import error_line, run_cli


def _render(run, tmp_path, *keys: str):
    out = tmp_path / "r"
    return render(compose_config([f"run={run}", *keys, "video=false", f"out={out}", "device=cpu"], name="render"))


@pytest.fixture
def frames_seen(monkeypatch):
    """The extras of the rays of every frame render.py renders (the path frames and the test views):
    a list of {key: [n, 1] tensor}, in order."""
    seen = []
    real = render_image

    def spy(model, rays, h, w, chunk):
        seen.append({k: v.clone() for k, v in rays.extras.items()})
        return real(model, rays, h, w, chunk)

    monkeypatch.setattr(render_module, "render_image", spy)
    monkeypatch.setattr(evaluate, "render_image", spy)
    return seen


def _one_moment(frame: dict, key: str = "time"):
    values = frame[key]
    assert values.shape[1] == 1 and bool((values == values[0]).all())  # one moment per frame
    return values[0, 0].item()


def test_render_test_path_equals_the_trainers_metrics(dynamic_run, tmp_path, frames_seen, one_thread):
    """path=test on a dynamic run: each test view at its own moment, the metrics of the trainer's
    metrics_test.json."""
    run, scene = dynamic_run("dnerf")
    frames_seen.clear()  # (the spies saw the trainer's own evals if the run was trained just now)
    out = _render(run, tmp_path, "path=test")
    rendered = json.loads((out / "metrics.json").read_text())
    trained = json.loads((run / "metrics_test.json").read_text())
    test = scene.splits["test"]
    assert [v["view"] for v in rendered["views"]] == test == [v["view"] for v in trained["views"]]
    for mine, theirs in zip(rendered["views"], trained["views"]):
        for name in ("psnr", "ssim"):
            assert mine[name] == pytest.approx(theirs[name], abs=1e-4), name
    assert rendered["mean"]["psnr"] == pytest.approx(trained["mean"]["psnr"], abs=1e-4)
    assert [_one_moment(f) for f in frames_seen] == pytest.approx(scene.times[test].tolist())
    assert all("appearance_id" not in f for f in frames_seen)  # D-NeRF files have none


def test_a_render_at_a_views_moment_equals_the_eval_of_that_view(dynamic_run, tmp_path, one_thread):
    """render.py's rays at a fixed time T on a dataset camera equal the trainer's eval image of that
    view when T is the view's moment, and differ at another moment; path=train replays the training
    views in time order, each as the eval renders it, and time=T freezes them all at T."""
    run, _ = dynamic_run("dnerf")
    run_cfg, scene, model, _ = load_run(run, None, torch.device("cpu"))
    dm = build_datamanager(run_cfg, scene, torch.device("cpu"))
    evals = {}
    try:
        train_views = scene.split("train")
        evaluate_views(model, dm, [*scene.splits["test"], *train_views], 512,
                       on_view=lambda k, view, out, batch: evals.__setitem__(view, out["rgb"]))
    finally:
        dm.close()
    for view in scene.splits["test"]:
        cams, t = scene.cameras[[view]], float(scene.times[view])
        at_t = render_image(model, camera_rays(scene, cams, 0, time=t), 24, 24, 512)["rgb"]
        torch.testing.assert_close(at_t, evals[view], rtol=0, atol=1e-6)
        other = render_image(model, camera_rays(scene, cams, 0, time=1.0 - t), 24, 24, 512)["rgb"]
        assert (other - evals[view]).abs().max() > 1e-5  # the time reaches the model

    out = _render(run, tmp_path, "path=train")
    _, views = train_cameras(scene, 1.0, 0)
    assert views.tolist() == sorted(train_views, key=lambda v: float(scene.times[v]))  # time order
    frames = sorted((out / "rgb").glob("*.png"))
    assert len(frames) == len(train_views)
    for k, view in enumerate(views.tolist()):
        np.testing.assert_array_equal(iio.imread(frames[k]), to_uint8(evals[view]))

    k = 3
    moment = repr(float(scene.times[views[k]]))  # the float32 moment, exactly
    frozen = render(compose_config([f"run={run}", "path=train", f"time={moment}", "video=false",
                                    f"out={tmp_path / 'f'}", "device=cpu"], name="render"))
    np.testing.assert_array_equal(iio.imread(frozen / "rgb" / f"{k:05d}.png"), iio.imread(frames[k]))


@pytest.mark.parametrize(
    "keys, expected, folder",
    [
        (["path=orbit", "frames=3"], [0.0, 0.5, 1.0], "orbit_play"),  # spin and play, the default
        (["path=orbit", "frames=3", "time=play"], [0.0, 0.5, 1.0], "orbit_play"),
        (["path=orbit", "frames=3", "time=0.25"], [0.25] * 3, "orbit_t0.25"),  # bullet time
        (["path=train", "time=play"], [k / 7 for k in range(8)], "train_play"),
        (["path=train"], "own", "train"),  # the capture replayed
    ],
)
def test_time_reaches_the_model_in_each_mode(keys, expected, folder, dynamic_run, tmp_path, frames_seen,
                                             model_sees, one_thread):
    run, scene = dynamic_run("dnerf")
    frames_seen.clear()
    model_sees.clear()
    out = render(compose_config([f"run={run}", *keys, "video=false", "device=cpu"], name="render"))
    assert out.name == f"{folder}_step_000000003" and out.parent == run / "renders"
    if expected == "own":
        expected = sorted(scene.times[scene.split("train")].tolist())
    moments = [_one_moment(f) for f in frames_seen]
    assert moments == pytest.approx(expected, abs=1e-7)
    assert model_sees == {*moments}  # every frame's moment reached the model's forward, chunk by chunk


def test_appearance_ids_on_renders(dynamic_run, tmp_path, frames_seen, one_thread):
    """A scene with appearance ids (Nerfies): camera paths carry none unless appearance=<id> is given
    (the models then use their default, code 0); the dataset's views carry their own."""
    run, scene = dynamic_run("nerfies")
    frames_seen.clear()
    _render(run, tmp_path, "path=orbit", "frames=2")
    assert [sorted(f) for f in frames_seen] == [["time"], ["time"]]
    frames_seen.clear()
    _render(run, tmp_path, "path=orbit", "frames=2", "appearance=5", "time=0.5")
    assert [(_one_moment(f), _one_moment(f, "appearance_id")) for f in frames_seen] == [(0.5, 5), (0.5, 5)]
    frames_seen.clear()
    _render(run, tmp_path, "path=train")  # lens distortion and all: the capture's own cameras
    _, views = train_cameras(scene, 1.0, 0)
    assert [_one_moment(f, "appearance_id") for f in frames_seen] == scene.appearance_ids[views].tolist()
    frames_seen.clear()
    _render(run, tmp_path, "path=test")
    test = scene.splits["test"]
    assert [_one_moment(f, "appearance_id") for f in frames_seen] == scene.appearance_ids[test].tolist()


def test_time_keys_that_mean_nothing_are_one_line(dynamic_run, tiny_cfg, tmp_path, frames_seen):
    run, _ = dynamic_run("dnerf")
    proc = run_cli("render.py", f"run={run}", "time=1.5")
    assert error_line(proc) == 'error: time must be in [0, 1] or "play", got 1.5'

    def fails(run_dir, *keys):
        with pytest.raises(ValueError) as err:
            _render(run_dir, tmp_path, *keys)
        return str(err.value)

    assert fails(run, "time=abc") == 'time must be in [0, 1] or "play", got abc'
    assert fails(run, "time=-0.1") == 'time must be in [0, 1] or "play", got -0.1'
    assert fails(run, "time=nan") == 'time must be in [0, 1] or "play", got nan'
    assert fails(run, "path=test", "time=0.5") == (
        "time=0.5: path=test renders each test view at its own moment and appearance, as the trainer's eval "
        "does; leave time unset")
    assert fails(run, "appearance=1") == (
        "appearance=1: the run's scene has no appearance ids; leave appearance unset")
    static = train(tiny_cfg("trainer.steps=1", "trainer.eval_every=0")).run_dir
    assert fails(static, "time=0.5") == "time=0.5: the run's scene is static (it has no time); leave time unset"
    assert fails(static, "time=play") == "time=play: the run's scene is static (it has no time); leave time unset"
    assert fails(static, "appearance=0") == (
        "appearance=0: the run's scene is static (it has no time); leave appearance unset")

    # nothing changes for a static run: no extras on its rays, the folders named as before
    frames_seen.clear()
    _render(static, tmp_path, "path=orbit", "frames=2")
    out = render(compose_config([f"run={static}", "path=train", "video=false", "device=cpu"], name="render"))
    assert out.name == "train_step_000000001" and len(list((out / "rgb").glob("*.png"))) == 8
    assert len(frames_seen) == 10 and not any(frames_seen)
