"""The model interface that the trainer, the evaluator and render.py rely on, and nothing else.

NeRF and NeuS both implement it. A model owns its fields and samplers; the math it uses (sampling,
compositing) lives in pure functions in ``nerflite.sampling`` and ``nerflite.rendering``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from nerflite.rays import RayBundle


class Model(nn.Module, ABC):
    """forward(ray_bundle) -> outputs; losses(outputs, batch) -> named, weighted losses."""

    @abstractmethod
    def forward(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        """Render a batch of rays. Always returns at least ``rgb`` [n, 3], ``depth`` [n, 1] and
        ``accumulation`` [n, 1] for the final pass. Randomness (stratified jitter, density noise)
        only when ``self.training``."""

    @abstractmethod
    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named losses, each already multiplied by its weight from config; the trainer sums them."""

    def metrics(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Scalars for logging (e.g. ``psnr``); no gradients needed."""
        return {}

    def set_step(self, step: int) -> None:
        """Called by the trainer before every step, for annealed quantities."""
        self.step = step
