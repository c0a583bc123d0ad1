"""HyperNeRF (Park et al., SIGGRAPH Asia 2021), the "DS" model of google/hypernerf's configs
(hypernerf_vrig_ds_2d.gin / hypernerf_interp_ds_2d.gin): an SE(3) deformation and a deformable
ambient slicing surface, both driven by a per-frame warp code, into a hyper-space template NeRF.

For a sample x of a ray at moment t (``extras["time"]``), frame code omega = omega(t) (per training
frame; linear between frames at other moments: ``FrameLatents``) and appearance code psi:

    x' = exp(r, v) x,      (r, v) = SE3Field(gamma_a(x), omega)      observation -> canonical
    w  = HyperSheet(gamma_b(x), omega)                               hyper-coordinates [ambient_dim]
    (sigma, c) = template(gamma(x'), gamma_c(w), gamma(d), psi)      softplus density, sigmoid colour

gamma_a, gamma_b, gamma_c are windowed encodings whose alphas are pure functions of the step
(``set_step``): alpha_a linear 0 -> warp_multires over warp_alpha_steps (Nerfies' coarse-to-fine),
alpha_c held at 0 for hyper_alpha_delay steps then linear 0 -> hyper_multires over
hyper_alpha_steps (the delayed hyper window), alpha_b linear over sheet_alpha_steps (0: constant,
the official setting). Sampling as NeRF: ``n_samples`` stratified depths through the coarse
template, ``n_importance`` more from its weights, the fine template on the union; the warp, the
slicing surface and the codes are shared by both passes (one module each), the templates are two.

Losses: colour MSE of both passes (official: unit weights, summed). Appearance codes feed only the
colour branch (``use_rgb_condition``), so they cannot explain geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.fields.encodings import linear_alpha
from nerflite.fields.hypernerf_field import HyperSheet, SE3Field, TemplateEncoding
from nerflite.fields.latents import AppearanceCodes, FrameLatents
from nerflite.fields.nerf_field import NeRFField
from nerflite.models.base import Model, autocast, check_amp
from nerflite.models.dynamic import per_sample, ray_times
from nerflite.models.nerf import coarse_fine_losses, coarse_fine_metrics, render_samples
from nerflite.raymath.sampling import merge_samples, midpoints, sample_pdf, stratified_samples
from nerflite.rays import RayBundle


@dataclass
class HyperNeRFConfig:
    name: str = "hypernerf"  # model type, selects HyperNeRFModel
    n_samples: int = 128  # stratified (coarse) samples per ray (num_coarse_samples)
    n_importance: int = 128  # importance samples per ray for the fine pass (num_fine_samples; 0: coarse only)
    perturb: bool = True  # jitter stratified samples and draw random importance samples in training
    lindisp: bool = False  # stratified samples linear in inverse depth instead of depth
    raw_noise_std: float = 0.0  # std of Gaussian noise on raw density in training (official: none)
    netdepth: int = 8  # layers of each template trunk (nerf_trunk_depth)
    netwidth: int = 256  # channels per template layer (nerf_trunk_width); colour branch: netwidth / 2
    skips: list[int] = field(default_factory=lambda: [3])  # template layers after which the input is re-fed
    multires: int = 8  # octaves of x' in the template (spatial_point_max_deg), x' itself included
    multires_views: int = 4  # octaves of the view direction (viewdir_max_deg), d itself included
    ambient_dim: int = 2  # hyper-coordinates w per point (hyper_num_dims; 0: no slicing surface, Nerfies)
    hyper_multires: int = 1  # octaves of w in the template (hyper_point_max_deg), w itself not included
    hyper_alpha_delay: int = 1000  # steps with the hyper window closed (DELAYED_HYPER_ALPHA_SCHED)
    hyper_alpha_steps: int = 10000  # then steps to open it linearly
    warp_dim: int = 8  # channels of the per-frame warp code (warp/GLOEmbed.num_dims)
    warp_multires: int = 6  # octaves of x in the SE(3) field (warp_max_deg), x itself included
    warp_alpha_steps: int = 80000  # steps to open the warp window linearly (warp_alpha_steps; 0: open)
    warp_depth: int = 6  # layers of the SE(3) field's trunk (SE3Field.trunk_depth)
    warp_width: int = 128  # channels of the SE(3) field's trunk (SE3Field.trunk_width)
    warp_skips: list[int] = field(default_factory=lambda: [3])  # SE(3) trunk layers re-feeding the input
    sheet_multires: int = 6  # octaves of x in the slicing surface MLP (hyper_sheet_max_deg), x not included
    sheet_alpha_steps: int = 0  # steps to open its window (official: constant, 0)
    sheet_depth: int = 6  # layers of the slicing surface MLP (HyperSheetMLP.depth)
    sheet_width: int = 64  # channels of the slicing surface MLP (HyperSheetMLP.width)
    sheet_skips: list[int] = field(default_factory=lambda: [3])  # its layers re-feeding the input
    appearance_dim: int = 8  # per-image appearance code (nerf/GLOEmbed.num_dims), used when rays carry ids (0: off)
    chunk: int = 8192  # rays per forward when rendering whole images (official eval batch: 8096)
    netchunk: int = 65536  # points per field call
    rgb_weight: float = 1.0  # weight of the fine (final) pass's colour MSE
    rgb_coarse_weight: float = 1.0  # weight of the coarse pass's colour MSE
    amp: str = "none"  # autocast dtype for the MLPs: "none" | "bf16" | "fp16" (the exp map stays in fp32)


class HyperNeRFModel(Model):
    """Warp codes, appearance codes, an ``SE3Field``, a ``HyperSheet`` and two template NeRFs.

    Args:
        cfg: the model's config.
        times: the training views' moments (any order, repeats allowed): one warp code per distinct value.
        appearance_ids: the training views' appearance ids, or None (no appearance codes).
        background: colour [3] composited behind every ray (``scene.background``); None: black.
    """

    def __init__(self, cfg: HyperNeRFConfig, times: Sequence[float] | Tensor, appearance_ids=None,
                 background: Sequence[float] | Tensor | None = None):
        super().__init__()
        check_amp("HyperNeRFConfig", cfg.amp)
        self.cfg = cfg
        self.warp_codes = FrameLatents(times, cfg.warp_dim)
        use_appearance = appearance_ids is not None and cfg.appearance_dim > 0
        self.appearance = AppearanceCodes(appearance_ids, cfg.appearance_dim) if use_appearance else None
        self.warp = SE3Field(cfg.warp_dim, cfg.warp_multires, cfg.warp_depth, cfg.warp_width, list(cfg.warp_skips))
        self.sheet = None
        if cfg.ambient_dim > 0:
            self.sheet = HyperSheet(cfg.warp_dim, cfg.ambient_dim, cfg.sheet_multires, cfg.sheet_depth,
                                    cfg.sheet_width, list(cfg.sheet_skips))  # fmt: skip
        self.coarse = self._make_template()
        self.fine = self._make_template() if cfg.n_importance > 0 else None
        bg = None if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        self.register_buffer("background", bg, persistent=False)
        self.set_step(0)

    def _make_template(self) -> NeRFField:
        c = self.cfg
        encoder = TemplateEncoding(c.multires, c.ambient_dim, c.hyper_multires)
        cond = c.appearance_dim if self.appearance is not None else 0
        return NeRFField(c.netdepth, c.netwidth, list(c.skips), dir_freqs=c.multires_views, encoder=encoder,
                         cond_dim=cond)  # fmt: skip

    # ---------------------------------------------------------------- annealing
    def set_step(self, step: int) -> None:
        """Derive every window's alpha from ``step`` (never accumulated: a checkpoint restores them)."""
        c = self.cfg
        self.step = step
        self.alphas = {
            "warp": linear_alpha(step, c.warp_multires, c.warp_alpha_steps),
            "hyper": linear_alpha(step, c.hyper_multires, c.hyper_alpha_steps, c.hyper_alpha_delay),
            "sheet": linear_alpha(step, c.sheet_multires, c.sheet_alpha_steps),
        }
        self.warp.encoding.alpha = self.alphas["warp"]
        if self.sheet is not None:
            self.sheet.encoding.alpha = self.alphas["sheet"]
        for template in (self.coarse, self.fine):
            if template is not None:
                template.pos_enc.hyper.alpha = self.alphas["hyper"]

    # ---------------------------------------------------------------- forward
    def deform(self, x: Tensor, code: Tensor) -> Tensor:
        """Observation-space points x [m, 3] of frames with warp codes [m, warp_dim] -> the template's
        input (x', w) [m, 3 + ambient_dim]."""
        x_canonical = self.warp(x, code)  # [m, 3]
        if self.sheet is None:
            return x_canonical
        return torch.cat([x_canonical, self.sheet(x, code)], dim=-1)

    def _query(self, template: NeRFField, x: Tensor, d: Tensor, code: Tensor, *appearance: Tensor):
        return template(self.deform(x, code), d, appearance[0] if appearance else None)

    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        cfg = self.cfg
        code = self.warp_codes(ray_times(ray_bundle, cfg.name))  # [n, warp_dim]
        appearance = None
        if self.appearance is not None:
            appearance = self.appearance(ray_bundle.extras.get("appearance_id"), len(ray_bundle))  # [n, a]
        randomize = self.training and cfg.perturb
        t_coarse = stratified_samples(
            ray_bundle.near, ray_bundle.far, cfg.n_samples, perturb=randomize, lindisp=cfg.lindisp
        )  # [n, s]
        coarse = self._render_pass(self.coarse, ray_bundle, t_coarse, code, appearance)
        if self.fine is None:
            return coarse
        t_fine = sample_pdf(
            midpoints(t_coarse), coarse["weights"][:, 1:-1], cfg.n_importance, deterministic=not randomize
        )  # [n, k], detached
        fine = self._render_pass(self.fine, ray_bundle, merge_samples(t_coarse, t_fine), code, appearance)
        fine.update({f"{k}_coarse": v for k, v in coarse.items()})
        return fine

    def _render_pass(self, template: NeRFField, rays: RayBundle, t: Tensor, code: Tensor,
                     appearance: Tensor | None) -> dict[str, Tensor]:
        """Query ``template`` through the deformation at depths ``t`` [n, s] along ``rays``; render."""
        n, s = t.shape
        inputs = [rays.points(t).reshape(n * s, 3), per_sample(rays.viewdirs, s), per_sample(code, s)]
        if appearance is not None:
            inputs.append(per_sample(appearance, s))
        with autocast(self.cfg.amp, rays.device):
            raw_sigma, rgb = chunked_apply(partial(self._query, template), *inputs, netchunk=self.cfg.netchunk)
        raw_sigma = raw_sigma.float().reshape(n, s)  # [n, s]
        if self.training and self.cfg.raw_noise_std > 0:
            raw_sigma = raw_sigma + torch.randn_like(raw_sigma) * self.cfg.raw_noise_std
        return render_samples(F.softplus(raw_sigma), rgb.float().reshape(n, s, 3), t, self.background)

    # ---------------------------------------------------------------- losses and metrics
    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return coarse_fine_losses(outputs, batch, self.cfg.rgb_weight, self.cfg.rgb_coarse_weight)

    @torch.no_grad()
    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = coarse_fine_metrics(outputs, batch)
        device = outputs["rgb"].device
        out.update({f"{k}_alpha": torch.tensor(v, device=device) for k, v in self.alphas.items()})
        return out
