"""Render a trained run: ``render(cfg)`` is what ``render.py`` runs.

A run folder and one of its checkpoints -> the run's scene and model -> cameras along a path
(orbit, spiral or the held-out test views) -> chunked rendering -> PNG frames, depth (and NeuS
normal) pictures, MP4 videos, ``metrics.json`` (test views) and a PLY mesh (NeuS, ``mesh=true``).
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from nerflite import camera_paths as paths
from nerflite.cameras import Cameras, generate_rays, ndc_rays
from nerflite.data.scene import Scene
from nerflite.engine import checkpoint as ckpt
from nerflite.engine.distributed import pick_device
from nerflite.engine.evaluate import image_metrics, render_image, visualisations
from nerflite.engine.logging import to_uint8
from nerflite.engine.setup import build_datamanager, build_model, build_scene
from nerflite.rays import RayBundle

PATHS = ("auto", "orbit", "spiral", "test")


def load_run(run: str | Path, ckpt_path: str | Path | None, device: torch.device):
    """(run config, scene, model in eval mode, checkpoint path) of a run folder."""
    run = Path(run)
    path = Path(ckpt_path) if ckpt_path else ckpt.latest(run)
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint in {run / ckpt.CKPT_DIR}" if not ckpt_path else f"{path}: not a file"
        )
    state = ckpt.load_checkpoint(path, map_location=device)
    run_cfg = OmegaConf.create(state["config"])
    scene = build_scene(run_cfg.dataset)
    model = build_model(run_cfg.model, scene).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return run_cfg, scene, model, path


def path_cameras(scene: Scene, kind: str, frames: int, downscale: float, width: int) -> Cameras:
    """Cameras along an orbit or a spiral, with the intrinsics of the first training view rescaled."""
    train = scene.cameras[scene.split("train")]
    c2w_train = train.c2w.float()
    if kind == "orbit":
        c2w = paths.orbit_from_cameras(c2w_train, scene.sphere_center.float(), frames)
    elif scene.render_c2w is not None:  # the parser's own spiral for forward-facing captures
        pick = torch.linspace(0, len(scene.render_c2w) - 1, frames).round().long()
        c2w = scene.render_c2w.float()[pick]
    else:
        bounds = scene.metadata.get("bounds")
        if bounds is not None:
            focus = paths.focus_depth_from_bounds(float(np.min(bounds)) * 0.9, float(np.max(bounds)) * 5.0)
        else:
            focus = float(torch.linalg.norm(c2w_train[:, :, 3] - scene.sphere_center, dim=-1).mean())
        c2w = paths.spiral_path(c2w_train, focus, frames)
    first = train[0]
    w0, h0 = int(first.width[0]), int(first.height[0])
    w = width if width > 0 else max(int(round(w0 / downscale)), 1)
    h = max(int(round(h0 * w / w0)), 1)
    one = first.rescaled(w, h)
    n = len(c2w)
    rep = lambda t: t.expand(n).clone()  # noqa: E731
    return Cameras(
        rep(one.fx),
        rep(one.fy),
        rep(one.cx),
        rep(one.cy),
        rep(one.width),
        rep(one.height),
        c2w.to(one.fx.dtype),
    )


def camera_rays(scene: Scene, cams: Cameras, i: int) -> RayBundle:
    """All rays of view ``i`` (row-major), in NDC when the scene trains in NDC."""
    h, w = int(cams.height[i]), int(cams.width[i])
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    idx = torch.full((h * w,), i, dtype=torch.long)
    rays = generate_rays(cams, idx, y.reshape(-1), x.reshape(-1), scene.near, scene.far)
    if scene.ndc:
        rays = ndc_rays(rays, float(cams.fx[i]), float(cams.fy[i]), w, h, 1.0)
    return rays


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """MP4 (H.264) through imageio's ffmpeg plugin; frames padded to even sizes as yuv420p needs."""
    with imageio.get_writer(
        path, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=1, pixelformat="yuv420p"
    ) as writer:
        for f in frames:
            h, w = f.shape[:2]
            writer.append_data(np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))


def render(cfg: DictConfig) -> Path:
    """Render ``cfg.run`` along ``cfg.path``; returns the output folder."""
    if cfg.path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {cfg.path!r}")
    device = pick_device(cfg.device)
    run_cfg, scene, model, ckpt_path = load_run(cfg.run, cfg.ckpt, device)
    kind = cfg.path if cfg.path != "auto" else ("spiral" if scene.ndc else "orbit")
    out = Path(cfg.out) if cfg.out else Path(cfg.run) / "renders" / f"{kind}_{ckpt_path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    chunk = cfg.chunk if cfg.chunk > 0 else int(run_cfg.model.get("chunk", 4096))
    print(f"rendering {kind} of {cfg.run} ({ckpt_path.name}) into {out}")

    videos: dict[str, list[np.ndarray]] = {}
    per_view = []
    if kind == "test":
        dm = build_datamanager(run_cfg, scene, device)
        try:
            views = list(dm.iter_eval_images())
        finally:
            dm.close()
        jobs = [(int(idx), rays, batch) for idx, rays, batch in views]
    else:
        cams = path_cameras(scene, kind, cfg.frames, cfg.downscale, cfg.width)
        jobs = [(i, None, None) for i in range(len(cams))]
    for frame, (idx, rays, batch) in enumerate(tqdm(jobs, desc="render", unit="frame")):
        if rays is None:
            rays = camera_rays(scene, cams, idx)
            h, w = int(cams.height[idx]), int(cams.width[idx])
        else:
            h, w = (int(v) for v in batch["image_hw"])
        outputs = render_image(model, rays, h, w, chunk)
        gt = batch["rgb"].reshape(h, w, 3).float().cpu() if batch is not None else None
        for name, img in visualisations(outputs).items():
            pic = to_uint8(img)
            (out / name).mkdir(exist_ok=True)
            imageio.imwrite(out / name / f"{frame:05d}.png", pic)
            videos.setdefault(name, []).append(pic)
        if gt is not None:
            per_view.append({"view": idx, **image_metrics(outputs["rgb"], gt)})
    if cfg.video and videos:
        for name, frames in videos.items():
            write_video(frames, out / f"{name}.mp4", cfg.fps)
    if per_view:
        mean = {k: float(np.mean([v[k] for v in per_view])) for k in ("psnr", "ssim")}
        (out / "metrics.json").write_text(
            json.dumps({"mean": mean, "views": per_view, "checkpoint": str(ckpt_path)}, indent=2)
        )
        print(f"test views: PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f} (mean of {len(per_view)})")
    if cfg.mesh:
        _write_mesh(model, run_cfg, out / "mesh.ply", cfg.mesh_res)
    print(f"wrote {out}")
    return out


def _write_mesh(model, run_cfg, path: Path, res: int) -> None:
    if run_cfg.model.name != "neus" or not hasattr(model, "extract_mesh"):
        raise ValueError("mesh=true needs a NeuS run (model=neus)")
    model.extract_mesh(resolution=res, path=path)
    print(f"mesh: {path}")
