"""D-NeRF's fields (Pumarola et al., CVPR 2021): a deformation MLP into a canonical NeRF.

    Psi_t(x, t) = 0                                  if t = 0 (the canonical frame, eq. 1)
                = MLP([gamma(x), gamma(t)]) = dx     otherwise
    Psi_x(x + dx, d) = (sigma, c)                    the vanilla NeRF field (``NeRFField``)

As albertpumarola/D-NeRF (``DirectTemporalNeRF``): the deformation MLP has ``depth`` Linear+ReLU
layers of ``width`` channels on the concatenated encodings of x (``multires`` octaves, with x
itself) and t (the official code builds the time embedder with the same ``multires`` as x: 10
octaves, 21 channels), re-feeds gamma(x) alone (not gamma(t)) after the skip layers, and ends in a
Linear to dx [3] without activation. The canonical field encodes x + dx exactly as vanilla NeRF
encodes x. The official code zeroes dx when the batch's time is 0 (one time per batch there); here
it is zeroed per point with ``t == 0``, the same function for any batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerflite.fields.encodings import PositionalEncoding
from nerflite.fields.mlp import SkipMLP
from nerflite.fields.nerf_field import NeRFField


class TimeDeformation(nn.Module):
    """Psi_t: (x [m, 3], t [m, 1]) -> dx [m, 3], exactly 0 where t == 0 when ``zero_canonical``."""

    def __init__(self, depth: int = 8, width: int = 256, skips=(4,), pos_freqs: int = 10, time_freqs: int = 10,
                 zero_canonical: bool = True):
        super().__init__()
        self.zero_canonical = zero_canonical
        self.pos_enc = PositionalEncoding(pos_freqs, include_input=True, in_dim=3)
        self.time_enc = PositionalEncoding(time_freqs, include_input=True, in_dim=1)
        pe = self.pos_enc.out_dim
        self.mlp = SkipMLP(pe + self.time_enc.out_dim, width, depth, 3, skips=skips, skip_dim=pe)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        ex = self.pos_enc(x)  # [m, pe]
        dx = self.mlp(torch.cat([ex, self.time_enc(t)], dim=-1), skip=ex)  # [m, 3]
        if self.zero_canonical:
            dx = torch.where(t == 0, torch.zeros_like(dx), dx)
        return dx


class DNeRFField(nn.Module):
    """(x [m, 3], d [m, 3], t [m, 1]) -> (raw sigma [m, 1], rgb [m, 3], dx [m, 3]).

    ``deformation``: a ``TimeDeformation``; ``canonical``: a ``NeRFField`` queried at x + dx.
    """

    def __init__(self, deformation: TimeDeformation, canonical: NeRFField):
        super().__init__()
        self.deformation = deformation
        self.canonical = canonical

    def forward(self, x: Tensor, viewdirs: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dx = self.deformation(x, t)  # [m, 3]
        sigma, rgb = self.canonical(x + dx, viewdirs)
        return sigma, rgb, dx
