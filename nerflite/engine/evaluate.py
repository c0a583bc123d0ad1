"""Whole-image rendering and image metrics, shared by the trainer's evals and render.py."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import torch
from torch import Tensor

from nerflite.engine.logging import TBLogger, colorize_depth, normals_to_rgb, to_uint8
from nerflite.metrics import psnr, ssim
from nerflite.models.base import Model, render_rays_chunked
from nerflite.rays import RayBundle

IMAGE_KEYS = ("rgb", "depth", "accumulation", "normals")  # per-ray outputs worth keeping as pictures


def render_image(model: Model, rays: RayBundle, height: int, width: int, chunk: int) -> dict[str, Tensor]:
    """Render ``height * width`` rays in chunks (model in eval mode) -> outputs [H, W, C] on the CPU.

    Chunking is ``render_rays_chunked``'s (outputs leave the device chunk by chunk), so any image
    size fits the accelerator. Keeps the outputs of ``IMAGE_KEYS`` the model produces.
    """
    was_training = model.training
    model.eval()
    try:
        probe = render_rays_chunked(model, rays[:1], 1, keys=None)
        keys = [k for k in IMAGE_KEYS if k in probe]
        out = render_rays_chunked(model, rays, chunk, keys=keys)
    finally:
        model.train(was_training)
    return {k: v.float().reshape(height, width, -1) for k, v in out.items()}


def image_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """PSNR and SSIM of [H, W, 3] images in [0, 1]."""
    pred, target = pred.float().clamp(0, 1).cpu(), target.float().cpu()
    return {"psnr": float(psnr(pred, target)), "ssim": float(ssim(pred, target))}


def visualisations(out: dict[str, Tensor], gt: Tensor | None = None) -> dict[str, Tensor]:
    """Pictures of an output dict: ``rgb`` (next to ``gt`` when given), ``depth``, ``normals``."""
    rgb = out["rgb"].float().clamp(0, 1)
    pics = {"rgb": torch.cat([rgb, gt.float().cpu()], dim=1) if gt is not None else rgb}
    acc = out.get("accumulation")
    pics["depth"] = colorize_depth(out["depth"], acc)
    if "normals" in out:
        normals = out["normals"].float()
        if acc is not None:
            normals = normals * acc.clamp(0, 1)
        pics["normals"] = normals_to_rgb(normals)
    return pics


def sdf_mesh(model: Model, resolution: int, colors: bool = False, world_from_scene=None):
    """Marching-cubes mesh of an SDF model's (NeuS) zero level set inside its bounding box.

    ``world_from_scene`` (4x4, ``scene.metadata["world_from_scene"]``) maps it back to the
    dataset's own frame, where ground-truth points live.
    """
    from nerflite.mesh import extract_mesh

    lo, hi = model.bounding_box()
    color_fn = model.surface_color if colors else None
    mesh = extract_mesh(model.scene_sdf, lo, hi, resolution, device=lo.device, color_fn=color_fn)
    if world_from_scene is not None and len(mesh.faces):
        mesh = mesh.transformed(world_from_scene)
    return mesh


def evaluate_and_log(cfg, model, dm, logger: TBLogger, run_dir: Path, step: int, n_images: int) -> dict[str, float]:
    """Render held-out images; log PSNR / SSIM (mean over them) and the first image's pictures."""
    chunk = int(cfg.model.get("chunk", 4096))
    per_image = []
    source = dm.iter_eval_images() if n_images == 0 else _eval_images(dm, step, n_images)
    for i, (idx, rays, batch) in enumerate(source):
        h, w = (int(v) for v in batch["image_hw"])
        out = render_image(model, rays, h, w, chunk)
        gt = batch["rgb"].reshape(h, w, 3).float().cpu()
        per_image.append(image_metrics(out["rgb"], gt))
        if i == 0:
            pics = visualisations(out, gt)
            for name, img in pics.items():
                logger.image(f"eval/{name}", img, step)
            (run_dir / "eval").mkdir(exist_ok=True)
            iio.imwrite(run_dir / "eval" / f"step_{step:07d}_view{int(idx):03d}.png", to_uint8(pics["rgb"]))
    metrics = {k: sum(m[k] for m in per_image) / len(per_image) for k in per_image[0]} if per_image else {}
    logger.scalars({f"eval/{k}": v for k, v in metrics.items()}, step)
    if cfg.trainer.mesh_at_eval:
        log_mesh(model, logger, step, cfg.trainer.mesh_res)
    logger.flush()
    return {k: v for k, v in metrics.items() if not math.isnan(v)}


def _eval_images(dm, step: int, n: int):
    """``n`` distinct eval views: one drawn for ``step``, then the ones after it (cyclically)."""
    first = dm.next_eval_image(step)
    yield first
    views = list(dm.eval_views)
    start = views.index(first[0])
    for k in range(1, min(n, len(views))):
        view = views[(start + k) % len(views)]
        yield (view, *dm.eval_image(view))


def log_mesh(model, logger: TBLogger, step: int, res: int) -> None:
    """A coarse mesh of an SDF model for TensorBoard's mesh plugin (cheap at the default resolution 64)."""
    if not logger.active or not hasattr(model, "scene_sdf"):
        return
    mesh = sdf_mesh(model, res)
    logger.mesh("eval/mesh", mesh.vertices, mesh.faces, step)
