"""The demo trains, renders an orbit video and the test views, and says where everything is."""

import re
from pathlib import Path

import pytest

import nerflite.demo as demo
from tests.app.helpers import TINY_INSTANT, TINY_NERF


@pytest.mark.parametrize("model", ["instant", "nerf"])
def test_demo_trains_renders_and_reports(model, tiny_scene, tmp_path, capsys, one_thread):
    overrides = [
        f"dataset.path={tiny_scene('blender')}",
        f"output_root={tmp_path}",
        *(TINY_INSTANT[1:] if model == "instant" else TINY_NERF),
        "datamanager.workers=0",
        "trainer.progress=false",
        "trainer.eval_every=0",
    ]
    assert demo.main(["--model", model, "--steps", "3", "--frames", "2", *overrides]) == 0
    out = capsys.readouterr().out
    run = Path(re.search(r"run folder:\s+(\S+)", out).group(1))
    video = Path(re.search(r"orbit video:\s+(\S+)", out).group(1))
    assert run.parent == tmp_path / "demo" and (run / "config.yaml").is_file()
    assert video.is_file() and video.stat().st_size > 0 and video.is_relative_to(run)
    assert f"tensorboard --logdir {run.parent}" in out
    assert re.search(r"PSNR \d+\.\d+ dB", out)


def test_dynamic_demo_plays_the_motion_while_the_camera_orbits(tiny_scene, tmp_path, capsys, one_thread):
    from tests.app.test_dynamic_app import TINY

    overrides = [f"dataset.path={tiny_scene('dnerf')}", f"output_root={tmp_path}", *TINY["dynamic_instant"],
                 "datamanager.workers=0", "trainer.progress=false", "trainer.eval_every=0"]  # fmt: skip
    assert demo.main(["--dynamic", "--steps", "3", "--frames", "3", *overrides]) == 0
    out = capsys.readouterr().out
    assert "3 steps of dynamic_instant on the moving synthetic scene" in out
    run = Path(re.search(r"run folder:\s+(\S+)", out).group(1))
    video = Path(re.search(r"orbit video:\s+(\S+)", out).group(1))
    assert run.parent == tmp_path / "demo_dynamic" and video.is_file() and video.stat().st_size > 0
    assert video.parent.name.startswith("orbit_play")  # spin and play: time runs while the camera orbits
    assert re.search(r"PSNR \d+\.\d+ dB", out) and "dataset.synthetic.format=dnerf" in out
