"""Scene-frame queries shared by the SDF models (NeuS, hash-grid NeuS): what mesh extraction,
render.py and the viewer ask of a surface model.

A model that mixes this in owns ``sdf_field`` (``sdf(x)``, ``sdf_feature_gradient(x)`` in the
unit-sphere frame), ``color_field(x, grad, view_dir, feature)``, the buffers ``sphere_center`` [3]
and ``sphere_radius`` [], and ``cfg.netchunk`` (points per field call).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nerflite.fields.batching import chunked_apply


class SDFQueries:
    """``to_unit``, ``scene_sdf``, ``bounding_box`` and ``surface_color`` in scene coordinates."""

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
