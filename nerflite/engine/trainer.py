"""The training loop: ``train(cfg)`` is what ``train.py`` runs, importable for tests and scripts.

One step: rays from the datamanager -> model -> named losses (summed) -> backward (gradients
averaged over ranks by DDP) -> optimizer and schedule. Around it: periodic evals on held-out
images (PSNR, SSIM, pictures to TensorBoard and ``eval/``), atomic checkpoints, a progress bar,
graceful Ctrl-C and a stop on a non-finite loss. Steps are 0-based; a checkpoint of step ``k``
holds the state after ``k`` completed steps, and resuming from it runs step ``k`` next.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import distributed as D
from nerflite.engine.evaluate import image_metrics, render_image, sdf_mesh, visualisations
from nerflite.engine.logging import TBLogger, gpu_memory_mb, to_uint8
from nerflite.engine.optim import make_optimizer, make_scheduler, scheduler_state
from nerflite.engine.setup import build_datamanager, build_model, build_scene, seed_everything


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path  # where config, checkpoints, events and eval images are
    step: int  # completed steps
    losses: list[float] = field(default_factory=list)  # total loss of every step run in this call
    eval: dict[str, float] = field(default_factory=dict)  # last eval's metrics (psnr, ssim)
    interrupted: bool = False  # stopped early by Ctrl-C (after writing a checkpoint)


# ------------------------------------------------------------------------------------------------
# Run folders and resume


def find_resume_checkpoint(resume, output_root: str, name: str) -> Path | None:
    """``resume``: false -> None; true -> latest checkpoint of the newest run of ``name`` that has one;
    a path -> that checkpoint file, or the latest checkpoint of that run folder."""
    if resume is None or resume is False or (isinstance(resume, str) and resume.lower() in ("", "false")):
        return None
    if resume is True or (isinstance(resume, str) and resume.lower() == "true"):
        runs = sorted((p for p in Path(output_root, name).glob("*") if p.is_dir()), reverse=True)
        for run in runs:
            found = ckpt.latest(run)
            if found is not None:
                return found
        raise FileNotFoundError(
            f"resume=true: no run of '{name}' with a checkpoint under {Path(output_root, name)}"
        )
    path = Path(str(resume))
    if path.is_file():
        return path
    found = ckpt.latest(path) if path.is_dir() else None
    if found is None:
        raise FileNotFoundError(f"resume={resume}: no checkpoint found there")
    return found


def run_dir_of_checkpoint(path: Path) -> Path:
    return path.parent.parent if path.parent.name == ckpt.CKPT_DIR else path.parent


def default_run_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder when running under Hydra, else <output_root>/<name>/<date_time>."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return Path(cfg.output_root, cfg.name, datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


# ------------------------------------------------------------------------------------------------
# Ctrl-C


class _StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop; a second one interrupts immediately."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step, writing a checkpoint, then stopping (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ------------------------------------------------------------------------------------------------
# The loop


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> TrainResult:
    """Train the model ``cfg`` describes; see the module docstring. Returns a ``TrainResult``."""
    info = D.init_from_env(cfg.trainer.device)
    try:
        return _train(cfg, info, run_dir)
    finally:
        D.cleanup()


def _train(cfg: DictConfig, info: D.DistInfo, run_dir) -> TrainResult:
    tcfg = cfg.trainer
    device = info.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tcfg.tf32
        torch.backends.cudnn.allow_tf32 = tcfg.tf32

    resume_from = find_resume_checkpoint(cfg.resume, cfg.output_root, cfg.name) if info.is_main else None
    resume_from = D.broadcast_object(resume_from, info)
    if resume_from is not None:
        run_dir = run_dir_of_checkpoint(resume_from)
    elif run_dir is None:
        run_dir = default_run_dir(cfg)
    run_dir = Path(D.broadcast_object(str(run_dir), info))

    cfg = _with_amp(cfg)
    seed_everything(cfg.seed)
    if info.is_main:  # generate a synthetic scene once, before the other ranks read it
        scene = build_scene(cfg.dataset)
    D.barrier(info)
    if not info.is_main:
        scene = build_scene(cfg.dataset)
    model = build_model(cfg.model, scene).to(device)
    dm = build_datamanager(cfg, scene, device, info.rank, info.world_size)
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=_uses_fp16(cfg) and device.type == "cuda")

    start = 0
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
        scaler.load_state_dict(state["scaler"])
        dm.load_state_dict(state["datamanager"])
        ckpt.set_rng_state(state["rng"])
        start = int(state["step"])
        if info.is_main:
            print(f"resuming {run_dir} from {resume_from.name} (step {start})")

    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(resolved)
    ddp_model = D.wrap_ddp(model, info)
    logger = TBLogger(run_dir, active=info.is_main)
    result = TrainResult(run_dir=run_dir, step=start)

    def save(step: int) -> Path | None:
        if not info.is_main:
            return None
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler_state(scheduler),
            "scaler": scaler.state_dict(),
            "datamanager": dm.state_dict(),
            "rng": ckpt.rng_state(),
            "config": resolved,
        }
        return ckpt.save_checkpoint(run_dir, step, state, keep=tcfg.keep_ckpts)

    rays_per_step = cfg.datamanager.rays_per_batch * info.world_size
    bar = _progress(tcfg, start, info)
    window = _Window()
    step = start
    try:
        with _StopFlag() as stop:
            model.train()
            for step in range(start, tcfg.steps):
                t0 = time.perf_counter()
                rays, batch = dm.next_train(step)
                t_data = time.perf_counter() - t0
                model.set_step(step)
                outputs = ddp_model(rays)
                losses = model.losses(outputs, batch)
                loss = sum(losses.values())
                # One small all-reduce per step: mean loss for logs, any rank non-finite, any rank stopping.
                flags = torch.stack(
                    [
                        loss.detach().float(),
                        (~torch.isfinite(loss)).float(),
                        torch.tensor(float(stop.requested), device=loss.device),
                    ]
                )
                flags = D.all_reduce_mean(flags, info)
                loss_value, bad, stopping = float(flags[0]), float(flags[1]) > 0, float(flags[2]) > 0
                if bad:
                    raise _diverged(step, loss, losses, run_dir)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tcfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                done = step + 1
                result.losses.append(loss_value)
                result.step = done
                window.add(t_data, time.perf_counter() - t0)

                if done % tcfg.log_every == 0 or done == tcfg.steps:
                    scalars = _train_scalars(
                        model, outputs, batch, losses, loss_value, optimizer, window, rays_per_step, device
                    )
                    logger.scalars(scalars, done)
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{loss_value:.4f}",
                            psnr=f"{scalars.get('train/psnr', 0):.2f}",
                            rays_s=f"{scalars['perf/rays_per_s']:.3g}",
                            refresh=False,
                        )
                    window = _Window()
                if bar is not None:
                    bar.update(1)
                if info.is_main and tcfg.eval_every > 0 and done % tcfg.eval_every == 0 and done < tcfg.steps:
                    result.eval = _evaluate(cfg, model, dm, logger, run_dir, done, tcfg.eval_images)
                if done % tcfg.ckpt_every == 0 or done == tcfg.steps or stopping:
                    save(done)
                if stopping:
                    result.interrupted = True
                    break
        if info.is_main and not result.interrupted:
            result.eval = _evaluate(cfg, model, dm, logger, run_dir, result.step, tcfg.final_eval_images)
            if bar is not None:
                bar.write(
                    f"final eval at step {result.step}: PSNR {result.eval['psnr']:.2f} dB, "
                    f"SSIM {result.eval['ssim']:.4f}"
                )
    finally:
        if bar is not None:
            bar.close()
        logger.close()
        dm.close()
    return result


# ------------------------------------------------------------------------------------------------
# Helpers of the loop


def _diverged(step: int, loss, losses: dict, run_dir: Path) -> TrainingDiverged:
    last = ckpt.latest(run_dir)
    parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
    return TrainingDiverged(
        f"loss is {float(loss.detach())} at step {step} ({parts}); stopping. "
        f"Last good checkpoint: {last if last else 'none written yet'}. "
        "Try a lower trainer.lr, trainer.grad_clip, or trainer.amp=false."
    )


def _with_amp(cfg: DictConfig) -> DictConfig:
    """``trainer.amp`` switches the model's own autocast (its field MLPs) to ``trainer.amp_dtype``."""
    if not cfg.trainer.amp or "amp" not in cfg.model:
        return cfg
    cfg = cfg.copy()
    cfg.model.amp = cfg.trainer.amp_dtype
    return cfg


