"""Render a trained run: ``render(cfg)`` is what ``render.py`` runs.

A run folder and one of its checkpoints -> the run's scene and model -> cameras along a path
(orbit, spiral, the held-out test views or the training views) -> chunked rendering -> PNG frames,
depth (and NeuS normal) pictures, MP4 videos, ``metrics.json`` (test views) and a PLY mesh (NeuS,
``mesh=true``).

A dynamic scene's frames carry a moment (``extras["time"]``, as its training rays do): ``time=play``
runs it from 0 to 1 across the frames, ``time=T`` freezes it at T (bullet time on a moving camera),
and the views of the dataset (``path=test``, ``path=train``) default to their own moments and
appearance ids. Nothing here knows a model: the rays carry the time, the models read it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from tqdm import tqdm

from nerflite import camera_paths as paths
from nerflite.cameras import Cameras, generate_rays, ndc_rays
from nerflite.data.datamanager import eval_split
from nerflite.data.dynamic import attach_time
from nerflite.data.scene import Scene
from nerflite.engine import checkpoint as ckpt
from nerflite.engine.checks import check_render_config, render_time
from nerflite.engine.distributed import pick_device
from nerflite.engine.evaluate import evaluate_views, render_image, sdf_mesh, visualisations
from nerflite.engine.logging import to_uint8
from nerflite.engine.ownership import checker, run_config, run_ref, with_dataset
from nerflite.engine.runs import run_checkpoints, warn_stderr
from nerflite.engine.setup import build_datamanager, build_model, build_scene
from nerflite.rays import RayBundle

PATHS = ("auto", "orbit", "spiral", "test", "train")
VIEW_PATHS = ("test", "train")  # views of the dataset: their own moments and appearance ids unless told otherwise


def load_run(run: str | Path, ckpt_path: str | Path | None, device: torch.device, dataset_path: str | None = None):
    """(run config, scene, model in eval mode, checkpoint path) of a run folder: its newest checkpoint
    that loads and belongs to the run, or ``ckpt_path`` (refused when it is of another run:
    ``nerflite.engine.ownership``). The run's config.yaml defines the model (without one, the
    checkpoint's own config); ``dataset_path``: where the run's dataset is now, if it moved."""
    paths = run_checkpoints(run, ckpt_path)
    try:
        ref = run_ref(run) if Path(run).is_dir() else None
    except ValueError as e:  # a damaged config.yaml: the checkpoint's own config still describes its model
        warn_stderr(f"warning: {e}; using the checkpoint's own config")
        ref = None
    if ref is None:
        path, state = ckpt.load_newest(paths, device, ckpt.MODEL_KEYS, warn_stderr)
        run_cfg = run_config(state, path, dataset_path)
    else:
        run_cfg = with_dataset(ref.config, str(ref.source), dataset_path)
    scene = build_scene(run_cfg.dataset)
    model = build_model(run_cfg.model, scene).to(device)
    if ref is not None:
        check = checker(ref, model, warn_stderr)
        path, state = ckpt.load_newest(paths, device, ckpt.MODEL_KEYS, warn_stderr, check=check)
    ckpt.check_model_state(model, state["model"], path)
    model.load_state(state["model"], int(state["step"]))
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
        if bounds is not None:  # LLFF's own choice: focus between 0.9 x the nearest and 5 x the farthest bound
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
    f32 = lambda t: rep(t).float()  # noqa: E731  (rays in float32, like the training batches)
    return Cameras(f32(one.fx), f32(one.fy), f32(one.cx), f32(one.cy), rep(one.width), rep(one.height), c2w.float())


def train_cameras(scene: Scene, downscale: float, width: int) -> tuple[Cameras, Tensor]:
    """The training views for ``path=train``, in time order on a dynamic scene (the capture replayed),
    each at 1/``downscale`` of its size or ``width`` pixels wide: (cameras in float32, views [n])."""
    views = torch.as_tensor(scene.split("train"), dtype=torch.long)
    if scene.is_dynamic:
        views = views[torch.sort(scene.times[views], stable=True).indices]
    cams = scene.cameras[views]
    w0, h0 = cams.width, cams.height
    w = torch.full_like(w0, width) if width > 0 else (w0 / downscale).round().long().clamp_min(1)
    cams = cams.rescaled(w, (h0 * w / w0).round().long().clamp_min(1))
    f32 = lambda t: None if t is None else t.float()  # noqa: E731  (rays in float32, like the training batches)
    return replace(cams, fx=f32(cams.fx), fy=f32(cams.fy), cx=f32(cams.cx), cy=f32(cams.cy), c2w=f32(cams.c2w),
                   distortion=f32(cams.distortion), skew=f32(cams.skew)), views


def frame_moments(scene: Scene, time: float | str | None, n: int, views: Tensor | None = None,
                  appearance: int | None = None) -> tuple[Tensor | None, Tensor | None]:
    """The moment (float32 [n]) and appearance id (int64 [n], or None: none on the rays) of each of
    ``n`` frames; (None, None) for a static scene.

    ``time`` (``render_time``): "play": frame k at k / (n - 1), time running from 0 to 1 across the
    frames; T: every frame at T; None: the views' own moments when the frames are views of the
    dataset (``views``), else play. ``appearance``: that id on every frame; None: the views' own
    ids (scenes that have them), else none (the models' default, code 0).
    """
    if not scene.is_dynamic:
        return None, None
    if time is None and views is not None:
        times = scene.times[views].float()
    elif time is None or time == "play":
        times = torch.linspace(0.0, 1.0, n)  # n = 1: [0]
    else:
        times = torch.full((n,), float(time))
    ids = None
    if appearance is not None:
        ids = torch.full((n,), int(appearance), dtype=torch.int64)
    elif views is not None and scene.appearance_ids is not None:
        ids = scene.appearance_ids[views]
    return times, ids


def camera_rays(scene: Scene, cams: Cameras, i: int, time: float | None = None,
                appearance_id: int | None = None) -> RayBundle:
    """All rays of view ``i`` (row-major), in NDC when the scene trains in NDC. With a ``time`` (a
    moment in [0, 1]) they carry it as ``extras["time"]`` (and the ``appearance_id`` when given),
    as a dynamic scene's rays do (``attach_time``)."""
    h, w = int(cams.height[i]), int(cams.width[i])
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    idx = torch.full((h * w,), i, dtype=torch.long)
    rays = generate_rays(cams, idx, y.reshape(-1), x.reshape(-1), scene.near, scene.far)
    if scene.ndc:
        rays = ndc_rays(rays, float(cams.fx[i]), float(cams.fy[i]), w, h, 1.0)
    if time is not None:
        rays = attach_time(rays, float(time), None if appearance_id is None else int(appearance_id))
    return rays


def check_time_keys(scene: Scene, kind: str, time: float | str | None, appearance: int | None) -> None:
    """``time`` / ``appearance`` only where they mean something (one line naming the key)."""
    given = [(k, v) for k, v in (("time", time), ("appearance", appearance)) if v is not None]
    for key, value in given:
        if not scene.is_dynamic:
            raise ValueError(f"{key}={value}: the run's scene is static (it has no time); leave {key} unset")
        if kind == "test":
            raise ValueError(f"{key}={value}: path=test renders each test view at its own moment and "
                             f"appearance, as the trainer's eval does; leave {key} unset")
    if appearance is not None and scene.appearance_ids is None:
        raise ValueError(f"appearance={appearance}: the run's scene has no appearance ids; leave appearance unset")


def time_label(scene: Scene, kind: str, time: float | str | None) -> tuple[str, str]:
    """(folder suffix, description) of a render's time: ("", "") for a static scene."""
    if not scene.is_dynamic:
        return "", ""
    if time is None and kind in VIEW_PATHS:
        return "", "each view at its own moment"
    if time is None or time == "play":
        return "_play", "time running from 0 to 1 across the frames"
    return f"_t{time:g}", f"time frozen at {time:g}"


class VideoWriters:
    """One MP4 per picture kind (rgb, depth, normals), H.264 through imageio's ffmpeg plugin; frames
    are streamed to ffmpeg as they come (padded to even sizes, as yuv420p needs)."""

    def __init__(self, folder: Path, fps: int, enabled: bool = True):
        self.folder, self.fps, self.enabled = folder, fps, enabled
        self.writers: dict[str, object] = {}

    def append(self, name: str, frame: np.ndarray) -> None:
        if not self.enabled:
            return
        if name not in self.writers:
            self.writers[name] = imageio.get_writer(
                self.folder / f"{name}.mp4",
                format="FFMPEG",
                fps=self.fps,
                codec="libx264",
                quality=8,
                macro_block_size=1,
                pixelformat="yuv420p",
            )
        h, w = frame.shape[:2]
        self.writers[name].append_data(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def test_scene(run_cfg, scene: Scene, downscale: float, width: int) -> Scene:
    """The run's scene for ``path=test`` at 1/``downscale`` of the training size (or ``width`` pixels
    wide): parsed again with the dataset's downscale multiplied, so the targets are resized by the
    data loader and the intrinsics scaled by the parser, exactly as for training at that size."""
    if width > 0:
        downscale = float(scene.cameras.width[scene.split("train")[0]]) / width
    if abs(downscale - 1.0) < 1e-9:
        return scene
    if not downscale > 0:
        raise ValueError(f"downscale must be positive, got {downscale}")
    dataset = OmegaConf.merge(run_cfg.dataset, {"downscale": float(run_cfg.dataset.downscale) * downscale})
    return build_scene(dataset)


def render(cfg: DictConfig) -> Path:
    """Render ``cfg.run`` along ``cfg.path``; returns the output folder."""
    if cfg.path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {cfg.path!r}")
    check_render_config(cfg)
    time, appearance = render_time(cfg.get("time")), cfg.get("appearance")
    device = pick_device(cfg.device)
    run_cfg, scene, model, ckpt_path = load_run(cfg.run, cfg.ckpt, device, cfg.get("dataset_path"))
    kind = cfg.path if cfg.path != "auto" else ("spiral" if scene.ndc else "orbit")
    check_time_keys(scene, kind, time, appearance)
    suffix, when = time_label(scene, kind, time)
    out = Path(cfg.out) if cfg.out else Path(cfg.run) / "renders" / f"{kind}{suffix}_{ckpt_path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    chunk = cfg.chunk if cfg.chunk > 0 else int(run_cfg.model.get("chunk", 4096))
    print(f"rendering {kind} of {cfg.run} ({ckpt_path.name}) into {out}" + (f": {when}" if when else ""))

    videos = VideoWriters(out, cfg.fps, enabled=cfg.video)

    def write(frame: int, outputs: dict) -> None:
        for name, img in visualisations(outputs).items():
            pic = to_uint8(img)
            (out / name).mkdir(exist_ok=True)
            imageio.imwrite(out / name / f"{frame:05d}.png", pic)
            videos.append(name, pic)

    try:
        if kind == "test":
            _render_test(cfg, run_cfg, scene, model, device, chunk, write, out, ckpt_path)
        else:
            if kind == "train":
                cams, views = train_cameras(scene, cfg.downscale, cfg.width)
            else:
                cams, views = path_cameras(scene, kind, cfg.frames, cfg.downscale, cfg.width), None
            times, ids = frame_moments(scene, time, len(cams), views, appearance)
            for i in tqdm(range(len(cams)), desc="render", unit="frame"):
                h, w = int(cams.height[i]), int(cams.width[i])
                at = (None, None) if times is None else (times[i], None if ids is None else ids[i])
                write(i, render_image(model, camera_rays(scene, cams, i, *at), h, w, chunk))
    finally:
        videos.close()
    if cfg.mesh:
        _write_mesh(model, scene, out / "mesh.ply", cfg.mesh_res)
    print(f"wrote {out}")
    return out


def _render_test(cfg, run_cfg, scene: Scene, model, device, chunk: int, write, out: Path, ckpt_path: Path) -> None:
    """The test views (``evaluate_views``, as the trainer's ``metrics_test.json``) -> frames and
    ``metrics.json``."""
    scene = test_scene(run_cfg, scene, cfg.downscale, cfg.width)
    views = list(scene.splits.get("test") or eval_split(scene))
    dm = build_datamanager(run_cfg, scene, device)
    bar = tqdm(total=len(views), desc="render", unit="frame")

    def on_view(k: int, view: int, outputs: dict, batch: dict) -> None:
        write(k, outputs)
        bar.update(1)

    try:
        record = evaluate_views(model, dm, views, chunk, on_view=on_view)
    finally:
        bar.close()
        dm.close()
    record["checkpoint"] = str(ckpt_path)
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    mean = record["mean"]
    masked = f", masked PSNR {mean['psnr_masked']:.2f} dB" if mean.get("psnr_masked") is not None else ""
    print(f"test views: PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f}{masked} (mean of {len(views)})")


def _write_mesh(model, scene: Scene, path: Path, res: int) -> None:
    """The SDF's zero level set as a coloured PLY, in the dataset's own world frame."""
    if not hasattr(model, "scene_sdf"):
        raise ValueError("mesh=true needs an SDF model (a run trained with model=neus)")
    from nerflite.mesh import write_ply

    mesh = sdf_mesh(model, res, colors=True, world_from_scene=scene.metadata.get("world_from_scene"))
    write_ply(path, mesh)
    print(f"mesh: {path} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces, grid {res}^3)")
