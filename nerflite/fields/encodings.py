"""Positional (Fourier feature) encoding of coordinates."""

from __future__ import annotations

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
