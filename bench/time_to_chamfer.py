"""Surface quality against training time for the SDF models: Chamfer distance to the true surface.

    python bench/time_to_chamfer.py --models neus neus_instant [--minutes M] [--recipe small|full]
                                    [--views N] [--size S] [--device cpu|cuda] [--evals K]
                                    [--mesh-res R] [--override KEY=VALUE ...] [--out DIR]

The companion of ``time_to_psnr.py`` for models with a surface. The scene is the generated
synthetic NeuS-format scene (``nerflite.data.synthetic``: a box, a sphere sunk into it and a torus,
N views of S x S pixels, with masks and ``gt_points.ply``), made once under ``--out``. Each model
trains in its own process through the real DataManager (masks on) for M minutes of training time;
at K evenly spaced times (and at the end) training pauses and the model's zero level set is meshed
(marching cubes at R^3 over its bounding box) and compared with ``gt_points.ply`` (symmetric
Chamfer distance in the dataset's world units, ``nerflite.geometry.mesh_chamfer``): that time is not
counted. Prints the curves as a table, writes ``time_to_chamfer.png`` (Chamfer against minutes,
one colour per model, in the order given) and ``time_to_chamfer.json`` in ``--out``, and ends with
one JSON line: ``{"models": {NAME: {"t_s", "chamfer", "final_chamfer", "steps_per_s",
"peak_rss_mb"}}, "views", "size", "device", "recipe"}``.

Models (``CONTENDERS``: name -> Hydra overrides of the real config; add a row for another model):
* ``neus``: ``--recipe small``: the synthetic_neus preset (SDF MLP 4 x 64, 32 + 32 samples,
  256 rays); ``--recipe full``: experiment=dtu's model and 512 rays (8 x 256 MLP, 64 + 64 samples).
* ``neus_instant``: ``small``: the synthetic_neus_instant preset (8 hash levels, 2^14 entries,
  8 + 24 samples, 256 rays); ``full``: experiment=dtu_fast's model and 2048 rays.
Both with their own schedules (``lr_lambda``) ending at the preset's step count.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import run_each_in_its_own_process, sync  # noqa: E402
from time_to_psnr import plot  # noqa: E402

from nerflite.engine.optim import make_optimizer, make_scheduler  # noqa: E402
from nerflite.engine.setup import build_datamanager, build_model, build_scene  # noqa: E402
from nerflite.geometry import mesh_chamfer, read_points  # noqa: E402
from nerflite.mesh import extract_mesh  # noqa: E402

# name -> {recipe: Hydra overrides}; every run adds the dataset, the device and workers=0
CONTENDERS: dict[str, dict[str, list[str]]] = {
    "neus": {"small": ["model=neus"], "full": ["model=neus", "experiment=dtu", "dataset=synthetic"]},
    "neus_instant": {
        "small": ["model=neus_instant"],
        "full": ["model=neus_instant", "experiment=dtu_fast", "dataset=synthetic"],
    },
}


def compose(name: str, args):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nerflite.engine.registry import register_configs

    register_configs()
    overrides = [
        *CONTENDERS[name][args.recipe],
        f"dataset.path={Path(args.out).resolve() / 'scene'}",
        "dataset.synthetic.format=neus",
        f"dataset.synthetic.views={args.views}",
        f"dataset.synthetic.size={args.size}",
        "dataset.masks=true",
        "datamanager.workers=0",
        "datamanager.cache=ram",
        f"trainer.device={args.device}",
        *args.override,
    ]
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def run_one(args) -> dict:
    """Train one model for the budget; returns its curve (this runs in its own process)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = compose(args.one, args)
    scene = build_scene(cfg.dataset)
    gt = read_points(Path(cfg.dataset.path) / "gt_points.ply")
    world_from_scene = scene.metadata["world_from_scene"]
    model = build_model(cfg.model, scene).to(device)
    optimizer = make_optimizer(model, cfg.trainer)
    scheduler = make_scheduler(optimizer, cfg.trainer, model)
    dm = build_datamanager(cfg, scene, device)
    budget = args.minutes * 60.0
    marks = [budget * (k + 1) / args.evals for k in range(args.evals)]
    t_s, curve, steps, trained = [], [], 0, 0.0

    def chamfer() -> float:
        model.eval()
        mesh = extract_mesh(model.scene_sdf, *model.bounding_box(), resolution=args.mesh_res, device=device)
        model.train()
        if not len(mesh.faces):
            return float("nan")
        mesh = mesh.transformed(world_from_scene)
        return float(mesh_chamfer(mesh.vertices, mesh.faces, gt, n_samples=20000)["chamfer"])

    initial = chamfer()
    model.train()
    try:
        while marks:
            t0 = time.perf_counter()
            rays, batch = dm.next_train(steps)
            model.set_step(steps)
            loss = sum(model.losses(model(rays), batch).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            if steps % 16 == 0 or trained + (time.perf_counter() - t0) >= marks[0]:
                sync(device)  # wall time covers the queued work
            trained += time.perf_counter() - t0
            if trained >= marks[0]:
                marks.pop(0)
                t_s.append(round(trained, 2))
                curve.append(round(chamfer(), 4))
                print(f"  {args.one}: {trained:7.1f} s  step {steps:6d}  Chamfer {curve[-1]:.4f}", file=sys.stderr)
    finally:
        dm.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"t_s": t_s, "chamfer": curve, "initial_chamfer": round(initial, 4), "final_chamfer": curve[-1],
            "steps": steps, "steps_per_s": round(steps / trained, 3), "peak_rss_mb": round(rss, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["neus", "neus_instant"], choices=sorted(CONTENDERS))
    ap.add_argument("--minutes", type=float, default=10.0, help="training time per model")
    ap.add_argument("--recipe", default="small", choices=["small", "full"], help="preset sizes or the DTU recipes")
    ap.add_argument("--views", type=int, default=24, help="views of the generated scene")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--evals", type=int, default=10, help="evaluations, evenly spaced over the budget")
    ap.add_argument("--mesh-res", type=int, default=64, help="marching-cubes grid points per axis")
    ap.add_argument("--override", nargs="*", default=[], help="Hydra overrides for every model (model.mask_weight=1)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default="bench_out", help="folder of the scene, the plot and the JSON")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one model, print its JSON
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_each_in_its_own_process(__file__, args.models, sys.argv[1:])
    print(f"Chamfer to gt_points against training time, {args.views} views of {args.size}px, {args.device}")
    print(f"{'model':13s} {'steps/s':>8s} {'rss MB':>8s}  curve (t s: Chamfer)")
    for name, r in results.items():
        curve = "  ".join(f"{t:.0f}: {c:.4f}" for t, c in zip(r["t_s"], r["chamfer"]))
        print(f"{name:13s} {r['steps_per_s']:8.2f} {r['peak_rss_mb']:8.0f}  {curve}")
    summary = {"models": results, "views": args.views, "size": args.size, "device": args.device,
               "recipe": args.recipe}  # fmt: skip
    plot(results, out / "time_to_chamfer.png", key="chamfer", ylabel="Chamfer distance (lower is better)",
         title=f"{args.views} views of {args.size}px, {args.device}")
    (out / "time_to_chamfer.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
