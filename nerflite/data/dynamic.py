"""Scenes that move: each view's moment (and appearance index) travels with every ray it makes.

A dynamic ``Scene`` has ``times`` [n_views] float32 in [0, 1] (the view's moment; 0 the first of
the capture, 1 the last) and, when the format records one, ``appearance_ids`` [n_views] int64.
Every RayBundle built from such a scene carries, beside its geometry,

    extras["time"]           float32 [n, 1]  the moment of the ray's view
    extras["appearance_id"]  int64   [n, 1]  the appearance index of the ray's view (scenes that have them)

Training batches (built in the data workers, crossing in the shared-memory slots as fields of their
own), ``next_eval`` and whole eval images get them from ``ViewTimes.attach`` by view index; rays
made elsewhere from cameras (render paths, the viewer) get a chosen moment with ``attach_time``.
Static scenes carry neither, so nothing changes for them, and models that ignore the extras
(every static model) train on dynamic scenes as if they were static.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nerflite.rays import RayBundle

if TYPE_CHECKING:
    from nerflite.data.scene import Scene

TIME = "time"  # RayBundle.extras key: float32 [n, 1] in [0, 1]
APPEARANCE = "appearance_id"  # RayBundle.extras key: int64 [n, 1]


def _column(value: float | int | Tensor, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``value`` (a number, [n] or [n, 1]) as a contiguous [n, 1] tensor of ``dtype`` on ``device``."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 0:
        return t.expand(n, 1).clone()
    if t.numel() != n:
        raise ValueError(f"expected one value or {n} values (one per ray), got shape {tuple(t.shape)}")
    return t.reshape(n, 1).contiguous()


def attach_time(rays: RayBundle, time: float | Tensor, appearance_id: int | Tensor | None = None) -> RayBundle:
    """``rays`` with ``extras["time"]`` = ``time`` (and ``extras["appearance_id"]`` when given).

    ``time`` is one moment in [0, 1] for every ray (a render at a fixed time T) or one per ray
    ([n] or [n, 1]); likewise ``appearance_id``. Returns a new bundle sharing the ray tensors.
    """
    n, device = len(rays), rays.device
    extras = dict(rays.extras)
    extras[TIME] = _column(time, n, torch.float32, device)
    if appearance_id is not None:
        extras[APPEARANCE] = _column(appearance_id, n, torch.int64, device)
    return rays.replace(extras=extras)


@dataclass
class ViewTimes:
    """A scene's per-view moments and appearance indices on one device, attached to rays by view."""

    times: Tensor | None  # [n_views] float32 in [0, 1]
    appearance_ids: Tensor | None  # [n_views] int64

    @staticmethod
    def of(scene: Scene, device: torch.device | str | None = None) -> ViewTimes | None:
        """The tables of ``scene`` on ``device`` (default: where they are); None for a static scene."""
        if scene.times is None and scene.appearance_ids is None:
            return None
        move = lambda t: None if t is None else (t if device is None else t.to(device))  # noqa: E731
        return ViewTimes(move(scene.times), move(scene.appearance_ids))

    def attach(self, rays: RayBundle, view: Tensor) -> RayBundle:
        """``rays`` with the extras of their views ``view`` (int64 [n], on the tables' device)."""
        extras = dict(rays.extras)
        if self.times is not None:
            extras[TIME] = self.times.index_select(0, view).unsqueeze(-1)  # [n, 1]
        if self.appearance_ids is not None:
            extras[APPEARANCE] = self.appearance_ids.index_select(0, view).unsqueeze(-1)  # [n, 1]
        return rays.replace(extras=extras)

    def layout(self) -> list[tuple[str, torch.dtype, int]]:
        """The extras these tables add to every ray: (key, dtype, width), for the shared-memory slots."""
        out = []
        if self.times is not None:
            out.append((TIME, torch.float32, 1))
        if self.appearance_ids is not None:
            out.append((APPEARANCE, torch.int64, 1))
        return out


def normalised_times(values: list[float] | Tensor) -> Tensor:
    """Moments [n] float32 in [0, 1] from any increasing clock (frame indices, time ids, seconds):
    the earliest becomes 0, the latest 1; all 0 when every value is the same."""
    v = torch.as_tensor(values, dtype=torch.float64)
    lo, hi = v.min(), v.max()
    if hi <= lo:
        return torch.zeros(len(v), dtype=torch.float32)
    return ((v - lo) / (hi - lo)).float()
