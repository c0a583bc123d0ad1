"""``netchunk``: the one place where field calls are split into bounded batches of points.

The other two batching words live elsewhere: rays per training step is the datamanager's
``rays_per_batch``; rays per forward when rendering whole images is ``chunk``
(``nerflite.models.base.render_rays_chunked``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def chunked_apply(fn: Callable, *inputs: Tensor, netchunk: int | None):
    """``fn(*inputs)`` evaluated on at most ``netchunk`` points (rows) at a time.

    Every input is split along its first dimension, which must be the same for all; ``fn`` returns
    a tensor or a tuple of tensors with that first dimension, and the pieces are concatenated
    back. ``netchunk`` None or <= 0 (or not smaller than the number of rows) calls ``fn`` once.
    Gradients flow through as usual, so this also bounds the activations of one layer's matmul,
    not the total memory kept for backward.
    """
    m = inputs[0].shape[0]
    if any(x.shape[0] != m for x in inputs):
        raise ValueError(f"chunked_apply: inputs disagree on rows: {[tuple(x.shape) for x in inputs]}")
    if not netchunk or netchunk <= 0 or m <= netchunk:
        return fn(*inputs)
    outs = [fn(*(x[i : i + netchunk] for x in inputs)) for i in range(0, m, netchunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))
    return torch.cat(outs, dim=0)
