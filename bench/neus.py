"""Speed of NeuS: training iterations per second and mesh extraction time.

    python bench/neus.py [--device cpu|cuda] [--rays 512] [--steps N] [--n-outside 32]
                         [--mesh-res 512] [--samples 64 --importance 64 --up-sample-steps 4]
                         [--amp none|bf16|fp16] [--tf32] [--threads T]

The default is NeuS's DTU configuration: 512 rays per step, 64 + 64 samples in 4 up-sampling
rounds, a background NeRF with 32 samples outside the sphere, the 8x256 SDF MLP. Rays come from
DTU-like cameras (1600x1200, about 48 degrees of horizontal field of view, at distance 3 from the
centre of the unit sphere, in the unit-sphere frame) with random target colours: the cost of a step
does not depend on the scene. A step is forward + colour L1 + eikonal losses + backward + Adam.

Mesh extraction: SDF queries on a ``mesh_res``^3 grid (512 by default) over the bounding box plus
marching cubes (``nerflite.mesh.extract_mesh``) on the untrained network (a sphere-like surface).
512^3 takes hours on a CPU: pass ``--mesh-res 64`` there; ``mesh_extract_s_at_512`` then scales the
time by the number of grid points, and the JSON says whether it was measured or scaled.

Prints a table, then one JSON line (the last line). ``train_cpu_s_per_it`` is process CPU time
(all threads) per step: on a shared machine wall-clock figures swing, this one stays put.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import ray_pool, ring_cameras, sync, time_training  # noqa: E402

from nerflite.mesh import extract_mesh  # noqa: E402
from nerflite.models.neus import NeuSConfig, NeuSModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rays", type=int, default=512, help="rays per training step")
    ap.add_argument("--samples", type=int, default=64, help="stratified samples per ray")
    ap.add_argument("--importance", type=int, default=64, help="up-sampled samples per ray")
    ap.add_argument("--up-sample-steps", type=int, default=4, help="up-sampling rounds")
    ap.add_argument("--n-outside", type=int, default=32, help="background samples (0: no background)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 2 cpu, 50 cuda)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 cpu, 5 cuda)")
    ap.add_argument("--mesh-res", type=int, default=512, help="mesh grid points per axis")
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (CUDA)")
    ap.add_argument("--netchunk", type=int, default=NeuSConfig.netchunk, help="points per field call")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps if args.steps is not None else (50 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    mesh_res = args.mesh_res
    torch.manual_seed(0)

    cfg = NeuSConfig(
        n_samples=args.samples, n_importance=args.importance, up_sample_steps=args.up_sample_steps,
        n_outside=args.n_outside, amp=args.amp, tf32=args.tf32, netchunk=args.netchunk,
    )
    model = NeuSModel(cfg).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    # a pool of random training rays and targets, on the device up front (the datamanager's job)
    cams = ring_cameras(16, 3.0, 34.4, 48.0, 1600, 1200)
    all_rays, all_rgb = ray_pool(cams, args.rays * 16, 0.0, 6.0, device)
    timing = time_training(model, optim, scaler, all_rays, all_rgb, args.rays, warmup, steps, device)
    warm_s, train_s, train_cpu_s = timing.warmup_s, timing.train_s, timing.train_cpu_s
    it_s = steps / train_s
    peak = timing.peak_gpu_mem_mb

    model.eval()
    t0 = time.perf_counter()
    mesh = extract_mesh(model.scene_sdf, *model.bounding_box(), resolution=mesh_res, device=device)
    sync(device)
    mesh_s = time.perf_counter() - t0

    res = {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "rays": args.rays,
        "samples": args.samples,
        "importance": args.importance,
        "up_sample_steps": args.up_sample_steps,
        "n_outside": args.n_outside,
        "amp": args.amp,
        "tf32": args.tf32,
        "steps": steps,
        "warmup_s": round(warm_s, 3),
        "train_s_per_it": round(train_s / steps, 4),
        "train_cpu_s_per_it": round(train_cpu_s / steps, 4),
        "train_it_per_s": round(it_s, 4),
        "train_rays_per_s": round(it_s * args.rays, 1),
        "mesh_res": mesh_res,
        "mesh_extract_s": round(mesh_s, 3),
        "mesh_extract_s_at_512": round(mesh_s * (512 / mesh_res) ** 3, 3),
        "mesh_512": "measured" if mesh_res == 512 else f"scaled from {mesh_res}^3 by grid points",
        "mesh_faces": int(len(mesh.faces)),
        "peak_gpu_mem_mb": None if peak is None else round(peak, 1),
    }
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
