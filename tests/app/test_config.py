import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from nerflite.engine.setup import build_datamanager, build_model, build_scene
from tests.app.helpers import TINY_INSTANT, TINY_NERF, TINY_NEUS, TINY_NEUS_INSTANT, compose_config

REPO = Path(__file__).resolve().parents[2]
SCENE_FORMAT = {"synthetic": "blender", "blender": "blender", "llff": "llff", "neus": "neus"}


@pytest.mark.parametrize("model", ["nerf", "neus", "instant", "neus_instant"])
@pytest.mark.parametrize("dataset", ["synthetic", "blender", "llff", "neus"])
def test_every_dataset_and_model_composes_and_runs_a_step(dataset, model, tiny_scene, one_thread):
    sdf = model in ("neus", "neus_instant")
    fmt = "neus" if dataset == "synthetic" and sdf else SCENE_FORMAT[dataset]  # see conf/preset/
    path = tiny_scene(fmt)
    tiny = {"nerf": TINY_NERF, "neus": TINY_NEUS, "instant": TINY_INSTANT[1:], "neus_instant": TINY_NEUS_INSTANT}[model]
    cfg = compose_config(
        [
            f"dataset={dataset}",
            f"model={model}",
            f"dataset.path={path}",
            "dataset.downscale=1",
            "datamanager.workers=0",
            "datamanager.rays_per_batch=32",
            *tiny,
        ]
    )
    assert cfg.model.name == model and cfg.name == f"{dataset}_{model}"
    scene = build_scene(cfg.dataset)
    net = build_model(cfg.model, scene)
    dm = build_datamanager(cfg, scene, torch.device("cpu"))
    try:
        rays, batch = dm.next_train(0)
        net.set_step(0)
        losses = net.losses(net(rays), batch)
        loss = sum(losses.values())
        loss.backward()
        assert torch.isfinite(loss)
        if sdf and scene.has_masks:
            assert "mask" in losses
    finally:
        dm.close()


@pytest.mark.parametrize(
    "experiment, checks",
    [
        (
            "lego",
            {
                "model.n_samples": 64,
                "model.n_importance": 128,
                "datamanager.rays_per_batch": 1024,
                "trainer.lr": 5e-4,
                "trainer.lr_final": 5e-5,
                "trainer.decay_steps": 500000,
                "datamanager.precrop_steps": 500,
                "dataset.format": "blender",
                "trainer.steps": 200000,
            },
        ),
        (
            "fern",
            {
                "dataset.format": "llff",
                "dataset.downscale": 8,
                "dataset.llffhold": 8,
                "dataset.ndc": True,
                "model.raw_noise_std": 1.0,
                "trainer.steps": 200000,
            },
        ),
        (
            "dtu",
            {
                "model.name": "neus",
                "dataset.masks": True,
                "trainer.steps": 300000,
                "datamanager.rays_per_batch": 512,
                "model.warm_up_end": 5000,
                "model.anneal_end": 0,
                "dataset.holdout": 0,
                "model.lr": 5e-4,
                "model.n_outside": 0,
            },
        ),
        (
            "dtu_fast",
            {
                "model.name": "neus_instant",
                "dataset.format": "neus",
                "dataset.masks": True,
                "trainer.steps": 20000,
                "model.end_iter": 20000,
                "model.n_levels": 16,
                "model.log2_table_size": 19,
                "model.lr": 1e-2,
                "datamanager.rays_per_batch": 2048,
            },
        ),
    ],
)
def test_experiments_set_the_published_recipes(experiment, checks):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.name == experiment
    for key, value in checks.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    build_model(cfg.model, _FakeScene())  # the paper-sized model instantiates


class _FakeScene:
    background = (1.0, 1.0, 1.0)
    sphere_center = torch.zeros(3)
    sphere_radius = 1.0
    ndc = False


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["trainer.steps=many"])
    assert isinstance(err.value.__cause__, ValidationError)


def test_misspelt_key_fails_fast_with_hydras_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train.py", "trainer.stepz=10", f"output_root={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Could not override 'trainer.stepz'" in proc.stderr
    assert "Key 'stepz' not in 'TrainerConfig'" in proc.stderr
    assert not any(tmp_path.iterdir())  # failed before any run folder was made
