"""The training loop: ``train(cfg)`` is what ``train.py`` runs, importable for tests and scripts.

One step: rays from the datamanager -> model -> named losses (summed) -> backward (gradients
averaged over ranks by DDP) -> optimizer and schedule. Around it: periodic evals on held-out
images (PSNR, SSIM, pictures to TensorBoard and ``eval/``), atomic checkpoints, a progress bar,
graceful Ctrl-C and a stop on a non-finite loss. Steps are 0-based; a checkpoint of step ``k``
holds the state after ``k`` completed steps, and resuming from it runs step ``k`` next.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import distributed as D
from nerflite.engine.evaluate import evaluate_and_log
from nerflite.engine.logging import TBLogger, gpu_memory_mb
from nerflite.engine.optim import make_optimizer, make_scheduler, scheduler_state
from nerflite.engine.runs import default_run_dir, find_resume_checkpoint, run_dir_of_checkpoint
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
# What a run trains, and what its checkpoints hold


@dataclass
class _Parts:
    model: torch.nn.Module
    dm: object  # nerflite.data.datamanager.DataManager
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    @staticmethod
    def build(cfg: DictConfig, info: D.DistInfo) -> _Parts:
        """Scene, model, datamanager and optimizer; seeded, so every rank starts from the same weights."""
        seed_everything(cfg.seed)
        if info.is_main:  # generate a synthetic scene once, before the other ranks read it
            scene = build_scene(cfg.dataset)
        D.barrier(info)
        if not info.is_main:
            scene = build_scene(cfg.dataset)
        model = build_model(cfg.model, scene).to(info.device)
        dm = build_datamanager(cfg, scene, info.device, info.rank, info.world_size)
        optimizer = make_optimizer(model, cfg.trainer)
        scheduler = make_scheduler(optimizer, cfg.trainer, model)
        fp16 = str(cfg.model.get("amp", "none")) == "fp16" and info.device.type == "cuda"
        scaler = torch.amp.GradScaler(info.device.type, enabled=fp16)
        return _Parts(model, dm, optimizer, scheduler, scaler)

    def state(self, resolved_config: str) -> dict:
        """Everything a resume needs, as tensors and plain data (``torch.load(weights_only=True)``)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict(),
            "datamanager": self.dm.state_dict(),
            "rng": ckpt.rng_state(),
            "config": resolved_config,
        }

    def restore(self, state: dict) -> int:
        """Load a checkpoint's state; returns its step (the next step to run)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        n_groups = len(self.optimizer.param_groups)
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * n_groups})
        self.scaler.load_state_dict(state["scaler"])
        self.dm.load_state_dict(state["datamanager"])
        ckpt.set_rng_state(state["rng"])
        return int(state["step"])


# ------------------------------------------------------------------------------------------------
# Ctrl-C


class _StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop; a second one interrupts immediately."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._pid = os.getpid()  # data workers forked later inherit the handler: they stay quiet

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def _handler(self, signum, frame):
        if os.getpid() != self._pid:
            return
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
    if device.type == "cpu" and tcfg.cpu_threads > 0:
        torch.set_num_threads(tcfg.cpu_threads)
    if device.type == "cuda":  # process-wide switches: either config key turns TF32 on
        tf32 = bool(tcfg.tf32 or cfg.model.get("tf32", False))
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    resume_from = find_resume_checkpoint(cfg.resume, cfg.output_root, cfg.name) if info.is_main else None
    resume_from = D.broadcast_object(resume_from, info)
    if resume_from is not None:
        run_dir = run_dir_of_checkpoint(resume_from)
    elif run_dir is None:
        run_dir = default_run_dir(cfg)
    run_dir = Path(D.broadcast_object(str(run_dir), info))

    cfg = _for_run(cfg)
    parts = _Parts.build(cfg, info)
    model, dm = parts.model, parts.dm
    start = 0
    if resume_from is not None:
        start = parts.restore(ckpt.load_checkpoint(resume_from, map_location=device))
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
        return ckpt.save_checkpoint(run_dir, step, parts.state(resolved), keep=tcfg.keep_ckpts)

    rays_per_step = cfg.datamanager.rays_per_batch * info.world_size
    bar = _progress(tcfg, start, info)
    window = _Window()
    health = _Health(device)
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
                health.record(step, loss, losses)
                _optimizer_step(parts, loss, tcfg.grad_clip)
                done = step + 1
                result.step = done
                window.add(t_data, time.perf_counter() - t0)
                log_now = done % tcfg.log_every == 0 or done == tcfg.steps
                eval_now = tcfg.eval_every > 0 and done % tcfg.eval_every == 0 and done < tcfg.steps
                stopping = stop.requested and not info.distributed  # a host flag: free to read
                if log_now or eval_now or done % tcfg.ckpt_every == 0 or stopping:
                    # the one host-device sync: losses so far, non-finite check, Ctrl-C agreement
                    values, stopping = health.check(stop, info, run_dir)
                    result.losses.extend(values)
                    loss_value = values[-1]

                if log_now:
                    scalars = _train_scalars(
                        model, outputs, batch, losses, loss_value, parts.optimizer, window, rays_per_step, device
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
                if info.is_main and eval_now:
                    result.eval = evaluate_and_log(cfg, model, dm, logger, run_dir, done, tcfg.eval_images)
                    window.restart()  # throughput figures leave evals out
                if done % tcfg.ckpt_every == 0 or done == tcfg.steps or stopping:
                    save(done)
                    window.restart()
                if stopping:
                    result.interrupted = True
                    break
        if info.is_main and not result.interrupted:
            result.eval = evaluate_and_log(cfg, model, dm, logger, run_dir, result.step, tcfg.final_eval_images)
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


class _Health:
    """Device-side record of the training losses, read on the host only at ``check`` (once per
    ``log_every`` steps, and before evals and checkpoints), so a step queues its work without
    waiting for the device. The first non-finite loss is remembered with its parts; ``check``
    then stops the run, before any eval or checkpoint sees the weights it produced."""

    def __init__(self, device: torch.device):
        self.pending: list[torch.Tensor] = []  # total loss of each step since the last check
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)  # first non-finite step
        self.bad_values: torch.Tensor | None = None  # [1 + parts] total and named losses of it
        self.names: list[str] = []

    def record(self, step: int, loss, losses: dict) -> None:
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in losses.values())])
        if self.bad_values is None or len(self.names) != len(losses):
            self.names, self.bad_values = list(losses), torch.zeros_like(values)
        first = ~torch.isfinite(values[0]) & (self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_values = torch.where(first, values, self.bad_values)
        self.pending.append(values[0])

    def check(self, stop: _StopFlag, info: D.DistInfo, run_dir: Path) -> tuple[list[float], bool]:
        """(mean loss over ranks of each step since the last check, whether to stop now); raises
        ``TrainingDiverged`` when any rank saw a non-finite loss. One small all-reduce."""
        dev = self.bad_step.device
        flags = torch.stack([(self.bad_step >= 0).float(), torch.tensor(float(stop.requested), device=dev)])
        reduced = D.all_reduce_mean(torch.cat([flags, torch.stack(self.pending)]), info).tolist()
        self.pending = []
        if reduced[0] > 0:
            raise _diverged(int(self.bad_step), self.bad_values.tolist(), self.names, run_dir)
        return reduced[2:], reduced[1] > 0


def _optimizer_step(parts: _Parts, loss, grad_clip: float) -> None:
    """Backward and the optimizer / schedule step, queued without reading anything back."""
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
    if grad_clip > 0:
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.scheduler.step()


def _diverged(step: int, values: list[float], names: list[str], run_dir: Path) -> TrainingDiverged:
    """``values``: the total loss then the named ones (``names``) of the first non-finite step."""
    last = ckpt.latest(run_dir)
    parts = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values[1:]))
    return TrainingDiverged(
        f"loss is {values[0]} at step {step} ({parts}); stopping. "
        f"Last good checkpoint: {last if last else 'none written yet'}. "
        "Try a lower trainer.lr, trainer.grad_clip, or trainer.amp=false."
    )


def _for_run(cfg: DictConfig) -> DictConfig:
    """The config as the run uses and records it (the caller's stays untouched): the dataset path
    made absolute, so render.py finds the data from any folder, and ``trainer.amp`` switching the
    model's own autocast (its field MLPs) to ``trainer.amp_dtype``."""
    cfg = copy.deepcopy(cfg)
    cfg.dataset.path = str(Path(cfg.dataset.path).resolve())
    if cfg.trainer.amp and "amp" in cfg.model:
        cfg.model.amp = cfg.trainer.amp_dtype
    return cfg


def _progress(tcfg, start: int, info: D.DistInfo):
    if not (tcfg.progress and info.is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=tcfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)


class _Window:
    """Timing over the steps since the last log line."""

    def __init__(self):
        self.steps, self.data_s, self.step_s, self.t0 = 0, 0.0, 0.0, time.perf_counter()

    def restart(self) -> None:
        """Start the wall clock again (after an eval or a checkpoint), keeping the steps counted."""
        self.t0 = time.perf_counter() - self.step_s

    def add(self, data_s: float, step_s: float) -> None:
        self.steps += 1
        self.data_s += data_s
        self.step_s += step_s


def _train_scalars(model, outputs, batch, losses, loss_value, optimizer, window: _Window, rays_per_step, device):
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
