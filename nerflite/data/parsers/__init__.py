"""Dataset parsers: files in, a ``Scene`` out, nothing decoded.

``load_scene(DatasetConfig(path=...))`` detects the format (Blender, D-NeRF, LLFF, NeuS/DTU,
COLMAP, transforms.json or Nerfies/HyperNeRF: the one
whose camera file and image folder are both present, ``PROBES``), reads its camera files and
image headers and returns a ``Scene`` in nerflite's one camera convention
(``nerflite.cameras``). Every problem with the files raises ``DatasetError`` naming the file.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from nerflite.data.scene import DatasetError, Scene


@dataclass
class DatasetConfig:
    format: str = "auto"  # auto | blender | dnerf | llff | neus | colmap | transforms | nerfies (auto: from the files)
    path: str = ""  # dataset folder
    downscale: float = 1.0  # Blender/NeuS: resize factor; LLFF: images_{factor}/ (Nerfies: rgb/{factor}x/) if
    # present, else resize
    background: list[float] | None = None  # RGB in [0, 1] under RGBA images; None: Blender white, else black
    holdout: int = 8  # formats without a split: every Nth view is val/test (0: none, evaluate on train views)
    llffhold: int = 8  # LLFF: every Nth image is a test (and val) view; 0: evaluate on train views
    spherify: bool = False  # LLFF, COLMAP: normalise a 360-degree capture into the unit sphere (turns NDC off)
    ndc: bool = True  # LLFF, COLMAP (forward-facing only): march rays in normalized device coordinates
    bd_factor: float = 0.75  # LLFF, COLMAP forward-facing: rescale so the nearest bound is 1 / bd_factor
    cameras_file: str = "cameras_sphere.npz"  # NeuS: camera file in the folder (else cameras.npz)
    masks: bool = True  # NeuS, LLFF, COLMAP: use the dataset's mask/ (masks/) folder when it has one
    near: float | None = None  # override the format's near bound (scene units; ignored with NDC)
    far: float | None = None  # override the format's far bound (scene units; ignored with NDC)
    radius: float | None = None  # override the bounding-sphere radius (scene units)
    render_frames: int = 120  # frames of the default render path
    skip_missing: bool = False  # transforms: train on the frames present when listed images are missing


class Found(NamedTuple):
    """What a format's probe sees in a folder."""

    cameras: bool  # the format's camera file is there
    images: bool  # and so is its image folder (or the images its camera file names)

    @property
    def complete(self) -> bool:
        return self.cameras and self.images


def _probe_json(root: Path, name: str, timed: bool | None = None) -> Found:
    """``name`` (a transforms file) is there, and so is one of its first frames' images. ``timed``:
    count the file only when its frames carry a ``time`` (True: D-NeRF) or carry none (False)."""
    path = root / name
    if not path.is_file():
        return Found(False, False)
    from nerflite.data.parsers.blender import resolve_image

    try:
        frames = json.loads(path.read_text())["frames"]
        if timed is not None and any(isinstance(f, dict) and "time" in f for f in frames) != timed:
            return Found(False, False)
        frames = frames[:8]
    except (OSError, ValueError, KeyError, TypeError):
        return Found(True, False)
    for frame in frames:
        try:
            resolve_image(root, frame["file_path"], path)
            return Found(True, True)
        except (OSError, ValueError, KeyError, TypeError, DatasetError):
            continue
    return Found(True, False)


def _probe_llff(root: Path) -> Found:
    folders = [d for d in root.glob("images*") if d.is_dir() and re.fullmatch(r"images(_\d+)?", d.name)]
    return Found((root / "poses_bounds.npy").is_file(), bool(folders))


def _probe_neus(root: Path) -> Found:
    cameras = any(p.is_file() for p in root.glob("cameras*.npz"))  # cameras_sphere.npz, cameras.npz...
    images = any((root / n).is_dir() for n in ("image", "images", "rgb")) or any(root.glob("*_rgb.png"))  # MonoSDF
    return Found(cameras, images)


def _probe_nerfies(root: Path) -> Found:
    from nerflite.data.parsers.nerfies import scale_folders

    return Found((root / "dataset.json").is_file() and (root / "camera").is_dir(), bool(scale_folders(root)))


def _probe_colmap(root: Path) -> Found:
    from nerflite.data.parsers.colmap import probe

    return Found(*probe(root))


