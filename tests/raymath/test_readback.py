"""LaggedRead: the last step's value on the host, never waiting for the work queued after it."""

import pytest
import torch

from nerflite.models.instant import InstantConfig, InstantModel
from nerflite.raymath.readback import LaggedRead
from tests.test_instant_model import TINY, bundle


def test_pull_returns_the_last_push_and_reset_forgets_it():
    r = LaggedRead()
    assert r.pull() is None
    r.push(torch.tensor([3.0, 4.0]))
    r.push(torch.tensor([5.0, 6.0]))
    assert r.pull() == [5.0, 6.0] and r.pull() == [5.0, 6.0]
    r.reset()
    assert r.pull() is None


def test_budgeted_training_step_reads_nothing_back_on_a_gpu():
    """With a sample budget the instant model's step has static shapes and no host sync (the ray
    count comes from the previous step's pinned copy)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    model = InstantModel(InstantConfig(**TINY, sample_budget=2000), sphere_radius=1.0).cuda().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, capturable=True)
    rays, rgb = bundle(256).to("cuda"), torch.rand(256, 3, device="cuda")
    for step in range(1, 4):  # warm-up: the first step reads the loaded statistics once
        model.set_step(step)
        sum(model.losses(model(rays), {"rgb": rgb}).values()).backward()
        opt.step()
    torch.cuda.synchronize()
    r = LaggedRead()
    r.push(torch.tensor([1.0], device="cuda"))
    assert r.pull() == [1.0]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(5, 8):  # no grid update in these steps (TINY updates every step: see below)
            model.set_step(step)
            model._grid_updated_at = step  # the grid update's own sampling is not part of this check
            loss = sum(model.losses(model(rays), {"rgb": rgb}).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
