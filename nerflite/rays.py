"""RayBundle: the one container for rays that crosses every boundary in nerflite.

Shapes use these names throughout the code base:
    n        rays in a bundle
    s        samples along each ray

Conventions
-----------
* ``directions`` are unit vectors, so a depth ``t`` is a Euclidean distance along the ray and
  ``points = origins + t * directions``. ``RayBundle.points`` is the only place points are made.
* ``viewdirs`` are the unit world-space viewing directions used to condition colour. They equal
  ``directions`` except after the NDC transform, where ``directions`` live in NDC space but the
  colour branch still sees the world direction (as in the original NeRF).
* ``near`` / ``far`` are per ray, ``[n, 1]``, in the same units as ``t``.
* ``camera_indices`` ``[n, 1]`` (int64) index the views of the scene's ``Cameras``.
* ``extras`` carries optional per-ray tensors (first dimension ``n``) attached by a method, for
  example by a datamanager ``custom_ray_processor``. They are sliced, moved and concatenated with
  the bundle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

_TENSOR_FIELDS = ("origins", "directions", "viewdirs", "near", "far", "camera_indices")


@dataclass
class RayBundle:
    origins: Tensor  # [n, 3]
    directions: Tensor  # [n, 3] unit
    viewdirs: Tensor  # [n, 3] unit, world space
    near: Tensor  # [n, 1]
    far: Tensor  # [n, 1]
    camera_indices: Tensor  # [n, 1] int64
    extras: dict[str, Tensor] = field(default_factory=dict)  # each [n, ...]

    def __len__(self) -> int:
        return self.origins.shape[0]

    @property
    def device(self) -> torch.device:
        return self.origins.device

    def _map(self, fn) -> RayBundle:
        kwargs = {name: fn(getattr(self, name)) for name in _TENSOR_FIELDS}
        return RayBundle(**kwargs, extras={k: fn(v) for k, v in self.extras.items()})

    def __getitem__(self, index) -> RayBundle:
        """Select rays with a slice, an integer tensor or a boolean mask over the first dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    def to(self, device, non_blocking: bool = False) -> RayBundle:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> RayBundle:
        return self._map(lambda t: t.pin_memory())

    def split(self, chunk: int) -> Iterator[RayBundle]:
        """Consecutive sub-bundles of at most ``chunk`` rays."""
        for start in range(0, len(self), chunk):
            yield self[start : start + chunk]

    def points(self, t: Tensor) -> Tensor:
        """Points at depths ``t`` [n, s] -> [n, s, 3]."""
        return self.origins[:, None, :] + t[..., None] * self.directions[:, None, :]

    @staticmethod
    def cat(bundles: list[RayBundle]) -> RayBundle:
        first = bundles[0]
        kwargs = {name: torch.cat([getattr(b, name) for b in bundles]) for name in _TENSOR_FIELDS}
        extras = {k: torch.cat([b.extras[k] for b in bundles]) for k in first.extras}
        return RayBundle(**kwargs, extras=extras)

    def replace(self, **changes) -> RayBundle:
        return replace(self, **changes)


def field_names() -> list[str]:
    """Names of the RayBundle's tensor fields (for serialisation in data workers)."""
    return [f.name for f in fields(RayBundle) if f.name != "extras"]
