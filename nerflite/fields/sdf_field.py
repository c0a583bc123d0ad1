"""The fields of NeuS: a signed distance MLP, a colour MLP on the surface, and the learned sharpness.

* ``SDFField``: positional encoding -> 8 x 256 MLP with a skip, softplus(beta=100) activations,
  weight normalization, and the geometric initialization that makes the untrained network
  approximately the signed distance to a sphere of radius ``init_radius`` (negative inside).
  Its last layer gives the SDF and a feature vector for colour; ``gradient`` is the spatial
  gradient by autograd (with ``create_graph`` while training, so the eikonal loss and the
  normals of the colour field can back-propagate into the weights).
* ``ColorField`` ("idr" mode): colour from the point, the SDF normal, the encoded view direction
  and the feature vector, squeezed to [0, 1] by a sigmoid.
* ``SingleVariance``: one scalar parameter ``v`` with ``inv_s = exp(10 v)``, the sharpness of the
  logistic density that NeuS puts around the zero level set.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from nerflite.fields.encodings import PositionalEncoding


def _linear(in_dim: int, out_dim: int, use_weight_norm: bool, init) -> nn.Module:
    layer = nn.Linear(in_dim, out_dim)
    init(layer)
    return _weight_norm(layer) if use_weight_norm else layer


def _geometric_init(i: int, enc_dim: int, in_dim: int, out_dim: int, last: bool, skip: bool, radius: float):
    """Initialization that makes the network ~ |x| - radius: He-normal hidden layers that see only
    the raw coordinates (weights on the encoded frequencies start at zero, also at the skip), and a
    last layer whose mean weight turns the expected norm of the ReLU-like features back into |x|."""

    def init(layer: nn.Linear) -> None:
        with torch.no_grad():
            layer.bias.zero_()
            if last:
                nn.init.normal_(layer.weight, mean=math.sqrt(math.pi) / math.sqrt(in_dim), std=1e-4)
                layer.bias.fill_(-radius)
                return
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(out_dim))
            if i == 0:
                layer.weight[:, 3:] = 0.0  # only the raw xyz at first
            elif skip:
                layer.weight[:, -(enc_dim - 3):] = 0.0  # the re-injected encoding: raw xyz only

    return init


class SDFField(nn.Module):
    """x [m, 3] -> sdf [m, 1], feature [m, feature_dim]; geometric initialization to a sphere."""

    def __init__(
        self,
        n_freqs: int = 6,
        hidden_dim: int = 256,
        n_layers: int = 8,
        skips: tuple[int, ...] | list[int] = (4,),
        feature_dim: int = 256,
        init_radius: float = 0.5,
        beta: float = 100.0,
        use_weight_norm: bool = True,
        geometric_init: bool = True,
    ):
        super().__init__()
        self.encoding = PositionalEncoding(n_freqs, include_input=True)
        in_dim = self.encoding.out_dim
        probe = torch.linspace(-1.0, 1.0, 6).reshape(2, 3)
        if geometric_init and not torch.equal(self.encoding(probe)[:, :3], probe):
            raise ValueError("geometric init needs an encoding that starts with the raw input")
        self.skips = set(skips)
        self.feature_dim = feature_dim
        dims = [in_dim] + [hidden_dim] * n_layers + [1 + feature_dim]
        layers = []
        for i in range(len(dims) - 1):
            out_dim = dims[i + 1] - in_dim if (i + 1) in self.skips else dims[i + 1]
            last = i == len(dims) - 2
            init = _geometric_init(i, in_dim, dims[i], out_dim, last, i in self.skips, init_radius)
            if not geometric_init:
                init = lambda _: None  # noqa: E731
            layers.append(_linear(dims[i], out_dim, use_weight_norm, init))
        self.layers = nn.ModuleList(layers)
        self.activation = nn.Softplus(beta=beta)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [m, 3] -> (sdf [m, 1], feature [m, feature_dim])."""
        enc = self.encoding(x)  # [m, in_dim]
        h = enc
        for i, layer in enumerate(self.layers):
            if i in self.skips:
                h = torch.cat([h, enc], -1) / math.sqrt(2.0)
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h[:, :1], h[:, 1:]

    def sdf(self, x: Tensor) -> Tensor:
        """Signed distance [m, 1] at points x [m, 3]."""
        return self.forward(x)[0]

    def sdf_feature_gradient(
        self, x: Tensor, create_graph: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One forward pass: sdf [m, 1], feature [m, F] and d sdf / dx [m, 3].

        ``create_graph`` (default: ``self.training``) keeps the gradient differentiable with
        respect to the weights. Works under ``torch.no_grad`` too (the gradient is then detached).
        """
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            sdf, feature = self.forward(x)
            (grad,) = torch.autograd.grad(
                sdf, x, torch.ones_like(sdf), create_graph=create_graph, retain_graph=create_graph
            )
        if not create_graph:
            sdf, feature, grad = sdf.detach(), feature.detach(), grad.detach()
        return sdf, feature, grad

    def gradient(self, x: Tensor, create_graph: bool | None = None) -> Tensor:
        """d sdf / dx [m, 3] at points x [m, 3] (see ``sdf_feature_gradient``)."""
        return self.sdf_feature_gradient(x, create_graph)[2]


class ColorField(nn.Module):
    """("idr" mode) point [m,3], normal [m,3], view direction [m,3], feature [m,F] -> rgb [m,3]."""

    def __init__(
        self,
        feature_dim: int = 256,
        hidden_dim: int = 256,
        n_layers: int = 4,
        n_freqs_view: int = 4,
        use_weight_norm: bool = True,
    ):
        super().__init__()
        self.view_encoding = PositionalEncoding(n_freqs_view, include_input=True)
        dims = [3 + 3 + self.view_encoding.out_dim + feature_dim] + [hidden_dim] * n_layers + [3]
        self.layers = nn.ModuleList(
            _linear(dims[i], dims[i + 1], use_weight_norm, lambda _: None) for i in range(len(dims) - 1)
        )

    def forward(self, points: Tensor, normals: Tensor, viewdirs: Tensor, feature: Tensor) -> Tensor:
        h = torch.cat([points, normals, self.view_encoding(viewdirs), feature], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return torch.sigmoid(h)  # [m, 3]


class SingleVariance(nn.Module):
    """The learned sharpness ``inv_s = exp(10 * variance)`` (1 / s of the logistic density)."""

    def __init__(self, init_val: float = 0.3):
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init_val)))

    def forward(self) -> Tensor:
        """inv_s, a 0-d tensor, clamped to [1e-6, 1e6]."""
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)
