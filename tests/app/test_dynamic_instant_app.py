"""model=dynamic_instant through the application: train.py on a generated D-NeRF scene trains,
checkpoints (grid, deformation), resumes exactly and renders the test views at their moments;
experiment=dnerf_fast composes and builds at full size."""

import json
import shutil

import pytest
import torch

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.optim import make_optimizer
from nerflite.engine.render import render
from nerflite.engine.setup import build_model
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_INSTANT, TINY_RUN, compose_config

TINY_DYNAMIC = ["model=dynamic_instant", *TINY_INSTANT[1:], "model.deform_depth=2", "model.deform_width=16",
                "model.deform_pos_freqs=3", "model.deform_time_freqs=3"]  # fmt: skip


@pytest.fixture
def dynamic_cfg(tiny_scene, tmp_path, one_thread):
    def make(*extra: str):
        scene = tiny_scene("dnerf")
        paths = ["dataset=dnerf", f"dataset.path={scene}", "dataset.downscale=1", f"output_root={tmp_path / 'out'}"]
        return compose_config([*paths, *TINY_DYNAMIC, *TINY_RUN, *extra])

    return make


def test_dynamic_instant_trains_checkpoints_resumes_exactly_and_renders(dynamic_cfg, tmp_path):
    full = train(dynamic_cfg())
    assert full.step == 6 and all(torch.isfinite(torch.tensor(full.losses)))
    state = torch.load(ckpt.latest(full.run_dir), weights_only=True)["model"]
    assert {"grid.values", "grid.bitfield", "march_stats", "deformation.mlp.out.weight"} <= set(state)
    assert int(state["grid.n_updates"]) == 3 and state["deformation.mlp.out.weight"].abs().sum() > 0
    assert full.test and full.test["psnr"] > 5.0  # the test views rendered whole, each at its own moment
    # resuming from step 3 reproduces steps 3-5 bit for bit: grid, deformation, tables and RNG restored
    cut = tmp_path / "cut"
    shutil.copytree(full.run_dir, cut)
    for p in ckpt.list_checkpoints(cut / "checkpoints")[1:]:
        p.unlink()
    resumed = train(dynamic_cfg(f"resume={cut}"))
    assert resumed.losses == full.losses[3:]
    again = torch.load(ckpt.latest(cut), weights_only=True)["model"]
    for key in ("grid.values", "field.encoding.table", "deformation.mlp.out.weight"):
        assert torch.equal(again[key], state[key]), key

    out = render(compose_config([f"run={full.run_dir}", "path=test", f"out={tmp_path / 'r'}"], name="render"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["views"]) == 2 and metrics["mean"]["psnr"] == pytest.approx(full.test["psnr"], abs=1e-4)


class _Scene:
    background, sphere_center, sphere_radius, ndc, far = (1.0, 1.0, 1.0), torch.zeros(3), 1.97, False, 6.0
    times = torch.linspace(0.0, 1.0, 4)

    def split(self, name):
        return [0, 1, 2, 3]


def test_dnerf_fast_composes_and_builds_at_full_size():
    cfg = compose_config(["experiment=dnerf_fast"])
    assert cfg.name == "dnerf_fast" and cfg.model.name == "dynamic_instant" and cfg.dataset.format == "dnerf"
    assert cfg.dataset.downscale == 2 and list(cfg.dataset.background) == [1.0, 1.0, 1.0]
    assert (cfg.model.sample_budget, cfg.datamanager.rays_per_batch) == (1 << 18, 16384)
    model = build_model(cfg.model, _Scene())
    assert model.mode == "bounded" and float(model.box_hi[0]) == 1.5 and model.grid.resolution == 128
    assert model.field.encoding.resolutions[-1] == 2048
    opt = make_optimizer(model, cfg.trainer)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert opt.defaults["eps"] == 1e-15 and tuple(opt.defaults["betas"]) == (0.9, 0.99)


def test_the_default_dataset_is_the_generated_moving_scene():
    cfg = compose_config(["model=dynamic_instant"])  # `python train.py model=dynamic_instant`
    assert cfg.name == "synthetic_dynamic_instant" and cfg.dataset.synthetic.format == "dnerf"
    assert cfg.dataset.path.startswith("data/synthetic/dnerf_") and cfg.model.deform_width == 32
