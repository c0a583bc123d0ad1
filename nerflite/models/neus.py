"""NeuS: a signed distance field rendered with unbiased, occlusion-aware opacities.

Per batch of rays (``RayBundle``), in the unit-sphere frame (scene coordinates moved by the
bounding sphere's centre and divided by its radius; depths are scaled back on output):

1. ``[near, far]`` around the sphere (``near_far_from_sphere``), ``n_samples`` stratified depths.
2. ``up_sample_steps`` rounds of SDF-guided up-sampling add ``n_importance`` depths near the
   first zero crossing (``hierarchical_upsample``; no gradients).
3. At the section midpoints: SDF, feature and SDF gradient (one pass, autograd with
   ``create_graph`` in training), colour from (point, normal, view direction, feature), opacity
   ``alpha_from_sdf`` with the learned ``inv_s`` and the annealed ``cos_anneal_ratio``.
4. ``n_outside > 0``: a NeRF++ background field on the inverse-sphere coordinates of the same
   samples plus ``n_outside`` samples beyond the sphere; inside the sphere the SDF opacities are
   used, outside the background's. ``n_outside = 0`` (masked scenes): a constant background colour,
   ``cfg.background`` or, when that is None, the scene's (the colour the datamanager composites
   RGBA targets onto: white for Blender, black for DTU).

Rays must be world-space (distances along unit directions): NDC rays would be mapped into the
unit sphere as if they were, and miss it (``needs_world_rays``; ``build_model`` refuses them).

Losses (each weighted from config): colour L1 (inside the mask when masks are used), eikonal
(|grad f| - 1)^2 on every sample within radius 1.2, and the BCE between the SDF samples' total
weight and the mask (only when the batch has one and ``mask_weight`` > 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.fields.nerf_field import NeRFField
from nerflite.fields.sdf_field import ColorField, SDFField, SingleVariance
from nerflite.models.base import Model, autocast, check_amp
from nerflite.models.sdf_common import SDFCommon
from nerflite.raymath.neus_rendering import (
    alpha_from_sdf,
    background_depths,
    hierarchical_upsample,
    inverse_sphere,
    near_far_from_sphere,
)
from nerflite.raymath.rendering import accumulation, blend_background, composite, composite_depth, weights_from_alpha
from nerflite.raymath.sampling import stratified_samples
from nerflite.rays import RayBundle


@dataclass
class NeuSConfig:
    name: str = "neus"  # model type, selects NeuSModel
    n_samples: int = 64  # stratified samples per ray inside the bounding sphere
    n_importance: int = 64  # samples added by SDF-guided up-sampling (0: none)
    up_sample_steps: int = 4  # up-sampling rounds, round i with inv_s = 64 * 2**i
    n_outside: int = 32  # background samples beyond the sphere (0: no background, for masked scenes)
    perturb: bool = True  # jitter the stratified and background samples in training
    sdf_layers: int = 8  # hidden layers of the SDF MLP
    sdf_width: int = 256  # channels per hidden layer of the SDF MLP
    sdf_skips: list[int] = field(default_factory=lambda: [4])  # SDF layers that re-read the encoded input
    sdf_multires: int = 6  # positional-encoding octaves of the SDF input
    sdf_beta: float = 100.0  # softplus sharpness of the SDF MLP's activations
    feature_dim: int = 256  # feature vector from the SDF MLP to the colour MLP
    init_radius: float = 0.5  # geometric initialization: radius of the initial sphere (unit-sphere frame)
    weight_norm: bool = True  # weight normalization on the SDF and colour MLPs
    color_layers: int = 4  # hidden layers of the colour MLP
    color_width: int = 256  # channels per hidden layer of the colour MLP
    color_multires_view: int = 4  # positional-encoding octaves of the view direction
    bg_layers: int = 8  # layers of the background NeRF trunk (n_outside > 0)
    bg_width: int = 256  # channels per layer of the background NeRF
    bg_multires: int = 10  # encoding octaves of the background's 4D inverse-sphere input
    bg_multires_view: int = 4  # encoding octaves of the background's view direction
    variance_init: float = 0.3  # initial v of inv_s = exp(10 v)
    background: list[float] | None = None  # colour behind the surface when n_outside = 0 (None: the scene's)
    chunk: int = 2048  # rays per forward when rendering whole images
    netchunk: int = 131072  # points per field call
    rgb_weight: float = 1.0  # weight of the colour L1 loss
    eikonal_weight: float = 0.1  # weight of the eikonal loss
    mask_weight: float = 0.1  # weight of the mask BCE (used only when the batch has masks)
    anneal_end: int = 50000  # cos_anneal_ratio goes 0 -> 1 over these steps (0: 1 from the start)
    lr: float = 5e-4  # peak learning rate (the trainer multiplies it by lr_lambda(step))
    warm_up_end: int = 5000  # linear learning-rate warm-up steps
    lr_alpha: float = 0.05  # final learning rate as a fraction of lr, after cosine decay
    end_iter: int = 300000  # step at which the cosine decay reaches lr_alpha
    amp: str = "none"  # autocast of the colour and background MLPs: "none" | "bf16" | "fp16" (SDF: fp32)
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs (torch's switch is process-wide)


def lr_factor(step: int, warm_up_end: int, lr_alpha: float, end_iter: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay from 1 to ``lr_alpha``."""
    if step < warm_up_end:
        return step / warm_up_end
    progress = min(1.0, (step - warm_up_end) / max(1, end_iter - warm_up_end))
    return (math.cos(math.pi * progress) + 1.0) * 0.5 * (1.0 - lr_alpha) + lr_alpha


