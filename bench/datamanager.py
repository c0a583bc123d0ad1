"""Benchmark the datamanager: rays/s, time to first batch and peak memory of the whole process tree.

    python bench/datamanager.py --data ../shared/data/lego [--cache ram|compressed|disk|device]
        [--device cpu|cuda] [--workers N] [--rays 4096] [--batches N] [--replicate K] [--baseline]

Prints a table and, as its last line, one JSON object for the run. ``--replicate K`` writes a
Blender transforms file listing every training frame K times (pointing at the original images) to
show that memory does not grow with the dataset. ``--baseline`` also measures, in the same
invocation, the classic approach: decode every image to float, precompute all rays, shuffle them.

``first_batch_s`` runs from the construction of the DataManager (for the baseline: from the first
image read) to the first batch on the device; parsing the dataset comes before both and is
reported as ``scene_load_s``. ``rays_per_cpu_s`` divides the rays by the CPU seconds the whole
process tree used meanwhile: on a shared machine it says what a quiet one would reach (about
cores x rays_per_cpu_s when the workers keep every core busy). Rays/s are timed over
``--batches`` batches after a short warm-up.
Peak memory is sampled in a background thread every 20 ms over this process and all its children
(the data workers), counting the proportional set size (PSS: a page shared by k processes counts
1/k in each, so the one shared image copy of ``ram`` mode counts once); where PSS is unavailable
it falls back to RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerflite.cameras import generate_rays  # noqa: E402
from nerflite.data.datamanager import DataManager, DataManagerConfig  # noqa: E402
from nerflite.data.images import read_image  # noqa: E402
from nerflite.data.parsers import DatasetConfig, load_scene  # noqa: E402
from nerflite.data.scene import Scene  # noqa: E402


class PeakMemory:
    """Peak of the summed PSS (else RSS) of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def replicated_blender(root: Path, k: int, out: Path) -> Path:
    """A folder holding ``transforms_train.json`` that lists every training frame of ``root`` k times,
    with absolute paths to the original images (no image is copied)."""
    meta = json.loads((root / "transforms_train.json").read_text())
    frames = []
    for _ in range(k):
        for frame in meta["frames"]:
            path = Path(frame["file_path"])
            frames.append({**frame, "file_path": str((root / path).resolve())})
    meta["frames"] = frames
    (out / "transforms_train.json").write_text(json.dumps(meta))
    return out


def tree_cpu_s() -> float:
    """User + system CPU seconds used so far by this process and its live children."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_datamanager(args, device: torch.device) -> dict:
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        scene = load_scene(DatasetConfig(path=str(args.data)))
        loaded = time.perf_counter() - t0
        t0 = time.perf_counter()
        cfg = DataManagerConfig(rays_per_batch=args.rays, cache=args.cache, workers=args.workers)
        dm = DataManager(scene, cfg, device)
        dm.next_train(0)
        sync(device)
        first = time.perf_counter() - t0
        warm = min(10, args.batches // 10)
        for step in range(1, warm + 1):
            dm.next_train(step)
        sync(device)
        t1, cpu1 = time.perf_counter(), tree_cpu_s()
        for step in range(warm + 1, warm + 1 + args.batches):
            rays, batch = dm.next_train(step)
        sync(device)
        elapsed, cpu = time.perf_counter() - t1, tree_cpu_s() - cpu1
        n_images = len(dm.train_views)
        dm.close()
    return {
        "cache": args.cache, "workers": dm.workers, "rays_per_batch": dm.rays_per_batch, "n_images": n_images,
        "rays_per_s": round(args.batches * dm.rays_per_batch / elapsed), "first_batch_s": round(first, 3),
        "peak_rss_mb": round(mem.peak / 2**20, 1), "scene_load_s": round(loaded, 3),
        "rays_per_cpu_s": round(args.batches * dm.rays_per_batch / max(cpu, 1e-9)),
    }


def run_baseline(args, device: torch.device) -> dict:
    """The classic approach: every image as float, every ray precomputed, all of them shuffled."""
    with PeakMemory() as mem:
        scene: Scene = load_scene(DatasetConfig(path=str(args.data)))
        t0 = time.perf_counter()
        views = scene.split("train")
        cams, bg = scene.cameras, torch.tensor(scene.background)
        chunks = []
        for v in views:
            img = torch.from_numpy(read_image(scene.image_paths[v])).float() / 255.0  # [h, w, c] float
            if img.shape[-1] == 4:
                img = img[..., :3] * img[..., 3:] + bg * (1.0 - img[..., 3:])
            h, w = img.shape[:2]
            y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            view = torch.full((h * w,), v)
            r = generate_rays(cams, view, y.reshape(-1), x.reshape(-1), scene.near, scene.far)
            chunks.append(torch.cat([r.origins, r.directions, img.reshape(-1, 3)], -1))  # [h*w, 9]
        all_rays = torch.cat(chunks)
        del chunks
        all_rays = all_rays[torch.randperm(all_rays.shape[0])]
        batch = all_rays[: args.rays].to(device)
        sync(device)
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        n = all_rays.shape[0]
        for i in range(args.batches):
            s = (i * args.rays) % max(1, n - args.rays)
            batch = all_rays[s : s + args.rays].to(device, copy=True)  # own copy, as a loader gives
        sync(device)
        elapsed = time.perf_counter() - t1
        del all_rays, batch
    return {"rays_per_s": round(args.batches * args.rays / elapsed), "first_batch_s": round(first, 3),
            "peak_rss_mb": round(mem.peak / 2**20, 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset folder (any format the parsers read)")
    ap.add_argument("--cache", default="ram", choices=["ram", "compressed", "disk", "device"])
    ap.add_argument("--device", default="cpu", help="training device (cpu | cuda)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rays", type=int, default=4096, help="rays per batch")
    ap.add_argument("--batches", type=int, default=300, help="batches timed after warm-up")
    ap.add_argument("--replicate", type=int, default=1, help="list every training frame K times (Blender)")
    ap.add_argument("--baseline", action="store_true", help="also run the classic precompute-all loader")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.replicate > 1:
            args.data = replicated_blender(args.data.resolve(), args.replicate, Path(tmp))
        result = run_datamanager(args, device)
        if args.baseline:
            base = run_baseline(args, device)
            result.update({f"baseline_{k}": v for k, v in base.items()})
            result["first_batch_ratio"] = round(base["first_batch_s"] / result["first_batch_s"], 1)
            result["peak_rss_ratio"] = round(base["peak_rss_mb"] / result["peak_rss_mb"], 1)
    print(f"datamanager benchmark on {os.cpu_count()} CPU cores, torch {torch.__version__}, device {device}")
    print(f"{'metric':<22}{'nerflite':>14}" + (f"{'classic':>14}{'ratio':>8}" if args.baseline else ""))
    for key, label in (("rays_per_s", "rays/s"), ("first_batch_s", "first batch (s)"),
                       ("peak_rss_mb", "peak memory (MB)")):
        row = f"{label:<22}{result[key]:>14}"
        if args.baseline:
            base = result[f"baseline_{key}"]
            row += f"{base:>14}{base / result[key]:>8.2f}"
        print(row)
    print(f"cache={result['cache']} workers={result['workers']} rays_per_batch={result['rays_per_batch']} "
          f"images={result['n_images']} rays_per_cpu_s={result['rays_per_cpu_s']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
