"""A plain ReLU MLP with skip connections, the trunk of the deformation fields.

    x --[Linear+ReLU] x depth--> h --Linear--> out        (no output activation)

With ``out_dim = 0`` there is no final Linear and the MLP returns h (a trunk that heads follow).

After each layer in ``skips`` the skip input (the MLP's input unless another tensor is given) is
concatenated to the features again, nerflite's convention (``NeRFField``, D-NeRF: after layer 4).
google/hypernerf's ``MLP(skips=(4,))`` concatenates *before* its layer 4, which is after layer 3
here: its configs read ``skips=[3]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SkipMLP(nn.Module):
    """x [m, in_dim] (+ skip input [m, skip_dim]) -> [m, out_dim].

    Args:
        in_dim: input channels.
        width, depth: hidden layers (``depth`` Linear+ReLU layers of ``width`` channels).
        out_dim: channels of the final Linear (0: none; ``self.out_dim`` is then the width of h).
        skips: hidden layers after which the skip input is concatenated again.
        skip_dim: channels of the skip input (default ``in_dim``: the input itself is re-fed).
        flax_init: initialise the hidden layers as google/hypernerf (Flax) does: Glorot-uniform
            weights, zero biases (otherwise torch's default ``nn.Linear`` initialisation).
    """

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int, skips=(), skip_dim: int | None = None,
                 flax_init: bool = False):
        super().__init__()
        self.skips = set(skips)
        skip_dim = in_dim if skip_dim is None else skip_dim
        self.layers = nn.ModuleList(
            nn.Linear(in_dim if i == 0 else width + (skip_dim if (i - 1) in self.skips else 0), width)
            for i in range(depth)
        )
        last_in = (in_dim if depth == 0 else width) + (skip_dim if (depth - 1) in self.skips else 0)
        self.out = nn.Linear(last_in, out_dim) if out_dim > 0 else None
        self.out_dim = out_dim if out_dim > 0 else last_in
        if flax_init:
            for layer in self.layers:
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        skip = x if skip is None else skip
        h = x
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))  # [m, width]
            if i in self.skips:
                h = torch.cat([skip, h], dim=-1)  # [m, skip_dim + width]
        return h if self.out is None else self.out(h)
