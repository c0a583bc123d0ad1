"""HyperNeRF's fields (Park et al., SIGGRAPH Asia 2021), as google/hypernerf builds them.

* ``SE3Field`` (Nerfies' deformation, ``warping.SE3Field``): an MLP on [gamma_a(x), omega_i]
  (windowed encoding of the observation-space point, the frame's warp code) -> trunk features ->
  two Linear heads r [3] and v [3], the screw of a rigid motion; x' = exp(r, v) x
  (``nerflite.rigid_body``: Rodrigues with the screw's v term, Modern Robotics eq. 3.88). The heads
  start near zero (weights uniform in [0, 1e-4), zero biases), so the warp starts near the identity,
  and is exactly the identity when both heads output 0.
* ``HyperSheet`` (``modules.HyperSheetMLP``, the "ambient slicing surface"): an MLP on
  [gamma_b(x), omega_i] -> w, the hyper-coordinates [ambient_dim]; last layer ~ N(0, 1e-5).
  It reads the observation-space x, not the warped x' (``hyper_sheet_use_input_points``).
* ``TemplateEncoding``: the template NeRF's input encoding of (x', w): gamma(x') with x' itself,
  then the windowed gamma_c(w) without w itself (``NerfModel.query_template``). The template is
  nerflite's ``NeRFField`` with this encoder and the appearance code as colour condition.

The window parameters alpha of gamma_a, gamma_b, gamma_c are plain attributes of their
``WindowedPositionalEncoding``s; ``HyperNeRFModel.set_step`` sets them from the step.
Hidden layers of the warp and sheet MLPs are initialised as Flax's Dense (Glorot-uniform, zero
bias), as in the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerflite.fields.encodings import PositionalEncoding, WindowedPositionalEncoding
from nerflite.fields.mlp import SkipMLP
from nerflite.rigid_body import se3_transform


class SE3Field(nn.Module):
    """(x [m, 3], code [m, code_dim]) -> x' [m, 3], a rigid motion per point."""

    def __init__(self, code_dim: int, n_freqs: int = 6, depth: int = 6, width: int = 128, skips=(3,),
                 include_input: bool = True):
        super().__init__()
        self.encoding = WindowedPositionalEncoding(n_freqs, include_input=include_input, in_dim=3)
        in_dim = self.encoding.out_dim + code_dim
        self.trunk = SkipMLP(in_dim, width, depth, 0, skips=skips, flax_init=True)  # hidden layers only
        self.rotation = nn.Linear(self.trunk.out_dim, 3)  # r: rotation vector (axis * angle)
        self.translation = nn.Linear(self.trunk.out_dim, 3)  # v: the screw's translation part
        for head in (self.rotation, self.translation):
            nn.init.uniform_(head.weight, 0.0, 1e-4)  # google/hypernerf: uniform(scale=1e-4)
            nn.init.zeros_(head.bias)

    def screw(self, x: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        """The screw (r, v) [m, 3] each at points x [m, 3] of the frames with codes [m, code_dim]."""
        h = self.trunk(torch.cat([self.encoding(x), code], dim=-1))  # [m, width]
        return self.rotation(h), self.translation(h)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        r, v = self.screw(x, code)
        with torch.autocast(device_type=x.device.type, enabled=False):  # the exp map in full precision
            return se3_transform(r.float(), v.float(), x.float())


class HyperSheet(nn.Module):
    """(x [m, 3], code [m, code_dim]) -> hyper-coordinates w [m, ambient_dim]."""

    def __init__(self, code_dim: int, ambient_dim: int = 2, n_freqs: int = 6, depth: int = 6, width: int = 64,
                 skips=(3,)):
        super().__init__()
        self.encoding = WindowedPositionalEncoding(n_freqs, include_input=False, in_dim=3)
        self.mlp = SkipMLP(self.encoding.out_dim + code_dim, width, depth, ambient_dim, skips=skips, flax_init=True)
        nn.init.normal_(self.mlp.out.weight, 0.0, 1e-5)  # google/hypernerf: normal(1e-5)
        nn.init.zeros_(self.mlp.out.bias)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        return self.mlp(torch.cat([self.encoding(x), code], dim=-1))


class TemplateEncoding(nn.Module):
    """(x', w) [m, 3 + ambient_dim] -> [gamma(x') with x', windowed gamma(w)] [m, out_dim]."""

    def __init__(self, spatial_freqs: int = 8, ambient_dim: int = 2, hyper_freqs: int = 1):
        super().__init__()
        self.spatial = PositionalEncoding(spatial_freqs, include_input=True, in_dim=3)
        self.hyper = WindowedPositionalEncoding(hyper_freqs, include_input=False, in_dim=ambient_dim)
        self.out_dim = self.spatial.out_dim + (self.hyper.out_dim if ambient_dim > 0 else 0)

    def forward(self, xw: Tensor) -> Tensor:
        x, w = xw[:, :3], xw[:, 3:]
        if w.shape[-1] == 0:
            return self.spatial(x)
        return torch.cat([self.spatial(x), self.hyper(w)], dim=-1)
