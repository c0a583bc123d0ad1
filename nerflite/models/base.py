"""The model interface that the trainer, the evaluator and render.py rely on, and nothing else.

NeRF and NeuS both implement it. A model owns its fields and samplers; the math it uses (sampling,
compositing) lives in pure functions in ``nerflite.raymath.sampling`` and ``nerflite.raymath.rendering``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from nerflite.rays import RayBundle

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # the models' `amp` switch


def check_amp(name: str, amp: str) -> None:
    """Fail at construction on an unknown ``amp`` value (``name`` is the config class, for the message)."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"{name}.amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")


def autocast(amp: str, device: torch.device):
    """The context that runs the field MLPs in mixed precision for ``amp`` ("none": no autocast)."""
    dtype = AMP_DTYPES[amp]
    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


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

    def default_chunk(self, device: torch.device) -> int:
        """Rays per forward when rendering whole images with ``chunk`` = 0: sized for the device."""
        return 65536 if device.type == "cuda" else 8192

    def load_state(self, state_dict: dict[str, Tensor], step: int) -> None:
        """Load a checkpoint's weights and the state derived from its step (``set_step(step)``).

        A checkpoint of step ``k`` holds the weights after ``k`` steps; the model then stands where
        step ``k`` starts (e.g. NeuS's cosine-annealing ratio), whoever loads it: resume, render,
        evaluation, a viewer. Every place that puts a checkpoint into a model goes through here.
        """
        self.load_state_dict(state_dict)
        self.set_step(int(step))


def resolve_chunk(model: Model, chunk: int) -> int:
    """``chunk`` rays per forward, or the model's size for its device when ``chunk`` <= 0."""
    if chunk > 0:
        return int(chunk)
    return int(model.default_chunk(next(model.parameters()).device))


def render_rays_chunked(
    model: Model,
    bundle: RayBundle,
    chunk: int,
    keys: Sequence[str] | None = ("rgb", "depth", "accumulation"),
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Render many rays (a whole image) ``chunk`` rays per forward, with bounded memory.

    ``chunk`` is nerflite's one implementation of "rays per forward when rendering" (<= 0: the
    model's ``default_chunk`` for its device). The bundle
    may live on the CPU (it is moved to the model's device chunk by chunk) or already on the
    device. Runs under ``torch.no_grad`` in whatever train/eval mode the model is in (callers
    normally use ``model.eval()``); each chunk's outputs named in ``keys`` (all per-ray outputs
    when None) are copied to ``device`` (default: the CPU) as they come, so the accelerator
    only ever holds one chunk. Returns ``{key: tensor [n, ...]}``.
    """
    if device is None:
        device = torch.device("cpu")
    model_device = next(model.parameters()).device
    chunk = resolve_chunk(model, chunk)
    n = len(bundle)
    parts: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for start in range(0, n, chunk):
            rays = bundle[start : start + chunk].to(model_device, non_blocking=True)
            out = model(rays)
            names = keys if keys is not None else [k for k, v in out.items() if v.shape[:1] == (len(rays),)]
            for k in names:
                parts.setdefault(k, []).append(out[k].to(device, non_blocking=False))
    return {k: torch.cat(v, dim=0) for k, v in parts.items()}
