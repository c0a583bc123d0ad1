"""python -m nerflite.demo: the embedded demo (what ``make demo`` runs).

For now it writes the three synthetic scenes (Blender, LLFF and NeuS/DTU formats) under
``data/synthetic/`` (skipping the ones already there) and runs the dataset inspector on each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nerflite.data.synthetic import FORMATS, generate

DONE_MARKER = "gt_correspondences.npz"  # written last: a scene that has it is complete


def ensure_scene(fmt: str, root: Path) -> tuple[Path, bool]:
    """Generate the ``fmt`` scene under ``root / fmt`` unless it is already complete; (path, made)."""
    out = root / fmt
    if (out / DONE_MARKER).is_file():
        return out, False
    generate(fmt, out)
    return out, True


def _summary(fmt: str, path: Path) -> None:
    """A short description of a scene's files (used when the dataset inspector is not available)."""
    pngs = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.png"))
    folders: dict[str, int] = {}
    for name in pngs:
        folder = name.rsplit("/", 1)[0] if "/" in name else "."
        folders[folder] = folders.get(folder, 0) + 1
    files = sorted(p.name for p in path.iterdir() if p.is_file())
    print(f"  {fmt}: {', '.join(f'{k}/ {v} PNG' for k, v in folders.items())}; files: {', '.join(files)}")


def inspect_scene(fmt: str, path: Path) -> int:
    """Run the dataset inspector on a scene (its exit status); a plain summary if there is none."""
    try:
        from nerflite.data import inspect as inspector
    except ImportError:
        _summary(fmt, path)
        return 0
    try:
        status = inspector.main([str(path), "--format", fmt])
    except SystemExit as e:  # an argparse-style main may exit
        status = e.code if isinstance(e.code, int) else 1
    return int(status or 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nerflite.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data/synthetic", help="folder of the synthetic scenes")
    args = ap.parse_args(argv)
    root = Path(args.root)
    status = 0
    for fmt in FORMATS:
        start = time.perf_counter()
        path, made = ensure_scene(fmt, root)
        what = f"generated in {time.perf_counter() - start:.1f} s" if made else "already present"
        print(f"== {fmt}: {path} ({what})")
        status |= inspect_scene(fmt, path)
    print("\nSynthetic scenes (with ground truth gt_points.ply, gt_correspondences.npz):")
    for fmt in FORMATS:
        print(f"  {fmt:8s} {(root / fmt).resolve()}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
