"""What one training step needs around it: the device-side loss record and its periodic check
(``Health``: a non-finite loss stops the run before an eval or a checkpoint sees its weights),
Ctrl-C (``StopFlag``), the queued backward / optimizer step, and the timing window and scalars of a
log line. The loop itself is ``nerflite.engine.trainer``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import distributed as D
from nerflite.engine.logging import gpu_memory_mb


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


# ------------------------------------------------------------------------------------------------
# Ctrl-C


class StopFlag:
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


class Health:
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

    def check(self, stop: StopFlag, info: D.DistInfo, run_dir: Path, out_of_time: bool = False):
        """(mean loss over ranks of each step since the last check, whether any rank asked to stop
        (Ctrl-C), whether the main rank's training time is up); raises ``TrainingDiverged`` when any
        rank saw a non-finite loss. One small all-reduce."""
        dev = self.bad_step.device
        wants = [float(stop.requested), float(out_of_time and info.is_main)]
        flags = torch.cat([(self.bad_step >= 0).float()[None], torch.tensor(wants, device=dev)])
        reduced = D.all_reduce_mean(torch.cat([flags, torch.stack(self.pending)]), info).tolist()
        self.pending = []
        if reduced[0] > 0:
            raise diverged(int(self.bad_step), self.bad_values.tolist(), self.names, run_dir)
        return reduced[3:], reduced[1] > 0, reduced[2] > 0


def optimizer_step(model, optimizer, scheduler, scaler, loss, grad_clip: float) -> None:
    """Backward and the optimizer / schedule step, queued without reading anything back."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def diverged(step: int, values: list[float], names: list[str], run_dir: Path) -> TrainingDiverged:
    """``values``: the total loss then the named ones (``names``) of the first non-finite step."""
    last = ckpt.latest(run_dir)
    parts = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values[1:]))
    return TrainingDiverged(
        f"loss is {values[0]} at step {step} ({parts}); stopping. "
        f"Last good checkpoint: {last if last else 'none written yet'}. "
        "Try a lower trainer.lr, trainer.grad_clip, or trainer.amp=false."
    )


class TrainClock:
    """Training time in seconds, evals, checkpoints and pauses left out, carried over resumes
    (``trainer.max_minutes``, ``trainer.test_minutes``). ``lap()`` adds the time since the last
    lap (or ``skip()``): call it after each step, and ``skip()`` after anything that is not training."""

    def __init__(self, carried: float = 0.0, device: torch.device | None = None):
        self.seconds = float(carried)
        self.device = device
        self._t = time.perf_counter()

    def lap(self, sync: bool = False) -> float:
        """Add the time since the last lap; ``sync`` first waits for the device's queued work."""
        if sync and self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds += now - self._t
        self._t = now
        return self.seconds

    def skip(self) -> None:
        """Leave the time since the last lap out (an eval, a checkpoint, a pause)."""
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._t = time.perf_counter()


class Window:
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


def train_scalars(model, outputs, batch, losses, loss_value, optimizer, window: Window, rays_per_step, device):
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
    scalars["perf/rays_per_s"] = rays_per_step * window.steps / wall  # rays drawn
    if "train/rays_used" in scalars:  # a model that leaves rays of a batch out (a sample budget)
        scalars["perf/rays_used_per_s"] = scalars["train/rays_used"] * window.steps / wall
    if "train/samples_per_step" in scalars:
        scalars["perf/samples_per_s"] = scalars["train/samples_per_step"] * window.steps / wall
    scalars["perf/step_ms"] = 1000.0 * wall / n
    scalars["perf/data_wait_ms"] = 1000.0 * window.data_s / n
    scalars["perf/data_wait_frac"] = window.data_s / wall
    scalars.update(gpu_memory_mb(device))
    return scalars
