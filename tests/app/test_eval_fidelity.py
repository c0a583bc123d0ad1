"""Reported numbers: render.py and the trainer score a checkpoint alike (step-derived state,
test split, masked metrics), and path=test honours downscale."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nerflite.data.images import read_image
from nerflite.engine import checkpoint as ckpt
from nerflite.engine.evaluate import image_metrics, render_image
from nerflite.engine.render import camera_rays, load_run, render
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_NEUS, TINY_RUN, compose_config

REPO = Path(__file__).resolve().parents[2]


def _neus_cfg(tiny_scene, tmp_path, *extra):
    return compose_config(
        [
            "model=neus",
            f"dataset.path={tiny_scene('neus')}",
            f"output_root={tmp_path}",
            *TINY_NEUS,
            *TINY_RUN,
            "model.init_radius=0.5",
            "trainer.mesh_at_eval=false",
            *extra,
        ]
    )


def test_load_state_restores_the_step_derived_state(tiny_scene, tmp_path, one_thread):
    """A checkpoint of step k puts NeuS's annealing where step k starts, as set_step(k) does."""
    cfg = _neus_cfg(tiny_scene, tmp_path, "trainer.steps=2", "trainer.eval_every=0", "model.anneal_end=4")
    run = train(cfg).run_dir
    _, _, model, path = load_run(run, None, torch.device("cpu"))
    assert ckpt.load_checkpoint(path)["step"] == 2
    assert model.step == 2 and model.cos_anneal_ratio == pytest.approx(0.5)


def test_neus_render_test_metrics_equal_the_trainers_eval(tiny_scene, tmp_path, one_thread):
    """render.py path=test on a checkpoint gives the trainer's own eval of that step (same views:
    the tiny scene's val and test splits are both view 0), and the trainer's metrics_test.json."""
    cfg = _neus_cfg(tiny_scene, tmp_path, "trainer.steps=2", "trainer.eval_every=0", "model.anneal_end=2")
    result = train(cfg)
    run = result.run_dir
    out = tmp_path / "r"
    render(compose_config([f"run={run}", "path=test", "video=false", f"out={out}", "device=cpu"], name="render"))
    rendered = json.loads((out / "metrics.json").read_text())
    trained = json.loads((run / "metrics_test.json").read_text())
    assert [v["view"] for v in rendered["views"]] == [0]
    assert set(rendered["mean"]) == {"psnr", "ssim", "psnr_masked", "ssim_masked"}  # the scene has masks
    assert set(result.eval) == set(rendered["mean"])  # the trainer's eval/ scalars are masked too
    for name, value in result.eval.items():
        assert rendered["mean"][name] == pytest.approx(value, abs=1e-4), name
    assert trained["step"] == 2 and Path(trained["checkpoint"]).name == ckpt.checkpoint_name(2)
    assert trained["views"] == rendered["views"]  # one function behind both files
    for name, value in trained["mean"].items():
        assert rendered["mean"][name] == pytest.approx(value, abs=1e-4), name
    assert result.test == pytest.approx(trained["mean"])


def test_render_test_path_honours_downscale(tiny_cfg, tmp_path):
    """path=test downscale=2: test views at half the training size against targets resized the
    same way (area filter, then alpha over the background), intrinsics halved."""
    run = train(tiny_cfg("trainer.steps=2", "trainer.eval_every=0")).run_dir
    out = tmp_path / "half"
    proc = subprocess.run(
        [sys.executable, "render.py", f"run={run}", "path=test", "downscale=2", "video=false",
         f"out={out}", "device=cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    frames = sorted((out / "rgb").glob("*.png"))
    assert len(frames) == len(metrics["views"]) > 0
    assert read_image(frames[0]).shape[:2] == (12, 12)  # the tiny scene is 24 px wide

    # the same numbers from first principles: halved intrinsics, an area-resized RGBA target
    _, scene, model, _ = load_run(run, None, torch.device("cpu"))
    view = metrics["views"][0]["view"]
    cams = scene.cameras[[view]].rescaled(12, 12)
    assert float(cams.fx[0]) == pytest.approx(float(scene.cameras.fx[view]) / 2)
    pred = render_image(model, camera_rays(scene, cams, 0), 12, 12, 512)["rgb"]
    rgba = torch.from_numpy(read_image(scene.image_paths[view], size=(12, 12))).float() / 255.0
    bg = torch.tensor(scene.background, dtype=torch.float32)
    target = rgba[..., :3] * rgba[..., 3:] + bg * (1.0 - rgba[..., 3:])
    expected = image_metrics(pred, target)
    assert metrics["views"][0]["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
    assert metrics["views"][0]["ssim"] == pytest.approx(expected["ssim"], abs=1e-5)
