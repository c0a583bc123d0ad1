import pytest
import torch

from nerflite.contraction import contract
from nerflite.fields.instant_field import spherical_harmonics_4, trunc_exp
from nerflite.models.instant import InstantConfig, InstantModel
from nerflite.rays import RayBundle

TINY = dict(n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32, hidden=16, geo_features=7,
            grid_resolution=8, grid_update_every=1, grid_warmup_steps=4, steps_per_diagonal=64)  # fmt: skip


def bundle(n=20, seed=0, radius=4.0, far=6.0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, generator=g) - 0.5
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius
    d = torch.nn.functional.normalize(target - origins, dim=-1)
    near, far = torch.full((n, 1), 0.5), torch.full((n, 1), far)
    return RayBundle(origins, d, d, near, far, torch.zeros(n, 1, dtype=torch.long))


def test_contraction_identity_inside_continuous_and_bounded():
    x = torch.tensor([[0.3, -0.9, 0.5], [1.0, 0.2, 0.0], [4.0, 0.0, 0.0], [1e6, -1e6, 3.0]])
    c = contract(x)
    torch.testing.assert_close(c[:2], x[:2])
    torch.testing.assert_close(c[2], torch.tensor([1.75, 0.0, 0.0]))
    assert c.abs().max() <= 2.0 and c[3].abs().max() > 1.99
    e = torch.tensor([[1.0 + 1e-6, 0.5, 0.0]])
    assert (contract(e) - torch.tensor([[1.0, 0.5, 0.0]])).abs().max() < 1e-5


def test_sh_basis_is_orthonormal_and_trunc_exp_gradient_is_clamped():
    d = torch.nn.functional.normalize(torch.randn(200000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    sh = spherical_harmonics_4(d.double())
    gram = 4 * torch.pi * sh.T @ sh / len(d)  # Monte-Carlo integral over the sphere
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)
    x = torch.tensor([1.0, 30.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([1.0, 15.0])))


def test_fixed_sample_budget_matches_exact_packing_in_training():
    torch.manual_seed(0)
    a = InstantModel(InstantConfig(**TINY), background=(1.0, 1.0, 1.0), sphere_radius=1.0)
    b = InstantModel(InstantConfig(**TINY, sample_budget=4000), background=(1.0, 1.0, 1.0), sphere_radius=1.0)
    b.load_state_dict(a.state_dict())
    rays = bundle()
    a.train(), b.train()
    torch.manual_seed(1)
    out_a = a(rays)
    torch.manual_seed(1)
    out_b = b(rays)
    assert 0 < int(out_a["n_samples"]) < 4000 and int(out_b["n_samples"]) == int(out_a["n_samples"])
    for k in ("rgb", "depth", "accumulation"):
        torch.testing.assert_close(out_b[k], out_a[k], atol=1e-6, rtol=0)
    # and the gradients agree
    ga = torch.autograd.grad(out_a["rgb"].sum(), a.field.encoding.table)[0]
    gb = torch.autograd.grad(out_b["rgb"].sum(), b.field.encoding.table)[0]
    torch.testing.assert_close(gb, ga, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("mode", ["bounded", "ndc", "unbounded"])
def test_scene_modes_march_and_render(mode):
    torch.manual_seed(0)
    model = InstantModel(InstantConfig(**TINY, scene_mode=mode), sphere_radius=1.0, far=20.0)
    rays = bundle(far=20.0) if mode != "ndc" else bundle(radius=0.9, far=1.0)
    model.train()
    for step in range(2):
        model.set_step(step)
    out = model(rays)
    assert out["rgb"].shape == (20, 3) and torch.isfinite(out["rgb"]).all()
    assert int(out["n_samples"]) > 0
    if mode == "unbounded":  # samples reach far beyond the unit sphere, on a growing step
        s = model.sample(rays)
        assert float(s.t_ends.max()) > 10.0
        dt = s.t_ends - s.t_starts
        assert float(dt.max()) > 1.3 * float(dt.min())  # 1/256 of the distance beyond t = 14
    with pytest.raises(ValueError, match="scene_mode"):
        InstantModel(InstantConfig(scene_mode="sphere"))
