"""Vanilla NeRF: a coarse pass on stratified samples, importance resampling, a fine pass on the union.

Per batch of rays (``RayBundle``):

1. ``t_c = stratified_samples(near, far, n_samples)`` (jittered in training when ``perturb``).
2. Coarse field at ``points(t_c)`` -> raw density and colour; density noise (training only),
   ReLU, then volume rendering -> ``rgb_coarse``, ``depth_coarse``, ... and weights.
3. ``t_f = sample_pdf(midpoints(t_c), weights[:, 1:-1], n_importance)`` from the detached coarse
   weights (deterministic quantiles in eval).
4. Fine field at the sorted union ``t_c + t_f`` -> ``rgb``, ``depth``, ``accumulation``, ``disparity``.

Losses: MSE of each pass against the target colour, each weighted from config. The background
colour of the scene (white for Blender) is composited behind both passes, matching the targets the
datamanager builds from RGBA images.

Batching: ``netchunk`` points per field call (``nerflite.fields.batching.chunked_apply``);
``chunk`` rays per forward when rendering whole images (``nerflite.models.base.render_rays_chunked``);
rays per training step are the datamanager's ``rays_per_batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.fields.nerf_field import NeRFField
from nerflite.metrics import psnr
from nerflite.models.base import Model, autocast, check_amp
from nerflite.raymath.rendering import (
    accumulation,
    blend_background,
    composite,
    composite_depth,
    deltas,
    disparity,
    weights_from_density,
)
from nerflite.raymath.sampling import merge_samples, midpoints, sample_pdf, stratified_samples
from nerflite.rays import RayBundle


def render_samples(sigma: Tensor, rgb: Tensor, t: Tensor, background: Tensor | None) -> dict[str, Tensor]:
    """Volume-render densities ``sigma`` [n, s] (>= 0, activated) and colours ``rgb`` [n, s, 3] at
    depths ``t`` [n, s] -> ``rgb`` [n, 3] (``background`` [3] composited behind unless None),
    ``depth``, ``accumulation``, ``disparity`` [n, 1] and ``weights`` [n, s]. The render step of
    NeRF's passes, shared with the deformable models built on its fields."""
    weights, _ = weights_from_density(sigma, deltas(t))  # [n, s]
    acc = accumulation(weights)  # [n, 1]
    depth = composite_depth(weights, t)  # [n, 1]
    rgb_map = composite(weights, rgb)  # [n, 3]
    if background is not None:
        rgb_map = blend_background(rgb_map, acc, background)
    return {"rgb": rgb_map, "depth": depth, "accumulation": acc, "disparity": disparity(depth, acc), "weights": weights}


