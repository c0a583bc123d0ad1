"""Whole-image rendering and image metrics, shared by the trainer's evals and render.py.

Scenes with masks also get masked metrics (``psnr_masked``, ``ssim_masked``: the object only, see
``nerflite.metrics``). ``evaluate_views`` is the one test-split evaluation: the trainer's
``<run>/metrics_test.json`` at the end of training and render.py's ``path=test`` ``metrics.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import torch
from torch import Tensor

from nerflite.engine.checkpoint import CKPT_DIR, checkpoint_name
from nerflite.engine.logging import TBLogger, colorize_depth, normals_to_rgb, to_uint8
from nerflite.metrics import psnr, psnr_masked, ssim, ssim_masked
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


def image_metrics(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """PSNR and SSIM of [H, W, 3] images in [0, 1]; with a ``mask`` [H, W(, 1)] also their masked
    forms ``psnr_masked`` and ``ssim_masked`` (NaN for an empty mask)."""
    pred, target = pred.float().clamp(0, 1).cpu(), target.float().cpu()
    out = {"psnr": float(psnr(pred, target)), "ssim": float(ssim(pred, target))}
    if mask is not None:
        mask = mask.cpu()
        out["psnr_masked"] = float(psnr_masked(pred, target, mask))
        out["ssim_masked"] = float(ssim_masked(pred, target, mask))
    return out


def batch_metrics(out: dict[str, Tensor], batch: dict) -> dict[str, float]:
    """``image_metrics`` of a rendered view against the ground truth of its eval batch
    (``rgb`` [H*W, 3], ``mask`` [H*W, 1] when the scene has masks, ``image_hw``)."""
    h, w = (int(v) for v in batch["image_hw"])
    mask = batch["mask"].reshape(h, w) if "mask" in batch else None
    return image_metrics(out["rgb"], batch["rgb"].reshape(h, w, 3), mask)


def mean_metrics(per_view: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the views where it is finite (an empty mask gives NaN)."""
    names = [k for k in per_view[0] if k != "view"] if per_view else []
    mean = {}
    for k in names:
        finite = [v[k] for v in per_view if v.get(k) is not None and math.isfinite(v[k])]
        mean[k] = sum(finite) / len(finite) if finite else float("nan")
    return mean


def evaluate_views(model: Model, dm, views, chunk: int, on_view=None) -> dict:
    """Render each of ``views`` whole and score it: ``{"mean": {metric: value}, "views": [{"view": i,
    metric: value}, ...]}`` (NaN stored as None). ``on_view(k, view, outputs, batch)`` sees each
    rendered view (render.py writes its pictures there). The model is evaluated as it stands: load
    checkpoints with ``Model.load_state``."""
    per_view = []
    for k, view in enumerate(views):
        rays, batch = dm.eval_image(view)
        h, w = (int(v) for v in batch["image_hw"])
        out = render_image(model, rays, h, w, chunk)
        per_view.append({"view": int(view), **batch_metrics(out, batch)})
        if on_view is not None:
            on_view(k, view, out, batch)
    return {"mean": _json_safe(mean_metrics(per_view)), "views": [_json_safe(v) for v in per_view]}


def _json_safe(d: dict) -> dict:
    """NaN (strict JSON has none) as None."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def write_test_metrics(cfg, model: Model, dm, run_dir: Path, step: int) -> dict[str, float]:
    """The end of training: every test view's metrics (``evaluate_views``) into
    ``<run>/metrics_test.json``, with the step and its checkpoint; returns the means ({} without a
    test split)."""
    views = list(dm.scene.splits.get("test") or [])
    if not views:
        return {}
    model.set_step(step)
    record = evaluate_views(model, dm, views, int(cfg.model.get("chunk", 4096)))
    record.update(step=int(step), checkpoint=str(Path(run_dir) / CKPT_DIR / checkpoint_name(step)))
    (Path(run_dir) / "metrics_test.json").write_text(json.dumps(record, indent=2))
    return {k: v for k, v in record["mean"].items() if v is not None}


def append_test_time(run_dir: Path, seconds: float, step: int, means: dict[str, float], final: bool) -> None:
    """One line of ``<run>/metrics_test_time.json`` (``trainer.test_minutes`` / ``max_minutes``): the
    test split's means after ``seconds`` of training (evals excluded), at ``step``."""
    path = Path(run_dir) / "metrics_test_time.json"
    try:
        rows = json.loads(path.read_text()) if path.exists() else []
    except (OSError, ValueError):
        rows = []
    rows = [r for r in rows if isinstance(r, dict) and r.get("step", -1) < step]  # a resume rewrites what follows
    rows.append({"minutes": round(seconds / 60.0, 4), "step": int(step), "final": final, **_json_safe(means)})
    path.write_text(json.dumps(rows, indent=2))


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
    """Render held-out images after ``step`` steps; log PSNR / SSIM (and their masked forms on
    scenes with masks; mean over the images) and the first image's pictures.

    The model is first put where the checkpoint of ``step`` would put it (``set_step(step)``), so
    these figures are the ones render.py gives for that checkpoint."""
    chunk = int(cfg.model.get("chunk", 4096))
    model.set_step(step)
    per_image = []
    source = dm.iter_eval_images() if n_images == 0 else _eval_images(dm, step, n_images)
    for i, (idx, rays, batch) in enumerate(source):
        h, w = (int(v) for v in batch["image_hw"])
        out = render_image(model, rays, h, w, chunk)
        gt = batch["rgb"].reshape(h, w, 3).float().cpu()
        per_image.append(batch_metrics(out, batch))
        if i == 0:
            pics = visualisations(out, gt)
            for name, img in pics.items():
                logger.image(f"eval/{name}", img, step)
            (run_dir / "eval").mkdir(exist_ok=True)
            iio.imwrite(run_dir / "eval" / f"step_{step:07d}_view{int(idx):03d}.png", to_uint8(pics["rgb"]))
    metrics = mean_metrics(per_image)
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
