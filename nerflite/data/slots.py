"""Packed batches in shared-memory slots: how a batch crosses from a data worker to the trainer.

A slot holds one float32 block and one int64 block, a contiguous run per field, so every field
unpacks to a contiguous view. The ring is allocated before the workers start; a worker writes
batch k into a slot and sends only ``(k, slot)``. Ray extras known when the ring is made (a dynamic
scene's ``time`` and ``appearance_id``, ``nerflite.data.dynamic``) are fields of the layout too;
only tensors outside it (extras of a ``custom_ray_processor``) are pickled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nerflite.rays import RayBundle

_FLOAT_FIELDS = (("origins", 3), ("directions", 3), ("viewdirs", 3), ("near", 1), ("far", 1))


class SlotRing:
    """Shared-memory slots, each holding one packed batch: float32 and int64 blocks, one per field,
    so every field unpacks to a contiguous view."""

    def __init__(self, slots: int, n: int, has_mask: bool, ray_extras: Sequence[tuple[str, torch.dtype, int]] = ()):
        """``ray_extras``: (key, dtype, width) of the ``rays.extras`` every batch carries."""
        self.slots, self.n = slots, n
        batch_fields = (("rgb", 3),) + ((("mask", 1),) if has_mask else ())
        self.float_fields = [("rays", k, w) for k, w in _FLOAT_FIELDS]
        self.float_fields += [("batch", k, w) for k, w in batch_fields]
        self.int_fields = [("rays", "camera_indices", 1), ("batch", "indices", 3)]
        self.float_fields += [("extras", k, w) for k, dtype, w in ray_extras if dtype.is_floating_point]
        self.int_fields += [("extras", k, w) for k, dtype, w in ray_extras if not dtype.is_floating_point]
        nf = sum(w for _, _, w in self.float_fields) * n
        ni = sum(w for _, _, w in self.int_fields) * n
        self.floats = torch.empty(slots, nf, dtype=torch.float32).share_memory_()
        self.ints = torch.empty(slots, ni, dtype=torch.int64).share_memory_()

    def _views(self, flat: Tensor, fields) -> list[tuple[str, str, Tensor]]:
        out, o = [], 0
        for group, key, w in fields:
            out.append((group, key, flat[o : o + self.n * w].view(self.n, w)))
            o += self.n * w
        return out

    def write(self, slot: int, rays: RayBundle, batch: dict[str, Tensor]) -> dict | None:
        """Pack a batch into ``slot``; returns what does not fit the layout (extras), or None."""
        src = {"rays": rays.__dict__, "batch": batch, "extras": rays.extras}
        for fields, flat in ((self.float_fields, self.floats[slot]), (self.int_fields, self.ints[slot])):
            for group, key, view in self._views(flat, fields):
                view.copy_(src[group][key])
        known = {(g, k) for g, k, _ in self.float_fields + self.int_fields}
        extra_batch = {k: v for k, v in batch.items() if ("batch", k) not in known}
        extra_rays = {k: v for k, v in rays.extras.items() if ("extras", k) not in known}
        return {"rays": extra_rays, "batch": extra_batch} if extra_rays or extra_batch else None

    def read(self, slot: int, extras: dict | None, pin: bool = False) -> tuple[Tensor, Tensor, dict | None]:
        """Copy a slot out (into pinned memory when ``pin``): ``floats, ints, extras``."""
        out = []
        for ring in (self.floats, self.ints):
            t = torch.empty_like(ring[slot], pin_memory=pin)
            # numpy copies in this thread: a torch copy this size would wake the intra-op thread pool,
            # whose spinning threads take the cores the workers need
            t.numpy()[:] = ring[slot].numpy()
            out.append(t)
        return out[0], out[1], extras

    def unpack(self, floats: Tensor, ints: Tensor, extras: dict | None) -> tuple[RayBundle, dict]:
        parts = {"rays": {}, "batch": {}, "extras": {}}
        for group, key, view in self._views(floats, self.float_fields) + self._views(ints, self.int_fields):
            parts[group][key] = view
        if extras is not None:
            parts["batch"].update(extras["batch"])
            parts["extras"].update(extras["rays"])
        rays = RayBundle(**parts["rays"], extras=parts["extras"])
        return rays, parts["batch"]