@dataclass
class NeRFConfig:
    name: str = "nerf"  # model type, selects NeRFModel
    netdepth: int = 8  # layers of the coarse MLP trunk
    netwidth: int = 256  # channels per layer of the coarse MLP
    netdepth_fine: int = 8  # layers of the fine MLP trunk
    netwidth_fine: int = 256  # channels per layer of the fine MLP
    skips: list[int] = field(default_factory=lambda: [4])  # trunk layers after which the input is re-fed
    multires: int = 10  # positional-encoding octaves for points (log2 of the highest frequency + 1)
    multires_views: int = 4  # positional-encoding octaves for view directions
    n_samples: int = 64  # stratified (coarse) samples per ray
    n_importance: int = 128  # extra importance samples per ray for the fine pass (0: coarse only)
    perturb: bool = True  # jitter stratified samples and draw random importance samples in training
    lindisp: bool = False  # stratified samples linear in inverse depth instead of depth
    raw_noise_std: float = 0.0  # std of Gaussian noise on raw density in training (0 Blender, 1 LLFF)
    use_viewdirs: bool = True  # view-dependent colour branch
    chunk: int = 32768  # rays per forward when rendering whole images (< 1 GB of GPU memory in fp32)
    netchunk: int = 65536  # points per field call
    rgb_coarse_weight: float = 1.0  # weight of the coarse pass's colour MSE
    rgb_weight: float = 1.0  # weight of the fine (final) pass's colour MSE
    amp: str = "none"  # autocast dtype for the field MLPs: "none" | "bf16" | "fp16" (fp16 needs a GradScaler)
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs (torch's switch is process-wide)
    compile: bool = False  # torch.compile the field MLPs (CPU: ~20% faster steps after 1-2 min of compiling)


class NeRFModel(Model):
    """Coarse and fine ``NeRFField``s and the rendering between them (see the module docstring).

    Args:
        cfg: the model's config.
        background: colour [3] composited behind every ray (``scene.background``: white for
            Blender); None composites nothing (black).
    """

    def __init__(self, cfg: NeRFConfig, background: Sequence[float] | Tensor | None = None):
        super().__init__()
        check_amp("NeRFConfig", cfg.amp)
        self.cfg = cfg
        self.step = 0
        self.coarse = self._make_field(cfg.netdepth, cfg.netwidth)
        self.fine = self._make_field(cfg.netdepth_fine, cfg.netwidth_fine) if cfg.n_importance > 0 else None
        # the callables that evaluate the fields: the modules themselves, or compiled wrappers kept
        # outside the module tree so that state_dict keys do not change
        self._field_fns = {"coarse": self.coarse, "fine": self.fine}
        if cfg.compile:
            self._field_fns = {k: None if f is None else torch.compile(f) for k, f in self._field_fns.items()}
        bg = None if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        self.register_buffer("background", bg, persistent=False)
        if cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _make_field(self, depth: int, width: int) -> NeRFField:
        c = self.cfg
        return NeRFField(depth, width, list(c.skips), c.multires, c.multires_views, c.use_viewdirs)

    # ---------------------------------------------------------------- forward
    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        cfg = self.cfg
        randomize = self.training and cfg.perturb
        t_coarse = stratified_samples(
            ray_bundle.near, ray_bundle.far, cfg.n_samples, perturb=randomize, lindisp=cfg.lindisp
        )  # [n, s]
        coarse = self._render_pass(self._field_fns["coarse"], ray_bundle, t_coarse)
        if self.fine is None:
            return coarse
        t_fine = sample_pdf(
            midpoints(t_coarse), coarse["weights"][:, 1:-1], cfg.n_importance, deterministic=not randomize
        )  # [n, k], detached
        t_all = merge_samples(t_coarse, t_fine)  # [n, s + k]
        fine = self._render_pass(self._field_fns["fine"], ray_bundle, t_all)
        fine.update({f"{k}_coarse": v for k, v in coarse.items()})
        return fine

    def _render_pass(self, fld: Callable, rays: RayBundle, t: Tensor) -> dict[str, Tensor]:
        """Query ``fld`` at depths ``t`` [n, s] along ``rays`` and volume-render the result."""
        n, s = t.shape
        points = rays.points(t).reshape(n * s, 3)  # [m, 3]
        dirs = rays.viewdirs[:, None, :].expand(n, s, 3).reshape(n * s, 3)  # [m, 3]
        with autocast(self.cfg.amp, rays.device):
            raw_sigma, rgb = chunked_apply(fld, points, dirs, netchunk=self.cfg.netchunk)
        raw_sigma = raw_sigma.float().reshape(n, s)  # [n, s]
        rgb = rgb.float().reshape(n, s, 3)  # [n, s, 3]
        if self.training and self.cfg.raw_noise_std > 0:
            raw_sigma = raw_sigma + torch.randn_like(raw_sigma) * self.cfg.raw_noise_std
        return render_samples(F.relu(raw_sigma), rgb, t, self.background)

    # ---------------------------------------------------------------- losses and metrics
    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return coarse_fine_losses(outputs, batch, self.cfg.rgb_weight, self.cfg.rgb_coarse_weight)

    @torch.no_grad()
    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return coarse_fine_metrics(outputs, batch)


def coarse_fine_losses(outputs: dict[str, Tensor], batch: dict[str, Tensor], rgb_weight: float,
                       rgb_coarse_weight: float) -> dict[str, Tensor]:
    """Colour MSE of the fine pass (``rgb``) and, when there is one, of the coarse pass."""
    out = {"rgb": rgb_weight * F.mse_loss(outputs["rgb"], batch["rgb"])}
    if "rgb_coarse" in outputs:
        out["rgb_coarse"] = rgb_coarse_weight * F.mse_loss(outputs["rgb_coarse"], batch["rgb"])
    return out


@torch.no_grad()
def coarse_fine_metrics(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """PSNR of the fine pass and, when there is one, of the coarse pass."""
    out = {"psnr": psnr(outputs["rgb"], batch["rgb"])}
    if "rgb_coarse" in outputs:
        out["psnr_coarse"] = psnr(outputs["rgb_coarse"], batch["rgb"])
    return out
