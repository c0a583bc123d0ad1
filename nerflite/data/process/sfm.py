"""Structure from motion with pycolmap (COLMAP's engine): SIFT features, matching, incremental
mapping, optional undistortion. Each stage is timed; the largest reconstruction is kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nerflite.data.scene import DatasetError

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")
MATCHERS = ("auto", "exhaustive", "sequential")
EXHAUSTIVE_MAX = 120  # auto: exhaustive matching up to this many images (pairs grow as n^2), else sequential


@dataclass
class SfMOptions:
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP camera model of the images
    single_camera: bool = True  # one camera for every image; False: one per image size / EXIF
    matcher: str = "auto"  # auto | exhaustive | sequential (neighbours in name order, for video)
    threads: int = -1  # CPU threads for COLMAP (-1: all)
    max_image_size: int = 3200  # SIFT runs on images at most this large (longest side)
    seed: int = 0  # COLMAP's random seed (RANSAC, initial pair)


@dataclass
class SfMResult:
    reconstruction: object  # pycolmap.Reconstruction, the largest model
    n_images: int  # images given to SfM
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    n_models: int = 1  # reconstructions COLMAP found (only the largest is kept)


def _matcher(opts: SfMOptions, n_images: int) -> str:
    if opts.matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {', '.join(MATCHERS)}, got {opts.matcher!r}")
    if opts.matcher != "auto":
        return opts.matcher
    return "exhaustive" if n_images <= EXHAUSTIVE_MAX else "sequential"


def run_sfm(image_dir: Path, work: Path, opts: SfMOptions, say: Callable[[str], None] = print) -> SfMResult:
    """Features, matches and a reconstruction of the images in ``image_dir``; COLMAP's database
    and every model go under ``work``. A failed reconstruction is a DatasetError."""
    import pycolmap

    if opts.camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model must be one of {', '.join(CAMERA_MODELS)}, got {opts.camera_model!r}")
    pycolmap.set_random_seed(opts.seed)
    names = sorted(p.name for p in image_dir.iterdir() if p.is_file())
    matcher = _matcher(opts, len(names))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    db.unlink(missing_ok=True)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    say(f"[sfm 1/3] SIFT features of {len(names)} images ({opts.camera_model}, "
        f"{'one camera' if opts.single_camera else 'camera per image size / EXIF'})")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = opts.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = opts.threads
    extraction.max_image_size = opts.max_image_size
    mode = pycolmap.CameraMode.SINGLE if opts.single_camera else pycolmap.CameraMode.AUTO
    pycolmap.extract_features(db, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    seconds["features"] = time.perf_counter() - start

    start = time.perf_counter()
    pairs = len(names) * (len(names) - 1) // 2 if matcher == "exhaustive" else None
    say(f"[sfm 2/3] {matcher} matching" + (f" ({pairs} pairs)" if pairs else " (neighbours in name order)"))
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = opts.threads
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_sequential(db, matching_options=matching, device=pycolmap.Device.cpu)
    seconds["matching"] = time.perf_counter() - start

    start = time.perf_counter()
    say("[sfm 3/3] incremental mapping")
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = opts.threads
    mapping.random_seed = opts.seed
    registered = [0]

    def next_image() -> None:
        registered[0] += 1
        if registered[0] % 10 == 0:
            say(f"          {registered[0]} images registered")

    models = pycolmap.incremental_mapping(db, image_dir, work / "sparse", options=mapping,
                                          next_image_callback=next_image)
    seconds["mapping"] = time.perf_counter() - start
    if not models:
        raise DatasetError(image_dir, f"structure from motion failed: no two of the {len(names)} images could be "
                                      "matched into a reconstruction (too little texture or overlap?)")
    best = max(models.values(), key=lambda r: r.num_reg_images())
    if best.num_reg_images() < 2:
        raise DatasetError(image_dir, f"structure from motion registered no images of {len(names)}")
    return SfMResult(best, len(names), seconds, len(models))


def undistort(image_dir: Path, model_dir: Path, out: Path) -> None:
    """Undistorted images (``out/images``) and pinhole model (``out/sparse``) of a reconstruction."""
    import pycolmap

    pycolmap.undistort_images(out, model_dir, image_dir, output_type="COLMAP")
