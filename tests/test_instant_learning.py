"""The instant model learns the synthetic scene, and faster than vanilla NeRF in the same CPU time.

Same scene and data path as tests/test_nerf_learning.py (generated Blender scene, 24 px, 24 views,
DataManager batches, held-out views from ``iter_eval_images``). Both models get the same budget of
process CPU time (robust on a shared machine, where wall time swings several-fold).
Measured (one thread, busy 2-core machine), held-out PSNR after 4 / 8 / 16 CPU seconds:
    instant       20.8 / 22.7 / 24.6 dB   (63 / 133 / 789 steps: the occupancy grid prunes empty
                                           space after its warm-up, down to ~5 samples per ray)
    vanilla NeRF  20.3 / 21.2 / 23.0 dB   (114 / 235 / 488 steps; test_nerf_learning's 4 x 64 config)
A second run at 16 CPU s: instant 24.2 dB (632 steps), NeRF 23.4 dB (411 steps). An untrained
model gives ~10 dB, the best constant colour ~13 dB.
"""

import time

import pytest
import torch

from nerflite.data.datamanager import DataManager, DataManagerConfig
from nerflite.data.parsers import load_scene
from nerflite.data.synthetic import generate
from nerflite.models.instant import InstantConfig, InstantModel
from nerflite.models.nerf import NeRFConfig, NeRFModel
from tests.test_nerf_learning import _held_out_psnr

SIZE, VIEWS, RAYS = 24, 24, 256
CPU_BUDGET_S = 16.0  # process CPU seconds per model
PSNR_THRESHOLD = 23.8  # instant's bar; NeRF measured 23.0 and 23.4 dB in the same CPU time (two runs)


def _train(model, optim, dm, steps=None, cpu_budget=None) -> tuple[int, float]:
    """Train for ``steps`` steps or until ``cpu_budget`` s of process CPU time; (steps, CPU s)."""
    start = time.process_time()
    model.train()
    step = 0
    while (steps is None or step < steps) and (cpu_budget is None or time.process_time() - start < cpu_budget):
        model.set_step(step)
        rays, batch = dm.next_train(step)
        loss = sum(model.losses(model(rays), batch).values())
        optim.zero_grad()
        loss.backward()
        optim.step()
        step += 1
    return step, time.process_time() - start


@pytest.mark.slow
def test_instant_beats_vanilla_nerf_in_the_same_cpu_time(tmp_path):
    scene = load_scene(generate("blender", tmp_path / "blender", views=VIEWS, size=SIZE))
    dm = DataManager(scene, DataManagerConfig(rays_per_batch=RAYS, workers=0), "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        cfg = InstantConfig(
            n_levels=8, log2_table_size=14, base_resolution=4, max_resolution=96, hidden=32,
            grid_resolution=16, grid_update_every=8, grid_warmup_steps=32, steps_per_diagonal=96, chunk=4096,
            aabb=[-1.2, -1.2, -1.2, 1.2, 1.2, 1.2],  # the generated scene's objects
        )  # fmt: skip
        fast = InstantModel(cfg, background=scene.background, sphere_radius=scene.sphere_radius, far=scene.far)
        optim = torch.optim.Adam(fast.optimizer_groups(1e-2), eps=1e-15, betas=(0.9, 0.99))
        fast_steps, cpu_s = _train(fast, optim, dm, cpu_budget=CPU_BUDGET_S)
        fast_psnr = _held_out_psnr(fast, dm)

        torch.manual_seed(0)
        ncfg = NeRFConfig(
            netdepth=4, netwidth=64, netdepth_fine=4, netwidth_fine=64, skips=[2], multires=6, multires_views=2,
            n_samples=16, n_importance=16,
        )  # fmt: skip
        nerf = NeRFModel(ncfg, background=scene.background)
        nerf_steps, _ = _train(nerf, torch.optim.Adam(nerf.parameters(), lr=5e-3), dm, cpu_budget=cpu_s)
        nerf_psnr = _held_out_psnr(nerf, dm)
    finally:
        dm.close()
        torch.set_num_threads(threads)
    msg = (
        f"instant {fast_psnr:.2f} dB after {fast_steps} steps ({cpu_s:.1f} CPU s); "
        f"nerf {nerf_psnr:.2f} dB after {nerf_steps} steps in the same CPU time"
    )
    print(msg)
    assert fast_psnr > PSNR_THRESHOLD, msg
    assert fast_psnr > nerf_psnr + 0.5, msg
