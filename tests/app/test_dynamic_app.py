"""The deformable models inside the application: configs and presets compose, the builders read the
scene's training times / appearance ids, a static dataset is refused in one line, and a few real
training steps run on DataManager batches (times attached by a ray processor, as a dynamic
dataset's rays carry them)."""

from __future__ import annotations

import pytest
import torch

from nerflite.data.datamanager import DataManager, DataManagerConfig
from nerflite.engine.setup import build_model, build_scene
from tests.app.helpers import CONF, TINY_INSTANT, TINY_RUN, compose_config
from tests.app.test_errors import error_line, run_cli

TINY = {
    "dnerf": ["model.netdepth=2", "model.netwidth=16", "model.skips=[]", "model.multires=3", "model.multires_time=2",
              "model.multires_views=2", "model.n_samples=8", "model.n_importance=8", "model.chunk=512"],
    "hypernerf": ["model.netdepth=2", "model.netwidth=16", "model.skips=[]", "model.multires=3",
                  "model.multires_views=2", "model.warp_depth=2", "model.warp_width=16", "model.warp_skips=[]",
                  "model.sheet_depth=2", "model.sheet_width=16", "model.sheet_skips=[]", "model.n_samples=8",
                  "model.n_importance=8", "model.chunk=512"],
    "dynamic_instant": [*TINY_INSTANT[1:], "model.deform_depth=2", "model.deform_width=16",
                        "model.deform_pos_freqs=3", "model.deform_time_freqs=3"],
}  # fmt: skip


def _with_times(scene, appearance: bool = False):
    """The scene as a dynamic format will parse it: per-view times (and appearance ids) on the Scene."""
    n = len(scene)
    scene.times = torch.linspace(0.0, 1.0, n)
    if appearance:
        scene.appearance_ids = torch.arange(n, dtype=torch.int64) % 3
    return scene


@pytest.mark.parametrize("model", ["dnerf", "hypernerf", "dynamic_instant"])
@pytest.mark.parametrize("dataset", ["blender", "synthetic", "transforms", "dnerf", "nerfies"])
def test_model_and_presets_compose(dataset, model):
    if not (CONF / "dataset" / f"{dataset}.yaml").exists():
        pytest.skip(f"no conf/dataset/{dataset}.yaml on this branch yet")
    cfg = compose_config([f"dataset={dataset}", f"model={model}"])
    assert cfg.model.name == model and cfg.name == f"{dataset}_{model}"


def test_presets_carry_the_published_recipes():
    cfg = compose_config(["dataset=blender", "model=dnerf"])  # blender_dnerf = dnerf_dnerf: D-NeRF's configs
    assert (cfg.datamanager.rays_per_batch, cfg.trainer.steps, cfg.dataset.downscale) == (500, 800000, 2)
    assert cfg.datamanager.precrop_steps == 500 and cfg.model.n_samples == 64 and cfg.model.n_importance == 128
    # lrate_decay=500: lr = 5e-4 * 0.1 ** (step / 500k), continued to the 800k-th step
    ratio = cfg.trainer.lr_final / cfg.trainer.lr
    for step in (0, 250000, 500000, 800000):
        assert ratio ** (step / cfg.trainer.decay_steps) == pytest.approx(0.1 ** (step / 500000), rel=1e-6)
    assert (cfg.model.multires, cfg.model.multires_time, cfg.model.two_models_for_fine) == (10, 10, False)
    cfg = compose_config(["dataset=transforms", "model=hypernerf"])
    assert (cfg.datamanager.rays_per_batch, cfg.trainer.steps, cfg.trainer.lr, cfg.trainer.lr_final) == (
        6144, 250000, 1e-3, 1e-4)  # fmt: skip
    m = cfg.model
    assert (m.n_samples, m.n_importance, m.ambient_dim, m.warp_multires, m.warp_alpha_steps) == (128, 128, 2, 6, 80000)
    assert (m.hyper_multires, m.hyper_alpha_delay, m.hyper_alpha_steps, m.multires) == (1, 1000, 10000, 8)


@pytest.mark.parametrize("model", ["dnerf", "hypernerf", "dynamic_instant"])
def test_a_static_scene_is_refused_when_the_model_is_built(model, tiny_scene):
    cfg = compose_config(["dataset=blender", f"dataset.path={tiny_scene('blender')}", f"model={model}"])
    scene = build_scene(cfg.dataset)
    with pytest.raises(ValueError, match=f"^model={model} needs a dynamic dataset"):
        build_model(cfg.model, scene)


def test_train_py_on_a_static_dataset_is_one_line(tiny_scene, tmp_path):
    proc = run_cli("train.py", "model=dnerf", "dataset=blender", f"dataset.path={tiny_scene('blender')}",
                   f"output_root={tmp_path}", *TINY["dnerf"], *TINY_RUN)  # fmt: skip
    error_line(proc, "model=dnerf needs a dynamic dataset (rays carry no time): use dataset.format=dnerf|nerfies")


def test_builders_take_the_training_times_and_ids(tiny_scene):
    cfg = compose_config(["dataset=blender", f"dataset.path={tiny_scene('blender')}", "model=hypernerf",
                          *TINY["hypernerf"]])  # fmt: skip
    scene = _with_times(build_scene(cfg.dataset), appearance=True)
    model = build_model(cfg.model, scene)
    train = torch.tensor(scene.split("train"))
    assert torch.equal(model.warp_codes.times, torch.unique(scene.times[train]))  # training views only
    assert torch.equal(model.appearance.ids, torch.unique(scene.appearance_ids[train]))
    del scene.appearance_ids  # a format without appearance ids: no appearance codes
    assert build_model(cfg.model, scene).appearance is None


@pytest.mark.parametrize("model", ["dnerf", "hypernerf", "dynamic_instant"])
def test_a_few_steps_on_datamanager_batches(model, tiny_scene, one_thread):
    cfg = compose_config(["dataset=blender", f"dataset.path={tiny_scene('blender')}", f"model={model}",
                          *TINY[model]])  # fmt: skip
    scene = _with_times(build_scene(cfg.dataset))
    times = scene.times

    def attach_time(rays, batch):
        rays.extras["time"] = times[rays.camera_indices[:, 0]][:, None]
        return rays, batch

    net = build_model(cfg.model, scene)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    dm = DataManager(scene, DataManagerConfig(rays_per_batch=32, workers=0), torch.device("cpu"),
                     custom_ray_processor=attach_time)  # fmt: skip
    try:
        for step in range(3):
            rays, batch = dm.next_train(step)
            net.set_step(step)
            losses = net.losses(net(rays), batch)
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
    finally:
        dm.close()

