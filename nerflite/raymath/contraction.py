"""Scene contraction for unbounded captures (mip-NeRF 360, Barron et al. 2022, eq. 10).

    contract(x) = x                              |x| <= 1
                  (2 - 1 / |x|) (x / |x|)         |x| > 1

maps all of space into the ball of radius 2: the unit ball (the scene's bounding sphere, after
``x = (p - centre) / radius``) keeps its scale, everything beyond is squeezed, with infinity on the
sphere of radius 2. nerflite uses the inf-norm variant (|x| = max_i |x_i|, as instant-ngp's
nerfstudio port does), so the contracted scene fills the cube [-2, 2]^3 that a grid covers.
"""

from __future__ import annotations

from torch import Tensor


def contract(x: Tensor) -> Tensor:
    """Contract points [m, 3] (already centred and scaled: the scene inside [-1, 1]^3) into [-2, 2]^3."""
    r = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)  # [m, 1]
    return x.where(r <= 1, (2.0 - 1.0 / r) * (x / r))
