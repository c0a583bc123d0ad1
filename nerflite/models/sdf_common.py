"""What the two SDF models (NeuS, hash-grid NeuS) share: the scene-frame queries that mesh
extraction, render.py and the viewer ask of a surface model, and NeuS's losses and metrics.

A model that mixes this in owns ``sdf_field`` (``sdf(x)``, ``sdf_feature_gradient(x)`` in the
unit-sphere frame), ``color_field(x, grad, view_dir, feature)``, the buffers ``sphere_center`` [3]
and ``sphere_radius`` [], ``cfg.netchunk`` (points per field call), the loss weights
``cfg.rgb_weight``, ``cfg.eikonal_weight``, ``cfg.mask_weight``, and ``cos_anneal_ratio``; its
training outputs carry ``gradients`` [n, s, 3], ``eikonal_mask`` [n, s], ``weights_sum_fg`` [n, 1]
and ``inv_s``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply
from nerflite.metrics import psnr
from nerflite.raymath.neus_rendering import eikonal_loss


class SDFCommon:
    """``to_unit``, ``scene_sdf``, ``bounding_box``, ``surface_color`` (scene coordinates) and the
    NeuS losses: colour L1 (inside the mask when masks are used), eikonal, mask BCE."""

    def to_unit(self, x: Tensor) -> Tensor:
        """Scene coordinates [..., 3] -> the unit-sphere frame."""
        return (x - self.sphere_center) / self.sphere_radius

    def scene_sdf(self, x: Tensor) -> Tensor:
        """Signed distance [m] in scene units at scene points x [m, 3] (for mesh extraction)."""
        sdf = chunked_apply(self.sdf_field.sdf, self.to_unit(x), netchunk=self.cfg.netchunk)
        return sdf[:, 0] * self.sphere_radius

    def bounding_box(self) -> tuple[Tensor, Tensor]:
        """Corners [3], [3] of the box around the bounding sphere, in scene coordinates."""
        return self.sphere_center - self.sphere_radius, self.sphere_center + self.sphere_radius

    def surface_color(self, x: Tensor) -> Tensor:
        """Colour [m, 3] at scene points x [m, 3] seen head-on (view direction = -normal)."""

        def color(p: Tensor) -> Tensor:
            _, feature, grad = self.sdf_field.sdf_feature_gradient(p, create_graph=False)
            return self.color_field(p, grad, -F.normalize(grad, dim=-1), feature)

        with torch.no_grad():
            return chunked_apply(color, self.to_unit(x), netchunk=self.cfg.netchunk)

    def _mask(self, batch: dict[str, Tensor]) -> Tensor | None:
        if self.cfg.mask_weight > 0 and "mask" in batch:
            return batch["mask"].to(torch.float32).reshape(-1, 1)
        return None

    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        mask = self._mask(batch)
        err = (outputs["rgb"] - batch["rgb"]).abs().sum(-1, keepdim=True)  # [n, 1] L1 over channels
        rgb_loss = err.mean() if mask is None else (err * mask).sum() / (mask.sum() + 1e-5)
        out = {"rgb": cfg.rgb_weight * rgb_loss}
        if "gradients" in outputs:  # training outputs
            out["eikonal"] = cfg.eikonal_weight * eikonal_loss(outputs["gradients"], outputs["eikonal_mask"])
        if mask is not None:
            w = outputs["weights_sum_fg"].clamp(1e-3, 1.0 - 1e-3)
            out["mask"] = cfg.mask_weight * F.binary_cross_entropy(w, mask)
        return out

    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        with torch.no_grad():
            out = {"psnr": psnr(outputs["rgb"], batch["rgb"]), "inv_s": outputs["inv_s"].reshape(())}
            mask = self._mask(batch)
            if mask is not None:
                mse = (((outputs["rgb"] - batch["rgb"]) ** 2) * mask).sum() / (3.0 * mask.sum() + 1e-5)
                out["psnr_masked"] = -10.0 * torch.log10(mse.clamp_min(1e-10))
            out["cos_anneal_ratio"] = torch.tensor(self.cos_anneal_ratio)
        return out
