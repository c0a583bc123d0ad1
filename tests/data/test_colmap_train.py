"""Training and rendering on a COLMAP folder (several cameras, lens distortion) through the real
entry points and configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from nerflite.engine.render import render
from nerflite.engine.setup import build_datamanager, build_model, build_scene
from tests.app.helpers import TINY_NERF, TINY_NEUS, TINY_RUN, compose_config
from tests.data.colmap_builders import make_colmap

REPO = Path(__file__).resolve().parents[2]


def test_train_py_and_render_on_a_distorted_colmap_folder(tmp_path):
    data = make_colmap(tmp_path / "data", views=8, size=32, lenses=("opencv", "fisheye")).root
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "train.py", "dataset=colmap", f"dataset.path={data}", f"output_root={out}",
         *TINY_NERF, *TINY_RUN, "trainer.steps=4", "trainer.eval_every=4", "trainer.ckpt_every=4",
         "trainer.cpu_threads=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = next(p.parent for p in out.rglob("config.yaml") if (p.parent / "checkpoints").is_dir())
    assert run.parent.name == "colmap_nerf"
    frames = render(compose_config([f"run={run}", "path=test", f"out={tmp_path / 'r'}", "device=cpu"], name="render"))
    pngs = sorted((frames / "rgb").glob("*.png"))
    assert len(pngs) == 1 and iio.imread(pngs[0]).shape[:2] == (24, 32)  # view 0, the only held-out one
    metrics = json.loads((frames / "metrics.json").read_text())
    assert np.isfinite(metrics["mean"]["psnr"])


def test_neus_step_on_a_masked_colmap_folder(tmp_path):
    truth = make_colmap(tmp_path / "data", views=8, size=24, lenses=("opencv",))
    (truth.root / "masks").mkdir()
    for name in truth.names:
        iio.imwrite(truth.root / "masks" / (name + ".png"), np.full((18, 24), 255, np.uint8))
    cfg = compose_config(["dataset=colmap", "model=neus", f"dataset.path={truth.root}", "datamanager.workers=0",
                          "datamanager.rays_per_batch=32", *TINY_NEUS])
    assert cfg.name == "colmap_neus"
    scene = build_scene(cfg.dataset)
    net = build_model(cfg.model, scene)
    dm = build_datamanager(cfg, scene, torch.device("cpu"))
    try:
        rays, batch = dm.next_train(0)
        assert "mask" in batch
        net.set_step(0)
        loss = sum(net.losses(net(rays), batch).values())
        loss.backward()
        assert torch.isfinite(loss)
    finally:
        dm.close()


def test_the_fast_models_train_a_step_on_a_colmap_capture_with_their_presets(tmp_path):
    """conf/preset/colmap_instant.yaml (unbounded: contracted 360 scene, whole rays in a sample
    budget) and colmap_neus_instant.yaml: a real capture with the fast models composes and learns."""
    from tests.app.helpers import TINY_INSTANT, TINY_NEUS_INSTANT

    data = make_colmap(tmp_path / "data", views=8, size=24, lenses=("opencv",)).root
    for model, tiny in (("instant", TINY_INSTANT[1:]), ("neus_instant", TINY_NEUS_INSTANT)):
        cfg = compose_config(["dataset=colmap", f"model={model}", f"dataset.path={data}", "datamanager.workers=0",
                              "datamanager.rays_per_batch=32", *tiny])
        assert cfg.name == f"colmap_{model}"
        if model == "instant":
            assert cfg.model.scene_mode == "unbounded" and cfg.model.sample_budget == 262144
        scene = build_scene(cfg.dataset)
        net = build_model(cfg.model, scene)
        dm = build_datamanager(cfg, scene, torch.device("cpu"))
        try:
            rays, batch = dm.next_train(0)
            net.set_step(0)
            loss = sum(net.losses(net(rays), batch).values())
            loss.backward()
            assert torch.isfinite(loss)
        finally:
            dm.close()
