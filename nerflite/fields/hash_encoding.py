"""Multiresolution hash encoding (instant-ngp, Mueller et al. 2022), in pure PyTorch.

Level l of L has resolution ``N_l = floor(N_min * b^l)`` with the growth factor
``b = exp((ln N_max - ln N_min) / (L - 1))``. A point x in [0, 1]^3 is scaled to ``x * N_l``; the 8
corners of its cell index the level's table of ``F``-wide feature vectors, and the features are
blended trilinearly. The table index of a corner (i, j, k) is

    dense   i + j (N_l + 1) + k (N_l + 1)^2                        when (N_l + 1)^3 <= T
    hashed  (i * 1  XOR  j * 2654435761  XOR  k * 805459861)  mod T  otherwise

with T = 2^log2_table_size (the paper's primes; the multiplications are exact in int64 and T is a
power of two, so ``mod T`` equals the paper's uint32 arithmetic followed by ``mod T``). Dense levels
(the coarse ones) store only (N_l + 1)^3 entries. All levels live in one flat table and are looked
up with a single gather; indices and weights are built per axis ([m, L, 2]) and combined into the
8 corners only at the end, so the forward is a handful of vectorised ops whatever L is. Entries start
uniform in (-1e-4, 1e-4). Output: the L levels' features concatenated, level-major:
[m, L * F].

Progressive training (coarse-to-fine, as in Neuralangelo / neus2): ``n_active_levels = k`` zeroes
the features of levels >= k (and so their gradients).

Two paths compute the same features. When the points need no gradient (NeRF: the sample points
are data), ``_GatherBlend`` gathers the corner rows with ``index_select`` and blends them in one
product, and its backward scatters ``weight * grad`` into the table with ``index_add_`` (atomic
adds on a GPU; the gradient of ``table[idx]`` is the sort-based ``index_put_`` instead) without
keeping the gathered features. When the points need gradients (NeuS: normals, eikonal loss, with
a second derivative), the plain autograd path below is used; it is also the reference the fast
path is tested against (``tests/test_hash_encoding.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PRIMES = (1, 2654435761, 805459861)  # the paper's spatial-hash primes, one per axis
PRIMES_I32 = tuple(p - 2**32 if p >= 2**31 else p for p in PRIMES)  # the same bits as int32


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """``N_l = floor(N_min * b^l)`` for l = 0 .. L-1 (the paper's eq. 2-3)."""
    if n_levels == 1:
        return [base_resolution]
    b = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * b**level + 1e-6)) for level in range(n_levels)]


