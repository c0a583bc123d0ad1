"""model=instant through the application: train, checkpoint (with the occupancy grid), resume, render."""

import functools
import json
import shutil
from pathlib import Path

import pytest
import torch

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import trainer as trainer_mod
from nerflite.engine.optim import make_optimizer
from nerflite.engine.render import render
from nerflite.engine.trainer import TrainingDiverged, train
from tests.app.helpers import TINY_INSTANT, TINY_RUN, compose_config


@pytest.fixture
def instant_cfg(tiny_scene, tmp_path, one_thread):
    def make(*extra: str):
        scene = tiny_scene("blender")
        paths = [f"dataset.path={scene}", f"output_root={tmp_path / 'out'}"]
        return compose_config([*paths, *TINY_INSTANT, *TINY_RUN, *extra])

    return make


@pytest.mark.parametrize("budget", [0, 600])  # exact packing; whole rays in 600 slots, the ray count adapting
def test_instant_trains_checkpoints_the_grid_resumes_exactly_and_renders(instant_cfg, tmp_path, budget):
    instant_cfg = functools.partial(instant_cfg, f"model.sample_budget={budget}")
    full = train(instant_cfg())
    assert full.step == 6 and all(torch.isfinite(torch.tensor(full.losses)))
    state = torch.load(ckpt.latest(full.run_dir), weights_only=True)["model"]
    assert {"grid.values", "grid.bitfield", "grid.n_updates"} <= set(state)
    assert int(state["grid.n_updates"]) == 3  # updates at steps 0, 2, 4
    assert state["grid.values"].abs().sum() > 0
    # resuming from step 3 reproduces steps 3-5 bit for bit: grid, tables and RNG all restored
    cut = tmp_path / "cut"
    shutil.copytree(full.run_dir, cut)
    for p in ckpt.list_checkpoints(cut / "checkpoints")[1:]:
        p.unlink()
    resumed = train(instant_cfg(f"resume={cut}"))
    assert resumed.losses == full.losses[3:]
    again = torch.load(ckpt.latest(cut), weights_only=True)["model"]
    assert torch.equal(again["grid.values"], state["grid.values"])
    assert torch.equal(again["field.encoding.table"], state["field.encoding.table"])
    assert torch.equal(again["march_stats"], state["march_stats"])  # the same rays marched after the resume

    out = render(compose_config([f"run={full.run_dir}", "path=test", f"out={tmp_path / 'r'}"], name="render"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["views"] and metrics["mean"]["psnr"] > 5.0


def test_a_non_finite_loss_between_host_checks_still_stops_before_the_next_checkpoint(instant_cfg, monkeypatch):
    """The loss is read back only every log_every steps; a NaN at step 4 must still stop the run
    before the checkpoint of step 6 and name step 4."""
    real = trainer_mod.build_model

    def poisoned(*args, **kwargs):
        model = real(*args, **kwargs)
        losses = model.losses

        def bad_losses(outputs, batch):
            out = losses(outputs, batch)
            if model.step == 4:
                out["rgb"] = out["rgb"] * float("nan")
            return out

        model.losses = bad_losses
        return model

    monkeypatch.setattr(trainer_mod, "build_model", poisoned)
    cfg = instant_cfg("trainer.log_every=100", "trainer.eval_every=0")
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 4 \(rgb=nan\).*step_000000003\.pt"):
        train(cfg)
    run = next(Path(cfg.output_root).glob("*/*"))
    assert ckpt.latest(run).name == ckpt.checkpoint_name(3)


class _Scene:
    def __init__(self, ndc: bool):
        self.background, self.sphere_center, self.sphere_radius = (1.0, 1.0, 1.0), torch.zeros(3), 1.97
        self.ndc, self.far = ndc, 1.0 if ndc else 6.0


@pytest.mark.parametrize("experiment, box, mode", [("lego_fast", 1.5, "bounded"), ("fern_fast", 1.5, "ndc")])
def test_fast_experiments_compose_and_build_at_full_size(experiment, box, mode):
    from nerflite.engine.setup import build_model

    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.name == experiment and cfg.model.name == "instant" and cfg.trainer.adam_eps == 1e-15
    model = build_model(cfg.model, _Scene(ndc=mode == "ndc"))
    assert model.mode == mode and float(model.box_hi[0]) == box
    assert model.field.encoding.resolutions[-1] == 2048 and model.grid.resolution == 128
    groups = make_optimizer(model, cfg.trainer)
    assert sum(len(g["params"]) for g in groups.param_groups) == len(list(model.parameters()))
    assert groups.defaults["eps"] == 1e-15
