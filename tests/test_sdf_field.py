"""The NeuS fields: geometric initialization, autograd gradients, the learned variance."""

from __future__ import annotations

import math

import torch

from nerflite.fields.sdf_field import ColorField, SDFField, SingleVariance


def shell_points(n: int, r_min: float, r_max: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    r = r_min + (r_max - r_min) * torch.rand(n, 1, generator=g)
    return r * d / d.norm(dim=-1, keepdim=True)


def test_geometric_init_is_close_to_a_sphere_sdf():
    torch.manual_seed(0)
    field = SDFField(init_radius=0.5)  # the full 8 x 256 network with weight normalization
    x = shell_points(4096, 0.3, 0.8)
    with torch.no_grad():
        err = (field.sdf(x)[:, 0] - (x.norm(dim=-1) - 0.5)).abs()
    # a random width-256 network fluctuates around |x| - r by O(sqrt(depth / width)) ~ 0.2 of |x|
    assert err.mean() < 0.1, err.mean()
    grad = field.gradient(x)
    assert 0.6 < grad.norm(dim=-1).mean() < 1.2
    radial = torch.nn.functional.cosine_similarity(grad, x, dim=-1)
    assert radial.mean() > 0.9 and radial.min() > 0.5  # normals point away from the centre
    # along rays from the centre the SDF increases: it is a star-shaped blob around the origin
    with torch.no_grad():
        unit = x / x.norm(dim=-1, keepdim=True)
        inner, outer = field.sdf(0.2 * unit), field.sdf(unit)
    assert (inner < 0).all() and (outer > inner).all()
    # the same network without the geometric init has no such structure
    torch.manual_seed(0)
    plain = SDFField(init_radius=0.5, geometric_init=False)
    plain_radial = torch.nn.functional.cosine_similarity(plain.gradient(x), x, dim=-1)
    assert plain_radial.mean().abs() < 0.3


def test_small_network_init_radius_is_configurable():
    torch.manual_seed(1)
    field = SDFField(hidden_dim=128, n_layers=4, skips=[2], init_radius=0.3, feature_dim=16)
    x = shell_points(2048, 0.2, 0.7, seed=1)
    with torch.no_grad():
        sdf, feature = field(x)
    assert feature.shape == (2048, 16)
    assert (sdf[:, 0] - (x.norm(dim=-1) - 0.3)).abs().mean() < 0.1


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    field = SDFField(hidden_dim=64, n_layers=4, skips=[2], feature_dim=8).double()
    x = shell_points(64, 0.1, 0.9).double()
    grad = field.gradient(x)
    eps = 1e-6
    axes = torch.eye(3, dtype=x.dtype)
    fd = torch.stack([(field.sdf(x + eps * e) - field.sdf(x - eps * e))[:, 0] / (2 * eps) for e in axes], -1)
    torch.testing.assert_close(grad, fd, atol=1e-6, rtol=1e-5)


def test_gradient_is_differentiable_in_training_and_detached_in_eval():
    field = SDFField(hidden_dim=32, n_layers=3, skips=[], feature_dim=4)
    x = shell_points(16, 0.1, 0.9)
    field.train()
    sdf, feature, grad = field.sdf_feature_gradient(x)
    assert grad.requires_grad
    ((grad.norm(dim=-1) - 1) ** 2).mean().backward()  # the eikonal loss reaches the weights
    hidden = [p for layer in field.layers[:-1] for p in layer.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hidden)
    field.eval()
    with torch.no_grad():
        sdf, feature, grad = field.sdf_feature_gradient(x)
    assert not grad.requires_grad and not sdf.requires_grad and grad.abs().sum() > 0


def test_color_field_and_variance():
    color = ColorField(feature_dim=8, hidden_dim=32, n_layers=2)
    n = 10
    rgb = color(torch.randn(n, 3), torch.randn(n, 3), torch.randn(n, 3), torch.randn(n, 8))
    assert rgb.shape == (n, 3) and ((rgb > 0) & (rgb < 1)).all()
    var = SingleVariance(0.3)
    assert math.isclose(float(var().detach()), math.exp(3.0), rel_tol=1e-6)