class _GatherBlend(torch.autograd.Function):
    """sum_c w[m, l, c] * table[idx[m, l, c]] -> [m, L, F]; gradient for the table only."""

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:  # idx, w: [m, L, 8]
        m, n_levels, _ = w.shape
        feats = table.index_select(0, idx.reshape(-1)).view(m, n_levels, 8, table.shape[1])  # [m, L, 8, F]
        ctx.save_for_backward(idx, w)
        ctx.table_rows = table.shape[0]
        return (feats * w[..., None].to(feats.dtype)).sum(dim=2)  # [m, L, F]

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [m, L, F]
        idx, w = ctx.saved_tensors
        contrib = (w[..., None].to(grad.dtype) * grad[:, :, None, :]).reshape(-1, grad.shape[-1])  # [m L 8, F]
        table_grad = torch.zeros(ctx.table_rows, grad.shape[-1], dtype=grad.dtype, device=grad.device)
        rows = idx.reshape(-1).long()  # index_add_ is several times slower with int32 indices on a CPU
        return table_grad.index_add_(0, rows, contrib), None, None


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
        if log2_table_size > 31:
            raise ValueError(f"HashEncoding: log2_table_size must be <= 31, got {log2_table_size}")
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
        self.register_buffer("_offsets", torch.tensor(offsets[:-1], dtype=torch.int32), persistent=False)
        self.register_buffer("_stride", torch.tensor([r + 1 for r in self.resolutions], dtype=torch.int32),
                             persistent=False)  # fmt: skip
        self.n_dense = sum(dense)  # dense levels (the coarse ones: a prefix)
        self.register_buffer("_step", torch.tensor([0, 1], dtype=torch.int32), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], n_features).uniform_(-1e-4, 1e-4))  # [sum sizes, F]

    def level_mask(self) -> Tensor:
        """[L] 1 for the active levels, 0 for levels >= ``n_active_levels``."""
        return (torch.arange(self.n_levels, device=self.table.device) < self.n_active_levels).to(self.table.dtype)

    def corner_indices(self, cell: Tensor) -> Tensor:
        """Flat table rows of the 8 corners of integer cells ``cell`` [m, L, 3] -> [m, L, 2, 2, 2]
        (corner (dz, dy, dx) at [..., dz, dy, dx]), int32. Per axis the two corner coordinates are
        combined first ([m, L, 2]), so only the last step is 8 wide; dense levels are a prefix."""
        # int32 throughout: twice as fast as int64 on CPUs and half the memory; products wrap modulo
        # 2^32 exactly as the paper's uint32 hash does, and T <= 2^31 keeps the low bits ``mod T`` reads
        c = cell.int()[..., None] + self._step  # [m, L, 3, 2]: each axis' two corner coordinates
        cx, cy, cz = c[:, :, 0], c[:, :, 1], c[:, :, 2]  # [m, L, 2]
        idx = torch.empty(*cell.shape[:2], 2, 2, 2, dtype=torch.int32, device=cell.device)  # [m, L, 2, 2, 2]
        nd = self.n_dense
        if nd > 0:
            stride = self._stride[:nd, None]  # [Ld, 1]
            x, y, z = cx[:, :nd], cy[:, :nd] * stride, cz[:, :nd] * (stride * stride)
            idx[:, :nd] = z[..., :, None, None] + y[..., None, :, None] + x[..., None, None, :]
        if nd < self.n_levels:
            x, y, z = cx[:, nd:], cy[:, nd:] * PRIMES_I32[1], cz[:, nd:] * PRIMES_I32[2]
            h = torch.bitwise_xor(z[..., :, None, None], y[..., None, :, None])  # [m, L', 2, 2, 1]
            h = torch.bitwise_xor(h, x[..., None, None, :])  # [m, L', 2, 2, 2]
            idx[:, nd:] = torch.bitwise_and(h, self.table_size - 1)  # mod T (a power of two)
        return idx.add_(self._offsets[:, None, None, None])

    def forward(self, x: Tensor) -> Tensor:
        m = x.shape[0]
        dtype = self.table.dtype
        pos = x.to(dtype).clamp(0.0, 1.0)[:, None, :] * self._res[:, None].to(dtype)  # [m, L, 3]
        # cell of the point: clamped so that x = 1 falls in the last cell with fraction 1
        cell = torch.minimum(pos.detach().floor().long(), (self._res - 1).clamp(min=0)[:, None])  # [m, L, 3]
        frac = pos - cell.to(dtype)  # [m, L, 3] in [0, 1]
        idx = self.corner_indices(cell)  # [m, L, 2, 2, 2]
        wa = torch.stack([1 - frac, frac], dim=-1)  # [m, L, 3, 2] per-axis weights of the two corners
        wx, wy, wz = wa[:, :, 0], wa[:, :, 1], wa[:, :, 2]  # [m, L, 2]
        w = wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]  # [m, L, 2, 2, 2]
        if x.requires_grad and torch.is_grad_enabled():  # the reference path: differentiable in x
            feats = self.table[idx.reshape(-1).long()].reshape(m, self.n_levels, 8, self.n_features)  # [m, L, 8, F]
            out = torch.matmul(w.reshape(m, self.n_levels, 1, 8), feats).reshape(m, self.n_levels, self.n_features)
        else:
            out = _GatherBlend.apply(self.table, idx.reshape(m, self.n_levels, 8), w.reshape(m, self.n_levels, 8))
        if self.n_active_levels < self.n_levels:
            out = out * self.level_mask()[:, None]
        return out.reshape(m, self.out_dim)

    def extra_repr(self) -> str:
        return (
            f"n_levels={self.n_levels}, n_features={self.n_features}, table_size={self.table_size}, "
            f"resolutions={self.resolutions[0]}..{self.resolutions[-1]}, params={self.table.shape[0]}"
        )
