"""instant-ngp-style NeRF in pure PyTorch: hash grid field, occupancy grid, packed rendering.

Per batch of rays (``RayBundle``):

1. Training only: the first forward of every ``grid_update_every``-th step refreshes the
   occupancy grid from the field's own density (occupancy value = sigma * step size); evaluation,
   ``set_step`` and ``load_state`` never change the grid.
2. ``nerflite.raymath.marching``: intervals of ``step_size`` (or growing with ``cone_angle``) in occupied
   cells, packed in ray order. No ray is cut short. In training with ``sample_budget`` > 0 the
   step has exactly that many sample slots: whole rays are taken in batch order while their
   samples fit, the rest are left out of the loss and the metrics (``ray_mask``), and the number
   of rays marched follows the previous step's samples per ray, so the samples per step track the
   budget as the grid carves out empty space (nerfacc adapts its ray count for the same reason).
   The previous step's count is read one step late (``nerflite.raymath.readback``): the step never waits.
3. ``InstantField`` at the interval midpoints -> sigma, rgb; ``render_packed`` -> ``rgb``,
   ``depth``, ``accumulation``, with the scene's background composited behind.
4. Whole images (eval mode): ``render_until_opaque`` marches in segments, stops each ray once its
   transmittance falls below ``early_stop`` and never starts rays that miss the grid; chunks of
   ``chunk`` rays (0: 2^18 on a GPU, 8192 on a CPU).

Scene space (``scene_mode``):
* ``bounded`` (Blender, DTU): the field and the grid cover ``aabb`` (default: the cube around the
  scene's bounding sphere).
* ``ndc`` (forward-facing LLFF with ``dataset.ndc=true``): rays are already in NDC, the box is the
  NDC cube [-1.5, 1.5] x [-1.5, 1.5] x [-1, 1] (x, y reach a little beyond +-1 at the image rims).
* ``unbounded`` (360 captures): points are centred on the bounding sphere, scaled by its radius and
  contracted (``nerflite.raymath.contraction``) into [-2, 2]^3, the box of the field and the grid; marching
  goes to the scene's far bound with a cone-angle step.
``auto`` picks ``ndc`` for NDC scenes, else ``bounded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.fields.instant_field import InstantField
from nerflite.models.base import Model, autocast, check_amp
from nerflite.raymath.contraction import contract
from nerflite.raymath.marching import PackedSamples, march, rays_for_budget, render_until_opaque
from nerflite.raymath.occupancy import OccupancyGrid, steps_to_cross
from nerflite.raymath.packed_rendering import render_packed
from nerflite.raymath.readback import LaggedRead
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
    sample_budget: int = 0  # sample slots per training step (0: every sample of every ray; >0: static, whole rays only)
    early_stop: float = 1e-4  # whole images: a ray stops once its transmittance is below this (0: never)
    skip_empty: bool = True  # test blocks of steps on a dilated grid first: same samples, fewer lookups (not in
    # budgeted GPU training, where it would add a host sync)
    chunk: int = 0  # rays per forward when rendering whole images (0: 2^18 on a GPU, 8192 on a CPU)
    netchunk: int = 262144  # points per field call
    rgb_weight: float = 1.0  # weight of the colour MSE
    table_lr_mult: float = 1.0  # learning-rate multiplier of the hash tables relative to the MLPs
    amp: str = "none"  # autocast dtype for the MLPs: "none" | "bf16" | "fp16"
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs (torch's switch is process-wide)
    compile: bool = False  # torch.compile the field for training steps (static shapes: with sample_budget > 0)


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
        diagonal = float(torch.linalg.norm(self.box_hi - self.box_lo))  # of the finest cascade: sets the step
        lo, hi = self.grid.outer_box  # the hash grid covers every cascade (as instant-ngp's aabb_scale)
        self.box_lo.copy_(lo)
        self.box_hi.copy_(hi)
        cone = 1.0 / 256 if (self.mode == "unbounded" and cfg.cone_angle == 0) else cfg.cone_angle
        self.cone_angle = cone
        if self.mode == "unbounded":  # marching is in the world: the sphere's diameter sets the step
            self.step_size = 2.0 * self.sphere_radius * math.sqrt(3) / cfg.steps_per_diagonal
        else:
            self.step_size = diagonal / cfg.steps_per_diagonal
        self.max_steps = cfg.max_steps or self._auto_max_steps(far)
        if 0 < cfg.sample_budget < self.max_steps:
            raise ValueError(
                f"InstantConfig.sample_budget ({cfg.sample_budget}) must be 0 or at least the {self.max_steps} "
                "marching steps of one ray, so that any ray fits whole"
            )
        # (samples, rays) of the last training step's kept rays: sets how many rays the next one marches
        self.register_buffer("march_stats", torch.zeros(2))
        self._stats_read = LaggedRead()
        self._grid_updated_at = -1
        bg = None if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        self.register_buffer("background", bg, persistent=False)
        if cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
        # a compiled bound method, not a submodule: the state dict keeps its keys
        self._train_field = torch.compile(self.field.forward, dynamic=False) if cfg.compile else None

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

    def occupied(self, points: Tensor) -> Tensor:
        """bool [m]: world (or NDC) points [m, 3] lie in occupied cells of the grid."""
        return self.grid.occupied(self.to_field(points))

    def coarse(self):
        """The grid's block test for empty-space skipping (None: march densely; ``unbounded`` looks
        the grid up at contracted points, where a block's extent is not bounded by a cell)."""
        if self.mode == "unbounded" or not self.cfg.skip_empty:
            return None
        return self.grid.coarse(self.step_size, self.cone_angle)

    def default_chunk(self, device: torch.device) -> int:
        return 1 << 18 if device.type == "cuda" else 8192

    def load_state(self, state_dict: dict[str, Tensor], step: int) -> None:
        super().load_state(state_dict, step)
        self._stats_read.reset()  # the next step reads the loaded ``march_stats``

    # ---------------------------------------------------------------- forward
    def ray_interval(self, rays: RayBundle) -> tuple[Tensor, Tensor]:
        """(t0 [n], t1 [n]) where marching starts and ends: the grid's box within [near, far]
        (``unbounded``: near to far in the world, the grid is looked up at contracted points)."""
        if self.mode == "unbounded":
            return rays.near[:, 0], rays.far[:, 0]
        return self.grid.ray_interval(rays.origins, rays.directions, rays.near, rays.far)

    def rays_to_march(self, n: int) -> int:
        """How many of a training batch's ``n`` rays to march: enough to fill ``sample_budget`` at
        the last step's samples per ray (all ``n`` before any step)."""
        stats = self._stats_read.pull()
        if stats is None:
            stats = self.march_stats.tolist()  # after construction or a load: one read
        return rays_for_budget(self.cfg.sample_budget, stats[0], stats[1], n)

    def sample(self, rays: RayBundle) -> PackedSamples:
        """Packed intervals along ``rays`` in occupied cells: every sample of every ray, or (training
        with ``sample_budget``) whole rays in a fixed number of slots, ``ray_kept`` [n] saying which."""
        t0, t1 = self.ray_interval(rays)
        if self.training:
            t0 = t0 + torch.rand_like(t0) * self.step_size
        budget = self.cfg.sample_budget if self.training else 0
        # block marching reads a count back to the host: skipped where a budget keeps a GPU step sync-free
        coarse = self.coarse() if budget <= 0 or t0.device.type == "cpu" else None
        if budget <= 0:
            return march(rays.origins, rays.directions, t0, t1, self.occupied, self.step_size, self.max_steps,
                         self.cone_angle, coarse=coarse)
        n = len(rays)
        k = self.rays_to_march(n)
        s = march(rays.origins[:k], rays.directions[:k], t0[:k], t1[:k], self.occupied, self.step_size,
                  self.max_steps, self.cone_angle, budget, coarse)
        kept = torch.zeros(n, dtype=torch.bool, device=t0.device)
        kept[:k] = s.ray_kept
        self.march_stats.copy_(torch.stack([s.n_valid(), kept.sum().float()]))
        self._stats_read.push(self.march_stats)
        s.ray_kept, s.n_rays = kept, n
        return s

    def _update_grid(self) -> None:
        """Refresh the occupancy grid once per training step (its schedule decides which steps)."""
        if self._grid_updated_at != self.step:
            self.grid.update(self.step, self.occupancy)
            self._grid_updated_at = self.step

    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        if not self.training:
            return self._render_until_opaque(ray_bundle)
        self._update_grid()
        s = self.sample(ray_bundle)
        ri = s.ray_indices
        points = ray_bundle.origins[ri] + s.t_mid[:, None] * ray_bundle.directions[ri]  # [m, 3]
        sigma, rgb = self.radiance(ray_bundle, ri, points)
        out = render_packed(sigma, rgb, s.t_starts, s.t_ends, ri, s.n_rays, s.valid, self.background)
        out.pop("weights")  # per sample, not per ray
        out["n_samples"] = s.n_valid()
        if s.ray_kept is not None:
            out["ray_mask"] = s.ray_kept[:, None].float()  # [n, 1]: rays left out of the loss are 0
        return out

    def radiance(self, rays: RayBundle, ri: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """The field at samples: (sigma [m], rgb [m, 3]) at world points [m, 3] of the rays ``ri`` [m]
        of ``rays``. Training and whole images both go through it: the hook a subclass overrides to
        read more of a sample's ray than its direction (``models/dynamic_instant.py``: its time)."""
        return self._radiance(points, rays.viewdirs[ri])

    def _radiance(self, points: Tensor, viewdirs: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma [m], rgb [m, 3]) in float32 at world points [m, 3] seen along viewdirs [m, 3]."""
        x = self.unit(self.to_field(points))  # [m, 3]
        field = self._train_field if (self.training and self._train_field is not None) else self.field
        with autocast(self.cfg.amp, points.device):
            sigma, rgb = chunked_apply(field, x, viewdirs, netchunk=self.cfg.netchunk)
        return sigma.float(), rgb.float()

    def _render_until_opaque(self, rays: RayBundle) -> dict[str, Tensor]:
        t0, t1 = self.ray_interval(rays)
        out = render_until_opaque(
            rays.origins, rays.directions, t0, t1, self.occupied,
            lambda p, ri: self.radiance(rays, ri, p),
            self.step_size, self.max_steps, self.cone_angle, eps=self.cfg.early_stop, coarse=self.coarse(),
        )  # fmt: skip
        if self.background is not None:
            out["rgb"] = out["rgb"] + (1.0 - out["accumulation"]) * self.background
        return out

    # ---------------------------------------------------------------- losses and metrics
    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Colour MSE over the rays that count (``ray_mask``: all of them without a budget)."""
        err = (outputs["rgb"] - batch["rgb"]) ** 2  # [n, 3]
        if "ray_mask" not in outputs:
            return {"rgb": self.cfg.rgb_weight * err.mean()}
        w = outputs["ray_mask"]  # [n, 1]
        return {"rgb": self.cfg.rgb_weight * (err * w).sum() / (3.0 * w.sum()).clamp(min=1.0)}

    @torch.no_grad()
    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        w = outputs.get("ray_mask", torch.ones_like(outputs["rgb"][:, :1]))  # [n, 1]
        rays = w.sum().clamp(min=1.0)
        mse = (((outputs["rgb"] - batch["rgb"]) ** 2) * w).sum() / (3.0 * rays)
        return {
            "psnr": -10.0 * torch.log10(mse.clamp(min=1e-10)),
            "samples_per_ray": outputs["n_samples"] / rays,
            "samples_per_step": outputs["n_samples"],
            "rays_used": rays,
            "occupied_frac": self.grid.bitfield.float().mean(),
        }

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups: the hash tables at ``lr * table_lr_mult``, the MLPs at ``lr``."""
        table = [self.field.encoding.table]
        mlps = [p for n, p in self.named_parameters() if p.requires_grad and not n.endswith("encoding.table")]
        return [{"params": table, "lr": lr * self.cfg.table_lr_mult}, {"params": mlps, "lr": lr}]
