import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from plyfile import PlyData

from nerflite.engine.render import render
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_NERF, TINY_NEUS, TINY_RUN, compose_config

REPO = Path(__file__).resolve().parents[2]


def test_render_py_writes_frames_video_and_metrics(tiny_cfg, tmp_path):
    run = train(tiny_cfg("trainer.steps=3", "trainer.final_eval_images=1")).run_dir
    out = tmp_path / "test"
    proc = subprocess.run(
        [sys.executable, "render.py", f"run={run}", "path=test", "fps=10", f"out={out}", "device=cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    pngs = sorted((out / "rgb").glob("*.png"))
    assert len(pngs) == len(list((out / "depth").glob("*.png"))) > 0
    assert iio.imread(out / "rgb.mp4", index=None).shape[0] == len(pngs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [v["view"] for v in metrics["views"]] == sorted(v["view"] for v in metrics["views"])
    assert len(metrics["views"]) == len(pngs)
    assert {"psnr", "ssim"} <= set(metrics["mean"]) and {"psnr", "ssim"} <= set(metrics["views"][0])

    # An orbit at half resolution, in-process (same code path as the command line).
    orbit = render(
        compose_config(
            [f"run={run}", "path=orbit", "frames=3", "downscale=2", f"out={tmp_path / 'o'}", "device=cpu"],
            name="render",
        )
    )
    frames = sorted((orbit / "rgb").glob("*.png"))
    assert len(frames) == 3 and iio.imread(frames[0]).shape[:2] == (12, 12)  # 24 px scene at downscale 2
    assert iio.imread(orbit / "depth.mp4", index=None).shape[0] == 3


def test_neus_trains_and_render_writes_a_mesh(tiny_scene, tmp_path, one_thread):
    cfg = compose_config(
        [
            "model=neus",
            f"dataset.path={tiny_scene('neus')}",
            f"output_root={tmp_path}",
            *TINY_NEUS,
            *TINY_RUN,
            "trainer.steps=2",
            "trainer.eval_every=2",
            "model.init_radius=0.5",
        ]
    )
    result = train(cfg)
    assert result.step == 2 and np.isfinite(result.losses).all()
    out = render(
        compose_config(
            [
                f"run={result.run_dir}",
                "path=orbit",
                "frames=2",
                "mesh=true",
                "mesh_res=24",
                "video=false",
                f"out={tmp_path / 'r'}",
            ],
            name="render",
        )
    )
    assert len(list((out / "normals").glob("*.png"))) == 2
    ply = PlyData.read(str(out / "mesh.ply"))
    assert ply["vertex"].count > 100 and ply["face"].count > 100  # the initial sphere at least


def test_forward_facing_run_renders_a_spiral_in_ndc(tiny_scene, tmp_path, one_thread):
    cfg = compose_config(
        [
            "dataset=llff",
            f"dataset.path={tiny_scene('llff')}",
            "dataset.downscale=1",
            f"output_root={tmp_path}",
            *TINY_NERF,
            *TINY_RUN,
            "trainer.steps=2",
        ]
    )
    run = train(cfg).run_dir
    out = render(compose_config([f"run={run}", "frames=3", "video=false", f"out={tmp_path / 'r'}"], name="render"))
    frames = sorted((out / "rgb").glob("*.png"))
    assert len(frames) == 3  # path=auto chose the spiral (NDC scene)
    first = iio.imread(frames[0])
    assert first.shape[2] == 3 and first.std() > 0