def _uses_fp16(cfg: DictConfig) -> bool:
    return str(cfg.model.get("amp", "none")) == "fp16"


def _progress(tcfg, start: int, info: D.DistInfo):
    if not (tcfg.progress and info.is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=tcfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)


class _Window:
    """Timing over the steps since the last log line."""

    def __init__(self):
        self.steps, self.data_s, self.step_s, self.t0 = 0, 0.0, 0.0, time.perf_counter()

    def add(self, data_s: float, step_s: float) -> None:
        self.steps += 1
        self.data_s += data_s
        self.step_s += step_s


def _train_scalars(
    model, outputs, batch, losses, loss_value, optimizer, window: _Window, rays_per_step, device
):
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # so wall time covers the queued GPU work
    wall = max(time.perf_counter() - window.t0, 1e-9)
    n = max(window.steps, 1)
    scalars = {"train/loss": loss_value}
    scalars.update({f"train/{k}": float(v.detach()) for k, v in losses.items()})
    with torch.no_grad():
        scalars.update({f"train/{k}": float(v) for k, v in model.metrics(outputs, batch).items()})
    for i, group in enumerate(optimizer.param_groups):
        scalars[f"lr/group{i}" if len(optimizer.param_groups) > 1 else "lr/lr"] = group["lr"]
    scalars["perf/rays_per_s"] = rays_per_step * window.steps / wall
    scalars["perf/step_ms"] = 1000.0 * wall / n
    scalars["perf/data_wait_ms"] = 1000.0 * window.data_s / n
    scalars["perf/data_wait_frac"] = window.data_s / wall
    scalars.update(gpu_memory_mb(device))
    return scalars


