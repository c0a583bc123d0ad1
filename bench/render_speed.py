"""Seconds per whole rendered view of a trained run, on its device (render.py's path).

    python bench/render_speed.py --run outputs/lego_fast/<date_time> [--views 4] [--repeats 3]

Renders ``--views`` of the run's test views (evenly spaced; the held-out views without a test split)
``--repeats`` times each, after one warm-up view, and reports the median seconds per view and rays/s.
Models with early termination and empty-space skipping (``model.early_stop``, ``model.skip_empty``)
are timed twice: as configured, and dense (every sample of every ray), so the gain is a ratio
measured side by side. Ends with one JSON line: ``{"s_per_view", "rays_per_s", "size", "views",
"device", ...dense}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerflite.data.datamanager import eval_split  # noqa: E402
from nerflite.engine.render import camera_rays, load_run  # noqa: E402
from nerflite.models.base import render_rays_chunked, resolve_chunk  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_views(model, rays: list, chunk: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each render of each view (``repeats`` passes over the views)."""
    times = []
    with torch.no_grad():
        render_rays_chunked(model, rays[0], chunk, keys=("rgb",))  # warm-up: allocations, kernels
        for _ in range(repeats):
            for r in rays:
                sync(device)
                t0 = time.perf_counter()
                render_rays_chunked(model, r, chunk, keys=("rgb",))
                sync(device)
                times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder")
    ap.add_argument("--views", type=int, default=4, help="views timed (evenly spaced)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the views")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    run_cfg, scene, model, _ = load_run(args.run, None, device)
    views = list(scene.splits.get("test") or eval_split(scene))
    views = views[:: max(1, len(views) // max(1, args.views))][: args.views]
    rays = [camera_rays(scene, scene.cameras, int(v)).to(device) for v in views]
    chunk = resolve_chunk(model, int(run_cfg.model.get("chunk", 0)))
    h, w = int(scene.cameras.height[views[0]]), int(scene.cameras.width[views[0]])
    result = {"size": [w, h], "views": len(views), "device": str(device), "chunk": chunk}
    kinds = [("", None)]
    if hasattr(model.cfg, "early_stop") and hasattr(model.cfg, "skip_empty"):
        kinds.append(("dense_", (0.0, False)))  # every sample of every ray
    for prefix, setting in kinds:
        saved = None
        if setting is not None:
            saved = (model.cfg.early_stop, model.cfg.skip_empty)
            model.cfg.early_stop, model.cfg.skip_empty = setting
        s = statistics.median(time_views(model, rays, chunk, args.repeats, device))
        if saved is not None:
            model.cfg.early_stop, model.cfg.skip_empty = saved
        result[f"{prefix}s_per_view"] = round(s, 4)
        result[f"{prefix}rays_per_s"] = round(w * h / s)
    print(f"{'':8s} {'s/view':>8s} {'rays/s':>12s}   ({w}x{h}, {len(views)} views x {args.repeats}, {device})")
    for prefix, _ in kinds:
        label = "dense" if prefix else "as run"
        print(f"{label:8s} {result[f'{prefix}s_per_view']:8.3f} {result[f'{prefix}rays_per_s']:12,d}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
