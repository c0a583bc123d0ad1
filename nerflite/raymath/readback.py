"""Reading a small device tensor on the host one step late, without making the step wait.

``x.item()`` / ``x.tolist()`` on a CUDA tensor waits for everything queued before it: a training
step that reads a value it just computed stalls until the device has caught up. ``LaggedRead``
copies the value into pinned host memory behind the work that made it (``push``) and reads it at
the next step (``pull``), waiting only for that copy, which the device finished long ago when the
copy was queued early in the previous step. On a CPU the value is read at once. Which value a step
sees never depends on timing: ``pull`` always returns the last ``push``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LaggedRead:
    """``push(t)`` a small tensor now, ``pull()`` its values (a list) later; None before any push."""

    def __init__(self) -> None:
        self._host: Tensor | None = None
        self._event = None
        self._value: list | None = None

    def push(self, t: Tensor) -> None:
        t = t.detach()
        if t.device.type != "cuda":
            self._value, self._host, self._event = t.tolist(), None, None
            return
        self.pull()  # the previous copy is done before its buffer is reused
        if self._host is None or self._host.shape != t.shape or self._host.dtype != t.dtype:
            self._host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)  # pinned once, reused
        self._host.copy_(t, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()

    def pull(self) -> list | None:
        if self._event is not None:
            self._event.synchronize()  # the copy only, not the work queued after it
            self._value, self._event = self._host.tolist(), None
        return self._value

    def reset(self) -> None:
        if self._event is not None:
            self._event.synchronize()
        self._event, self._value = None, None
