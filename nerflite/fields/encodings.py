"""Positional (Fourier feature) encodings of coordinates, plain and windowed (Nerfies' coarse-to-fine).

``window_weights`` and ``linear_alpha`` are the window and its schedule as pure functions;
``WindowedPositionalEncoding`` applies them (the deformable models set its ``alpha`` from the step).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

    ``n_freqs`` = L octaves starting at frequency 1 (radians per unit); the input itself is
    included when ``include_input``. Input [..., in_dim] -> output [..., out_dim] with
    ``out_dim = in_dim * (include_input + 2 * n_freqs)``. Ordering of the output: the input, then
    all sines (frequency-major: every coordinate at 2^0, then at 2^1, ...), then all cosines in
    the same order. The order is a fixed permutation of the classic interleaved one, so it makes
    no difference to an MLP that consumes it.
    """

    def __init__(self, n_freqs: int, include_input: bool = True, in_dim: int = 3):
        super().__init__()
        self.n_freqs = n_freqs
        self.include_input = include_input
        self.in_dim = in_dim
        self.out_dim = in_dim * (int(include_input) + 2 * n_freqs)
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        parts = [x] if self.include_input else []
        if self.n_freqs > 0:
            xb = (x[..., None, :] * self.freqs[:, None].to(x.dtype)).flatten(-2)  # [..., L * in_dim]
            parts += [torch.sin(xb), torch.cos(xb)]
        return torch.cat(parts, dim=-1)


def window_weights(alpha: float, n_freqs: int) -> Tensor:
    """Nerfies' coarse-to-fine window over the octaves of a positional encoding (Park et al. 2021,
    "coarse-to-fine deformation regularization"; ``posenc_window`` in google/nerfies and
    google/hypernerf): w_j(alpha) = (1 - cos(pi * clamp(alpha - j, 0, 1))) / 2 for j = 0 .. n_freqs - 1.

    ``alpha`` = 0 masks every octave, ``alpha`` >= n_freqs lets all through; octave j eases in
    while alpha goes from j to j + 1. Returns [n_freqs] float32 (float64 arithmetic, then cast).
    """
    j = torch.arange(n_freqs, dtype=torch.float64)
    x = (float(alpha) - j).clamp(0.0, 1.0)
    return ((1.0 - torch.cos(math.pi * x)) / 2.0).float()


def linear_alpha(step: int, n_freqs: int, steps: int, delay: int = 0) -> float:
    """The window's alpha at ``step``: 0 until ``delay``, then linear to ``n_freqs`` over ``steps``.

    Nerfies' alpha(t) = m t / N is ``linear_alpha(t, m, N)``; HyperNeRF delays the window of its
    hyper-coordinates (1000 steps at 0, then linear over 10000). ``steps`` <= 0: a step function
    (0 before ``delay``, ``n_freqs`` from it on), i.e. no annealing. A pure function of the step,
    so a model derives it in ``set_step`` and a checkpoint restores it exactly.
    """
    if steps <= 0:
        return float(n_freqs) if step >= delay else 0.0
    return float(n_freqs) * min(max((step - delay) / steps, 0.0), 1.0)


class WindowedPositionalEncoding(PositionalEncoding):
    """A ``PositionalEncoding`` whose octave j is scaled by ``window_weights(alpha)[j]`` (both its
    sine and its cosine; the raw input, when included, is never scaled).

    ``alpha`` is a plain attribute, not a parameter or buffer: the owning model sets it from the
    step (``set_step``), so it is derived, never accumulated. ``alpha = None`` (or >= n_freqs) is the
    plain encoding.
    """

    def __init__(self, n_freqs: int, include_input: bool = True, in_dim: int = 3):
        super().__init__(n_freqs, include_input, in_dim)
        self.alpha: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)  # [..., out_dim]
        if self.alpha is None or self.n_freqs == 0:
            return out
        w = window_weights(self.alpha, self.n_freqs).to(out)  # [L]
        w = w.repeat_interleave(self.in_dim).repeat(2)  # [2 L in_dim]: sines then cosines, frequency-major
        if self.include_input:
            w = torch.cat([torch.ones(self.in_dim, dtype=out.dtype, device=out.device), w])
        return out * w
