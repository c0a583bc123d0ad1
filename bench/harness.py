"""What the model benchmarks share: ring cameras, a pool of random rays on the device, and the
timed training loop (forward, the model's losses, backward, optimizer step)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nerflite.camera_paths import orbit_path
from nerflite.cameras import Cameras, generate_rays
from nerflite.rays import RayBundle


def ring_cameras(
    n_views: int, radius: float, elevation_deg: float, fov_x_deg: float, width: int, height: int
) -> Cameras:
    """``n_views`` cameras on a ring around the origin looking at it (OpenCV axes), centred principal point."""
    focal = 0.5 * width / math.tan(0.5 * math.radians(fov_x_deg))
    c2w = orbit_path(torch.zeros(3), radius, torch.tensor([0.0, 0.0, 1.0]), n_views, elevation_deg=elevation_deg)
    full = lambda v: torch.full((n_views,), float(v))  # noqa: E731
    w = torch.full((n_views,), width, dtype=torch.int64)
    h = torch.full((n_views,), height, dtype=torch.int64)
    return Cameras(full(focal), full(focal), full(width / 2), full(height / 2), w, h, c2w)


def ray_pool(cams: Cameras, n: int, near: float, far: float, device: torch.device) -> tuple[RayBundle, torch.Tensor]:
    """``n`` rays through random pixels of ``cams`` with random target colours, on ``device`` up front
    (the datamanager's job is measured by its own benchmark)."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(cams), (n,), generator=g)
    ys = torch.randint(0, int(cams.height[0]), (n,), generator=g)
    xs = torch.randint(0, int(cams.width[0]), (n,), generator=g)
    return generate_rays(cams, idx, ys, xs, near=near, far=far).to(device), torch.rand(n, 3, generator=g).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TrainTiming:
    warmup_s: float  # untimed warm-up steps (compilation, allocator, caches)
    train_s: float  # wall time of the timed steps
    train_cpu_s: float  # process CPU time (all threads) of the timed steps: robust on a busy machine
    peak_gpu_mem_mb: float | None


def time_training(model, optim, scaler, rays: RayBundle, rgb: torch.Tensor, rays_per_step: int,
                  warmup: int, steps: int, device: torch.device) -> TrainTiming:
    """Run ``warmup`` then ``steps`` training steps over consecutive slices of the ray pool."""
    pool = len(rays) // rays_per_step

    def step(i: int) -> None:
        sl = slice((i % pool) * rays_per_step, (i % pool + 1) * rays_per_step)
        model.set_step(i)
        outputs = model(rays[sl])
        loss = sum(model.losses(outputs, {"rgb": rgb[sl]}).values())
        optim.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()

    model.train()
    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync(device)
    warm_s = time.perf_counter() - t0
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(warmup + i)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return TrainTiming(warm_s, time.perf_counter() - t0, time.process_time() - c0, peak)


def run_each_in_its_own_process(script: str, models: list[str], argv: list[str]) -> dict[str, dict]:
    """``python script --one NAME *argv`` per model (so each model's peak RSS is its own) -> the
    JSON object each prints last, by name; a model that fails ends the benchmark with its name."""
    import json
    import subprocess
    import sys

    results = {}
    for name in models:
        proc = subprocess.run([sys.executable, script, "--one", name, *argv], stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            sys.exit(f"{Path(script).stem}: {name} failed (exit {proc.returncode})")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results
