"""Quality against wall-clock time: train each model for a fixed budget, PSNR on held-out views.

    python bench/time_to_psnr.py --data PATH --models nerf instant [--minutes M] [--size S]
                                 [--format blender|dnerf] [--device cpu|cuda] [--evals K]
                                 [--eval-views V] [--out DIR]

``--format blender`` (default): a Blender-format folder (``/work/shared/data/lego``: its training
split), resized to S x S (default 100), every 8th view held out. ``--format dnerf``: a D-NeRF scene
(``/work/shared/data/dnerf_standup``), trained on its train split and scored on its TEST views, every
ray carrying its view's moment (``extras["time"]``, ``nerflite.data.dynamic.ViewTimes``) as the
trainer's batches do. Each model trains in its own process (so peak RSS is its own) on random rays
of the training views, composited on white, for M minutes of training time; at K evenly spaced
times (and at the end) training pauses and the model renders the held-out views (V of them, evenly
spaced; default all): that time is not counted. Prints the curves as a table, writes
``time_to_psnr.png`` (PSNR against minutes, one colour per model: nerf blue, instant orange,
then green, red, purple) and ``time_to_psnr.json`` in ``--out``, and ends with one JSON line:
``{"models": {NAME: {"t_s", "psnr", "final_psnr", "steps_per_s", "peak_rss_mb"}}, "size", "device",
"format", "clock"}``.

Models (``CONTENDERS``; add a row for another model):
* ``nerf``: the lego recipe shrunk to fit small images and a CPU: 8 x 128 MLPs (paper: 8 x 256),
  32 coarse + 64 fine samples (paper: 64 + 128), 1024 rays per step, Adam 5e-4.
* ``instant``: ``experiment=lego_fast``'s model and sampler (hash grid 2^19 x 16 levels up to
  2048, 128^3 occupancy grid over [-1.5, 1.5]^3, 1024 steps across it, whole rays in a budget of
  2^18 samples from up to 16384 rays per step), Adam 1e-2 (eps 1e-15). On the CPU the same model
  and sampler with a budget of 2^16 samples from up to 4096 rays and a 32-step grid warm-up (a CPU
  makes few steps).
* ``instant_cut``: the same, but every ray cut to its first 64 samples (budget / rays, with
  budget / 64 rays per step) with the background composited behind the cut: how ``lego_fast``
  sampled before whole rays, the baseline the fix is measured against.
* ``dnerf`` (D-NeRF scenes): the reference D-NeRF shrunk as ``nerf``: 8 x 128 canonical and
  deformation MLPs (paper: 8 x 256), 32 coarse + 64 fine samples (paper: 64 + 128), 1024 rays per
  step, Adam 5e-4.
* ``dynamic_instant`` (D-NeRF scenes): ``experiment=dnerf_fast``'s model and sampler: ``instant``'s
  field, grid and sampler (the same CPU sizes) reached through the 3 x 64 deformation MLP.

For the instant models each evaluation also records the last training step's occupied fraction
of the grid and samples per ray (``occupied``, ``samples_per_ray``), and the end of the run times
whole-image rendering of the held-out views twice, every sample of every ray (``early_stop=0``,
dense marching) and as shipped (early stop at 1e-4, block marching): ``render_rays_per_s_dense``,
``render_rays_per_s``. ``--clock cpu`` counts the process's CPU time instead of wall time (fairer
on a shared machine when each model runs single-threaded).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import run_each_in_its_own_process, sync  # noqa: E402

from nerflite.cameras import generate_rays  # noqa: E402
from nerflite.data.dynamic import ViewTimes  # noqa: E402
from nerflite.data.images import read_image  # noqa: E402
from nerflite.data.parsers import load_scene  # noqa: E402
from nerflite.metrics import psnr  # noqa: E402
from nerflite.models.base import render_rays_chunked  # noqa: E402


@dataclass
class Contender:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rays_per_step: int
    render_speed: bool = True  # time whole-image rendering at the end (instant models)


def _nerf(scene, device) -> Contender:
    from nerflite.models.nerf import NeRFConfig, NeRFModel

    cfg = NeRFConfig(netwidth=128, netwidth_fine=128, n_samples=32, n_importance=64, chunk=4096)
    model = NeRFModel(cfg, background=scene.background).to(device)
    return Contender(model, torch.optim.Adam(model.parameters(), lr=5e-4), 1024)


def _dnerf(scene, device) -> Contender:
    from nerflite.models.dnerf import DNeRFConfig, DNeRFModel

    cfg = DNeRFConfig(netwidth=128, n_samples=32, n_importance=64, chunk=4096)
    model = DNeRFModel(cfg, background=scene.background).to(device)
    return Contender(model, torch.optim.Adam(model.parameters(), lr=5e-4), 1024)


def _instant(scene, device, cls=None, config=None) -> Contender:
    from nerflite.models.instant import InstantConfig, InstantModel

    cfg = (config or InstantConfig)(aabb=[-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], grid_resolution=128,
                                    steps_per_diagonal=1024, sample_budget=1 << 18)  # fmt: skip
    rays = 16384
    if device.type == "cpu":  # the recipe's model and sampler; a smaller batch, a short warm-up
        cfg.sample_budget, rays, cfg.grid_warmup_steps = 1 << 16, 4096, 32
    model = (cls or InstantModel)(cfg, background=scene.background, far=scene.far).to(device)
    opt = torch.optim.Adam(model.optimizer_groups(1e-2), lr=1e-2, eps=1e-15, betas=(0.9, 0.99))
    return Contender(model, opt, rays)


def _instant_cut(scene, device) -> Contender:
    from cut_rays import CutRaysModel

    c = _instant(scene, device, CutRaysModel)
    c.rays_per_step = c.model.cfg.sample_budget // 64  # 64 samples per ray, as the shipped recipe kept
    c.render_speed = False  # a quality baseline: its haze makes every-sample renders very slow
    return c


def _dynamic_instant(scene, device) -> Contender:
    from nerflite.models.dynamic_instant import DynamicInstantConfig, DynamicInstantModel

    return _instant(scene, device, DynamicInstantModel, DynamicInstantConfig)


# name -> (scene, device) -> Contender
CONTENDERS: dict[str, Callable] = {"nerf": _nerf, "instant": _instant, "instant_cut": _instant_cut}
CONTENDERS.update(dnerf=_dnerf, dynamic_instant=_dynamic_instant)  # scenes that move (--format dnerf)
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def load_views(data: str, size: int, device, fmt: str = "blender"):
    """(scene, train rays, train colours, [(rays, colours)] of held-out views) at size x size:
    ``blender`` every 8th view held out, ``dnerf`` the test split, rays with their views' moments."""
    scene = load_scene(data, format=fmt, holdout=8)
    w0 = int(scene.cameras.width[0])
    scene = load_scene(data, format=fmt, holdout=8, downscale=w0 / size)
    cams, bg = scene.cameras, torch.tensor(scene.background, dtype=torch.float32)
    times = ViewTimes.of(scene)  # None for a static scene: no extras

    def view(i: int):
        img = torch.from_numpy(read_image(scene.image_paths[i], (size, size))).float() / 255.0
        rgb = img[..., :3] * img[..., 3:] + bg * (1 - img[..., 3:]) if img.shape[-1] == 4 else img
        ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        idx = torch.full((size * size,), i)
        rays = generate_rays(cams, idx, ys.reshape(-1), xs.reshape(-1), scene.near, scene.far)
        return (rays if times is None else times.attach(rays, idx)), rgb.reshape(-1, 3)

    from nerflite.rays import RayBundle

    train = [view(i) for i in scene.split("train")]
    rays = RayBundle.cat([r for r, _ in train]).to(device)
    rgb = torch.cat([c for _, c in train]).to(device)
    return scene, rays, rgb, [view(i) for i in scene.split("test")]


