"""NeuS on a multiresolution hash grid (instant-nsr-pl style): the same unbiased SDF opacity as
vanilla NeuS (``nerflite.models.neus``), a much cheaper field and empty-space skipping.

Per batch of rays, in the unit-sphere frame (as NeuSModel):

1. ``[near, far]`` around the sphere; ``n_samples`` stratified depths over the whole interval
   plus ``n_importance`` depths inside the cells of an occupancy grid derived from the SDF
   (``nerflite.raymath.sdf_occupancy``: occupied where |sdf| is within a shell of a cell diagonal plus
   ``occ_shell / inv_s``), merged in order. No SDF queries and no up-sampling rounds: a grid
   lookup per candidate bin. Every ray has ``n_samples + n_importance`` depths, so the step's shapes
   are fixed and nothing is read back to the host.
2. At the section midpoints: SDF, feature and gradient of ``HashSDFField`` (hash encoding of the
   point + a small MLP, geometric init to a sphere; autograd gradient with ``create_graph`` in
   training); colour from (point, normal, view direction, feature); ``alpha_from_sdf`` with the
   learned ``inv_s`` and the annealed ``cos_anneal_ratio``; a constant background colour behind.

Training schedule, all derived from the step in ``set_step``: ``cos_anneal_ratio`` and the
progressive levels (``start_levels`` coarse levels, one more every ``level_every`` steps); a
checkpoint brings them back through ``Model.load_state`` (resume, render.py, the viewer).
The occupancy grid is recomputed from the SDF every ``occ_every`` training steps (a buffer,
saved with the model). Losses as vanilla NeuS: colour L1 (inside the mask when masks are used),
eikonal, mask BCE. The learned variance gets its own learning rate (``optimizer_groups``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.fields.hash_sdf_field import HashSDFField
from nerflite.fields.sdf_field import ColorField, SingleVariance
from nerflite.models.base import Model, autocast, check_amp
from nerflite.models.neus import lr_factor
from nerflite.models.sdf_common import SDFCommon
from nerflite.raymath.neus_rendering import alpha_from_sdf, near_far_from_sphere
from nerflite.raymath.rendering import accumulation, blend_background, composite, composite_depth, weights_from_alpha
from nerflite.raymath.sampling import merge_samples, stratified_samples
from nerflite.raymath.sdf_occupancy import cell_centers, occupancy_from_sdf, occupied_depths
from nerflite.rays import RayBundle


@dataclass
class NeuSInstantConfig:
    name: str = "neus_instant"  # model type, selects NeuSInstantModel
    n_levels: int = 16  # hash-grid levels
    n_features: int = 2  # features per level
    log2_table_size: int = 19  # log2 of the entries per level's hash table
    base_resolution: int = 16  # cells per axis of the coarsest level (over the unit sphere's cube)
    max_resolution: int = 2048  # cells per axis of the finest level
    start_levels: int = 4  # levels active at step 0 (progressive training)
    level_every: int = 500  # steps between activating one more level (0: all levels from the start)
    sdf_layers: int = 1  # hidden layers of the SDF MLP
    sdf_width: int = 64  # channels per hidden layer of the SDF MLP
    sdf_beta: float = 100.0  # softplus sharpness of the SDF MLP's activations
    feature_dim: int = 15  # feature vector from the SDF MLP to the colour MLP
    init_radius: float = 0.5  # geometric initialisation: radius of the initial sphere (unit-sphere frame)
    color_layers: int = 2  # hidden layers of the colour MLP
    color_width: int = 64  # channels per hidden layer of the colour MLP
    color_multires_view: int = 4  # positional-encoding octaves of the view direction
    n_samples: int = 32  # stratified samples per ray over the whole [near, far]
    n_importance: int = 64  # samples per ray placed inside occupied grid cells
    n_candidates: int = 256  # bins per ray looked up in the occupancy grid to place them
    perturb: bool = True  # jitter the samples in training
    occ_resolution: int = 128  # occupancy grid cells per axis over [-1, 1]^3
    occ_every: int = 16  # recompute the occupancy grid from the SDF every N training steps
    occ_shell: float = 4.0  # occupied shell: |sdf| <= cell diagonal + occ_shell / inv_s
    variance_init: float = 0.3  # initial v of inv_s = exp(10 v)
    background: list[float] | None = None  # colour behind the surface (None: the scene's, as the targets have)
    chunk: int = 4096  # rays per forward when rendering whole images
    netchunk: int = 262144  # points per field call
    rgb_weight: float = 1.0  # weight of the colour L1 loss
    eikonal_weight: float = 0.1  # weight of the eikonal loss
    mask_weight: float = 0.1  # weight of the mask BCE (used only when the batch has masks)
    anneal_end: int = 2000  # cos_anneal_ratio goes 0 -> 1 over these steps (0: 1 from the start)
    lr: float = 1e-2  # peak learning rate of the fields (hash tables and MLPs)
    variance_lr: float = 1e-3  # peak learning rate of the learned variance
    adam_eps: float = 1e-15  # Adam's epsilon for the fields (hash-table gradients are tiny)
    warm_up_end: int = 500  # linear learning-rate warm-up steps
    lr_alpha: float = 0.05  # final learning rate as a fraction of lr, after cosine decay
    end_iter: int = 20000  # step at which the cosine decay reaches lr_alpha
    amp: str = "none"  # autocast of the colour MLP: "none" | "bf16" | "fp16" (SDF: fp32)
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs (torch's switch is process-wide)


class NeuSInstantModel(SDFCommon, Model):
    """Hash-grid SDF, colour MLP, variance and SDF-derived occupancy grid (see the module docstring).

    Args:
        cfg: the model's config.
        sphere_center: centre [3] of the scene's bounding sphere (``scene.sphere_center``).
        sphere_radius: its radius (``scene.sphere_radius``); every surface must lie inside.
    """

    needs_world_rays = True  # rays in world units (not NDC): the unit sphere is measured in them

    def __init__(self, cfg: NeuSInstantConfig, sphere_center: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
                 sphere_radius: float = 1.0, background: Sequence[float] | None = None):
        super().__init__()
        check_amp("NeuSInstantConfig", cfg.amp)
        for key in ("n_samples", "n_candidates", "occ_resolution", "occ_every", "start_levels"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"NeuSInstantConfig.{key} must be >= 1, got {getattr(cfg, key)}")
        self.cfg = cfg
        self.sdf_field = HashSDFField(
            cfg.n_levels, cfg.n_features, cfg.log2_table_size, cfg.base_resolution, cfg.max_resolution,
            cfg.sdf_width, cfg.sdf_layers, cfg.feature_dim, cfg.init_radius, cfg.sdf_beta,
        )
        self.color_field = ColorField(cfg.feature_dim, cfg.color_width, cfg.color_layers, cfg.color_multires_view,
                                      use_weight_norm=False)
        self.variance = SingleVariance(cfg.variance_init)
        self.register_buffer("sphere_center", torch.as_tensor(sphere_center, dtype=torch.float32).reshape(3))
        self.register_buffer("sphere_radius", torch.tensor(float(sphere_radius)))
        colour = cfg.background if cfg.background is not None else background  # None: the scene's
        colour = colour if colour is not None else (0.0, 0.0, 0.0)
        self.register_buffer("background", torch.tensor(colour, dtype=torch.float32).reshape(3), persistent=False)
        r = cfg.occ_resolution  # every cell occupied until the first update: nothing skipped yet
        self.register_buffer("occupancy", torch.ones(r, r, r, dtype=torch.bool))
        self._occ_updated_at = -1
        self.set_step(0)
        if cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    # ---------------------------------------------------------------- schedule
    def active_levels(self, step: int) -> int:
        """Hash levels in use at ``step``: ``start_levels``, one more every ``level_every`` steps."""
        cfg = self.cfg
        if cfg.level_every <= 0:
            return cfg.n_levels
        return min(cfg.n_levels, cfg.start_levels + step // cfg.level_every)

    def set_step(self, step: int) -> None:
        self.step = step
        end = self.cfg.anneal_end
        self.cos_anneal_ratio = 1.0 if end == 0 else min(1.0, step / end)
        self.sdf_field.set_active_levels(self.active_levels(step))

    def lr_lambda(self, step: int) -> float:
        """Multiplier of every group's learning rate at ``step`` (warm-up, then cosine decay)."""
        return lr_factor(step, self.cfg.warm_up_end, self.cfg.lr_alpha, self.cfg.end_iter)

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups: the fields at ``lr`` (``cfg.lr``, Adam eps ``cfg.adam_eps``), the
        variance at ``cfg.variance_lr``."""
        fields = [p for n, p in self.named_parameters() if not n.startswith("variance.")]
        return [{"params": fields, "lr": lr, "eps": self.cfg.adam_eps},
                {"params": list(self.variance.parameters()), "lr": self.cfg.variance_lr}]

    @torch.no_grad()
    def update_occupancy(self) -> None:
        """Recompute the occupancy grid from the SDF at the cell centres (``nerflite.raymath.sdf_occupancy``)."""
        r = self.cfg.occ_resolution
        centers = cell_centers(r, device=self.occupancy.device)  # [r^3, 3]
        sdf = chunked_apply(self.sdf_field.sdf, centers, netchunk=self.cfg.netchunk)[:, 0]  # [r^3]
        self.occupancy.copy_(occupancy_from_sdf(sdf, r, self.variance().detach(), self.cfg.occ_shell))

    # ---------------------------------------------------------------- forward
    def sample_depths(self, o: Tensor, d: Tensor, near: Tensor, far: Tensor) -> Tensor:
        """Sorted depths [n, n_samples + n_importance]: stratified plus inside occupied cells."""
        cfg = self.cfg
        randomize = self.training and cfg.perturb
        t = stratified_samples(near, far, cfg.n_samples, perturb=randomize)  # [n, s]
        if cfg.n_importance > 0:
            t_occ = occupied_depths(o, d, near, far, self.occupancy, cfg.n_candidates, cfg.n_importance, randomize)
            t = merge_samples(t, t_occ)
        return t

    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        cfg = self.cfg
        if self.training and self.step % cfg.occ_every == 0 and self._occ_updated_at != self.step:
            self.update_occupancy()
            self._occ_updated_at = self.step
        o = self.to_unit(ray_bundle.origins)  # [n, 3]
        d = ray_bundle.directions  # [n, 3]
        near, far = near_far_from_sphere(o, d)  # [n, 1] each
        t = self.sample_depths(o, d, near, far)  # [n, s]
        n, s = t.shape
        sample_dist = 2.0 / (cfg.n_samples + cfg.n_importance)  # length of the last section
        delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], sample_dist)], -1)  # [n, s]
        mid = t + 0.5 * delta  # [n, s] section midpoints
        points = o[:, None] + mid[..., None] * d[:, None]  # [n, s, 3]
        dirs = ray_bundle.viewdirs[:, None, :].expand(n, s, 3)  # [n, s, 3]

        sdf, feature, grad = chunked_apply(
            self.sdf_field.sdf_feature_gradient, points.reshape(-1, 3), netchunk=cfg.netchunk
        )  # [m, 1], [m, F], [m, 3]
        with autocast(cfg.amp, d.device):
            rgb = chunked_apply(self.color_field, points.reshape(-1, 3), grad, dirs.reshape(-1, 3), feature,
                                netchunk=cfg.netchunk)
        rgb = rgb.float().reshape(n, s, 3)
        grad = grad.reshape(n, s, 3)
        inv_s = self.variance()
        cos = (dirs * grad).sum(-1)  # [n, s]
        alpha = alpha_from_sdf(sdf.reshape(n, s), cos, delta, inv_s, self.cos_anneal_ratio)  # [n, s]
        radius = points.norm(dim=-1)  # [n, s]
        alpha = alpha * (radius < 1.0).to(alpha.dtype)  # nothing outside the bounding sphere
        weights, _ = weights_from_alpha(alpha)  # [n, s]
        acc = accumulation(weights)  # [n, 1]
        out = {
            "rgb": blend_background(composite(weights, rgb), acc, self.background),
            "depth": composite_depth(weights, mid) * self.sphere_radius,
            "accumulation": acc,
            "weights_sum_fg": acc,
            "normals": composite(weights, F.normalize(grad, dim=-1)),
            "inv_s": inv_s.detach(),
        }
        if self.training:  # per-sample tensors for the eikonal loss
            out["gradients"] = grad  # [n, s, 3]
            out["eikonal_mask"] = (radius < 1.2).to(grad.dtype)  # [n, s]
        return out

    # ---------------------------------------------------------------- metrics
    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = super().metrics(outputs, batch)
        out["active_levels"] = torch.tensor(float(self.sdf_field.encoding.n_active_levels))
        out["occupied_fraction"] = self.occupancy.float().mean()
        return out
