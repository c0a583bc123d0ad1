"""TensorBoard logging for rank 0 (other ranks get a logger that does nothing).

Scalars, grouped into TensorBoard sections by their prefix:
    train/loss, train/<each named loss>, train/psnr     losses as the model weighted them
    lr/<param group>                                   learning rate
    perf/rays_per_s, perf/step_ms                      throughput and wall time per step
    perf/data_wait_ms, perf/data_wait_frac             time blocked on the datamanager (ms, fraction of step)
    perf/gpu_mem_mb, perf/gpu_mem_peak_mb              on CUDA
    eval/psnr, eval/ssim                               on held-out images
Images (``eval/rgb``: prediction | ground truth side by side, ``eval/depth``, ``eval/normals`` for
NeuS) and meshes (``eval/mesh``, TensorBoard's mesh plugin) at eval time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def colorize_depth(depth: Tensor, acc: Tensor | None = None) -> Tensor:
    """Depth [H, W, 1] -> RGB [H, W, 3] in [0, 1]: near is bright, far is dark (a turbo-like ramp).

    The range is taken between the 1st and 99th percentile of depths where the accumulation is
    meaningful (> 0.5, or everywhere without ``acc``), so a few stray samples do not wash it out.
    """
    d = depth[..., 0].float()
    valid = (acc[..., 0] > 0.5) if acc is not None else torch.ones_like(d, dtype=torch.bool)
    vals = d[valid] if valid.any() else d.flatten()
    if vals.numel() > 100_000:  # quantile has an input-size limit; a strided subset is plenty
        vals = vals[:: vals.numel() // 100_000 + 1]
    lo, hi = torch.quantile(vals, 0.01), torch.quantile(vals, 0.99)
    x = ((d - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    x = 1.0 - x  # near = 1
    # Piecewise-linear blue -> cyan -> green -> yellow -> red ramp.
    stops = torch.tensor(
        [[0.19, 0.07, 0.23], [0.12, 0.56, 0.95], [0.2, 0.9, 0.45], [0.98, 0.84, 0.2], [0.8, 0.1, 0.05]],
        dtype=x.dtype,
        device=x.device,
    )
    pos = x * (len(stops) - 1)
    i0 = pos.floor().long().clamp(max=len(stops) - 2)
    f = (pos - i0)[..., None]
    rgb = stops[i0] * (1 - f) + stops[i0 + 1] * f
    if acc is not None:
        rgb = rgb * acc.float().clamp(0, 1)
    return rgb


def normals_to_rgb(normals: Tensor) -> Tensor:
    """Unit normals [H, W, 3] in [-1, 1] -> RGB [H, W, 3] in [0, 1]."""
    return (normals.float() * 0.5 + 0.5).clamp(0, 1)


def to_uint8(img: Tensor) -> np.ndarray:
    """[H, W, C] float in [0, 1] -> numpy uint8."""
    return (img.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


class TBLogger:
    """A thin wrapper around ``SummaryWriter``; inactive (every call a no-op) off rank 0."""

    def __init__(self, log_dir: str | Path | None, active: bool = True):
        self.writer = None
        if active and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    @property
    def active(self) -> bool:
        return self.writer is not None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), step)

    def image(self, name: str, img: Tensor, step: int) -> None:
        """``img`` [H, W, 3] float in [0, 1]."""
        if self.writer is None:
            return
        self.writer.add_image(name, to_uint8(img), step, dataformats="HWC")

    def mesh(self, name: str, vertices: np.ndarray, faces: np.ndarray, step: int, colors=None) -> None:
        """A triangle mesh for TensorBoard's mesh plugin (vertices [v, 3], faces [f, 3])."""
        if self.writer is None or len(faces) == 0:
            return
        v = torch.as_tensor(np.asarray(vertices, dtype=np.float32))[None]
        f = torch.as_tensor(np.asarray(faces, dtype=np.int32))[None]
        c = None if colors is None else torch.as_tensor(np.asarray(colors, dtype=np.uint8))[None]
        self.writer.add_mesh(name, vertices=v, faces=f, colors=c, global_step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def gpu_memory_mb(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    return {
        "perf/gpu_mem_mb": torch.cuda.memory_allocated(device) / 2**20,
        "perf/gpu_mem_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
    }