def run_one(args) -> dict:
    """Train one model for the budget; returns its curve (this runs in its own process)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    scene, rays, rgb, held = load_views(args.data, args.size, device, args.format)
    if 0 < args.eval_views < len(held):  # evenly spaced (D-NeRF's test views are in time order)
        held = [held[i] for i in np.linspace(0, len(held) - 1, args.eval_views).round().astype(int)]
    c = CONTENDERS[args.one](scene, device)
    budget = args.minutes * 60.0
    marks = [budget * (k + 1) / args.evals for k in range(args.evals)]
    g = torch.Generator(device="cpu").manual_seed(0)
    t_s, curve, steps, trained = [], [], 0, 0.0

    def evaluate() -> float:
        c.model.eval()
        scores = []
        for r, target in held:
            out = render_rays_chunked(c.model, r, c.model.cfg.chunk, keys=("rgb",))
            scores.append(float(psnr(out["rgb"].clamp(0, 1), target)))
        c.model.train()
        return float(np.mean(scores))

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    grid = {"occupied": [], "samples_per_ray": []}
    c.model.train()
    while marks:
        t0 = clock()
        idx = torch.randint(0, len(rays), (c.rays_per_step,), generator=g).to(device)
        c.model.set_step(steps)
        out = c.model(rays[idx])
        loss = sum(c.model.losses(out, {"rgb": rgb[idx]}).values())
        c.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c.optimizer.step()
        steps += 1
        if steps % 16 == 0 or trained + (clock() - t0) >= marks[0]:
            sync(device)  # wall time covers the queued work
        trained += clock() - t0
        if trained >= marks[0]:
            marks.pop(0)
            t_s.append(round(trained, 2))
            curve.append(round(evaluate(), 3))
            m = c.model.metrics(out, {"rgb": rgb[idx]})
            if "occupied_frac" in m:
                grid["occupied"].append(round(float(m["occupied_frac"]), 4))
                grid["samples_per_ray"].append(round(float(m["samples_per_ray"]), 2))
            print(f"  {args.one}: {trained:7.1f} s  step {steps:6d}  PSNR {curve[-1]:.2f} dB", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {"t_s": t_s, "psnr": curve, "final_psnr": curve[-1], "steps_per_s": round(steps / trained, 3),
              "steps": steps, "peak_rss_mb": round(rss, 1)}  # fmt: skip
    if grid["occupied"]:
        result.update(grid)
        if c.render_speed:
            result.update(render_speed(c.model, held[:2], device))
    return result


def render_speed(model, held, device) -> dict:
    """Whole-image rays/s over (two of) the held-out views: every sample (no early stop, dense
    marching), then as shipped (median of 3 passes each)."""
    model.eval()
    out = {}
    for name, stop, skip in (("render_rays_per_s_dense", 0.0, False), ("render_rays_per_s", 1e-4, True)):
        model.cfg.early_stop, model.cfg.skip_empty = stop, skip
        times = []
        for _ in range(3):
            sync(device)
            t0 = time.perf_counter()
            for r, _ in held:
                render_rays_chunked(model, r, model.cfg.chunk, keys=("rgb",))
            sync(device)
            times.append(time.perf_counter() - t0)
        out[name] = round(sum(len(r) for r, _ in held) / float(np.median(times)))
    model.cfg.early_stop, model.cfg.skip_empty = 1e-4, True
    model.train()
    return out


def plot(results: dict, path: Path, key: str = "psnr", ylabel: str = "held-out PSNR (dB)", title: str = "") -> None:
    """``key`` against minutes, one line per model (``results[name]["t_s"]``, ``[key]``), as PNG:
    with matplotlib (axes, legend) when it is installed (``make setup`` installs it with the dev
    tools), else a bare numpy drawing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_numpy(results, path, key)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for k, (name, r) in enumerate(results.items()):
        colour = np.array(COLOURS[k % len(COLOURS)]) / 255.0
        ax.plot(np.array(r["t_s"]) / 60.0, r[key], marker="o", ms=3, color=colour, label=name)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_numpy(results: dict, path: Path, key: str, w: int = 640, h: int = 400) -> None:
    """The fallback: one polyline per model on grey axes (higher values drawn higher)."""
    import imageio.v3 as iio

    img = np.full((h, w, 3), 255, dtype=np.uint8)
    pad = 40
    img[h - pad, pad : w - pad // 2] = img[pad // 2 : h - pad, pad] = 128
    t_max = max(max(r["t_s"]) for r in results.values()) or 1.0
    vals = [p for r in results.values() for p in r[key]]
    lo, hi = min(vals) - 1e-9, max(vals) + 1e-9

    def xy(t, p):
        return pad + t / t_max * (w - 1.5 * pad), h - pad - (p - lo) / (hi - lo) * (h - 1.5 * pad)

    for k, r in enumerate(results.values()):
        pts = [xy(t, p) for t, p in zip(r["t_s"], r[key])]
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            for s in np.linspace(0, 1, 200):
                x, y = int(x0 + s * (x1 - x0)), int(y0 + s * (y1 - y0))
                img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = COLOURS[k % len(COLOURS)]
    iio.imwrite(path, img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="scene folder (e.g. /work/shared/data/lego, .../dnerf_standup)")
    ap.add_argument("--models", nargs="+", default=["nerf", "instant"], choices=sorted(CONTENDERS))
    ap.add_argument("--format", choices=["blender", "dnerf"], default="blender",
                    help="blender: every 8th view held out; dnerf: the test split, rays with time")
    ap.add_argument("--minutes", type=float, default=15.0, help="training time per model")
    ap.add_argument("--size", type=int, default=100, help="image side in pixels")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--evals", type=int, default=10, help="evaluations, evenly spaced over the budget")
    ap.add_argument("--eval-views", type=int, default=0, help="held-out views per evaluation, evenly spaced (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what a minute of training counts")
    ap.add_argument("--out", default="bench_out", help="folder of the plot and the JSON")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one model, print its JSON
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args)))
        return
    results = run_each_in_its_own_process(__file__, args.models, sys.argv[1:])
    held = "test views" if args.format == "dnerf" else "held-out views"
    print(f"{held} PSNR (dB) against {args.clock} training time, {args.size}x{args.size}, {args.device}")
    print(f"{'model':15s} {'steps/s':>8s} {'rss MB':>8s}  curve (t s: PSNR)")
    for name, r in results.items():
        curve = "  ".join(f"{t:.0f}: {p:.2f}" for t, p in zip(r["t_s"], r["psnr"]))
        print(f"{name:15s} {r['steps_per_s']:8.2f} {r['peak_rss_mb']:8.0f}  {curve}")
        if "occupied" in r:
            grid = "  ".join(f"{o:.3f}/{s:.0f}" for o, s in zip(r["occupied"], r["samples_per_ray"]))
            print(f"{'':15s} occupied / samples per ray at each eval: {grid}")
            if "render_rays_per_s" in r:
                print(f"{'':15s} whole images: {r['render_rays_per_s_dense']:.0f} rays/s every sample, "
                      f"{r['render_rays_per_s']:.0f} rays/s with early stop + block marching")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"models": results, "size": args.size, "device": args.device, "format": args.format,
               "clock": args.clock}  # fmt: skip
    plot(results, out / "time_to_psnr.png", title=f"{Path(args.data).name} {args.size}x{args.size}, {args.device}")
    (out / "time_to_psnr.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
