"""The training loop: ``train(cfg)`` is what ``train.py`` runs, importable for tests and scripts.

One step: rays from the datamanager -> model -> named losses (summed) -> backward (gradients
averaged over ranks by DDP) -> optimizer and schedule. Around it: periodic evals on held-out
images (PSNR, SSIM, pictures to TensorBoard and ``eval/``), atomic checkpoints, a progress bar,
graceful Ctrl-C and a stop on a non-finite loss. Steps are 0-based; a checkpoint of step ``k``
holds the state after ``k`` completed steps, and resuming from it runs step ``k`` next.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import distributed as D
from nerflite.engine.checks import check_device, check_train_config
from nerflite.engine.evaluate import append_test_time, evaluate_and_log, evaluate_views, write_test_metrics
from nerflite.engine.hooks import StepHooks
from nerflite.engine.logging import TBLogger
from nerflite.engine.optim import make_optimizer, make_scheduler, scheduler_state
from nerflite.engine.runs import default_run_dir, find_resume, load_resume, sweep_job
from nerflite.engine.setup import build_datamanager, build_model, build_scene, seed_everything
from nerflite.engine.step import Health, StopFlag, TrainClock, TrainingDiverged, Window, optimizer_step, train_scalars

__all__ = ["TrainResult", "TrainingDiverged", "train"]


@dataclass
class TrainResult:
    run_dir: Path  # where config, checkpoints, events and eval images are
    step: int  # completed steps
    losses: list[float] = field(default_factory=list)  # total loss of every step run in this call
    eval: dict[str, float] = field(default_factory=dict)  # last eval's metrics (psnr, ssim)
    test: dict[str, float] = field(default_factory=dict)  # test-split means of <run>/metrics_test.json
    interrupted: bool = False  # stopped early by Ctrl-C (after writing a checkpoint)
    timed_out: bool = False  # stopped by trainer.max_minutes (then evaluated as at the last step)
    train_seconds: float = 0.0  # training time of the run so far (evals and checkpoints excluded)


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
            scene = build_scene(cfg.dataset, report=True)
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

    def state(self, resolved_config: str, train_seconds: float = 0.0) -> dict:
        """Everything a resume needs, as tensors and plain data (``torch.load(weights_only=True)``)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict(),
            "datamanager": self.dm.state_dict(),
            "rng": ckpt.rng_state(),
            "config": resolved_config,
            "train_seconds": float(train_seconds),  # trainer.max_minutes counts on over resumes
        }

    def restore(self, state: dict, path: Path, hint: str = "") -> int:
        """Load a checkpoint's state; returns its step (the next step to run). A checkpoint that does
        not fit this run raises ``CheckpointError`` naming ``path`` (``hint`` ends the message)."""
        ckpt.check_model_state(self.model, state["model"], path, hint)
        self.model.load_state(state["model"], int(state["step"]))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            n_groups = len(self.optimizer.param_groups)
            self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * n_groups})
            self.scaler.load_state_dict(state["scaler"])
            self.dm.load_state_dict(state["datamanager"])
            ckpt.set_rng_state(state["rng"])
            return int(state["step"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            raise ckpt.CheckpointError(path, f"does not fit this run ({type(e).__name__}: {e}){hint}") from e


# ------------------------------------------------------------------------------------------------
# The loop


def train(cfg: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None) -> TrainResult:
    """Train the model ``cfg`` describes; see the module docstring. Returns a ``TrainResult``.
    ``overrides``: the command line's overrides (``key=value``); when resuming, the run's own
    config.yaml is used with only these applied (None: ``cfg`` as given)."""
    check_device(cfg.trainer.device, "trainer.device")
    info = D.init_from_env(cfg.trainer.device)
    try:
        return _train(cfg, info, run_dir, overrides)
    finally:
        D.cleanup()


def _train(cfg: DictConfig, info: D.DistInfo, run_dir, overrides) -> TrainResult:
    target = find_resume(cfg.resume, cfg.output_root, cfg.name, sweep_job()) if info.is_main else None
    target = D.broadcast_object(target, info)
    resumed = None
    if target is not None:
        resumed = load_resume(target, overrides, map_location=info.device, verbose=info.is_main)
        cfg, run_dir = resumed.config or cfg, target.run_dir
    elif run_dir is None:
        run_dir = default_run_dir(cfg)
    run_dir = Path(D.broadcast_object(str(run_dir), info))
    check_train_config(cfg)

    tcfg = cfg.trainer
    device = info.device
    if device.type == "cpu" and tcfg.cpu_threads > 0:
        torch.set_num_threads(tcfg.cpu_threads)
    if device.type == "cuda":  # process-wide switches: either config key turns TF32 on
        tf32 = bool(tcfg.tf32 or cfg.model.get("tf32", False))
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    cfg = _for_run(cfg)
    parts = _Parts.build(cfg, info)
    model, dm = parts.model, parts.dm
    start, carried = 0, 0.0
    if resumed is not None:
        path, state = resumed.fit(model)  # the newest of this run's checkpoints that fits its model
        start = parts.restore(state, path, resumed.model_hint)
        carried = float(state.get("train_seconds", 0.0))
        if info.is_main:
            print(f"resuming {run_dir} from {path.name} (step {start})")
        resumed = state = None  # frees the loaded tensors (the model and optimizer hold copies)

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
        state = parts.state(resolved, clock.seconds)
        return ckpt.save_checkpoint(run_dir, step, state, keep=tcfg.keep_ckpts)

    rays_per_step = cfg.datamanager.rays_per_batch * info.world_size
    bar = _progress(tcfg, start, info)
    window = Window()
    health = Health(device)
    step = start
    hooks = StepHooks.from_config(cfg, dm.scene, model, info.is_main)  # the live viewer, if asked for
    clock = TrainClock(carried, device)  # training time, evals and checkpoints excluded
    max_minutes, test_minutes = tcfg.get("max_minutes", 0.0), list(tcfg.get("test_minutes", []))
    max_s = 60.0 * max_minutes if max_minutes > 0 else float("inf")
    marks = sorted(60.0 * m for m in test_minutes if carried < 60.0 * m < max_s)  # the one at max_s: the final
    result.timed_out = carried >= max_s  # a resumed run whose time was up: straight to the final eval
    try:
        with StopFlag() as stop:
            model.train()
            for step in range(start, start if result.timed_out else tcfg.steps):
                t0 = time.perf_counter()
                rays, batch = dm.next_train(step)
                t_data = time.perf_counter() - t0
                model.set_step(step)
                outputs = ddp_model(rays)
                losses = model.losses(outputs, batch)
                loss = sum(losses.values())
                health.record(step, loss, losses)
                optimizer_step(parts.model, parts.optimizer, parts.scheduler, parts.scaler, loss, tcfg.grad_clip)
                done = step + 1
                result.step = done
                window.add(t_data, time.perf_counter() - t0)
                out_of_time = clock.lap() >= max_s  # host time; the device catches up at the next sync
                scalars = {}  # what the step hooks see: all scalars on log steps (no per-step read-back)
                stopping = stop.requested and not info.distributed  # host flags: free to read
                time_up = out_of_time and not info.distributed  # (under DDP: agreed at the next check)
                log_now = done % tcfg.log_every == 0 or done == tcfg.steps or time_up
                eval_now = tcfg.eval_every > 0 and done % tcfg.eval_every == 0 and done < tcfg.steps
                if log_now or eval_now or done % tcfg.ckpt_every == 0 or stopping or time_up:
                    # the one host-device sync: losses so far, non-finite check, Ctrl-C / time agreement
                    values, stopping, time_up = health.check(stop, info, run_dir, out_of_time)
                    result.losses.extend(values)
                    loss_value = values[-1]

                if log_now:
                    scalars = train_scalars(
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
                    window = Window()
                if bar is not None:
                    bar.update(1)
                hooks.after_step(done, model, scalars)
                if hooks.wait_while_paused(done, model, lambda: stop.requested):
                    window.restart()  # throughput figures leave pauses out
                    clock.skip()
                if info.is_main and eval_now:
                    result.eval = evaluate_and_log(cfg, model, dm, logger, run_dir, done, tcfg.eval_images)
                    window.restart()  # throughput figures leave evals out
                    clock.skip()
                if info.is_main and marks and clock.seconds >= marks[0] and not time_up:
                    while marks and clock.lap(sync=True) >= marks[0]:
                        marks.pop(0)
                    _test_at_time(cfg, model, dm, logger, run_dir, done, clock.seconds, final=False)
                    window.restart()
                    clock.skip()
                if done % tcfg.ckpt_every == 0 or done == tcfg.steps or stopping or time_up:
                    clock.lap(sync=True)
                    save(done)
                    window.restart()
                    clock.skip()
                if stopping:
                    result.interrupted = True
                    break
                if time_up:
                    result.timed_out = True
                    break
        result.train_seconds = clock.seconds
        if info.is_main and not result.interrupted:
            if result.timed_out:
                print(f"trainer.max_minutes={max_minutes}: stopped after {clock.seconds / 60:.2f} min "
                      f"of training, at step {result.step}")
            result.eval = evaluate_and_log(cfg, model, dm, logger, run_dir, result.step, tcfg.final_eval_images)
            if tcfg.get("test_at_end", True):  # (configs saved before the key existed)
                result.test = write_test_metrics(cfg, model, dm, run_dir, result.step)
                if result.test and (max_minutes > 0 or test_minutes):
                    append_test_time(run_dir, clock.seconds, result.step, result.test, final=True)
            if bar is not None:
                bar.write(
                    f"final eval at step {result.step}: PSNR {result.eval['psnr']:.2f} dB, "
                    f"SSIM {result.eval['ssim']:.4f}"
                    + (f"; test split: PSNR {result.test['psnr']:.2f} dB" if result.test else "")
                )
    finally:
        hooks.close()
        if bar is not None:
            bar.close()
        logger.close()
        dm.close()
    return result


# ------------------------------------------------------------------------------------------------
# Helpers of the loop


def _for_run(cfg: DictConfig) -> DictConfig:
    """The config as the run uses and records it (the caller's stays untouched): the dataset path
    made absolute, so render.py finds the data from any folder, and ``trainer.amp`` switching the
    model's own autocast (its field MLPs) to ``trainer.amp_dtype``."""
    cfg = copy.deepcopy(cfg)
    cfg.dataset.path = str(Path(cfg.dataset.path).resolve())
    if cfg.trainer.amp and "amp" in cfg.model:
        cfg.model.amp = cfg.trainer.amp_dtype
    return cfg


def _test_at_time(cfg, model, dm, logger, run_dir: Path, step: int, seconds: float, final: bool) -> None:
    """``trainer.test_minutes``: the test split's means now, into ``<run>/metrics_test_time.json``
    and TensorBoard (``test/*``)."""
    views = list(dm.scene.splits.get("test") or [])
    if not views:
        return
    model.set_step(step)
    record = evaluate_views(model, dm, views, int(cfg.model.get("chunk", 0)))
    means = {k: v for k, v in record["mean"].items() if v is not None}
    append_test_time(run_dir, seconds, step, means, final)
    logger.scalars({f"test/{k}": v for k, v in means.items()}, step)


def _progress(tcfg, start: int, info: D.DistInfo):
    if not (tcfg.progress and info.is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=tcfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)


