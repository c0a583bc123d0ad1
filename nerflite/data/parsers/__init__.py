"""Dataset parsers: files in, a ``Scene`` out, nothing decoded.

``load_scene(DatasetConfig(path=...))`` detects the format (Blender, LLFF, NeuS/DTU, COLMAP or transforms.json), reads
its camera files and image headers and returns a ``Scene`` in nerflite's one camera convention
(``nerflite.cameras``). Every problem with the files raises ``DatasetError`` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nerflite.data.scene import DatasetError, Scene

FORMATS = ("blender", "llff", "neus", "colmap", "transforms")


@dataclass
class DatasetConfig:
    format: str = "auto"  # auto | blender | llff | neus | colmap | transforms (auto: detected from the files in `path`)
    path: str = ""  # dataset folder
    downscale: float = 1.0  # Blender/NeuS: resize factor; LLFF: images_{factor}/ if present, else resize
    background: list[float] | None = None  # RGB in [0, 1] under RGBA images; None: Blender white, else black
    holdout: int = 8  # formats without a split: every Nth view is val/test (0: none, evaluate on train views)
    llffhold: int = 8  # LLFF: every Nth image is a test (and val) view; 0: evaluate on train views
    spherify: bool = False  # LLFF, COLMAP: normalise a 360-degree capture into the unit sphere (turns NDC off)
    ndc: bool = True  # LLFF, COLMAP (forward-facing only): march rays in normalized device coordinates
    bd_factor: float = 0.75  # LLFF, COLMAP forward-facing: rescale so the nearest bound is 1 / bd_factor
    cameras_file: str = "cameras_sphere.npz"  # NeuS: camera file in the folder (else cameras.npz)
    masks: bool = True  # NeuS, COLMAP: use mask/ (masks/) when the dataset has it
    near: float | None = None  # override the format's near bound (scene units; ignored with NDC)
    far: float | None = None  # override the format's far bound (scene units; ignored with NDC)
    radius: float | None = None  # override the bounding-sphere radius (scene units)
    render_frames: int = 120  # frames of the default render path
    skip_missing: bool = False  # transforms: train on the frames present when listed images are missing


def detect_format(path: str | Path, cameras_file: str = "cameras_sphere.npz") -> str:
    """``"blender"``, ``"llff"``, ``"neus"``, ``"transforms"`` or ``"colmap"`` from the files in the folder ``path``."""
    root = Path(path)
    if not root.exists():
        raise DatasetError(root, "dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(root, "dataset path is not a folder")
    if (root / "transforms_train.json").is_file():
        return "blender"
    if (root / "transforms.json").is_file():
        return "transforms"
    if (root / "poses_bounds.npy").is_file():
        return "llff"
    if any((root / name).is_file() for name in (cameras_file, "cameras_sphere.npz", "cameras.npz")):
        return "neus"
    from nerflite.data.parsers.colmap import probe as probe_colmap

    if all(probe_colmap(root)):  # images/ + sparse/0/ (or sparse/) with a COLMAP model
        return "colmap"
    raise DatasetError(
        root,
        "cannot tell the dataset format: expected transforms_train.json (blender), transforms.json "
        "(transforms), poses_bounds.npy (llff), cameras_sphere.npz (neus) or images/ + sparse/0/ (colmap)",
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

    if fmt == "blender":
        from nerflite.data.parsers.blender import load_blender as load
    elif fmt == "llff":
        from nerflite.data.parsers.llff import load_llff as load
    elif fmt == "colmap":
        from nerflite.data.parsers.colmap import load_colmap as load
    elif fmt == "transforms":
        from nerflite.data.parsers.transforms import load_transforms as load
    else:
        from nerflite.data.parsers.neus import load_neus as load
    scene = load(cfg)
    if not torch.isfinite(scene.cameras.c2w).all():
        raise DatasetError(root, "camera poses are degenerate (NaN after normalisation)")
    if cfg.near is not None and not scene.ndc:
        scene.near = float(cfg.near)
    if cfg.far is not None and not scene.ndc:
        scene.far = float(cfg.far)
    if cfg.radius is not None:
        scene.sphere_radius = float(cfg.radius)
    return scene


__all__ = ["DatasetConfig", "DatasetError", "FORMATS", "Scene", "detect_format", "load_scene"]
