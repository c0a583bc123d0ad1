"""The fast dynamic model: a small deformation field into a canonical instant-ngp field, on the
instant model's own sampler (``model=dynamic_instant``, docs/dynamic.md).

For a sample at grid-space point x of a ray at moment t (``ray_bundle.extras["time"]``):

    dx = Psi_t(gamma(x), gamma(t))                  a small MLP, last layer zero-initialised
    (sigma, c) = InstantField(x + dx, d)            the hash grid + tiny MLPs of ``model=instant``

as D-NeRF (``model=dnerf``, the same ``TimeDeformation`` module at a small size), and as TiNeuVox
pairs a small deformation network with a fast explicit canonical field. A fresh model is the static
instant model (dx = 0 everywhere); with ``zero_canonical`` dx is 0 at t = 0 exactly (D-NeRF's
canonical frame), otherwise the canonical space is free.

Everything else is ``InstantModel``, unchanged: whole rays in a sample budget, the adaptive ray
count, block marching, early stop. Only two hooks differ:

* ``radiance``: the field at x + dx(x, t), t the moment of each sample's ray;
* ``occupancy`` (the grid's ``occ_fn``): at each update a cell's value is the largest
  sigma(x + dx(x, t)) * step over ``occ_times`` stratified random moments t, so the grid holds the
  union over time of the density in observation space: a cell occupied at any moment stays
  occupied (the EMA-max keeps the moments of earlier updates), and marching at any moment skips
  only space that is empty at every moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerflite.fields.batching import chunked_apply
from nerflite.fields.dnerf_field import TimeDeformation
from nerflite.fields.encodings import PositionalEncoding
from nerflite.fields.instant_field import InstantField
from nerflite.models.base import autocast
from nerflite.models.dynamic import ray_times
from nerflite.models.instant import InstantConfig, InstantModel
from nerflite.rays import RayBundle


@dataclass
class DynamicInstantConfig(InstantConfig):
    name: str = "dynamic_instant"  # model type, selects DynamicInstantModel
    deform_depth: int = 3  # hidden layers of the deformation MLP
    deform_width: int = 64  # channels of its hidden layers
    deform_pos_freqs: int = 4  # positional-encoding octaves of x (grid space) fed to it
    deform_time_freqs: int = 4  # octaves of t (fewer: smoother motion, better between the training moments)
    zero_canonical: bool = False  # dx = 0 at t = 0 exactly (D-NeRF's canonical frame); else a free canonical space
    deform_lr_mult: float = 0.2  # learning-rate multiplier of the deformation MLP (1.0 diverged: docs/dynamic.md)
    occ_times: int = 2  # random moments per visited cell at each grid update after the warm-up (the max counts)
    time_color_freqs: int = 0  # octaves of a time code [t, sin, cos, ...] fed to the colour MLP only (0: none)


def make_deformation(cfg: DynamicInstantConfig) -> TimeDeformation:
    """D-NeRF's ``TimeDeformation`` at the small size of ``cfg``, its last layer zeroed (dx = 0)."""
    deformation = TimeDeformation(cfg.deform_depth, cfg.deform_width, (), cfg.deform_pos_freqs,
                                  cfg.deform_time_freqs, cfg.zero_canonical)  # fmt: skip
    nn.init.zeros_(deformation.mlp.out.weight)
    nn.init.zeros_(deformation.mlp.out.bias)
    return deformation


class DynamicInstantModel(InstantModel):
    """``InstantModel`` whose field is reached through a deformation (see the module docstring).

    Args: as ``InstantModel``; ``cfg`` is a ``DynamicInstantConfig``.
    """

    def __init__(
        self,
        cfg: DynamicInstantConfig,
        background: Sequence[float] | Tensor | None = None,
        sphere_center: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
        sphere_radius: float = 1.0,
        ndc: bool = False,
        far: float = 6.0,
    ):
        if cfg.occ_times < 1:
            raise ValueError(f"DynamicInstantConfig.occ_times must be at least 1, got {cfg.occ_times}")
        super().__init__(cfg, background, sphere_center, sphere_radius, ndc, far)
        self.deformation = make_deformation(cfg)
        self.time_code = None
        if cfg.time_color_freqs > 0:  # shading that changes with time (the canonical field's colour cannot)
            self.time_code = PositionalEncoding(cfg.time_color_freqs, include_input=True, in_dim=1)
            self.field = InstantField(
                cfg.n_levels, cfg.n_features, cfg.log2_table_size, cfg.base_resolution, cfg.max_resolution,
                cfg.hidden, cfg.geo_features, cfg.density_bias, cond_dim=self.time_code.out_dim,
            )  # fmt: skip

    def canonical(self, x: Tensor, t: Tensor) -> Tensor:
        """Grid-space points x [m, 3] at moments t [m, 1] -> the canonical field's input in [0, 1]^3
        (float32: the deformation stays out of ``amp``, a bf16 offset would blur the finest levels)."""
        return self.unit(x + self.deformation(x, t))

    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        ray_times(ray_bundle, self.cfg.name)  # rays without time: the one-line error before anything runs
        return super().forward(ray_bundle)

    def radiance(self, rays: RayBundle, ri: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma [m], rgb [m, 3]) at world points [m, 3] of rays ``ri`` [m], each at its ray's moment."""
        t = ray_times(rays, self.cfg.name)[ri]  # [m, 1]

        def field(x: Tensor, d: Tensor, tt: Tensor) -> tuple[Tensor, Tensor]:
            u = self.canonical(x, tt)  # [m, 3]
            cond = None if self.time_code is None else self.time_code(tt)  # [m, 1 + 2 k]
            with autocast(self.cfg.amp, x.device):
                return self.field(u, d, cond)

        sigma, rgb = chunked_apply(field, self.to_field(points), rays.viewdirs[ri], t, netchunk=self.cfg.netchunk)
        return sigma.float(), rgb.float()

    def occupancy(self, x: Tensor) -> Tensor:
        """The grid's ``occ_fn``: max over ``occ_times`` moments (one in each of as many equal parts
        of [0, 1], at random) of sigma(x + dx(x, t)) * step at grid-space points x [m, 3] -> [m].
        During the grid's warm-up every cell is visited at every update, so one moment per visit
        (the union builds up over the updates, the deformation is still near the identity)."""
        k, m = (1 if self.step < self.cfg.grid_warmup_steps else self.cfg.occ_times), x.shape[0]
        t = (torch.arange(k, device=x.device).repeat_interleave(m) + torch.rand(k * m, device=x.device)) / k
        xs = x.repeat(k, 1)  # [k m, 3], moment-major

        def density(p: Tensor, tt: Tensor) -> Tensor:
            u = self.canonical(p, tt)
            with autocast(self.cfg.amp, p.device):
                return self.field.density(u)[0]

        sigma = chunked_apply(density, xs, t[:, None], netchunk=self.cfg.netchunk)  # [k m]
        return sigma.float().reshape(k, m).amax(dim=0) * self.step_size

    def optimizer_groups(self, lr: float) -> list[dict]:
        """As ``InstantModel``'s, and the deformation MLP in a group of its own at ``lr * deform_lr_mult``."""
        deform = list(self.deformation.parameters())
        ids = {id(p) for p in deform}
        groups = super().optimizer_groups(lr)
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in ids]
        return groups + [{"params": deform, "lr": lr * self.cfg.deform_lr_mult}]
