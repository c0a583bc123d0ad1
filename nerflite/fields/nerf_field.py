"""The NeRF MLP: positional encodings, an 8x256 trunk with a skip, density and view-dependent colour.

    x --PE--> [Linear+ReLU] x depth (the encoded input is concatenated again after each layer in
    ``skips``) --> trunk features h
    h --> density head: raw sigma [m, 1] (no activation: the model adds training noise, then ReLU)
    h --> feature Linear (no activation) --concat PE(d)--> Linear+ReLU (width/2) --> Linear+sigmoid
      --> rgb [m, 3]

The density head and the feature layer read the same features, so they are one fused Linear of
width ``1 + width``. Without view directions a single Linear maps h to (raw sigma, raw rgb).

Two hooks let the deformable models reuse this field as their canonical / template NeRF:
``encoder`` replaces the positional encoding of the points (any module with an ``out_dim``;
HyperNeRF's template encodes (x', w) with windowed encodings), and ``cond_dim`` > 0 adds a
per-point condition (HyperNeRF's appearance code) to the colour branch, beside the encoded view
direction, so it can change colour but never density.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerflite.fields.encodings import PositionalEncoding


class NeRFField(nn.Module):
    """(points [m, in_dim], viewdirs [m, 3][, cond [m, cond_dim]]) -> (raw sigma [m, 1] before
    activation, rgb [m, 3] in (0, 1)).

    ``in_dim`` is 3 for points, 4 for the inverse-sphere coordinates (x/r, y/r, z/r, 1/r) of an
    unbounded background. The returned density is *raw*: apply ``relu`` (after optional noise) to
    get sigma >= 0.
    """

    def __init__(
        self,
        depth: int = 8,
        width: int = 256,
        skips: list[int] | tuple[int, ...] = (4,),
        pos_freqs: int = 10,
        dir_freqs: int = 4,
        use_viewdirs: bool = True,
        in_dim: int = 3,
        encoder: nn.Module | None = None,
        cond_dim: int = 0,
    ):
        super().__init__()
        if cond_dim > 0 and not use_viewdirs:
            raise ValueError("NeRFField: a colour condition (cond_dim > 0) needs the view branch (use_viewdirs)")
        self.skips = set(skips)
        self.use_viewdirs = use_viewdirs
        self.pos_enc = PositionalEncoding(pos_freqs, include_input=True, in_dim=in_dim) if encoder is None else encoder
        self.dir_enc = PositionalEncoding(dir_freqs, include_input=True, in_dim=3)
        pe = self.pos_enc.out_dim
        # layer i reads the encoded input (i == 0) or the previous width, plus the encoded input
        # again after a skip layer
        self.trunk = nn.ModuleList(
            nn.Linear(pe if i == 0 else width + (pe if (i - 1) in self.skips else 0), width)
            for i in range(depth)
        )
        head_in = width + (pe if (depth - 1) in self.skips else 0)
        if use_viewdirs:
            self.sigma_feature = nn.Linear(head_in, 1 + width)  # density | features, one matmul
            self.view = nn.Linear(width + self.dir_enc.out_dim + cond_dim, width // 2)
            self.rgb = nn.Linear(width // 2, 3)
        else:
            self.output = nn.Linear(head_in, 4)

    def forward(
        self, points: Tensor, viewdirs: Tensor | None = None, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        x = self.pos_enc(points)  # [m, pe]
        h = x
        for i, layer in enumerate(self.trunk):
            h = F.relu(layer(h), inplace=True)  # [m, width] (in place: the Linear keeps no output)
            if i in self.skips:
                h = torch.cat([x, h], dim=-1)  # [m, pe + width]
        if not self.use_viewdirs:
            out = self.output(h)  # [m, 4]
            return out[:, :1], torch.sigmoid(out[:, 1:])
        sf = self.sigma_feature(h)  # [m, 1 + width]
        sigma, feat = sf.split([1, sf.shape[-1] - 1], dim=-1)  # [m, 1], [m, width]
        view_in = [feat, self.dir_enc(viewdirs)] + ([cond] if cond is not None else [])
        h = F.relu(self.view(torch.cat(view_in, dim=-1)), inplace=True)  # [m, width/2]
        return sigma, torch.sigmoid(self.rgb(h))
