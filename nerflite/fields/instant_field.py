"""The instant-ngp radiance field: a hash grid, a tiny density MLP and a tiny colour MLP.

    x in [0, 1]^3 --HashEncoding--> [m, L F] --Linear(64)+ReLU--Linear(1 + g)--> raw sigma, geo features h
    sigma = trunc_exp(raw sigma)                                         (exp, gradient clamped)
    (SH_4(d) [m, 16], h [m, g]) --Linear(64)+ReLU--Linear(64)+ReLU--Linear(3)+sigmoid--> rgb

``SH_4`` are the 16 real spherical harmonics of degree < 4 of the unit view direction (the basis
instant-ngp's ``SphericalHarmonics`` encoding uses).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerflite.fields.hash_encoding import HashEncoding


class _TruncExp(torch.autograd.Function):
    """exp(x) whose backward uses exp(min(x, 15)), so a large raw density cannot blow up a step."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """exp with a clamped gradient (instant-ngp's density activation): [m] -> [m]."""
    return _TruncExp.apply(x)


def spherical_harmonics_4(d: Tensor) -> Tensor:
    """The 16 real spherical harmonics of degrees 0..3 at unit directions d [m, 3] -> [m, 16]."""
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ],
        dim=-1,
    )


class InstantField(nn.Module):
    """(x [m, 3] in [0, 1]^3, unit viewdirs [m, 3]) -> (sigma [m] >= 0, rgb [m, 3]); see the module docstring.

    ``cond_dim`` > 0: ``forward`` also takes ``cond`` [m, cond_dim], fed to the colour MLP only (the
    dynamic model's time code), so it can change colours but not geometry."""

    def __init__(
        self,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        hidden: int = 64,
        geo_features: int = 15,
        density_bias: float = -1.0,
        cond_dim: int = 0,
    ):
        super().__init__()
        self.encoding = HashEncoding(n_levels, n_features, log2_table_size, base_resolution, max_resolution)
        self.density_mlp = nn.Sequential(
            nn.Linear(self.encoding.out_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1 + geo_features)
        )
        self.color_mlp = nn.Sequential(
            nn.Linear(16 + geo_features + cond_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 3),
        )
        self.density_bias = density_bias  # raw sigma offset: a fresh field starts nearly empty

    def density(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma [m], geometry features [m, g]) at x [m, 3] in [0, 1]^3."""
        h = self.density_mlp(self.encoding(x))  # [m, 1 + g]
        raw, geo = h[:, 0], h[:, 1:]
        return trunc_exp(raw.float() + self.density_bias), geo

    def forward(self, x: Tensor, viewdirs: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        sigma, geo = self.density(x)
        sh = spherical_harmonics_4(viewdirs).to(geo.dtype)  # [m, 16]
        parts = [sh, geo] if cond is None else [sh, geo, cond.to(geo.dtype)]  # cond [m, cond_dim]: colour only
        rgb = torch.sigmoid(self.color_mlp(torch.cat(parts, dim=-1)).float())  # [m, 3]
        return sigma, rgb
