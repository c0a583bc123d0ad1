"""HyperNeRF (nerflite/models/hypernerf.py) against its paper and google/hypernerf."""

from __future__ import annotations

import pytest
import torch

from nerflite.models.hypernerf import HyperNeRFConfig, HyperNeRFModel
from tests.dynamic_helpers import dynamic_rays, without_time

SMALL = dict(netdepth=3, netwidth=32, skips=[1], multires=4, multires_views=2, warp_depth=3, warp_width=32,
             warp_skips=[1], sheet_depth=3, sheet_width=16, sheet_skips=[1], n_samples=12, n_importance=12)  # fmt: skip
TIMES = [0.0, 0.5, 1.0, 0.5]  # the training views' moments: three frames


def _model(appearance_ids=None, **kw) -> HyperNeRFModel:
    torch.manual_seed(0)
    return HyperNeRFModel(HyperNeRFConfig(**{**SMALL, **kw}), TIMES, appearance_ids=appearance_ids,
                          background=(1.0, 1.0, 1.0))  # fmt: skip


def test_the_official_sizes():
    """hypernerf_vrig_ds_2d.gin: template trunk 8 x 256 on gamma(x') (3 + 2*3*8) and gamma(w) (2*2*1)
    with the input re-fed before layer 4; SE(3) trunk 6 x 128 on gamma(x) (3 + 2*3*6) + an 8-channel
    warp code; slicing MLP 6 x 64 on gamma(x) (2*3*6, no identity) + the code, 2 hyper-coordinates."""
    model = HyperNeRFModel(HyperNeRFConfig(), TIMES)
    trunk = model.coarse.trunk
    assert trunk[0].in_features == 51 + 4 and trunk[4].in_features == 256 + 55 and len(trunk) == 8
    assert model.coarse.view.in_features == 256 + 27 and model.coarse.view.out_features == 128  # no appearance
    warp = model.warp.trunk.layers
    assert warp[0].in_features == 39 + 8 and warp[4].in_features == 128 + 47 and len(warp) == 6
    sheet = model.sheet.mlp
    assert sheet.layers[0].in_features == 36 + 8 and len(sheet.layers) == 6 and sheet.out.out_features == 2
    assert model.warp_codes.codes.shape == (3, 8) and model.appearance is None
    with_app = HyperNeRFModel(HyperNeRFConfig(), TIMES, appearance_ids=[0, 1, 2, 3])
    assert with_app.coarse.view.in_features == 256 + 27 + 8 and with_app.appearance.codes.shape == (4, 8)