class NeuSModel(SDFCommon, Model):
    """SDF, colour, variance and (optional) background fields, and NeuS rendering between them.

    Args:
        cfg: the model's config.
        sphere_center: centre [3] of the scene's bounding sphere (``scene.sphere_center``).
        sphere_radius: its radius (``scene.sphere_radius``); every surface must lie inside.
        background: colour [3] behind the surface when ``n_outside = 0`` and ``cfg.background``
            is None (``scene.background``); black when both are None.
    """

    needs_world_rays = True  # rays in world units (not NDC): the unit sphere is measured in them

    def __init__(self, cfg: NeuSConfig, sphere_center: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
                 sphere_radius: float = 1.0, background: Sequence[float] | None = None):
        super().__init__()
        check_amp("NeuSConfig", cfg.amp)
        if cfg.n_importance > 0 and cfg.n_importance % cfg.up_sample_steps:
            raise ValueError("NeuSConfig.n_importance must be a multiple of up_sample_steps")
        self.cfg = cfg
        self.step = 0
        self.cos_anneal_ratio = 1.0 if cfg.anneal_end == 0 else 0.0
        self.sdf_field = SDFField(
            cfg.sdf_multires, cfg.sdf_width, cfg.sdf_layers, list(cfg.sdf_skips), cfg.feature_dim,
            cfg.init_radius, cfg.sdf_beta, cfg.weight_norm,
        )
        self.color_field = ColorField(
            cfg.feature_dim, cfg.color_width, cfg.color_layers, cfg.color_multires_view, cfg.weight_norm
        )
        self.variance = SingleVariance(cfg.variance_init)
        self.background_field = None
        if cfg.n_outside > 0:
            self.background_field = NeRFField(
                cfg.bg_layers, cfg.bg_width, [4] if cfg.bg_layers > 5 else [], cfg.bg_multires,
                cfg.bg_multires_view, use_viewdirs=True, in_dim=4,
            )
        self.register_buffer("sphere_center", torch.as_tensor(sphere_center, dtype=torch.float32).reshape(3))
        self.register_buffer("sphere_radius", torch.tensor(float(sphere_radius)))
        colour = cfg.background if cfg.background is not None else background
        colour = (0.0, 0.0, 0.0) if colour is None else tuple(float(c) for c in colour)
        self.register_buffer("background", torch.tensor(colour, dtype=torch.float32).reshape(3), persistent=False)
        if cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def set_step(self, step: int) -> None:
        self.step = step
        end = self.cfg.anneal_end
        self.cos_anneal_ratio = 1.0 if end == 0 else min(1.0, step / end)

    def lr_lambda(self, step: int) -> float:
        """Multiplier of ``cfg.lr`` at ``step`` (for ``torch.optim.lr_scheduler.LambdaLR``)."""
        return lr_factor(step, self.cfg.warm_up_end, self.cfg.lr_alpha, self.cfg.end_iter)

    # ---------------------------------------------------------------- forward
    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        cfg = self.cfg
        randomize = self.training and cfg.perturb
        o = self.to_unit(ray_bundle.origins)  # [n, 3]
        d = ray_bundle.directions  # [n, 3]
        near, far = near_far_from_sphere(o, d)  # [n, 1] each
        t = stratified_samples(near, far, cfg.n_samples, perturb=randomize)  # [n, s]
        if cfg.n_importance > 0:
            t = hierarchical_upsample(o, d, t, self._sdf_values, cfg.n_importance, cfg.up_sample_steps)
        n, s = t.shape
        sample_dist = 2.0 / cfg.n_samples  # the nominal spacing, also the length of the last section
        delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], sample_dist)], -1)  # [n, s]
        mid = t + 0.5 * delta  # [n, s] section midpoints
        points = o[:, None] + mid[..., None] * d[:, None]  # [n, s, 3]
        dirs = ray_bundle.viewdirs[:, None, :].expand(n, s, 3)  # [n, s, 3]

        sdf, feature, grad = chunked_apply(
            self.sdf_field.sdf_feature_gradient, points.reshape(-1, 3), netchunk=cfg.netchunk
        )  # [m, 1], [m, F], [m, 3]
        with autocast(self.cfg.amp, d.device):
            rgb = chunked_apply(self.color_field, points.reshape(-1, 3), grad, dirs.reshape(-1, 3), feature,
                                netchunk=cfg.netchunk)
        rgb = rgb.float().reshape(n, s, 3)
        grad = grad.reshape(n, s, 3)
        inv_s = self.variance()
        cos = (dirs * grad).sum(-1)  # [n, s]
        alpha = alpha_from_sdf(sdf.reshape(n, s), cos, delta, inv_s, self.cos_anneal_ratio)  # [n, s]
        radius = points.norm(dim=-1)  # [n, s]

        if self.background_field is not None:
            alpha, rgb, mid = self._with_background(o, d, ray_bundle.viewdirs, t, far, alpha, rgb, radius,
                                                    sample_dist, randomize)
        weights, _ = weights_from_alpha(alpha)  # [n, s (+ s + n_outside)]
        acc = accumulation(weights)  # [n, 1]
        rgb_map = composite(weights, rgb)  # [n, 3]
        if self.background_field is None:
            rgb_map = blend_background(rgb_map, acc, self.background)
        w_fg = weights[:, :s]  # [n, s] weights of the SDF samples
        inside = (radius < 1.0).to(w_fg.dtype)
        normals = composite(w_fg * inside, F.normalize(grad, dim=-1))  # [n, 3]
        out = {
            "rgb": rgb_map,
            "depth": composite_depth(weights, mid) * self.sphere_radius,
            "accumulation": acc,
            "weights_sum_fg": accumulation(w_fg),
            "normals": normals,
            "inv_s": inv_s.detach(),
        }
        if self.training:  # per-sample tensors for the eikonal loss (not kept when rendering images)
            out["gradients"] = grad  # [n, s, 3]
            out["eikonal_mask"] = (radius < 1.2).to(grad.dtype)  # [n, s]
        return out

    def _with_background(self, o, d, viewdirs, t, far, alpha, rgb, radius, sample_dist, randomize):
        """Blend in the background NeRF: its opacity and colour replace the SDF's outside the unit
        sphere, and ``n_outside`` samples beyond ``far`` follow. Returns alpha [n, s + o],
        rgb [n, s + o, 3] and midpoints [n, s + o]."""
        n, s = t.shape
        t_out = background_depths(far, self.cfg.n_outside, randomize, offset=0.5 * sample_dist)  # [n, o]
        t_bg = torch.cat([t, t_out], -1)  # [n, s + o]
        delta = torch.cat([t_bg[:, 1:] - t_bg[:, :-1], torch.full_like(t[:, :1], sample_dist)], -1)
        mid = t_bg + 0.5 * delta  # [n, s + o]
        x4 = inverse_sphere(o[:, None] + mid[..., None] * d[:, None])  # [n, s + o, 4]
        dirs = viewdirs[:, None, :].expand(n, mid.shape[1], 3)
        with autocast(self.cfg.amp, d.device):
            raw, rgb_bg = chunked_apply(self.background_field, x4.reshape(-1, 4), dirs.reshape(-1, 3),
                                        netchunk=self.cfg.netchunk)
        alpha_bg = 1.0 - torch.exp(-F.softplus(raw.float().reshape(n, -1)) * delta)  # [n, s + o]
        rgb_bg = rgb_bg.float().reshape(n, -1, 3)
        inside = (radius < 1.0).to(alpha.dtype)  # [n, s]
        alpha = torch.cat([alpha * inside + alpha_bg[:, :s] * (1.0 - inside), alpha_bg[:, s:]], -1)
        inside = inside[..., None]  # [n, s, 1]
        rgb = torch.cat([rgb * inside + rgb_bg[:, :s] * (1.0 - inside), rgb_bg[:, s:]], 1)
        return alpha, rgb, mid

    def _sdf_values(self, x: Tensor) -> Tensor:
        """SDF [m] at unit-frame points [m, 3] (for up-sampling)."""
        return chunked_apply(self.sdf_field.sdf, x, netchunk=self.cfg.netchunk)[:, 0]