# format -> probe(root): are its camera file and its image folder in the folder? In order of
# preference when only camera files are found (the parser then names what is missing).
PROBES: dict[str, Callable[[Path], Found]] = {
    "blender": lambda root: _probe_json(root, "transforms_train.json", timed=False),  # + the frames' images
    "dnerf": lambda root: _probe_json(root, "transforms_train.json", timed=True),  # Blender's, frames with 'time'
    "llff": _probe_llff,  # poses_bounds.npy + images/ or images_N/
    "neus": _probe_neus,  # cameras_sphere.npz or cameras.npz + image/ (or MonoSDF's *_rgb.png)
    "colmap": _probe_colmap,  # sparse/0/ (or sparse/) with a model + images/ (not beside poses_bounds.npy)
    "transforms": lambda root: _probe_json(root, "transforms.json"),  # instant-ngp / nerfstudio + images
    "nerfies": _probe_nerfies,  # dataset.json + camera/ + rgb/<F>x/
}
# format -> its parser, "module:function(DatasetConfig) -> Scene" (imported when used)
LOADERS = {
    "blender": "nerflite.data.parsers.blender:load_blender",
    "dnerf": "nerflite.data.parsers.blender:load_dnerf",
    "llff": "nerflite.data.parsers.llff:load_llff",
    "neus": "nerflite.data.parsers.neus:load_neus",
    "colmap": "nerflite.data.parsers.colmap:load_colmap",
    "transforms": "nerflite.data.parsers.transforms:load_transforms",
    "nerfies": "nerflite.data.parsers.nerfies:load_nerfies",
}
FORMATS = tuple(PROBES)


def detect_format(path: str | Path, cameras_file: str = "cameras_sphere.npz") -> str:
    """The format whose files are complete in the folder ``path`` (camera file and image folder).

    Extra files of another format (a DTU folder converted for other tools also carries a
    ``poses_bounds.npy``) do not count unless that format is complete too; two complete formats
    are an error naming both. With no complete format, the first whose camera file is present
    wins, so its parser names what is missing.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError(root, "dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(root, "dataset path is not a folder")
    found = {name: probe(root) for name, probe in PROBES.items()}
    if (root / cameras_file).is_file() and cameras_file.endswith(".npz"):  # a NeuS camera file of another name
        found["neus"] = found["neus"]._replace(cameras=True)
    complete = [name for name, f in found.items() if f.complete]
    if len(complete) > 1:
        both = " and ".join(complete)
        choose = " or ".join(f"dataset.format={name}" for name in complete)
        raise DatasetError(root, f"the files of two formats are complete here ({both}): choose one with {choose}")
    if complete:
        return complete[0]
    partial = [name for name, f in found.items() if f.cameras]
    if partial:
        return partial[0]
    raise DatasetError(
        root,
        "cannot tell the dataset format: expected transforms_train.json (blender; dnerf with a time per "
        "frame), transforms.json (transforms), poses_bounds.npy (llff), cameras_sphere.npz (neus), "
        "images/ + sparse/0/ (colmap) or dataset.json + camera/ + rgb/ (nerfies)",
    )


def load_scene(cfg: DatasetConfig | str | Path, **overrides) -> Scene:
    """Parse the dataset that ``cfg`` names into a Scene (cameras, image paths, splits, bounds).

    ``cfg`` may also be the dataset folder; keyword ``overrides`` replace config fields
    (``load_scene("data/fern", downscale=8)``).
    """
    if isinstance(cfg, (str, Path)):
        cfg = DatasetConfig(path=str(cfg))
    if overrides:
        cfg = replace(cfg, **overrides)
    if not cfg.path:
        raise DatasetError("<dataset.path>", "no dataset path given")
    root = Path(cfg.path)
    if root.is_file() and (root.name.startswith("transforms") or root.suffix in (".npy", ".npz")):
        root = root.parent  # a camera file was named instead of its folder
        cfg = replace(cfg, path=str(root))
    fmt = cfg.format.lower()
    if fmt == "auto":
        fmt = detect_format(root, cfg.cameras_file)
    elif fmt not in FORMATS:
        expected = ", ".join(("auto",) + FORMATS)
        raise DatasetError(cfg.path, f"unknown dataset format {cfg.format!r} (expected {expected})")
    if not root.is_dir():
        problem = "dataset path is not a folder" if root.exists() else "dataset folder does not exist"
        raise DatasetError(root, problem)
    if not cfg.downscale > 0:
        raise DatasetError(root, f"downscale must be positive, got {cfg.downscale}")
    if cfg.background is not None and len(cfg.background) != 3:
        raise DatasetError(root, f"background must have 3 values (RGB), got {list(cfg.background)}")

    module, name = LOADERS[fmt].split(":")
    scene = getattr(importlib.import_module(module), name)(cfg)
    if not torch.isfinite(scene.cameras.c2w).all():
        raise DatasetError(root, "camera poses are degenerate (NaN after normalisation)")
    if cfg.near is not None and not scene.ndc:
        scene.near = float(cfg.near)
    if cfg.far is not None and not scene.ndc:
        scene.far = float(cfg.far)
    if cfg.radius is not None:
        scene.sphere_radius = float(cfg.radius)
    return scene


__all__ = ["DatasetConfig", "DatasetError", "FORMATS", "PROBES", "Found", "Scene", "detect_format", "load_scene"]