def test_forward_outputs_of_both_passes():
    model = _model(appearance_ids=[0, 1, 2, 3]).train()
    model.set_step(20000)  # the hyper window open: gradients reach the slicing surface (not at step 0)
    out = model(dynamic_rays(appearance_ids=[0, 1, 2, 3]))
    for suffix in ("", "_coarse"):
        assert out["rgb" + suffix].shape == (40, 3)
        for key in ("depth", "accumulation", "disparity"):
            assert out[key + suffix].shape == (40, 1)
    assert out["weights"].shape == (40, 24) and out["weights_coarse"].shape == (40, 12)
    losses = model.losses(out, {"rgb": torch.rand(40, 3)})
    assert set(losses) == {"rgb", "rgb_coarse"}
    sum(losses.values()).backward()
    for name in ("warp_codes", "appearance", "warp", "sheet", "coarse", "fine"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert "rgb_coarse" not in _model(n_importance=0).eval()(dynamic_rays())


def test_zero_screw_is_the_identity_warp():
    """When the SE(3) field's heads output zero the deformation is exactly the identity; with the
    slicing surface's output zero too the template sees (x, 0)."""
    model = _model()
    x, code = torch.randn(30, 3), torch.rand(30, 8)
    for head in (model.warp.rotation, model.warp.translation, model.sheet.mlp.out):
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
    assert torch.equal(model.warp(x, code), x)
    assert torch.equal(model.deform(x, code), torch.cat([x, torch.zeros(30, 2)], -1))


def test_the_warp_moves_points_by_the_exp_map_of_its_screw():
    model = _model()
    x, code = torch.randn(30, 3), torch.rand(30, 8)
    with torch.no_grad():
        model.warp.translation.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model.warp.translation.weight.zero_()
        model.warp.rotation.weight.zero_()
        model.warp.rotation.bias.copy_(torch.tensor([0.0, 0.0, torch.pi / 2]))  # 90 degrees about z
    v = torch.tensor([0.1, -0.2, 0.3])
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # Modern Robotics eq. 3.88 with omega = z, theta = pi/2: p = (theta I + [w] + (theta - 1) [w]^2) v / theta
    w = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    theta = torch.pi / 2
    p = (theta * torch.eye(3) + w + (theta - 1.0) * w @ w) @ (v / theta)
    torch.testing.assert_close(model.warp(x, code), x @ rot.T + p, rtol=0, atol=1e-6)


def test_set_step_derives_every_window_from_the_step():
    model = HyperNeRFModel(HyperNeRFConfig(), TIMES)  # published schedules
    expected = {0: (0.0, 0.0), 1000: (0.075, 0.0), 6000: (0.45, 0.5), 40000: (3.0, 1.0), 90000: (6.0, 1.0)}
    for step in (40000, 0, 90000, 6000, 1000):  # any order: nothing accumulates
        model.set_step(step)
        warp, hyper = expected[step]
        assert model.alphas == pytest.approx({"warp": warp, "hyper": hyper, "sheet": 6.0})
        assert model.warp.encoding.alpha == pytest.approx(warp) and model.sheet.encoding.alpha == 6.0
        assert model.coarse.pos_enc.hyper.alpha == pytest.approx(hyper) == model.fine.pos_enc.hyper.alpha
    metrics = model.metrics({"rgb": torch.zeros(2, 3)}, {"rgb": torch.zeros(2, 3)})
    assert float(metrics["warp_alpha"]) == pytest.approx(0.075) and float(metrics["hyper_alpha"]) == 0.0


def test_the_closed_hyper_window_hides_the_hyper_coordinates():
    """Before hyper_alpha_delay the template cannot see w (its window is 0); once open it can."""
    model = _model().eval()
    rays = dynamic_rays()
    model.set_step(500)
    ref = model(rays)["rgb"]
    with torch.no_grad():
        model.sheet.mlp.out.bias.copy_(torch.tensor([3.0, -2.0]))  # very different hyper-coordinates
    assert torch.equal(model(rays)["rgb"], ref)
    model.set_step(20000)
    assert not torch.allclose(model(rays)["rgb"], ref)


def test_appearance_codes_change_colour_but_not_geometry():
    model = _model(appearance_ids=[0, 1, 2, 3]).eval()
    with torch.no_grad():
        model.appearance.codes.copy_(torch.randn(4, 8))
    a = model(dynamic_rays(appearance_ids=[1]))
    b = model(dynamic_rays(appearance_ids=[2]))
    assert torch.equal(a["weights"], b["weights"]) and torch.equal(a["depth"], b["depth"])
    assert not torch.allclose(a["rgb"], b["rgb"])
    unseen = model(dynamic_rays(appearance_ids=[9]))  # an id never trained: code 0, as rays without ids
    assert torch.equal(unseen["rgb"], model(dynamic_rays(appearance_ids=[0]))["rgb"])
    assert torch.equal(unseen["rgb"], model(dynamic_rays())["rgb"])


def test_a_moment_between_frames_renders_with_the_interpolated_code():
    model = _model().eval()
    with torch.no_grad():
        model.warp_codes.codes.copy_(torch.randn(3, 8))
    rays = dynamic_rays(times=(0.25,))
    out = model(rays)["rgb"]
    codes = model.warp_codes.codes.detach()
    with torch.no_grad():  # a model whose frame at t = 0 carries the mean of the codes at 0 and 0.5
        model.warp_codes.codes[0] = (codes[0] + codes[1]) / 2
    torch.testing.assert_close(model(dynamic_rays(times=(0.0,)))["rgb"], out)


def test_static_rays_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^model=hypernerf needs a dynamic dataset \(rays carry no time\)"):
        _model()(without_time(dynamic_rays()))


def test_load_state_restores_the_latents_and_the_step_derived_windows():
    a = _model(appearance_ids=[0, 1, 2, 3])
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    a.set_step(7000)
    rays = dynamic_rays(appearance_ids=[0, 1, 2, 3])
    loss = sum(a.losses(a(rays), {"rgb": torch.rand(40, 3)}).values())
    loss.backward()
    opt.step()
    state = a.state_dict()
    assert {"warp_codes.codes", "warp_codes.times", "appearance.codes", "appearance.ids"} <= set(state)
    b = _model(appearance_ids=[0, 1, 2, 3])
    assert not torch.equal(b.warp_codes.codes, a.warp_codes.codes)
    b.load_state(state, step=7000)
    assert b.alphas == a.alphas and b.step == 7000 and b.warp.encoding.alpha == a.warp.encoding.alpha
    assert torch.equal(b.warp_codes.codes, a.warp_codes.codes) and torch.equal(b.appearance.codes, a.appearance.codes)
    a.eval(), b.eval()
    assert torch.equal(a(rays)["rgb"], b(rays)["rgb"])
