"""D-NeRF (Pumarola et al., CVPR 2021): vanilla NeRF in a canonical frame, reached through a
time-conditioned deformation, exactly as albertpumarola/D-NeRF's ``direct_temporal`` model.

Per batch of rays (``RayBundle`` with ``extras["time"]``, each ray's moment t in [0, 1]):

1. ``t_c = stratified_samples(near, far, n_samples)`` (jittered in training when ``perturb``).
2. The field at ``points(t_c)`` and t: dx = Psi_t(x, t) (0 at t = 0, the canonical frame), then
   (sigma, c) = Psi_x(x + dx, d); ReLU(raw sigma + training noise), volume rendering -> weights.
3. ``t_f = sample_pdf(midpoints(t_c), weights[:, 1:-1], n_importance)``; the field again at the
   sorted union -> ``rgb``, ``depth``, ``accumulation``, ``disparity``, and ``deformation``
   (mean |dx|^2 over the ray's samples).

One network or two: the official configs (every scene in configs/) leave
``use_two_models_for_fine`` off, so ONE deformation + canonical pair serves both passes, the
coarse pass runs without gradients (it only places the fine samples) and only the fine colour is
supervised. ``two_models_for_fine: true`` is the official flag's other setting: a second pair
(its own deformation net) for the fine pass, both passes supervised (outputs ``*_coarse`` then).

Losses: MSE of the fine (and, with two networks, coarse) colour, each weighted from config, and
the official optional deformation regulariser ``deformation_weight * mean(dx^2)`` (off by default,
1e-4 in the bouncingballs_l2 config). Batching as vanilla NeRF: ``netchunk`` points per field call,
``chunk`` rays per forward when rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.fields.dnerf_field import DNeRFField, TimeDeformation
from nerflite.fields.nerf_field import NeRFField
from nerflite.models.base import Model, autocast, check_amp
from nerflite.models.dynamic import per_sample, ray_times
from nerflite.models.nerf import coarse_fine_losses, coarse_fine_metrics, render_samples
from nerflite.raymath.sampling import merge_samples, midpoints, sample_pdf, stratified_samples
from nerflite.rays import RayBundle


@dataclass
class DNeRFConfig:
    name: str = "dnerf"  # model type, selects DNeRFModel
    netdepth: int = 8  # layers of the canonical MLP trunk and of the deformation MLP (official: both D)
    netwidth: int = 256  # channels per layer of both MLPs (official: both W)
    netdepth_fine: int = 8  # the same for the fine pair (two_models_for_fine only)
    netwidth_fine: int = 256  # the same for the fine pair (two_models_for_fine only)
    skips: list[int] = field(default_factory=lambda: [4])  # layers after which gamma(x) is re-fed (both MLPs)
    multires: int = 10  # positional-encoding octaves of x (canonical and deformation MLPs)
    multires_time: int = 10  # octaves of t (official: the time embedder reuses multires, 10)
    multires_views: int = 4  # octaves of the view direction
    zero_canonical: bool = True  # dx = 0 at t = 0: the frame at t = 0 is the canonical space (eq. 1)
    two_models_for_fine: bool = False  # a separate deformation + canonical pair for the fine pass
    n_samples: int = 64  # stratified (coarse) samples per ray
    n_importance: int = 128  # extra importance samples per ray for the fine pass (0: coarse only)
    perturb: bool = True  # jitter stratified samples and draw random importance samples in training
    lindisp: bool = False  # stratified samples linear in inverse depth instead of depth
    raw_noise_std: float = 0.0  # std of Gaussian noise on raw density in training
    use_viewdirs: bool = True  # view-dependent colour branch
    chunk: int = 32768  # rays per forward when rendering whole images
    netchunk: int = 65536  # points per field call
    rgb_weight: float = 1.0  # weight of the fine (final) pass's colour MSE
    rgb_coarse_weight: float = 1.0  # weight of the coarse pass's colour MSE (two_models_for_fine only)
    deformation_weight: float = 0.0  # weight of mean(dx^2) over the fine samples (official: 0 / 1e-4)
    amp: str = "none"  # autocast dtype for the MLPs: "none" | "bf16" | "fp16"


class DNeRFModel(Model):
    """One (or two) ``DNeRFField``s and the hierarchical rendering of vanilla NeRF around them.

    Args:
        cfg: the model's config.
        background: colour [3] composited behind every ray (``scene.background``); None: black.
    """

    def __init__(self, cfg: DNeRFConfig, background: Sequence[float] | Tensor | None = None):
        super().__init__()
        check_amp("DNeRFConfig", cfg.amp)
        self.cfg = cfg
        self.step = 0
        self.field = self._make_field(cfg.netdepth, cfg.netwidth)
        two = cfg.two_models_for_fine and cfg.n_importance > 0
        self.field_fine = self._make_field(cfg.netdepth_fine, cfg.netwidth_fine) if two else None
        bg = None if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        self.register_buffer("background", bg, persistent=False)

    def _make_field(self, depth: int, width: int) -> DNeRFField:
        c = self.cfg
        deformation = TimeDeformation(depth, width, list(c.skips), c.multires, c.multires_time, c.zero_canonical)
        canonical = NeRFField(depth, width, list(c.skips), c.multires, c.multires_views, c.use_viewdirs)
        return DNeRFField(deformation, canonical)

    # ---------------------------------------------------------------- forward
    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        cfg = self.cfg
        times = ray_times(ray_bundle, cfg.name)  # [n, 1]
        randomize = self.training and cfg.perturb
        t_coarse = stratified_samples(
            ray_bundle.near, ray_bundle.far, cfg.n_samples, perturb=randomize, lindisp=cfg.lindisp
        )  # [n, s]
        if cfg.n_importance <= 0:
            return self._render_pass(self.field, ray_bundle, t_coarse, times)
        if self.field_fine is None:
            with torch.no_grad():  # the one network's coarse pass only places the fine samples
                coarse = self._render_pass(self.field, ray_bundle, t_coarse, times)
        else:
            coarse = self._render_pass(self.field, ray_bundle, t_coarse, times)
        t_fine = sample_pdf(
            midpoints(t_coarse), coarse["weights"][:, 1:-1], cfg.n_importance, deterministic=not randomize
        )  # [n, k], detached
        fine_field = self.field if self.field_fine is None else self.field_fine
        fine = self._render_pass(fine_field, ray_bundle, merge_samples(t_coarse, t_fine), times)
        if self.field_fine is not None:
            fine.update({f"{k}_coarse": v for k, v in coarse.items()})
        return fine

    def _render_pass(self, fld: DNeRFField, rays: RayBundle, t: Tensor, times: Tensor) -> dict[str, Tensor]:
        """Query ``fld`` at depths ``t`` [n, s] along ``rays`` at the rays' ``times`` [n, 1]; render."""
        n, s = t.shape
        points = rays.points(t).reshape(n * s, 3)  # [m, 3]
        dirs = per_sample(rays.viewdirs, s)  # [m, 3]
        with autocast(self.cfg.amp, rays.device):
            raw_sigma, rgb, dx = chunked_apply(fld, points, dirs, per_sample(times, s), netchunk=self.cfg.netchunk)
        raw_sigma = raw_sigma.float().reshape(n, s)  # [n, s]
        if self.training and self.cfg.raw_noise_std > 0:
            raw_sigma = raw_sigma + torch.randn_like(raw_sigma) * self.cfg.raw_noise_std
        out = render_samples(F.relu(raw_sigma), rgb.float().reshape(n, s, 3), t, self.background)
        out["deformation"] = dx.float().reshape(n, s, 3).square().sum(-1).mean(-1, keepdim=True)  # [n, 1]
        return out

    # ---------------------------------------------------------------- losses and metrics
    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = coarse_fine_losses(outputs, batch, self.cfg.rgb_weight, self.cfg.rgb_coarse_weight)
        if self.cfg.deformation_weight > 0:  # = weight * F.mse_loss(dx, 0) over every fine sample
            out["deformation"] = self.cfg.deformation_weight * outputs["deformation"].mean() / 3.0
        return out

    @torch.no_grad()
    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return coarse_fine_metrics(outputs, batch)
