"""The output folder of ``process``: COLMAP's layout, as nerflite's colmap parser reads it.

```
DIR/images/            the views (copied photos, or video frames as frame_00000.png ...)
DIR/images_2|4|8/      the same views downscaled (area filter), for dataset.downscale
DIR/sparse/0/          cameras.bin, images.bin, points3D.bin (+ COLMAP 3.12's rigs.bin, frames.bin)
DIR/colmap/            COLMAP's database.db and every model it made (colmap/sparse/<k>)
DIR/process.json       the summary printed at the end
```

With ``--undistort`` the images and model are COLMAP's undistorted ones (a pinhole camera);
the distorted photos and model stay under ``DIR/colmap/distorted/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from nerflite.data.scene import DatasetError

DOWNSCALES = (2, 4, 8)


def prepare_output(out: Path, overwrite: bool) -> None:
    """Create ``out``; a folder that is not empty is refused unless ``overwrite`` (then emptied)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(out, "output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(out, "output folder is not empty (pass --overwrite to replace its contents)")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def copy_photos(photos: list[Path], images: Path) -> list[str]:
    """Copy the photos into ``images/`` (names kept; clashes numbered); returns the names."""
    images.mkdir(parents=True, exist_ok=True)
    names = []
    for p in photos:
        name = p.name
        if (images / name).exists():
            name = f"{p.stem}_{len(names):05d}{p.suffix}"
        shutil.copy2(p, images / name)
        names.append(name)
    return names


def write_frames(frames: list[tuple[int, np.ndarray]], images: Path) -> list[str]:
    """Video frames (index, RGB uint8) as ``frame_<index>.png``; returns the names."""
    images.mkdir(parents=True, exist_ok=True)
    names = []
    for i, rgb in frames:
        name = f"frame_{i:05d}.png"
        if not cv2.imwrite(str(images / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise DatasetError(images / name, "cannot write the frame")
        names.append(name)
    return names


def write_downscaled(out: Path, factors: tuple[int, ...] = DOWNSCALES) -> None:
    """``images_F/`` for each factor: every image of ``images/`` resized by 1/F (rounded, area filter)."""
    src = out / "images"
    for f in factors:
        dst = out / f"images_{f}"
        dst.mkdir(exist_ok=True)
        for p in sorted(src.iterdir()):
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise DatasetError(p, "cannot decode the image")
            h, w = img.shape[:2]
            small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
            if not cv2.imwrite(str(dst / p.name), small):
                raise DatasetError(dst / p.name, "cannot write the image")


def install_model(reconstruction, out: Path) -> Path:
    """Write a pycolmap reconstruction (binary) to ``out/sparse/0``; returns that folder."""
    dst = out / "sparse" / "0"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    reconstruction.write(dst)
    return dst


def install_undistorted(undistorted: Path, out: Path) -> None:
    """Make COLMAP's undistorted images and model the dataset; keep the originals in colmap/distorted."""
    import pycolmap

    keep = out / "colmap" / "distorted"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.move(str(out / "images"), str(keep / "images"))
    shutil.move(str(out / "sparse" / "0"), str(keep / "sparse"))
    shutil.move(str(undistorted / "images"), str(out / "images"))
    install_model(pycolmap.Reconstruction(undistorted / "sparse"), out)
    shutil.rmtree(undistorted)
