"""``python -m nerflite.data.process INPUT --out DIR``: photos or a video -> a posed COLMAP dataset."""

from __future__ import annotations

import json
import sys

from nerflite.data.process import ProcessConfig, describe, process
from nerflite.data.process.sfm import CAMERA_MODELS, MATCHERS
from nerflite.data.scene import DatasetError
from nerflite.utils.cli import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nerflite.data.process",
        description="Recover camera poses from photos or a video (COLMAP structure from motion) and write a "
                    "dataset nerflite trains on.",
    )
    parser.add_argument("input", help="a folder of photos or a video file")
    parser.add_argument("--out", required=True, help="dataset folder to write (empty or absent)")
    parser.add_argument("--frames", type=int, default=None,
                        help="keep N views, evenly spread, the sharpest of each segment (default: all photos, "
                             "150 frames of a video)")
    parser.add_argument("--camera-model", default="SIMPLE_RADIAL", choices=CAMERA_MODELS)
    parser.add_argument("--multi-camera", action="store_true",
                        help="photos from several cameras: one camera per image size / EXIF (default: one for all)")
    parser.add_argument("--matcher", default="auto", choices=MATCHERS,
                        help="auto: exhaustive up to 120 images, sequential for video or more images")
    parser.add_argument("--undistort", action="store_true", help="write undistorted images and a pinhole model")
    parser.add_argument("--dynamic", action="store_true",
                        help="a moving scene (needs a static background): keep each frame's time and write a "
                             "Nerfies capture")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    parser.add_argument("--strict", action="store_true",
                        help="stop at a damaged photo (truncated, unreadable, another size than the rest) instead of "
                             "skipping it with a warning (the default)")
    parser.add_argument("--threads", type=int, default=-1, help="CPU threads for COLMAP (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    parser.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    args = parser.parse_args(argv)
    import pycolmap

    pycolmap.logging.minloglevel = 0 if args.verbose else 3  # 3: fatal only (failures are reported here)
    cfg = ProcessConfig(
        input=args.input, out=args.out, frames=args.frames, camera_model=args.camera_model,
        single_camera=not args.multi_camera, matcher=args.matcher, undistort=args.undistort,
        overwrite=args.overwrite, threads=args.threads, seed=args.seed, dynamic=args.dynamic, strict=args.strict,
    )
    try:
        summary = process(cfg, say=lambda line: print(line, flush=True))
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(describe(summary))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
