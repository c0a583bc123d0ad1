"""A signed distance field on a multiresolution hash grid (instant-NGP encoding + a small MLP).

``HashSDFField``: unit-sphere-frame points ``x`` in [-1, 1]^3 -> ``[x, grid((x + 1) / 2)]`` ->
  MLP (softplus(beta) activations) -> (sdf, feature). The geometric initialisation of NeuS
  (weights on the grid features start at zero) makes the untrained field ``|x| - init_radius``.
Progressive levels: ``set_active_levels(k)`` zeroes the features of levels >= k, so training
can start coarse and add detail. The encoding (``nerflite.fields.hash_encoding``) is pure PyTorch
and differentiable twice, so the eikonal loss back-propagates through the SDF gradient into the
hash tables.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerflite.fields.hash_encoding import HashEncoding


class HashSDFField(nn.Module):
    """x [m, 3] (unit-sphere frame) -> sdf [m, 1], feature [m, feature_dim]; starts as a sphere."""

    def __init__(self, n_levels: int = 16, n_features: int = 2, log2_table_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, hidden_dim: int = 64,
                 n_layers: int = 1, feature_dim: int = 15, init_radius: float = 0.5, beta: float = 100.0):
        super().__init__()
        self.encoding = HashEncoding(n_levels, n_features, log2_table_size, base_resolution, max_resolution)
        dims = [3 + self.encoding.out_dim] + [hidden_dim] * n_layers + [1 + feature_dim]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        with torch.no_grad():  # geometric init (NeuS / SAL): the network starts as |x| - init_radius
            for i, layer in enumerate(self.layers):
                layer.bias.zero_()
                if i == len(self.layers) - 1:
                    nn.init.normal_(layer.weight, math.sqrt(math.pi) / math.sqrt(dims[i]), 1e-4)
                    layer.bias.fill_(-init_radius)
                else:
                    nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(dims[i + 1]))
                    if i == 0:
                        layer.weight[:, 3:] = 0.0  # grid features enter with zero weights
        self.activation = nn.Softplus(beta=beta)

    def set_active_levels(self, k: int) -> None:
        """Use the ``k`` coarsest levels only (the others' features read as zero)."""
        self.encoding.n_active_levels = max(1, min(self.encoding.n_levels, int(k)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [m, 3] -> (sdf [m, 1], feature [m, feature_dim])."""
        h = torch.cat([x, self.encoding((x + 1.0) * 0.5)], -1)  # [m, 3 + L * F]
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h[:, :1], h[:, 1:]

    def sdf(self, x: Tensor) -> Tensor:
        """Signed distance [m, 1] at points x [m, 3]."""
        return self.forward(x)[0]

    def sdf_feature_gradient(self, x: Tensor, create_graph: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One pass: sdf [m, 1], feature [m, F] and d sdf / dx [m, 3] by autograd (``create_graph``,
        default ``self.training``, keeps it differentiable for the eikonal loss and the normals)."""
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            sdf, feature = self.forward(x)
            (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=create_graph,
                                          retain_graph=create_graph)
        if not create_graph:
            sdf, feature, grad = sdf.detach(), feature.detach(), grad.detach()
        return sdf, feature, grad
