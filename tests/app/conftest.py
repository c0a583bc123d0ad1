"""Fixtures of the application tests: tiny generated scenes and the real config, shrunk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.app.helpers import TINY_NERF, TINY_RUN, compose_config


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """format -> folder of a tiny generated scene (8 views of 24x24 pixels), made once per session."""
    made: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in made:
            from nerflite.data.synthetic import generate

            out = tmp_path_factory.mktemp("scenes") / fmt
            generate(fmt, out, views=8, size=24, seed=0)
            made[fmt] = out
        return made[fmt]

    return get


@pytest.fixture
def tiny_cfg(tiny_scene, tmp_path, one_thread):
    """The default config (synthetic scene, NeRF) shrunk to a few seconds, writing under tmp_path."""

    def make(*extra: str):
        scene = tiny_scene("blender")
        return compose_config(
            [f"dataset.path={scene}", f"output_root={tmp_path / 'outputs'}", *TINY_NERF, *TINY_RUN, *extra]
        )

    return make


@pytest.fixture(scope="session")
def dynamic_run(tiny_scene, tmp_path_factory):
    """format (dnerf | nerfies) -> (run folder, scene) of a finished tiny D-NeRF run on a generated
    moving scene (3 steps, a test split scored at the end), trained once per session."""
    runs: dict = {}

    def get(fmt: str = "dnerf"):
        if fmt not in runs:
            from nerflite.engine.setup import build_scene
            from nerflite.engine.trainer import train
            from tests.app.test_dynamic_app import TINY

            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                cfg = compose_config([f"dataset={fmt}", f"dataset.path={tiny_scene(fmt)}", "dataset.downscale=1",
                                      "model=dnerf", f"output_root={tmp_path_factory.mktemp('dynamic')}",
                                      *TINY["dnerf"], *TINY_RUN, "trainer.steps=3"])
                runs[fmt] = (train(cfg).run_dir, build_scene(cfg.dataset))
            finally:
                torch.set_num_threads(before)
        return runs[fmt]

    return get


@pytest.fixture
def model_sees(monkeypatch):
    """Every moment D-NeRF models' forward is called with, from any thread (a set; the rays of a
    frame reach it chunk by chunk)."""
    from nerflite.models.dnerf import DNeRFModel

    seen: set = set()
    real = DNeRFModel.forward

    def spy(self, ray_bundle):
        seen.update(ray_bundle.extras["time"].flatten().tolist())
        return real(self, ray_bundle)

    monkeypatch.setattr(DNeRFModel, "forward", spy)
    return seen
