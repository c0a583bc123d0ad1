"""Speed of vanilla NeRF: training iterations per second and seconds per 800x800 image.

    python bench/nerf.py [--device cpu|cuda] [--rays 1024] [--samples 64 --importance 128]
                         [--steps N] [--amp none|bf16|fp16] [--tf32] [--compile] [--render-size S]

Rays come from lego-like cameras (800x800, 0.69 rad field of view, radius 4, near 2, far 6) with
random target colours: the cost of a step does not depend on the scene. A training step is
forward + both MSE losses + backward + Adam; a render is ``render_rays_chunked`` in eval mode. The
render is measured at ``--render-size`` (800 by default on CUDA, 40 on the CPU) and, when smaller
than 800, scaled to 800x800 by pixel count (the JSON says which). Prints a table, then the results
as one JSON line (the last line). ``train_cpu_s_per_it`` is the process CPU time per step (all
threads): on a machine shared with other work, wall-clock figures swing widely while this one
stays put; on a quiet machine with T cores, wall time is about CPU time / T.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import ray_pool, ring_cameras, sync, time_training  # noqa: E402

from nerflite.cameras import generate_rays  # noqa: E402
from nerflite.models.base import render_rays_chunked  # noqa: E402
from nerflite.models.nerf import NeRFConfig, NeRFModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rays", type=int, default=1024, help="rays per training step")
    ap.add_argument("--samples", type=int, default=64, help="coarse samples per ray")
    ap.add_argument("--importance", type=int, default=128, help="fine (importance) samples per ray")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 3 cpu, 50 cuda)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 cpu, 5 cuda)")
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (CUDA)")
    ap.add_argument(
        "--render-size", type=int, default=None, help="side of the timed render (default 800 cuda, 40 cpu)"
    )
    ap.add_argument("--chunk", type=int, default=NeRFConfig.chunk, help="rays per forward when rendering")
    ap.add_argument("--netchunk", type=int, default=NeRFConfig.netchunk, help="points per field call")
    ap.add_argument("--compile", action="store_true", help="torch.compile the field MLPs (warm-up includes compiling)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps if args.steps is not None else (50 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    render_size = args.render_size or (800 if cuda else 40)
    torch.manual_seed(0)

    cfg = NeRFConfig(
        n_samples=args.samples,
        n_importance=args.importance,
        amp=args.amp,
        tf32=args.tf32,
        chunk=args.chunk,
        netchunk=args.netchunk,
        compile=args.compile,
    )
    model = NeRFModel(cfg, background=(1.0, 1.0, 1.0)).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    # a pool of random training rays and targets, on the device up front (the datamanager's job)
    cams = ring_cameras(16, 4.0, 28.6, math.degrees(0.6911), 800, 800)
    all_rays, all_rgb = ray_pool(cams, args.rays * 64, 2.0, 6.0, device)
    timing = time_training(model, optim, scaler, all_rays, all_rgb, args.rays, warmup, steps, device)
    warm_s, train_s, train_cpu_s = timing.warmup_s, timing.train_s, timing.train_cpu_s
    it_s = steps / train_s

    # whole-image render, chunked, outputs to the CPU
    model.eval()
    rcams = ring_cameras(1, 4.0, 28.6, math.degrees(0.6911), render_size, render_size)
    yy, xx = torch.meshgrid(torch.arange(render_size), torch.arange(render_size), indexing="ij")
    rays = generate_rays(
        rcams, torch.zeros(render_size**2, dtype=torch.int64), yy.flatten(), xx.flatten(), 2.0, 6.0
    )
    render_rays_chunked(model, rays[: min(len(rays), 4096)], cfg.chunk)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    out = render_rays_chunked(model, rays, cfg.chunk)
    sync(device)
    render_s = time.perf_counter() - t0
    assert out["rgb"].shape == (render_size**2, 3)
    render_800 = render_s * (800 * 800) / render_size**2
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None

    res = {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "rays": args.rays,
        "samples": args.samples,
        "importance": args.importance,
        "amp": args.amp,
        "tf32": args.tf32,
        "compile": args.compile,
        "steps": steps,
        "warmup_s": round(warm_s, 3),
        "train_s_per_it": round(train_s / steps, 4),
        "train_cpu_s_per_it": round(train_cpu_s / steps, 4),
        "train_it_per_s": round(it_s, 4),
        "train_rays_per_s": round(it_s * args.rays, 1),
        "render_size": render_size,
        "render_s": round(render_s, 3),
        "render_s_per_800px_image": round(render_800, 3),
        "render_800px_measured": "measured at 800x800"
        if render_size == 800
        else f"scaled from {render_size}x{render_size} by pixel count",
        "peak_gpu_mem_mb": None if peak is None else round(peak, 1),
    }
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
