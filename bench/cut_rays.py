"""The sampling ``lego_fast`` used before whole rays, kept as a benchmark baseline only: every ray
keeps its first ``sample_budget // rays`` marched samples and the background is composited behind
the cut as if the ray had ended (``bench/time_to_psnr.py --models instant instant_cut``)."""

from __future__ import annotations

import torch

from nerflite.models.instant import InstantModel
from nerflite.raymath.marching import PackedSamples, march


class CutRaysModel(InstantModel):
    def sample(self, rays):
        if not self.training or self.cfg.sample_budget <= 0:
            return super().sample(rays)
        t0, t1 = self.ray_interval(rays)
        t0 = t0 + torch.rand_like(t0) * self.step_size
        s = march(rays.origins, rays.directions, t0, t1, self.occupied, self.step_size, self.max_steps,
                  self.cone_angle, coarse=self.coarse())
        n, share = len(rays), max(self.cfg.sample_budget // len(rays), 1)
        first = torch.zeros(n, dtype=torch.long).index_add_(0, s.ray_indices, torch.ones_like(s.ray_indices))
        start = torch.cumsum(first, 0) - first  # [n] index of each ray's first sample
        rank = torch.arange(len(s.ray_indices)) - start[s.ray_indices]  # position of a sample in its ray
        keep = rank < share
        return PackedSamples(s.t_starts[keep], s.t_ends[keep], s.ray_indices[keep], None, n)
