"""The experiment recipes on the real datasets, shrunk to a few steps (slow: ../shared/data)."""

import pytest

from nerflite.engine.render import render
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_NERF, TINY_NEUS, TINY_RUN, compose_config

CASES = {
    "lego": ("lego", ["dataset.downscale=8", *TINY_NERF]),
    "fern": ("fern", [*TINY_NERF]),  # images_8 already
    "dtu": ("dtu_scan65", ["dataset.downscale=8", *TINY_NEUS]),
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(CASES))
def test_experiment_trains_and_renders_on_real_data(experiment, shared_data, tmp_path, one_thread):
    folder, shrink = CASES[experiment]
    cfg = compose_config(
        [
            f"experiment={experiment}",
            f"dataset.path={shared_data(folder)}",
            f"output_root={tmp_path}",
            *shrink,
            *TINY_RUN,
            "trainer.steps=3",
            "trainer.final_eval_images=1",
            "datamanager.precrop_steps=0",
        ]
    )
    result = train(cfg)
    assert result.step == 3 and result.run_dir.parent.name == experiment
    assert 0.0 < result.eval["ssim"] <= 1.0
    out = render(
        compose_config(
            [f"run={result.run_dir}", "frames=2", "downscale=4", "video=false", f"out={tmp_path / 'r'}"], name="render"
        )
    )
    assert len(list((out / "rgb").glob("*.png"))) == 2
