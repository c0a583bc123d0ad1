"""Dataset inspector: ``python -m nerflite.data.inspect PATH [--format F] [--json] [--downscale F]``.

Detects the format, parses the dataset, fully decodes every image and mask (threads: OpenCV
releases the GIL) so that unreadable or truncated files surface before training, prints a
summary and warnings, and with ``--json`` ends with one JSON object on the last line.
Bad input exits with status 1 and one line naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerflite.cameras import project
from nerflite.data.images import read_image, read_mask
from nerflite.data.parsers import FORMATS, DatasetConfig, load_scene
from nerflite.data.scene import DatasetError, Scene
from nerflite.utils.cli import ArgumentParser


@dataclass
class Decoded:
    """What the inspector keeps of one decoded file (never the pixels)."""

    width: int
    height: int
    channels: int
    coverage: float  # masks: fraction of pixels inside; images: fraction of alpha > 0 (1 without alpha)


def _decode_image(path: Path) -> Decoded:
    img = read_image(path)
    coverage = float((img[..., 3] > 0).mean()) if img.shape[2] == 4 else 1.0
    return Decoded(img.shape[1], img.shape[0], img.shape[2], coverage)


def _decode_mask(path: Path) -> Decoded:
    mask = read_mask(path)
    return Decoded(mask.shape[1], mask.shape[0], 1, float(mask.mean()))


def decode_all(scene: Scene, workers: int) -> tuple[list[Decoded], list[Decoded] | None]:
    """Decode every image and mask in parallel. Raises the first failure (in view order) as one
    DatasetError that also counts the other bad files."""
    jobs = [(_decode_image, p) for p in scene.image_paths]
    jobs += [(_decode_mask, p) for p in scene.mask_paths or []]

    def run(job):
        fn, path = job
        try:
            return fn(path)
        except DatasetError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(run, jobs))
    errors = [r for r in results if isinstance(r, DatasetError)]
    if errors:
        names = ", ".join(e.path.name for e in errors[1:4]) + (", ..." if len(errors) > 4 else "")
        more = f" ({len(errors) - 1} more unreadable files: {names})" if len(errors) > 1 else ""
        raise DatasetError(errors[0].path, errors[0].problem + more)
    n = len(scene.image_paths)
    return results[:n], (results[n:] if scene.mask_paths is not None else None)


def check(scene: Scene, images: list[Decoded], masks: list[Decoded] | None) -> list[str]:
    """Warnings about things that look wrong (the data still loads)."""
    warn = list(scene.metadata.get("warnings", []))
    cams = scene.cameras
    n = len(scene)
    sizes = Counter((d.width, d.height) for d in images)
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h} ({k})" for (w, h), k in sizes.most_common(4))
        aspects = {round(w / h, 2) for w, h in sizes}
        warn.append(f"images have {len(sizes)} different sizes: {listed}"
                    + (" with different aspect ratios" if len(aspects) > 1 else ""))
    channels = Counter(d.channels for d in images)
    if len(channels) > 1:
        warn.append(f"some images have alpha and some do not: {dict(channels)} (channels: count)")
    if masks is not None:
        wh = lambda d: f"{d.width}x{d.height}"  # noqa: E731
        off = [i for i in range(n) if wh(masks[i]) != wh(images[i])]
        if off:
            i = off[0]
            warn.append(f"{len(off)} masks differ in size from their images ({scene.mask_paths[i].name} "
                        f"is {wh(masks[i])}, its image {wh(images[i])}; resized when loaded)")
        empty = [i for i in range(n) if masks[i].coverage == 0.0]
        if empty:
            warn.append(f"{len(empty)} masks are empty (first: {scene.mask_paths[empty[0]].name})")
    transparent = [i for i in range(n) if images[i].coverage == 0.0]
    if transparent:
        first = scene.image_paths[transparent[0]].name
        warn.append(f"{len(transparent)} images are fully transparent (first: {first})")

    # intrinsics against the image size
    fx, fy, cx, cy = (t.double().numpy() for t in (cams.fx, cams.fy, cams.cx, cams.cy))
    w, h = cams.width.double().numpy(), cams.height.double().numpy()
    hfov = np.degrees(2 * np.arctan(w / (2 * fx)))
    bad = np.flatnonzero((hfov < 3) | (hfov > 150))
    if len(bad):
        i = bad[0]
        warn.append(f"focal mismatch: view {i} has fx {fx[i]:.1f} px for {w[i]:.0f} px wide images "
                    f"(field of view {hfov[i]:.1f} deg): focal and image size do not seem to match")
    ratio = np.abs(fx / fy - 1)
    if ratio.max() > 0.05:
        i = int(ratio.argmax())
        warn.append(f"view {i}: fx {fx[i]:.1f} and fy {fy[i]:.1f} differ by {100 * ratio[i]:.0f}%")
    off_centre = np.maximum(np.abs(cx - w / 2) / w, np.abs(cy - h / 2) / h)
    if off_centre.max() > 0.2:
        i = int(off_centre.argmax())
        warn.append(f"view {i}: principal point ({cx[i]:.1f}, {cy[i]:.1f}) is far from the centre of its "
                    f"{w[i]:.0f}x{h[i]:.0f} image: the intrinsics may belong to another resolution")
    warn += check_poses(scene) + check_times(scene)
    if len(scene.split("train")) < 3:
        warn.append(f"only {len(scene.split('train'))} training views")
    return warn


def time_record(scene: Scene) -> dict | None:
    """A dynamic scene's moments: their range, how many are distinct, and its appearance ids."""
    if scene.times is None:
        return None
    t, a = scene.times, scene.appearance_ids
    return {"min": round(float(t.min()), 6), "max": round(float(t.max()), 6), "distinct": len(set(t.tolist())),
            "appearance_ids": None if a is None else len(set(a.tolist()))}


