"""Per-frame and per-image latent codes (GLO embeddings), looked up from what the rays carry.

* ``FrameLatents``: one code per distinct *training time* (a frame of the capture). A ray carries
  its moment ``t`` in [0, 1] (``ray_bundle.extras["time"]``); at a training time the lookup returns
  that frame's code exactly, between two training times the linear interpolation of the codes of
  the two neighbouring times, before the first / after the last time the first / last code.
  One function for training and rendering alike, so a test view or a render at an unseen moment
  sees a code that is continuous in time (HyperNeRF's ``_encode_embed`` interpolates codes the same
  way for its interpolation renders).
* ``AppearanceCodes``: one code per appearance id seen in training
  (``ray_bundle.extras["appearance_id"]``); an id never seen in training, or rays without ids,
  get the code of the smallest training id ("code 0").

Codes are ``nn.Parameter``s, checkpointed and resumed like any weight; the times / ids they
belong to are persistent buffers, so a checkpoint names its own frames. Initialisation as the
official GLO embeddings (google/hypernerf ``GLOEmbed``): uniform in [0, 0.05).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

GLO_INIT_SCALE = 0.05  # google/hypernerf modules.GLOEmbed: nn.initializers.uniform(scale=0.05)


def interpolate_latents(times: Tensor, codes: Tensor, t: Tensor) -> Tensor:
    """Codes at moments ``t`` [n, 1] from ``codes`` [k, d] at the sorted distinct ``times`` [k].

    Linear in t between the two neighbouring times (exactly ``codes[j]`` at ``times[j]``),
    clamped to the first / last code outside [times[0], times[-1]]. -> [n, d].
    """
    k = times.shape[0]
    t = t.reshape(-1).to(times.dtype)  # [n]
    if k == 1:
        return codes[:1].expand(t.shape[0], -1)
    hi = torch.searchsorted(times, t, right=True).clamp(1, k - 1)  # [n]: times[hi-1] <= t < times[hi]
    lo = hi - 1
    frac = ((t - times[lo]) / (times[hi] - times[lo])).clamp(0.0, 1.0)[:, None]  # [n, 1]
    return (1.0 - frac) * codes[lo] + frac * codes[hi]


def _sorted_unique(values, dtype) -> Tensor:
    out = torch.unique(torch.as_tensor(values, dtype=dtype).reshape(-1).cpu())  # sorted
    if out.numel() == 0:
        raise ValueError("latent codes need at least one training frame")
    return out


class FrameLatents(nn.Module):
    """``dim``-channel codes of the distinct training ``times``; ``forward(t [n, 1]) -> [n, dim]``."""

    def __init__(self, times, dim: int):
        super().__init__()
        times = _sorted_unique(times, torch.float32)
        self.register_buffer("times", times)  # [k] sorted distinct training times
        self.codes = nn.Parameter(torch.rand(times.shape[0], dim) * GLO_INIT_SCALE)  # [k, dim]

    def forward(self, t: Tensor) -> Tensor:
        return interpolate_latents(self.times, self.codes, t)


class AppearanceCodes(nn.Module):
    """``dim``-channel codes of the distinct training appearance ``ids``; unseen ids -> code 0."""

    def __init__(self, ids, dim: int):
        super().__init__()
        ids = _sorted_unique(ids, torch.int64)
        self.register_buffer("ids", ids)  # [a] sorted distinct training ids
        self.codes = nn.Parameter(torch.rand(ids.shape[0], dim) * GLO_INIT_SCALE)  # [a, dim]

    def forward(self, appearance_id: Tensor | None, n: int) -> Tensor:
        """Codes [n, dim] of ``appearance_id`` [n, 1] (int64), or all code 0 when it is None."""
        if appearance_id is None:
            return self.codes[:1].expand(n, -1)
        a = appearance_id.reshape(-1).to(self.ids.device)  # [n]
        row = torch.searchsorted(self.ids, a).clamp(max=self.ids.shape[0] - 1)  # [n]
        row = torch.where(self.ids[row] == a, row, torch.zeros_like(row))
        return self.codes[row]
