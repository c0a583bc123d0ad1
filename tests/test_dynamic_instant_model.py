"""model=dynamic_instant (nerflite/models/dynamic_instant.py): a deformation into the instant field,
on the instant model's sampler."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from nerflite.models.dynamic_instant import DynamicInstantConfig, DynamicInstantModel
from nerflite.models.instant import InstantConfig, InstantModel
from tests.dynamic_helpers import dynamic_rays, without_time
from tests.test_instant_model import TINY

DEFORM = dict(deform_depth=2, deform_width=16, deform_pos_freqs=3, deform_time_freqs=3)


def _pair(**kw) -> tuple[DynamicInstantModel, InstantModel]:
    """A fresh dynamic model and the static instant model with the same canonical weights (hash
    tables filled with large random features, so that the field varies in space)."""
    torch.manual_seed(0)
    static_kw = {k: v for k, v in kw.items() if k in {f.name for f in dataclasses.fields(InstantConfig)}}
    dyn = DynamicInstantModel(DynamicInstantConfig(**{**TINY, **DEFORM, **kw}), background=(1.0, 1.0, 1.0))
    static = InstantModel(InstantConfig(**{**TINY, **static_kw}), background=(1.0, 1.0, 1.0))
    with torch.no_grad():
        dyn.field.encoding.table.normal_(0.0, 0.5)
    static.field.load_state_dict(dyn.field.state_dict())
    return dyn, static


def _move(model: DynamicInstantModel, scale: float = 0.3) -> None:
    """A non-zero deformation: random weights in the zero-initialised last layer."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = model.deformation.mlp.out
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * scale)
        out.bias.copy_(torch.randn(out.bias.shape, generator=g) * scale)


def _forward(model, rays, step: int, seed: int):
    model.set_step(step)
    torch.manual_seed(seed)
    return model(rays)


def test_a_fresh_model_is_the_static_instant_model_with_the_same_canonical_weights():
    dyn, static = _pair(grid_update_every=10**6, sample_budget=1000)
    x = torch.rand(300, 3) * 2 - 1
    torch.testing.assert_close(dyn.occupancy(x), static.occupancy(x), atol=0, rtol=1e-6)
    rays = dynamic_rays(64, times=(0.0, 0.3, 1.0))
    for m in (dyn, static):  # one grid update each, at step 0, from the same (identity) density
        _forward(m.train(), rays, 0, 1)
    assert torch.equal(dyn.grid.bitfield, static.grid.bitfield)
    a, b = _forward(dyn, rays, 1, 2), _forward(static, rays, 1, 2)  # training: budget, jitter, whole rays
    for k in ("rgb", "depth", "accumulation", "ray_mask"):
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    dyn.eval(), static.eval()  # whole images: render_until_opaque
    with torch.no_grad():
        a, b = dyn(rays), static(rays)
    for k in ("rgb", "depth", "accumulation"):
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_zero_canonical_keeps_t_zero_the_static_model_once_the_deformation_moves():
    dyn, static = _pair(zero_canonical=True)
    _move(dyn)
    dyn.eval(), static.eval()
    with torch.no_grad():
        at_zero, moved, ref = dyn(dynamic_rays(times=(0.0,))), dyn(dynamic_rays(times=(0.6,))), static(dynamic_rays())
        assert torch.equal(at_zero["rgb"], ref["rgb"]) and torch.equal(at_zero["depth"], ref["depth"])
        assert not torch.allclose(moved["rgb"], ref["rgb"])
        x = torch.rand(100, 3)
        assert torch.equal(dyn.deformation(x, torch.zeros(100, 1)), torch.zeros(100, 3))
    dyn.cfg = dataclasses.replace(dyn.cfg, zero_canonical=False)
    dyn.deformation.zero_canonical = False
    assert dyn.deformation(x, torch.zeros(100, 1)).abs().sum() > 0


class _Slide(nn.Module):
    """dx(x, t) = -c(t): a canonical blob at the origin seen at c(t) = (-0.6 + 1.2 t, 0, 0)."""

    def forward(self, x, t):
        return -torch.cat([-0.6 + 1.2 * t, torch.zeros_like(t), torch.zeros_like(t)], -1)


class _Blob(nn.Module):
    """A canonical field: dense within 0.35 of the box centre (u = 0.5 in [0, 1]^3), empty elsewhere."""

    def density(self, u):
        inside = ((u - 0.5) * 2).norm(dim=-1) < 0.35  # grid space: the box [-1, 1]^3
        return inside.float() * 1e3, torch.zeros(len(u), 1)


