"""model=dynamic_instant learns motion that the static instant model cannot fit.

* Default suite: the sliding texture of tests/test_dynamic_learning.py (orthographic rays, a
  striped plane moving by 0.5 t along x, five training moments), 160 steps of 128 rays, both models
  with the hash tables' recipe (Adam 1e-2, eps 1e-15, betas 0.9 / 0.99). The static model can at best
  render each pixel's mean over time (the bar); the dynamic one must beat it tenfold at the training
  moments and fourfold between frames. Measured (one thread, busy 2-core machine): dynamic_instant
  MSE 1.7e-3 at the training moments, 1.2e-3 between frames (8 CPU s); instant 4.8e-2 (3 CPU s);
  the bar 4.1e-2.
* Slow: the generated moving scene (``generate("dnerf")``: a sliding sphere, a turning box, a
  growing torus; 48 training views of 24 px, each another moment from another camera), both models
  on DataManager batches for about the same CPU time, PSNR on the held-out (val) views, which are
  moments between the training ones. Fixed step counts (SCENE_STEPS: a dynamic_instant step costs about
  two of instant's, so 500 against 1000 is ~22 CPU s each on one thread) keep the result the same
  whatever the machine's load; a budget of process CPU time did not: under load a step takes more
  CPU time, fewer steps fit, and the gap moved with them (instant is near its best early and then
  overfits the training moments: 18.54 dB after 500 steps, 17.39 after 2800; dynamic_instant
  hovers at 19.2-19.6 dB from 250 steps on), down to 0.92 dB for the 250 / 500 steps of a
  half-speed machine and 1.16 dB on one run of the slow suite. Measured (one thread): dynamic_instant
  19.48 dB after 500 steps, instant 17.95 dB after 1000 (gap 1.53 dB; 1.27-1.88 dB for
  450-550 / 900-1100 steps). About 60 s in all.
"""

from __future__ import annotations

import pytest
import torch

from nerflite.models.dynamic_instant import DynamicInstantConfig, DynamicInstantModel
from nerflite.models.instant import InstantConfig, InstantModel
from tests.test_dynamic_learning import RAYS, STEPS, scene_batch, static_mse

FIELD = dict(n_levels=6, log2_table_size=12, base_resolution=4, max_resolution=64, hidden=32, geo_features=7,
             grid_resolution=16, grid_update_every=8, grid_warmup_steps=32, steps_per_diagonal=64)  # fmt: skip
DEFORM = dict(deform_depth=2, deform_width=32)



def _adam(model):
    return torch.optim.Adam(model.optimizer_groups(1e-2), eps=1e-15, betas=(0.9, 0.99))


def _fit_sliding_texture(model) -> tuple[float, float, float]:
    """(MSE at the training moments, MSE at t = 0.125, the static bar) after STEPS steps."""
    opt = _adam(model)
    model.train()
    for step in range(STEPS):
        model.set_step(step)
        rays, batch = scene_batch(RAYS, seed=step)
        loss = sum(model.losses(model(rays), batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        rays, batch = scene_batch(512, seed=10_000)
        mse = float(((model(rays)["rgb"] - batch["rgb"]) ** 2).mean())
        between, target = scene_batch(512, seed=10_001, time=0.125)
        mse_between = float(((model(between)["rgb"] - target["rgb"]) ** 2).mean())
    return mse, mse_between, static_mse(rays)


def test_learns_a_sliding_texture_that_the_static_instant_model_cannot(one_thread):
    torch.manual_seed(0)
    mse, mse_between, bar = _fit_sliding_texture(DynamicInstantModel(DynamicInstantConfig(**FIELD, **DEFORM)))
    torch.manual_seed(0)
    static, _, _ = _fit_sliding_texture(InstantModel(InstantConfig(**FIELD)))
    assert bar > 0.03  # the motion is visible
    assert mse < bar / 10 and mse_between < bar / 4, (mse, mse_between, bar)
    assert static > bar / 2, (static, bar)  # the static model gets nowhere near


@pytest.mark.slow
def test_beats_the_static_model_on_held_out_moments_of_the_generated_scene(tmp_path, one_thread):
    from nerflite.data.datamanager import DataManager, DataManagerConfig
    from nerflite.data.parsers import load_scene
    from nerflite.data.synthetic import generate
    from tests.test_instant_learning import _train
    from tests.test_nerf_learning import _held_out_psnr

    scene = load_scene(generate("dnerf", tmp_path / "dnerf", views=VIEWS, size=SIZE))
    dm = DataManager(scene, DataManagerConfig(rays_per_batch=256, workers=0), "cpu")
    field = dict(n_levels=8, log2_table_size=14, base_resolution=4, max_resolution=96, hidden=32, grid_resolution=16,
                 grid_update_every=8, grid_warmup_steps=32, steps_per_diagonal=96, chunk=4096,
                 aabb=[-1.2, -1.2, -1.2, 1.2, 1.2, 1.2])  # fmt: skip
    result = {}
    try:
        for name, cls, config in (
            ("dynamic_instant", DynamicInstantModel, DynamicInstantConfig),
            ("instant", InstantModel, InstantConfig),
        ):
            torch.manual_seed(0)
            net = cls(config(**field), background=scene.background)
            steps, cpu_s = _train(net, _adam(net), dm, steps=SCENE_STEPS[name])
            result[name] = (_held_out_psnr(net, dm), steps, cpu_s)
    finally:
        dm.close()
    msg = ", ".join(f"{k} {p:.2f} dB after {s} steps ({c:.1f} CPU s)" for k, (p, s, c) in result.items())
    print(msg)
    assert result["dynamic_instant"][0] > result["instant"][0] + GAP_DB, msg


SIZE, VIEWS = 24, 48
SCENE_STEPS = {"dynamic_instant": 500, "instant": 1000}  # about the same CPU time (module docstring)
GAP_DB = 1.0  # measured 1.53 dB (1.27-1.88 dB for +-10% steps; module docstring)
