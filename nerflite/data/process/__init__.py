"""Photos or a video in, a posed dataset out: ``python -m nerflite.data.process INPUT --out DIR``.

``process(ProcessConfig(input=..., out=...))`` takes a folder of photos or a video file, picks the
frames (``frames.py``: evenly spread, sharpest kept), recovers the cameras with COLMAP's structure
from motion (``sfm.py``: SIFT, exhaustive or sequential matching, incremental mapping, optional
undistortion) and writes COLMAP's layout (``layout.py``): ``DIR/images``, ``DIR/images_2|4|8``,
``DIR/sparse/0``. With ``dynamic`` (a moving scene) each frame keeps its time and the folder becomes
a Nerfies / HyperNeRF capture (``dynamic.py``). Every problem a user can cause is one DatasetError
naming the file or folder.

Every photo is decoded before anything else (as ``python -m nerflite.data.inspect`` does): a
photo that is truncated, unreadable or, with one camera for all (the default), of another size
than the rest is skipped with one warning naming it and why (``--strict``: stop at the first
instead, one line naming them), so no damaged file reaches the dataset. A video that decodes to
fewer frames than its header declares is reported the same way.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from nerflite.data.process import dynamic, frames, layout
from nerflite.data.process.sfm import CAMERA_MODELS, MATCHERS, SfMOptions, run_sfm, undistort
from nerflite.data.scene import DatasetError

MIN_IMAGES = 3  # fewer views cannot be reconstructed (two only up to an unknown scale, and barely)
SHOW_UNREGISTERED = 5  # unregistered images named in the summary
VIDEO_FRAMES = 150  # frames kept from a video when --frames is not given


@dataclass
class ProcessConfig:
    input: str  # a folder of photos or a video file
    out: str  # the dataset folder to write (must be empty or absent, unless overwrite)
    frames: int | None = None  # views kept (evenly spread, sharpest per segment); None: all photos, 150 of a video
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP camera model (SIMPLE_RADIAL, OPENCV, OPENCV_FISHEYE, ...)
    single_camera: bool = True  # one camera for all photos (always for a video); False: per image size / EXIF
    matcher: str = "auto"  # auto (exhaustive up to 120 images, else sequential) | exhaustive | sequential
    undistort: bool = False  # write undistorted images and a pinhole model
    overwrite: bool = False  # empty a non-empty output folder instead of refusing
    strict: bool = False  # stop at a damaged photo (or one of another size) instead of skipping it with a warning
    threads: int = -1  # CPU threads for COLMAP (-1: all)
    seed: int = 0  # COLMAP's random seed
    dynamic: bool = False  # a moving scene: keep each frame's time, write a Nerfies capture (needs a static background)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_photos(cfg: ProcessConfig, photos: list[Path], warn: Callable[[str], None]) -> tuple[list[Path], list]:
    """Every photo decoded first: damaged ones (truncated, unreadable, another size than the rest
    with one camera) are skipped with a warning each (the default), or stop with ``strict``."""
    good, bad = frames.check_photos(photos, one_size=cfg.single_camera)
    if bad and cfg.strict:
        names = ", ".join(p.name for p, _ in bad[1:4]) + (", ..." if len(bad) > 4 else "")
        others = f" (and {len(bad) - 1} more: {names})" if len(bad) > 1 else ""
        raise DatasetError(bad[0][0], f"{bad[0][1]}{others}; without --strict such photos are skipped with a warning")
    for path, problem in bad:
        warn(f"warning: {path}: {problem}; skipped (--strict stops instead)")
    return good, [{"file": str(p), "problem": problem} for p, problem in bad]


def _read_input(cfg: ProcessConfig, say: Callable[[str], None], warn: Callable[[str], None] = _warn):
    """('video', frames, []) or ('photos', paths, skipped), checked to hold at least MIN_IMAGES views."""
    src = Path(cfg.input)
    if cfg.frames is not None and cfg.frames < MIN_IMAGES:
        raise ValueError(f"frames must be at least {MIN_IMAGES}, got {cfg.frames}")
    if not src.exists():
        raise DatasetError(src, "input does not exist (expected a folder of photos or a video file)")
    if src.is_dir():
        found = frames.folder_images(src)
        others = frames.other_files(src)
        if others:
            kinds = Counter(p.suffix.lower() or "(no extension)" for p in others)
            warn(f"warning: {src}: {len(others)} file(s) that are not images nerflite reads are left out "
                 f"({', '.join(f'{k}: {v}' for k, v in kinds.most_common())}; e.g. {others[0].name})")
        photos, skipped = _check_photos(cfg, found, warn)
        if len(photos) < MIN_IMAGES:
            bad = f" usable ({len(skipped)} skipped)" if skipped else ""
            raise DatasetError(src, f"only {len(photos)} image(s){bad}: structure from motion needs at least "
                                    f"{MIN_IMAGES}")
        picked = frames.pick_images(photos, cfg.frames)
        say(f"[frames] {len(picked)} of {len(found)} photos" + (" (sharpest of each segment)" if cfg.frames else "")
            + (f"; {len(skipped)} skipped (damaged or of another size)" if skipped else ""))
        return "photos", picked, skipped
    if not frames.is_video(src):
        raise DatasetError(src, f"not a folder of photos or a video file ({', '.join(frames.VIDEO_EXTENSIONS)})")
    total = frames.video_frame_count(src)
    picked = frames.video_frames(src, VIDEO_FRAMES if cfg.frames is None else cfg.frames, warn)
    if len(picked) < MIN_IMAGES:
        raise DatasetError(src, f"only {len(picked)} frame(s): structure from motion needs at least {MIN_IMAGES}")
    sharpest = " (sharpest of each segment)" if len(picked) < total else ""
    say(f"[frames] {len(picked)} of {total} video frames{sharpest}")
    return "video", picked, []


def process(cfg: ProcessConfig, say: Callable[[str], None] = print, warn: Callable[[str], None] = _warn) -> dict:
    """Run the whole pipeline; returns the summary (also written to ``DIR/process.json``). ``warn``
    gets one ``warning: ...`` line per damaged input skipped."""
    if cfg.camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model must be one of {', '.join(CAMERA_MODELS)}, got {cfg.camera_model!r}")
    if cfg.matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {', '.join(MATCHERS)}, got {cfg.matcher!r}")
    if cfg.dynamic and cfg.camera_model in dynamic.FISHEYE_MODELS and not cfg.undistort:
        raise ValueError(f"--dynamic writes a Nerfies capture, which has no {cfg.camera_model} lens: "
                         "add --undistort or choose another --camera-model")
    out = Path(cfg.out)
    if out.resolve() == Path(cfg.input).resolve() or Path(cfg.input).resolve().is_relative_to(out.resolve()):
        raise DatasetError(out, "output folder must not be the input or contain it")
    seconds = {}
    start = time.perf_counter()
    kind, picked, skipped = _read_input(cfg, say, warn)
    layout.prepare_output(out, cfg.overwrite)
    images = out / "images"
    names = layout.write_frames(picked, images) if kind == "video" else layout.copy_photos(picked, images)
    if cfg.dynamic:
        photos = frames.folder_images(Path(cfg.input)) if kind == "photos" else None
        time_ids = dynamic.frame_time_ids(kind, picked, names, photos)
    seconds["frames"] = time.perf_counter() - start

    opts = SfMOptions(camera_model=cfg.camera_model, single_camera=cfg.single_camera or kind == "video",
                      matcher="sequential" if cfg.matcher == "auto" and kind == "video" else cfg.matcher,
                      threads=cfg.threads, seed=cfg.seed)
    try:
        result = run_sfm(images, out / "colmap", opts, say)
    except DatasetError as e:  # name the user's input, not the copy
        raise DatasetError(cfg.input, e.problem) from None
    except RuntimeError as e:
        last = str(e).strip().splitlines()[-1] if str(e).strip() else e
        raise DatasetError(cfg.input, f"COLMAP failed: {last}") from None
    seconds.update(result.seconds)
    rec = result.reconstruction
    model_dir = layout.install_model(rec, out)

    start = time.perf_counter()
    if cfg.undistort:
        say("[undistort] images and a pinhole model")
        undistort(images, model_dir, out / "colmap" / "undistorted")
        layout.install_undistorted(out / "colmap" / "undistorted", out)
        seconds["undistort"] = time.perf_counter() - start
        start = time.perf_counter()
    say(f"[images] downscaled copies images_{'/'.join(map(str, layout.DOWNSCALES))}")
    layout.write_downscaled(out)
    seconds["downscale"] = time.perf_counter() - start

    if cfg.dynamic:
        say("[dynamic] each frame's time kept: writing a Nerfies capture (dataset.json, camera/, rgb/)")
        nerfies = dynamic.to_nerfies(out, time_ids)
    registered = {rec.images[i].name for i in rec.reg_image_ids()}
    missing = [n for n in names if n not in registered]
    cams = [rec.cameras[c] for c in sorted(rec.cameras)]
    summary = {
        "input": str(Path(cfg.input).resolve()),
        "out": str(out.resolve()),
        "registered": len(registered),
        "images": len(names),
        "unregistered": missing,
        "skipped": skipped,  # damaged inputs left out: [{"file", "problem"}]
        "points3D": rec.num_points3D(),
        "mean_reprojection_error_px": round(float(rec.compute_mean_reprojection_error()), 4),
        "camera_model": cams[0].model_name if len(cams) == 1 else sorted({c.model_name for c in cams}),
        "cameras": len(cams),
        "models_found": result.n_models,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "config": asdict(cfg),
        "nerfies": nerfies if cfg.dynamic else None,  # --dynamic: the capture's frames, time ids and scene frame
    }
    (out / "process.json").write_text(json.dumps(summary, indent=2))
    return summary


def describe(summary: dict) -> str:
    """The human summary printed at the end."""
    s = summary
    missing = s["unregistered"]
    lines = [
        f"registered  {s['registered']} / {s['images']} images"
        + (f" (not: {', '.join(missing[:SHOW_UNREGISTERED])}{', ...' if len(missing) > SHOW_UNREGISTERED else ''})"
           if missing else ""),
        f"points      {s['points3D']} 3D points, mean reprojection error {s['mean_reprojection_error_px']:.3f} px",
        f"cameras     {s['cameras']} ({s['camera_model']})",
        "time        " + ", ".join(f"{k} {v:.1f} s" for k, v in s["seconds"].items()),
        f"dataset     {s['out']} (COLMAP layout: images/, images_2|4|8/, sparse/0/)" if not s.get("nerfies") else
        f"dataset     {s['out']} (Nerfies capture: dataset.json, camera/, rgb/1x|2x|4x|8x/; frames "
        f"{s['nerfies']['first_time_id']} to {s['nerfies']['last_time_id']} -> time 0 to 1)",
        f"next        python -m nerflite.data.inspect {s['out']}",
        f"            python train.py {'dataset=nerfies ' if s.get('nerfies') else ''}dataset.path={s['out']}",
    ]
    if s.get("skipped"):
        names = ", ".join(Path(k["file"]).name for k in s["skipped"][:SHOW_UNREGISTERED])
        lines.insert(1, f"skipped     {len(s['skipped'])} damaged input(s): {names} (see the warnings above)")
    if s["models_found"] > 1:
        lines.insert(1, f"WARNING     COLMAP found {s['models_found']} separate models; the largest is kept")
    return "\n".join(lines)


__all__ = ["MIN_IMAGES", "ProcessConfig", "describe", "process"]