def test_the_grid_holds_the_union_over_time_of_a_moving_blob():
    torch.manual_seed(0)
    cfg = DynamicInstantConfig(**{**TINY, "grid_resolution": 16, "grid_warmup_steps": 0}, **DEFORM, occ_times=8)
    model = DynamicInstantModel(cfg)
    model.deformation, model.field = _Slide(), _Blob()
    model.grid.warmup_steps = 10**6  # every cell visited at every update, each at 8 stratified moments
    # a single visit already sees both ends of the path: one moment lies in each eighth of [0, 1]
    ends_now = model.occupancy(torch.tensor([[-0.6, 0.0, 0.0], [0.6, 0.0, 0.0], [0.0, 0.8, 0.0]]))
    assert (ends_now[:2] > 0).all() and ends_now[2] == 0
    for step in range(12):
        model.grid.update(step, model.occupancy)
    res = model.grid.resolution
    flat = torch.arange(res**3)
    ijk = torch.stack([flat // res**2, (flat // res) % res, flat % res], -1).float()
    centres = (ijk + 0.5) / res * 2 - 1  # [R^3, 3]
    h = 3**0.5 / res  # half a cell's diagonal: a cell's random point lies within h of its centre
    occupied = model.grid.bitfield[0]
    for t in torch.linspace(0.0, 1.0, 9):
        # cells well inside the blob at any of these moments are occupied (their points are inside
        # for a stretch of time that one of the 8 stratified moments hits at almost every update)
        c = torch.tensor([-0.6 + 1.2 * float(t), 0.0, 0.0])
        inside = (centres - c).norm(dim=-1) < 0.35 - 2 * h
        assert inside.any() and occupied[inside].all(), float(t)
    # cells away from the blob's whole path stay empty
    on_path = centres * torch.tensor([1.0, 0.0, 0.0])
    on_path[:, 0] = on_path[:, 0].clamp(-0.6, 0.6)
    assert not occupied[(centres - on_path).norm(dim=-1) > 0.35 + h].any()
    # one moment (t = 0.5 for every cell, as a static model's grid) misses both ends of the path
    mid = model.deformation(centres, torch.full((res**3, 1), 0.5))
    at_mid = model.field.density((centres + mid + 1) / 2)[0] > 0
    ends = ((centres - torch.tensor([-0.6, 0, 0])).norm(dim=-1) < 0.2) | ((centres - torch.tensor([0.6, 0, 0])).norm(
        dim=-1) < 0.2)  # fmt: skip
    assert not at_mid[ends].any() and occupied[ends].all()


def test_one_moment_per_cell_during_the_warm_up():
    """During the warm-up every cell is visited at every update: one moment per visit, then occ_times."""
    dyn, _ = _pair(grid_warmup_steps=4, occ_times=3)
    calls = []
    dyn.deformation.register_forward_hook(lambda mod, args, out: calls.append(len(out)))
    x = torch.rand(10, 3)
    dyn.set_step(3)
    dyn.occupancy(x)
    dyn.set_step(4)
    dyn.occupancy(x)
    assert calls == [10, 30]


def test_budgeted_rays_render_whole_and_time_reaches_every_sample():
    dyn, _ = _pair(sample_budget=0)
    _move(dyn)
    rays = dynamic_rays(40, times=(0.1, 0.5, 0.9))
    _forward(dyn.train(), rays, 0, 1)  # the grid update
    total = int(_forward(dyn, rays, 1, 2)["n_samples"])
    budgeted = copy.deepcopy(dyn)
    budgeted.cfg = dataclasses.replace(dyn.cfg, sample_budget=total // 2)
    exact, part = _forward(dyn, rays, 1, 3), _forward(budgeted, rays, 1, 3)
    kept = part["ray_mask"][:, 0].bool()
    assert 0 < int(kept.sum()) < 40 and torch.equal(kept, torch.arange(40) < int(kept.sum()))
    for k in ("rgb", "depth", "accumulation"):  # every ray that counts renders as with every sample
        torch.testing.assert_close(part[k][kept], exact[k][kept], atol=1e-6, rtol=0)
    # two copies of the same rays at two moments: different colours in training and in whole images
    early, late = dynamic_rays(20, times=(0.2,)), dynamic_rays(20, times=(0.8,))
    for m in (dyn.train(), dyn.eval()):
        with torch.no_grad():
            a, b = _forward(m, early, 1, 4), _forward(m, late, 1, 4)
        assert (a["rgb"] - b["rgb"]).abs().sum(-1).gt(1e-4).float().mean() > 0.5
    fresh, _ = _pair()
    with torch.no_grad():  # and the same colours while the deformation is the identity
        assert torch.equal(fresh.eval()(early)["rgb"], fresh(late)["rgb"])


def test_rays_without_time_are_refused_in_one_line():
    dyn, _ = _pair()
    for mode in (dyn.train(), dyn.eval()):
        with pytest.raises(ValueError, match="^model=dynamic_instant needs a dynamic dataset"):
            mode(without_time(dynamic_rays()))


def test_optimizer_groups_state_and_config_checks():
    dyn, _ = _pair(deform_lr_mult=0.5, table_lr_mult=2.0)
    groups = dyn.optimizer_groups(1e-2)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(dyn.parameters()))
    lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr[id(dyn.field.encoding.table)] == 2e-2 and lr[id(dyn.deformation.mlp.out.weight)] == 5e-3
    assert lr[id(dyn.field.density_mlp[0].weight)] == 1e-2
    _move(dyn)
    state = copy.deepcopy(dyn.state_dict())
    assert "deformation.mlp.out.weight" in state
    other, _ = _pair()
    other.load_state(state, 7)
    x, t = torch.rand(10, 3), torch.rand(10, 1)
    assert torch.equal(other.deformation(x, t), dyn.deformation(x, t)) and other.step == 7
    with pytest.raises(ValueError, match="occ_times"):
        DynamicInstantModel(DynamicInstantConfig(**TINY, occ_times=0))


def test_the_time_code_changes_colours_only():
    torch.manual_seed(0)
    dyn = DynamicInstantModel(DynamicInstantConfig(**TINY, **DEFORM, time_color_freqs=2))
    with torch.no_grad():
        dyn.field.encoding.table.normal_(0.0, 0.5)
    assert dyn.field.color_mlp[0].in_features == 16 + TINY["geo_features"] + 5  # [t, sin, cos at 2 octaves]
    early, late = dynamic_rays(20, times=(0.2,)), dynamic_rays(20, times=(0.8,))
    with torch.no_grad():  # the deformation is still the identity: the same geometry at both moments
        a, b = dyn.eval()(early), dyn(late)
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["accumulation"], b["accumulation"])
    assert not torch.allclose(a["rgb"], b["rgb"])