def _evaluate(cfg, model, dm, logger: TBLogger, run_dir: Path, step: int, n_images: int) -> dict[str, float]:
    """Render held-out images; log PSNR / SSIM (mean over them) and the first image's pictures."""
    chunk = int(cfg.model.get("chunk", 4096))
    per_image = []
    if n_images == 0:
        source = dm.iter_eval_images()
    else:
        source = (dm.next_eval_image(step * 1000 + i) for i in range(n_images))
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
            import imageio.v3 as iio

            iio.imwrite(run_dir / "eval" / f"step_{step:07d}_view{int(idx):03d}.png", to_uint8(pics["rgb"]))
    metrics = {k: sum(m[k] for m in per_image) / len(per_image) for k in per_image[0]} if per_image else {}
    logger.scalars({f"eval/{k}": v for k, v in metrics.items()}, step)
    if cfg.trainer.mesh_at_eval:
        _log_mesh(model, logger, step, cfg.trainer.mesh_res)
    logger.flush()
    return {k: v for k, v in metrics.items() if not math.isnan(v)}


def _log_mesh(model, logger: TBLogger, step: int, res: int) -> None:
    """A coarse mesh of an SDF model for TensorBoard's mesh plugin (cheap at the default resolution 64)."""
    if not logger.active or not hasattr(model, "scene_sdf"):
        return
    mesh = sdf_mesh(model, res)
    logger.mesh("eval/mesh", mesh.vertices, mesh.faces, step)