def check_times(scene: Scene) -> list[str]:
    """Moments of eval views outside the training views' (the model would extrapolate in time)."""
    if scene.times is None:
        return []
    t = scene.times
    lo, hi = float(t[scene.split("train")].min()), float(t[scene.split("train")].max())
    out = sorted({v for s in ("val", "test") for v in scene.split(s) if not lo <= float(t[v]) <= hi})
    if not out:
        return []
    return [f"{len(out)} eval views (views {_few(out)}) lie outside the training moments {lo:.3g} to {hi:.3g}"]


def check_poses(scene: Scene) -> list[str]:
    cams = scene.cameras
    c2w = cams.c2w.double()
    if scene.ndc:  # forward-facing: the readers name the views that look elsewhere (common.capture_note)
        return []
    warn = []
    center = scene.sphere_center.to(cams.c2w.dtype).expand(len(cams), 3)  # [n, 3]
    xy, z = project(cams, torch.arange(len(cams)), center)
    w, h = cams.width.to(xy.dtype), cams.height.to(xy.dtype)
    inside = (z > 0) & (xy[:, 0] >= 0) & (xy[:, 0] <= w) & (xy[:, 1] >= 0) & (xy[:, 1] <= h)
    bad = torch.nonzero(~inside).flatten().tolist()
    if bad:
        c = ", ".join(f"{v:.2g}" for v in scene.sphere_center.tolist())
        warn.append(f"{len(bad)} of {len(cams)} cameras do not face the scene centre ({c}) "
                    f"(views {_few(bad)}): the poses may use another axis convention")
    dist = torch.linalg.norm(c2w[:, :, 3] - scene.sphere_center.double(), dim=-1)
    if dist.min() <= scene.near or dist.max() >= scene.far:
        warn.append(f"camera distances to the scene centre ({dist.min():.3g} to {dist.max():.3g}) are not "
                    f"all within near {scene.near:.3g} .. far {scene.far:.3g}: the centre is not sampled")
    return warn


def _few(idx: list[int], k: int = 6) -> str:
    return ", ".join(map(str, idx[:k])) + (", ..." if len(idx) > k else "")


def summarize(scene: Scene, images: list[Decoded], masks: list[Decoded] | None, warnings: list[str]) -> dict:
    """The JSON record: first-view intrinsics in pixels of the images as used (after downscale)."""
    c = scene.cameras
    return {
        "format": scene.format,
        "path": str(scene.root),
        "n_images": {name: len(scene.split(name)) for name in ("train", "val", "test")},
        "n_views": len(scene),
        "width": int(c.width[0]),
        "height": int(c.height[0]),
        "fx": round(float(c.fx[0]), 4),
        "fy": round(float(c.fy[0]), 4),
        "cx": round(float(c.cx[0]), 4),
        "cy": round(float(c.cy[0]), 4),
        "near": round(float(scene.near), 6),
        "far": round(float(scene.far), 6),
        "radius": round(float(scene.sphere_radius), 6),
        "center": [round(float(v), 6) for v in scene.sphere_center],
        "ndc": bool(scene.ndc),
        "masks": scene.has_masks,
        "downscale": float(scene.downscale),
        "file_width": images[0].width,
        "file_height": images[0].height,
        "channels": images[0].channels,
        "distortion": scene.cameras.has_lens,
        "time": time_record(scene),  # dynamic scenes: {min, max, distinct, appearance_ids}; None when static
        **({"colmap": scene.metadata["colmap"]} if "colmap" in scene.metadata else {}),
        "warnings": warnings,
        "skipped": list(scene.metadata.get("skipped", [])),  # frames listed without an image (skip_missing)
    }


