"""Where a training step of the fast model goes: torch.profiler over a few steps of ``lego_fast``'s
model and sampler (hash grid 2^19 x 16 levels, 128^3 occupancy grid, 1024 steps across the box,
2^18-sample budget over whole rays) on lego's rays, at a size a CPU can take.

    python bench/profile_step.py --data ../shared/data/lego [--size 100] [--rays 16384]
        [--budget 262144] [--steps 5] [--device cpu|cuda] [--top 15] [--compile] [--amp bf16] [--tiny]

The grid is first carved by ``--warm`` training steps (default 300, not profiled) so the profile
shows a step of a run under way, not the first one; then ``--steps`` steps are timed and two more
profiled. Prints the ops with the most self time, then per step: aten ops called, host reads
(``aten::_local_scalar_dense``, ``aten::item``, ``aten::nonzero``: each waits for the device on a
GPU), and the samples and rays used; the last line is one JSON object with those figures and the
step's wall time (median).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import sync  # noqa: E402
from time_to_psnr import load_views  # noqa: E402

from nerflite.models.instant import InstantConfig, InstantModel  # noqa: E402

HOST_READS = ("aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::is_nonzero")


def lego_fast_model(scene, budget: int, device, compile: bool = False, amp: str = "none",
                    tiny: bool = False) -> tuple[InstantModel, torch.optim.Optimizer]:
    cfg = InstantConfig(aabb=[-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], grid_resolution=128, steps_per_diagonal=1024,
                        sample_budget=budget, compile=compile, amp=amp)  # fmt: skip
    if tiny:  # a dry run: toy sizes
        cfg.log2_table_size, cfg.max_resolution, cfg.grid_resolution, cfg.steps_per_diagonal = 12, 64, 16, 32
    model = InstantModel(cfg, background=scene.background, far=scene.far).to(device)
    opt = torch.optim.Adam(model.optimizer_groups(1e-2), lr=1e-2, eps=1e-15, betas=(0.9, 0.99))
    return model, opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--rays", type=int, default=16384, help="rays drawn per step (the pool the budget takes from)")
    ap.add_argument("--budget", type=int, default=262144, help="sample slots per step (0: exact packing)")
    ap.add_argument("--warm", type=int, default=300, help="training steps before profiling")
    ap.add_argument("--steps", type=int, default=5, help="steps profiled")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--compile", action="store_true", help="torch.compile the field (model.compile=true)")
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast of the MLPs")
    ap.add_argument("--tiny", action="store_true", help="toy model sizes (a dry run of the GPU suite)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    scene, rays, rgb, _ = load_views(args.data, args.size, device)
    model, opt = lego_fast_model(scene, args.budget, device, args.compile, args.amp, args.tiny)
    model.grid.warmup_steps = min(model.grid.warmup_steps, args.warm // 2)  # a CPU makes few steps
    g = torch.Generator().manual_seed(0)
    model.train()
    state = {"k": 0, "bad": torch.zeros((), device=device)}

    def step() -> dict:
        idx = torch.randint(0, len(rays), (args.rays,), generator=g).to(device)
        model.set_step(state["k"])
        out = model(rays[idx])
        loss = sum(model.losses(out, {"rgb": rgb[idx]}).values())
        state["bad"] += ~torch.isfinite(loss.detach())  # non-finite losses, read once at the end
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["k"] += 1
        return out

    t0 = time.perf_counter()
    for _ in range(args.warm):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    walls, outs = [], []
    for _ in range(args.steps):  # timed without the profiler
        t = time.perf_counter()
        out = step()
        sync(device)
        walls.append(time.perf_counter() - t)
        outs.append(model.metrics(out, {"rgb": torch.zeros_like(out["rgb"])}))
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    n_prof = 2
    with profile(activities=acts) as prof:  # what a step calls
        for _ in range(n_prof):
            step()
            sync(device)
    events = prof.key_averages()
    n_aten = sum(e.count for e in events if e.key.startswith("aten::"))
    reads = {k: sum(e.count for e in events if e.key == k) / n_prof for k in HOST_READS}
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    per_step = {
        "step_s_median": round(statistics.median(walls), 4),
        "aten_calls_per_step": round(n_aten / n_prof, 1),
        "host_reads_per_step": {k: v for k, v in reads.items() if v},
        "samples_per_step": round(statistics.median(float(o["samples_per_step"]) for o in outs)),
        "rays_used": round(statistics.median(float(o["rays_used"]) for o in outs)),
        "samples_per_ray": round(statistics.median(float(o["samples_per_ray"]) for o in outs), 2),
        "occupied_frac": round(float(outs[-1]["occupied_frac"]), 4),
        "nonfinite_losses": int(state["bad"]),
        "grid_nonfinite": int((~torch.isfinite(model.grid.values)).sum()),
        "samples_per_s": round(statistics.median(float(o["samples_per_step"]) for o in outs)
                               / statistics.median(walls)),
    }
    print(f"device {args.device}, {args.size}px, {args.rays} rays drawn, budget {args.budget}, after {args.warm} "
          f"steps ({warm_s:.0f} s)")
    for k, v in per_step.items():
        print(f"  {k:22s} {v}")
    print(json.dumps({"device": args.device, "size": args.size, "budget": args.budget, "compile": args.compile,
                      "amp": args.amp, **per_step}))


if __name__ == "__main__":
    main()
