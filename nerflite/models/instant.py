"""instant-ngp-style NeRF in pure PyTorch: hash grid field, occupancy grid, packed rendering.

Per batch of rays (``RayBundle``):

1. Training only: ``set_step(step)`` refreshes the occupancy grid every ``grid_update_every``
   steps from the field's own density (occupancy value = sigma * step size).
2. ``OccupancyGrid.march``: intervals of ``step_size`` (or growing with ``cone_angle``) in
   occupied cells of the box, packed in ray order (a fixed ``sample_budget`` in training keeps
   every shape static: no host sync).
3. ``InstantField`` at the interval midpoints -> sigma, rgb; ``render_packed`` -> ``rgb``,
   ``depth``, ``accumulation``, with the scene's background composited behind.

Scene space (``scene_mode``):
* ``bounded`` (Blender, DTU): the field and the grid cover ``aabb`` (default: the cube around the
  scene's bounding sphere).
* ``ndc`` (forward-facing LLFF with ``dataset.ndc=true``): rays are already in NDC, the box is the
  NDC cube [-1.5, 1.5] x [-1.5, 1.5] x [-1, 1] (x, y reach a little beyond +-1 at the image rims).
* ``unbounded`` (360 captures): points are centred on the bounding sphere, scaled by its radius and
  contracted (``nerflite.contraction``) into [-2, 2]^3, the box of the field and the grid; marching
  goes to the scene's far bound with a cone-angle step.
``auto`` picks ``ndc`` for NDC scenes, else ``bounded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.contraction import contract
from nerflite.fields.batching import chunked_apply
from nerflite.fields.instant_field import InstantField
from nerflite.metrics import psnr
from nerflite.models.base import Model, autocast, check_amp
from nerflite.occupancy import OccupancyGrid, PackedSamples, steps_to_cross
from nerflite.packed_rendering import render_packed
from nerflite.rays import RayBundle

SCENE_MODES = ("auto", "bounded", "ndc", "unbounded")


@dataclass
class InstantConfig:
    name: str = "instant"  # model type, selects InstantModel
    n_levels: int = 16  # hash-grid levels L
    n_features: int = 2  # features per level F
    log2_table_size: int = 19  # log2 of the entries per level T
    base_resolution: int = 16  # coarsest grid resolution N_min
    max_resolution: int = 2048  # finest grid resolution N_max
    hidden: int = 64  # width of the density and colour MLPs' hidden layers
    geo_features: int = 15  # geometry features passed from the density MLP to the colour MLP
    density_bias: float = -1.0  # offset of the raw density before trunc_exp
    scene_mode: str = "auto"  # auto | bounded | ndc | unbounded (see the module docstring)
    aabb: list[float] = field(default_factory=list)  # bounded box [x0, y0, z0, x1, y1, z1] (empty: around the sphere)
    grid_resolution: int = 128  # occupancy-grid cells per side
    grid_cascades: int = 1  # occupancy-grid cascades (each doubles the box)
    grid_update_every: int = 16  # steps between occupancy-grid updates
    grid_warmup_steps: int = 256  # steps during which every cell is visited at each update
    grid_decay: float = 0.95  # EMA decay of a cell's value when revisited
    grid_threshold: float = 0.01  # occupancy (sigma * step) above which a cell is marched
    steps_per_diagonal: int = 512  # marching step = diagonal of the box / this
    cone_angle: float = 0.0  # step grows as cone_angle * t beyond step_size (0: constant; unbounded: 1/256)
    max_steps: int = 0  # candidate steps per ray (0: enough to cross the box, or reach far with the cone)
    sample_budget: int = 0  # sample slots per training step (0: exactly the occupied ones; >0: fixed, no host sync)
    chunk: int = 8192  # rays per forward when rendering whole images
    netchunk: int = 262144  # points per field call
    rgb_weight: float = 1.0  # weight of the colour MSE
    table_lr_mult: float = 1.0  # learning-rate multiplier of the hash tables relative to the MLPs
    amp: str = "none"  # autocast dtype for the MLPs: "none" | "bf16" | "fp16"
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs (torch's switch is process-wide)


class InstantModel(Model):
    """Hash-grid field + occupancy grid + packed rendering (see the module docstring).

    Args:
        cfg: the model's config.
        background: colour [3] composited behind every ray (None: black).
        sphere_center, sphere_radius: the scene's bounding sphere (box of ``bounded``, frame of
            ``unbounded``).
        ndc: the scene's rays come in NDC (``scene_mode=auto`` then picks ``ndc``).
        far: the scene's far bound (how far ``unbounded`` marching goes).
    """

    def __init__(
        self,
        cfg: InstantConfig,
        background: Sequence[float] | Tensor | None = None,
        sphere_center: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
        sphere_radius: float = 1.0,
        ndc: bool = False,
        far: float = 6.0,
    ):
        super().__init__()
        check_amp("InstantConfig", cfg.amp)
        if cfg.scene_mode not in SCENE_MODES:
            raise ValueError(f"InstantConfig.scene_mode must be one of {SCENE_MODES}, got {cfg.scene_mode!r}")
        if cfg.aabb and len(cfg.aabb) != 6:
            raise ValueError(f"InstantConfig.aabb must hold 6 numbers [x0, y0, z0, x1, y1, z1], got {cfg.aabb}")
        self.cfg = cfg
        self.step = 0
        self.mode = ("ndc" if ndc else "bounded") if cfg.scene_mode == "auto" else cfg.scene_mode
        center = torch.as_tensor(sphere_center, dtype=torch.float32).reshape(3)
        self.register_buffer("sphere_center", center, persistent=False)
        self.sphere_radius = float(sphere_radius)
        if self.mode == "ndc":
            box = [-1.5, -1.5, -1.0, 1.5, 1.5, 1.0]
        elif self.mode == "unbounded":
            box = [-2.0, -2.0, -2.0, 2.0, 2.0, 2.0]  # contracted space
        elif cfg.aabb:
            box = [float(v) for v in cfg.aabb]
        else:
            box = (center - sphere_radius).tolist() + (center + sphere_radius).tolist()
        self.register_buffer("box_lo", torch.tensor(box[:3]), persistent=False)
        self.register_buffer("box_hi", torch.tensor(box[3:]), persistent=False)
        self.field = InstantField(
            cfg.n_levels, cfg.n_features, cfg.log2_table_size, cfg.base_resolution, cfg.max_resolution,
            cfg.hidden, cfg.geo_features, cfg.density_bias,
        )  # fmt: skip
        self.grid = OccupancyGrid(
            box, cfg.grid_resolution, cfg.grid_cascades, cfg.grid_update_every,
            cfg.grid_warmup_steps, cfg.grid_decay, cfg.grid_threshold,
        )  # fmt: skip
        diagonal = float(torch.linalg.norm(self.box_hi - self.box_lo))
        cone = 1.0 / 256 if (self.mode == "unbounded" and cfg.cone_angle == 0) else cfg.cone_angle
        self.cone_angle = cone
        if self.mode == "unbounded":  # marching is in the world: the sphere's diameter sets the step
            self.step_size = 2.0 * self.sphere_radius * math.sqrt(3) / cfg.steps_per_diagonal
        else:
            self.step_size = diagonal / cfg.steps_per_diagonal
        self.max_steps = cfg.max_steps or self._auto_max_steps(far)
        bg = None if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        self.register_buffer("background", bg, persistent=False)
        if cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True

    def _auto_max_steps(self, far: float) -> int:
        if self.mode != "unbounded":
            return steps_to_cross(self.grid, self.step_size)
        c, dt = self.cone_angle, self.step_size
        if c <= 0:
            return int(math.ceil(far / dt))
        t_switch = dt / c  # linear steps up to it, geometric after
        linear = math.ceil(min(t_switch, far) / dt)
        return int(linear + max(0.0, math.ceil(math.log(max(far / t_switch, 1.0)) / math.log1p(c)))) + 1

    # ---------------------------------------------------------------- space
    def to_field(self, points: Tensor) -> Tensor:
        """World (or NDC) points [m, 3] -> grid space (the box of the field and the grid)."""
        if self.mode != "unbounded":
            return points
        return contract((points - self.sphere_center) / self.sphere_radius)

    def unit(self, x: Tensor) -> Tensor:
        """Grid-space points [m, 3] -> [0, 1]^3, the hash encoding's input."""
        return (x - self.box_lo) / (self.box_hi - self.box_lo)

    def occupancy(self, x: Tensor) -> Tensor:
        """Occupancy value sigma * step at grid-space points x [m, 3] -> [m] (the grid's ``occ_fn``)."""
        with autocast(self.cfg.amp, x.device):
            sigma = chunked_apply(lambda p: self.field.density(self.unit(p))[0], x, netchunk=self.cfg.netchunk)
        return sigma.float() * self.step_size

    def set_step(self, step: int) -> None:
        super().set_step(step)
        if self.training:
            self.grid.update(step, self.occupancy)

    # ---------------------------------------------------------------- forward
    def sample(self, rays: RayBundle) -> PackedSamples:
        """Packed intervals along ``rays`` in occupied cells (fixed budget in training, if set)."""
        budget = self.cfg.sample_budget if self.training else 0
        if self.mode == "unbounded":
            return self._march_unbounded(rays, budget)
        return self.grid.march(
            rays.origins, rays.directions, rays.near, rays.far, self.step_size, self.max_steps,
            cone_angle=self.cone_angle, perturb=self.training, budget=budget,
        )  # fmt: skip

    def _march_unbounded(self, rays: RayBundle, budget: int) -> PackedSamples:
        """March in the world from near to far; the grid is looked up at contracted points."""
        from nerflite.occupancy import marching_steps, pack_mask

        t0 = rays.near[:, 0]
        if self.training:
            t0 = t0 + torch.rand_like(t0) * self.step_size
        bounds = marching_steps(t0, self.max_steps, self.step_size, self.cone_angle)  # [n, S + 1]
        starts, ends = bounds[:, :-1], bounds[:, 1:]
        pts = rays.points(0.5 * (starts + ends))  # [n, S, 3]
        n, s = starts.shape
        occupied = self.grid.occupied(self.to_field(pts.reshape(-1, 3))).reshape(n, s)
        ray, step, valid = pack_mask(occupied & (ends <= rays.far), budget)
        return PackedSamples(starts[ray, step], ends[ray, step], ray, valid, n)

    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        s = self.sample(ray_bundle)
        ri = s.ray_indices
        points = ray_bundle.origins[ri] + s.t_mid[:, None] * ray_bundle.directions[ri]  # [m, 3]
        x = self.unit(self.to_field(points))  # [m, 3]
        with autocast(self.cfg.amp, ray_bundle.device):
            sigma, rgb = chunked_apply(self.field, x, ray_bundle.viewdirs[ri], netchunk=self.cfg.netchunk)
        out = render_packed(
            sigma.float(), rgb.float(), s.t_starts, s.t_ends, ri, s.n_rays, s.valid, self.background
        )
        out.pop("weights")  # per sample, not per ray
        out["n_samples"] = (torch.ones_like(s.t_mid) if s.valid is None else s.valid.float()).sum()
        return out

    # ---------------------------------------------------------------- losses and metrics
    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"rgb": self.cfg.rgb_weight * F.mse_loss(outputs["rgb"], batch["rgb"])}

    @torch.no_grad()
    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        n = outputs["rgb"].shape[0]
        return {
            "psnr": psnr(outputs["rgb"], batch["rgb"]),
            "samples_per_ray": outputs["n_samples"] / max(n, 1),
            "occupied_frac": self.grid.bitfield.float().mean(),
        }

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups: the hash tables at ``lr * table_lr_mult``, the MLPs at ``lr``."""
        table = [self.field.encoding.table]
        mlps = [p for n, p in self.named_parameters() if p.requires_grad and not n.endswith("encoding.table")]
        return [{"params": table, "lr": lr * self.cfg.table_lr_mult}, {"params": mlps, "lr": lr}]
