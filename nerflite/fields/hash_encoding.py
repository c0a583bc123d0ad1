"""Multiresolution hash encoding (instant-ngp, Mueller et al. 2022), in pure PyTorch.

Level l of L has resolution ``N_l = floor(N_min * b^l)`` with the growth factor
``b = exp((ln N_max - ln N_min) / (L - 1))``. A point x in [0, 1]^3 is scaled to ``x * N_l``; the 8
corners of its cell index the level's table of ``F``-wide feature vectors, and the features are
blended trilinearly. The table index of a corner (i, j, k) is

    dense   i + j (N_l + 1) + k (N_l + 1)^2                        when (N_l + 1)^3 <= T
    hashed  (i * 1  XOR  j * 2654435761  XOR  k * 805459861)  mod T  otherwise

with T = 2^log2_table_size (the paper's primes; the multiplications are exact in int64 and T is a
power of two, so ``mod T`` equals the paper's uint32 arithmetic followed by ``mod T``). Dense levels
store only (N_l + 1)^3 entries. All levels live in one flat table and are looked up with a single
gather, so the forward is a handful of vectorised ops over [m, L, 8] whatever L is. Entries start
uniform in (-1e-4, 1e-4). Output: the L levels' features concatenated, level-major:
[m, L * F].

Progressive training (coarse-to-fine, as in Neuralangelo / neus2): ``n_active_levels = k`` zeroes
the features of levels >= k (and so their gradients).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PRIMES = (1, 2654435761, 805459861)  # the paper's spatial-hash primes, one per axis
# the 8 cell corners as (dx, dy, dz) offsets in {0, 1}, x fastest
CORNERS = [[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)]


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """``N_l = floor(N_min * b^l)`` for l = 0 .. L-1 (the paper's eq. 2-3)."""
    if n_levels == 1:
        return [base_resolution]
    b = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * b**level + 1e-6)) for level in range(n_levels)]


class HashEncoding(nn.Module):
    """x [m, 3] in [0, 1]^3 -> features [m, n_levels * n_features] (see the module docstring).

    Attributes:
        out_dim: ``n_levels * n_features``.
        resolutions: N_l per level (list of int).
        n_active_levels: levels whose features are kept (the rest read as zero); default all.
    """

    def __init__(
        self,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
    ):
        super().__init__()
        if n_levels < 1 or n_features < 1 or base_resolution < 1 or max_resolution < base_resolution:
            raise ValueError(
                "HashEncoding needs n_levels >= 1, n_features >= 1 and 1 <= base_resolution <= max_resolution"
            )
        self.n_levels = n_levels
        self.n_features = n_features
        self.table_size = 2**log2_table_size
        self.out_dim = n_levels * n_features
        self.resolutions = level_resolutions(n_levels, base_resolution, max_resolution)
        self.n_active_levels = n_levels
        sizes = [min((r + 1) ** 3, self.table_size) for r in self.resolutions]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        dense = [(r + 1) ** 3 <= self.table_size for r in self.resolutions]
        self.register_buffer("_res", torch.tensor(self.resolutions, dtype=torch.int64), persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False)
        self.register_buffer("_dense", torch.tensor(dense), persistent=False)
        self.register_buffer("_corners", torch.tensor(CORNERS, dtype=torch.int64), persistent=False)
        self.register_buffer("_primes", torch.tensor(PRIMES, dtype=torch.int64), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], n_features).uniform_(-1e-4, 1e-4))  # [sum sizes, F]

    def level_mask(self) -> Tensor:
        """[L] 1 for the active levels, 0 for levels >= ``n_active_levels``."""
        return (torch.arange(self.n_levels, device=self.table.device) < self.n_active_levels).to(self.table.dtype)

    def corner_indices(self, cell: Tensor) -> Tensor:
        """Flat table rows of the 8 corners of integer cells ``cell`` [m, L, 3] -> [m, L, 8]."""
        c = cell[:, :, None, :] + self._corners  # [m, L, 8, 3]
        stride = self._res + 1  # [L]
        dense_idx = c[..., 0] + stride[:, None] * (c[..., 1] + stride[:, None] * c[..., 2])  # [m, L, 8]
        h = c * self._primes
        hashed_idx = torch.bitwise_xor(torch.bitwise_xor(h[..., 0], h[..., 1]), h[..., 2])
        hashed_idx = torch.bitwise_and(hashed_idx, self.table_size - 1)  # mod T (a power of two)
        idx = torch.where(self._dense[:, None], dense_idx, hashed_idx)  # [m, L, 8]
        return idx + self._offsets[:, None]

    def forward(self, x: Tensor) -> Tensor:
        m = x.shape[0]
        dtype = self.table.dtype
        pos = x.to(dtype).clamp(0.0, 1.0)[:, None, :] * self._res[:, None].to(dtype)  # [m, L, 3]
        # cell of the point: clamped so that x = 1 falls in the last cell with fraction 1
        cell = torch.minimum(pos.detach().floor().long(), (self._res - 1).clamp(min=0)[:, None])  # [m, L, 3]
        frac = pos - cell.to(dtype)  # [m, L, 3] in [0, 1]
        idx = self.corner_indices(cell)  # [m, L, 8]
        feats = self.table[idx.reshape(-1)].reshape(m, self.n_levels, 8, self.n_features)  # [m, L, 8, F]
        corner = self._corners.to(dtype)  # [8, 3]
        f = frac[:, :, None, :]  # [m, L, 1, 3]
        wxyz = corner * f + (1 - corner) * (1 - f)  # [m, L, 8, 3]
        w = wxyz[..., 0] * wxyz[..., 1] * wxyz[..., 2]  # [m, L, 8] trilinear weights (no prod: its backward is slow)
        out = (w[..., None] * feats).sum(dim=2)  # [m, L, F]
        if self.n_active_levels < self.n_levels:
            out = out * self.level_mask()[:, None]
        return out.reshape(m, self.out_dim)

    def extra_repr(self) -> str:
        return (
            f"n_levels={self.n_levels}, n_features={self.n_features}, table_size={self.table_size}, "
            f"resolutions={self.resolutions[0]}..{self.resolutions[-1]}, params={self.table.shape[0]}"
        )
