"""Where a training step waits for the GPU: the host syncs of train.py's step, by source line.

    python bench/sync_points.py [--steps 5] [--warm 50] -- OVERRIDES...   (e.g. experiment=lego_fast dataset.path=DATA)

Runs ``--warm`` steps of the loop train.py runs (datamanager batch, forward, losses, backward,
optimizer), then ``--steps`` more under ``torch.cuda.set_sync_debug_mode("warn")`` and counts each
synchronizing CUDA call at the first line of nerflite (or bench) on its stack. Prints syncs per step
by line; the last line is one JSON object ``{"syncs_per_step", "by_line"}``. On a CPU: a dry
run of the code path (nothing to count).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_speed import compose_config  # noqa: E402

from nerflite.engine.optim import make_optimizer, make_scheduler  # noqa: E402
from nerflite.engine.setup import build_datamanager, build_model, build_scene  # noqa: E402
from nerflite.engine.step import Health, optimizer_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    ap_device = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU: a dry run of the code path (no syncs)
    cfg = compose_config([*args.overrides, f"trainer.device={ap_device}"])
    device = torch.device(ap_device)
    scene = build_scene(cfg.dataset)
    model = build_model(cfg.model, scene).to(device)
    dm = build_datamanager(cfg, scene, device)
    opt = make_optimizer(model, cfg.trainer)
    sched = make_scheduler(opt, cfg.trainer, model)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    health = Health(device)
    model.train()

    def step(k: int) -> None:
        rays, batch = dm.next_train(k)
        model.set_step(k)
        out = model(rays)
        losses = model.losses(out, batch)
        loss = sum(losses.values())
        health.record(k, loss, losses)
        optimizer_step(model, opt, sched, scaler, loss, 0.0)

    for k in range(args.warm):
        step(k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    counts: Counter[str] = Counter()

    def show(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "/nerflite/" in f.filename or "/bench/" in f.filename]
        f = frames[-1] if frames else None
        where = f"{f.filename.split('/work/')[-1].split('main/')[-1]}:{f.lineno}  {f.line}" if f else filename
        counts[where] += 1

    warnings.showwarning = show
    warnings.simplefilter("always")
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
    for k in range(args.warm, args.warm + args.steps):
        step(k)
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode(0)
    dm.close()
    by_line = {k: v / args.steps for k, v in counts.most_common()}
    for where, n in by_line.items():
        print(f"{n:6.1f}  {where}")
    print(json.dumps({"syncs_per_step": sum(by_line.values()), "by_line": by_line}))


if __name__ == "__main__":
    main()
