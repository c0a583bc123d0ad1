"""D-NeRF (nerflite/models/dnerf.py) against its paper and albertpumarola/D-NeRF."""

from __future__ import annotations

import pytest
import torch

from nerflite.fields.dnerf_field import DNeRFField, TimeDeformation
from nerflite.fields.nerf_field import NeRFField
from nerflite.models.base import render_rays_chunked
from nerflite.models.dnerf import DNeRFConfig, DNeRFModel
from nerflite.models.nerf import NeRFConfig, NeRFModel
from nerflite.raymath.sampling import stratified_samples
from tests.dynamic_helpers import dynamic_rays, without_time

SMALL = dict(netdepth=3, netwidth=32, netdepth_fine=3, netwidth_fine=32, skips=[1], multires=4, multires_time=3,
             multires_views=2, n_samples=16, n_importance=24)  # fmt: skip


def _model(**kw) -> DNeRFModel:
    torch.manual_seed(0)
    return DNeRFModel(DNeRFConfig(**{**SMALL, **kw}), background=(1.0, 1.0, 1.0))


def test_the_official_network_sizes():
    """DirectTemporalNeRF (D=8, W=256, skips=[4], multires=10 for x and t): the deformation MLP reads
    gamma(x) [63] + gamma(t) [21], re-feeds gamma(x) alone after layer 4, outputs dx [3]; the canonical
    NeRF is the paper's 595,844-parameter network."""
    model = DNeRFModel(DNeRFConfig())
    deform = model.field.deformation.mlp
    assert deform.layers[0].in_features == 63 + 21 and deform.layers[5].in_features == 256 + 63
    assert len(deform.layers) == 8 and deform.out.out_features == 3
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.field.canonical) == 595_844
    # 84*256+256 + 4 * (256*256+256) + (319*256+256) + 2 * (256*256+256) + (256*3+3)
    assert count(model.field.deformation) == 499_203
    assert model.field_fine is None  # the official configs: one network for both passes


def test_deformation_is_the_identity_at_t_zero():
    """Eq. 1 / the official code: dx = 0 exactly at t = 0, the canonical frame; not elsewhere."""
    torch.manual_seed(0)
    deform = TimeDeformation(depth=3, width=32, skips=[1], pos_freqs=4, time_freqs=3)
    x = torch.randn(50, 3)
    t = torch.tensor([0.0, 0.3, 1.0]).repeat(17)[:50, None]
    dx = deform(x, t)
    assert torch.equal(dx[t[:, 0] == 0], torch.zeros(17, 3))
    assert (dx[t[:, 0] != 0].abs().sum(-1) > 0).all()
    fld = DNeRFField(deform, NeRFField(3, 32, [1], 4, 2))
    d = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    sigma, rgb, _ = fld(x, d, torch.zeros(50, 1))
    ref_sigma, ref_rgb = fld.canonical(x, d)  # at t = 0 D-NeRF is its canonical NeRF
    assert torch.equal(sigma, ref_sigma) and torch.equal(rgb, ref_rgb)
    deform.zero_canonical = False  # the official --not_zero_canonical switch
    assert (deform(x, torch.zeros(50, 1)).abs().sum(-1) > 0).all()


def test_rendering_at_t_zero_is_vanilla_nerf():
    """The whole model at t = 0 renders what vanilla NeRF renders with the canonical weights."""
    dnerf = _model(n_importance=0).eval()
    nerf = NeRFModel(NeRFConfig(netdepth=3, netwidth=32, skips=[1], multires=4, multires_views=2, n_samples=16,
                                n_importance=0), background=(1.0, 1.0, 1.0)).eval()  # fmt: skip
    nerf.coarse.load_state_dict(dnerf.field.canonical.state_dict())
    rays = dynamic_rays(times=(0.0,))
    out, ref = dnerf(rays), nerf(rays)
    for k in ("rgb", "depth", "accumulation", "weights"):
        assert torch.equal(out[k], ref[k]), k
    assert torch.equal(out["deformation"], torch.zeros(40, 1))
    moved = dnerf(dynamic_rays(times=(0.7,)))
    assert not torch.allclose(moved["rgb"], ref["rgb"]) and (moved["deformation"] > 0).all()


def test_one_network_both_passes_only_the_fine_pass_is_supervised():
    model = _model().train()
    out = model(dynamic_rays())
    assert out["rgb"].shape == (40, 3) and out["weights"].shape == (40, 16 + 24)
    for key in ("depth", "accumulation", "disparity", "deformation"):
        assert out[key].shape == (40, 1)
    assert not any(k.endswith("_coarse") for k in out)  # as the official code: no rgb0 with one network
    losses = model.losses(out, {"rgb": torch.rand(40, 3)})
    assert set(losses) == {"rgb"}
    losses["rgb"].backward()
    for part in (model.field.deformation, model.field.canonical):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_two_networks_each_with_its_deformation():
    model = _model(two_models_for_fine=True, rgb_coarse_weight=0.5).train()
    assert model.field_fine is not None and model.field_fine.deformation is not model.field.deformation
    out = model(dynamic_rays())
    assert out["rgb_coarse"].shape == (40, 3) and out["weights_coarse"].shape == (40, 16)
    batch = {"rgb": torch.rand(40, 3)}
    losses = model.losses(out, batch)
    assert set(losses) == {"rgb", "rgb_coarse"}
    torch.testing.assert_close(losses["rgb_coarse"], 0.5 * ((out["rgb_coarse"] - batch["rgb"]) ** 2).mean())
    grads = torch.autograd.grad(losses["rgb"], list(model.field.parameters()), allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads)  # fine loss -> coarse pair: only via detached t
    assert set(model.metrics(out, batch)) == {"psnr", "psnr_coarse"}


def test_deformation_regulariser_is_the_official_mse_of_dx():
    model = _model(n_importance=0, deformation_weight=1e-2).eval()
    rays = dynamic_rays()
    out = model(rays)
    t = stratified_samples(rays.near, rays.far, 16, perturb=False)
    x = rays.points(t).reshape(-1, 3)
    dx = model.field.deformation(x, rays.extras["time"][:, None, :].expand(40, 16, 1).reshape(-1, 1))
    expected = 1e-2 * torch.nn.functional.mse_loss(dx, torch.zeros_like(dx))
    torch.testing.assert_close(model.losses(out, {"rgb": out["rgb"]})["deformation"], expected)


def test_static_rays_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^model=dnerf needs a dynamic dataset \(rays carry no time\)"):
        _model()(without_time(dynamic_rays()))


@pytest.mark.parametrize("netchunk", [0, 97])
def test_eval_is_deterministic_and_chunking_changes_nothing(netchunk):
    rays = dynamic_rays(n=50)
    with torch.no_grad():
        ref = _model(netchunk=0).eval()(rays)
    model = _model(netchunk=netchunk).eval()
    out = render_rays_chunked(model, rays, 13, keys=None)
    assert set(out) == set(ref)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip():
    a = _model(two_models_for_fine=True).eval()
    b = DNeRFModel(DNeRFConfig(**SMALL, two_models_for_fine=True), background=(1.0, 1.0, 1.0)).eval()
    b.load_state(a.state_dict(), step=123)
    assert b.step == 123
    rays = dynamic_rays()
    assert torch.equal(a(rays)["rgb"], b(rays)["rgb"])