def _colmap_lines(info: dict | None, most: int = 8) -> list[str]:
    """COLMAP specifics: registration, the model's cameras with their lens parameters."""
    if info is None:
        return []
    from nerflite.data.parsers.colmap_io import PARAM_NAMES

    kind = "forward-facing" if info["forward_facing"] else "360-degree"
    lines = [f"registered  {info['registered']} of {info['image_files']} image files ({info['model']}, "
             f"{info['format']}); {info['points']} sparse points ({info['inlier_points']} inliers); {kind} capture"]
    for c in info["cameras"][:most]:
        params = " ".join(f"{k} {v:.4g}" for k, v in zip(PARAM_NAMES[c["model"]], c["params"]))
        lines.append(f"cam id {c['id']:<4} {c['model']} {c['width']}x{c['height']} ({c['images']} images): {params}")
    if len(info["cameras"]) > most:
        lines.append(f"            ... {len(info['cameras']) - most} more cameras")
    return lines


def human(scene: Scene, rec: dict, images: list[Decoded], masks: list[Decoded] | None, seconds: float) -> str:
    c = scene.cameras
    sizes = Counter((d.width, d.height) for d in images)
    size_txt = ", ".join(f"{w}x{h} ({k})" for (w, h), k in sizes.most_common(3))
    kinds = Counter("RGBA" if d.channels == 4 else "RGB" for d in images)
    dist = torch.linalg.norm(c.c2w[:, :, 3] - scene.sphere_center, dim=-1)
    hfov = math.degrees(2 * math.atan(rec["width"] / (2 * rec["fx"])))
    extra = scene.metadata.get("image_folder") or scene.metadata.get("cameras_file") or ", ".join(
        scene.metadata.get("split_files", {}).values())
    lines = [
        f"dataset     {scene.root}",
        f"format      {scene.format} ({extra})",
        f"views       {len(scene)}: " + ", ".join(f"{k} {v}" for k, v in rec["n_images"].items()),
        f"images      {len(images)} decoded in {seconds:.1f} s; on disk {size_txt}; "
        + ", ".join(f"{k} {v}" for k, v in kinds.items()),
    ]
    if scene.downscale != 1:
        lines.append(f"downscale   {scene.downscale:g}: used at {rec['width']}x{rec['height']}")
    if rec["time"] is not None:
        t = rec["time"]
        app = "" if t["appearance_ids"] is None else f"; {t['appearance_ids']} appearance ids"
        lines.append(f"time        moments {t['min']:.3g} to {t['max']:.3g}, {t['distinct']} distinct over "
                     f"{len(scene)} views (a moving scene){app}")
    if masks is not None:
        cover = np.mean([m.coverage for m in masks])
        lines.append(f"masks       {len(masks)} decoded; mean coverage {100 * cover:.1f}%")
    else:
        lines.append("masks       none")
    lines += [
        f"camera 0    fx {rec['fx']:.2f}  fy {rec['fy']:.2f}  cx {rec['cx']:.2f}  cy {rec['cy']:.2f}  "
        f"({rec['width']}x{rec['height']}, horizontal field of view {hfov:.1f} deg)",
        f"cameras     {float(dist.min()):.3g} to {float(dist.max()):.3g} from the scene centre",
        *_colmap_lines(rec.get("colmap")),
        f"bounds      near {scene.near:.4g}, far {scene.far:.4g}"
        + (" (NDC: rays mapped into the unit cube)" if scene.ndc else " (distances along unit rays)")
        + f"; sphere centre ({', '.join(f'{v:.3g}' for v in rec['center'])}) radius {rec['radius']:.4g}",
        f"background  {tuple(scene.background)} (under transparent pixels)",
        f"render path {0 if scene.render_c2w is None else len(scene.render_c2w)} poses",
    ]
    if rec["warnings"]:
        lines += [f"WARNING     {w}" for w in rec["warnings"]]
    else:
        lines.append("warnings    none")
    return "\n".join(lines)


def inspect(path: str, fmt: str = "auto", downscale: float = 1.0, workers: int | None = None,
            skip_missing: bool = False) -> tuple[dict, str]:
    """Parse and decode the dataset at ``path``: (JSON record, human summary). Raises DatasetError."""
    scene = load_scene(DatasetConfig(format=fmt, path=path, downscale=downscale, skip_missing=skip_missing))
    start = time.perf_counter()
    images, masks = decode_all(scene, workers or min(8, os.cpu_count() or 1))
    seconds = time.perf_counter() - start
    rec = summarize(scene, images, masks, check(scene, images, masks))
    return rec, human(scene, rec, images, masks, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nerflite.data.inspect",
        description="Check a dataset before training: parse it and decode every image and mask.",
    )
    parser.add_argument("path", help="dataset folder")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    parser.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    parser.add_argument("--downscale", type=float, default=1.0, help="resize factor (LLFF: images_F/)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPUs, max 8)")
    parser.add_argument("--skip-missing", action="store_true", help="transforms: drop frames whose image is missing")
    args = parser.parse_args(argv)
    try:
        rec, text = inspect(args.path, args.format, args.downscale, args.workers, args.skip_missing)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(text)
    if args.json:
        print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
