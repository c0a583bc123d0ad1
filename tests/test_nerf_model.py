import pytest
import torch

from nerflite.models.base import render_rays_chunked
from nerflite.models.nerf import NeRFConfig, NeRFModel
from nerflite.rays import RayBundle


def _rays(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 4
    target = torch.randn(n, 3, generator=g) * 0.3
    d = torch.nn.functional.normalize(target - origins, dim=-1)
    return RayBundle(
        origins, d, d, torch.full((n, 1), 2.0), torch.full((n, 1), 6.0), torch.zeros(n, 1, dtype=torch.int64)
    )


def _small_cfg(**kw):
    base = dict(
        netdepth=3, netwidth=32, netdepth_fine=3, netwidth_fine=32, skips=[1], multires=4, multires_views=2,
        n_samples=16, n_importance=24,
    )  # fmt: skip
    base.update(kw)
    return NeRFConfig(**base)


def _model(**kw):
    torch.manual_seed(0)
    return NeRFModel(_small_cfg(**kw), background=(1.0, 1.0, 1.0))


def test_outputs_of_both_passes():
    model = _model().eval()
    rays = _rays()
    out = model(rays)
    for suffix in ("", "_coarse"):
        assert out["rgb" + suffix].shape == (60, 3)
        for key in ("depth", "accumulation", "disparity"):
            assert out[key + suffix].shape == (60, 1)
    assert out["weights"].shape == (60, 16 + 24) and out["weights_coarse"].shape == (60, 16)
    assert torch.all(out["accumulation"] <= 1 + 1e-5) and torch.all(out["accumulation"] >= 0)
    # depth / accumulation is a point between near and far
    d = out["depth"] / out["accumulation"].clamp_min(1e-6)
    assert torch.all((d > 2 - 1e-3) & (d < 6 + 1e-3))
    coarse_only = _model(n_importance=0).eval()(rays)
    assert "rgb_coarse" not in coarse_only and coarse_only["rgb"].shape == (60, 3)


def test_eval_is_deterministic_and_training_is_random():
    model = _model(raw_noise_std=1.0)
    rays = _rays()
    model.eval()
    torch.testing.assert_close(model(rays)["rgb"], model(rays)["rgb"], rtol=0, atol=0)
    model.train()
    a, b = model(rays)["rgb"], model(rays)["rgb"]
    assert not torch.allclose(a, b)
    torch.manual_seed(7)
    a = model(rays)["rgb"]
    torch.manual_seed(7)
    torch.testing.assert_close(a, model(rays)["rgb"], rtol=0, atol=0)


def test_empty_space_shows_the_background():
    model = _model().eval()
    for fld in (model.coarse, model.fine):
        with torch.no_grad():
            fld.sigma_feature.bias[0] = -1e3  # raw density far below zero: relu -> 0 everywhere
    out = model(_rays())
    torch.testing.assert_close(out["accumulation"], torch.zeros(60, 1))
    torch.testing.assert_close(out["rgb"], torch.ones(60, 3))
    torch.testing.assert_close(out["disparity"], torch.zeros(60, 1))


def test_losses_are_named_weighted_and_resampling_is_detached():
    model = _model(rgb_coarse_weight=0.25, rgb_weight=2.0).train()
    rays = _rays()
    batch = {"rgb": torch.rand(60, 3)}
    torch.manual_seed(1)
    out = model(rays)
    losses = model.losses(out, batch)
    assert set(losses) == {"rgb", "rgb_coarse"}
    torch.testing.assert_close(losses["rgb"], 2.0 * ((out["rgb"] - batch["rgb"]) ** 2).mean())
    torch.testing.assert_close(losses["rgb_coarse"], 0.25 * ((out["rgb_coarse"] - batch["rgb"]) ** 2).mean())
    # the fine loss reaches the coarse field only through the detached sample positions: no gradient
    grads = torch.autograd.grad(losses["rgb"], list(model.coarse.parameters()), allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads)
    grads = torch.autograd.grad(losses["rgb_coarse"], list(model.coarse.parameters()))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    metrics = model.metrics(out, batch)
    assert set(metrics) == {"psnr", "psnr_coarse"}
    torch.testing.assert_close(metrics["psnr"], -10 * torch.log10(losses["rgb"].detach() / 2.0))


@pytest.mark.parametrize("netchunk", [0, 97, 1000])
def test_chunked_rendering_matches_unchunked(netchunk):
    rays = _rays(n=100)
    reference = _model(netchunk=0).eval()
    with torch.no_grad():
        ref = reference(rays)
    model = _model(netchunk=netchunk).eval()
    for chunk in (100, 64, 13):
        out = render_rays_chunked(model, rays, chunk, keys=None)
        assert set(out) == set(ref) and out["rgb"].device.type == "cpu"
        for k in ref:
            torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)


def test_bf16_autocast_runs_and_stays_close():
    rays = _rays()
    ref = _model().eval()(rays)["rgb"]
    out = _model(amp="bf16").eval()(rays)
    assert out["rgb"].dtype == torch.float32
    assert (out["rgb"] - ref).abs().max() < 0.05
    with pytest.raises(ValueError, match="amp"):
        _model(amp="fp8")


@pytest.mark.slow
def test_compiled_fields_give_the_same_renders():
    rays = _rays()
    ref = _model().eval()(rays)
    model = _model(compile=True).eval()
    assert set(model.state_dict()) == set(_model().state_dict())
    out = model(rays)
    for k in ("rgb", "depth", "rgb_coarse"):
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)


def test_config_is_a_structured_omegaconf_schema():
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(_small_cfg())
    cfg.merge_with(OmegaConf.create({"n_importance": 8, "skips": [0]}))
    model = NeRFModel(cfg, background=None).eval()  # a DictConfig works as well as the dataclass
    assert model(_rays())["weights"].shape == (60, 16 + 8)
    with pytest.raises(Exception, match="n_sample"):
        OmegaConf.merge(OmegaConf.structured(NeRFConfig), {"n_sample": 3})  # typos fail
