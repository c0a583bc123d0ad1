"""Scene: what a parser hands on. Files in, a Scene out, nothing decoded.

A Scene names the images (paths, never pixels), their cameras in nerflite's one convention
(see ``nerflite.cameras``), the splits and the scene's extent. Everything that decodes pixels
(the datamanager, the inspector) starts from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from nerflite.cameras import Cameras


class DatasetError(Exception):
    """Bad input data: the message names the file and the problem (shown to users without a traceback)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class Scene:
    format: str  # "blender" | "llff" | "neus" | "colmap" | "transforms" | "dnerf" | "nerfies"
    root: Path  # the dataset folder
    image_paths: list[Path]  # one per view, index i <-> cameras[i]
    cameras: Cameras  # intrinsics in pixels of the images as they are used (after downscale)
    splits: dict[str, list[int]]  # "train", "val", "test" -> view indices
    near: float  # ray start, distance along unit directions (0 in NDC)
    far: float  # ray end (1 in NDC: see cameras.ndc_rays, far is set per ray there)
    mask_paths: list[Path] | None = None  # one per view when the dataset has masks
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # composited under RGBA images, in [0, 1]
    sphere_center: Tensor = field(default_factory=lambda: torch.zeros(3))  # [3] bounding sphere
    sphere_radius: float = 1.0  # every surface of interest lies inside this sphere
    ndc: bool = False  # forward-facing: rays go through cameras.ndc_rays before the model
    render_c2w: Tensor | None = None  # [m, 3, 4] default render path (OpenCV convention)
    downscale: float = 1.0  # factor from the files' size to the size in `cameras` (images are resized on decode)
    metadata: dict = field(default_factory=dict)  # format specifics (e.g. LLFF scale factor, DTU scale_mat)
    times: Tensor | None = None  # [n_views] float32 in [0, 1]: each view's moment (None: a static scene)
    appearance_ids: Tensor | None = None  # [n_views] int64: each view's appearance index (None: the format has none)

    def __post_init__(self) -> None:
        if len(self.image_paths) != len(self.cameras):
            raise ValueError(f"{len(self.image_paths)} images but {len(self.cameras)} cameras")
        if self.mask_paths is not None and len(self.mask_paths) != len(self.image_paths):
            raise ValueError(f"{len(self.mask_paths)} masks but {len(self.image_paths)} images")
        n = len(self.image_paths)
        if self.times is not None:
            t = self.times
            if t.shape != (n,) or t.dtype != torch.float32 or not bool(((t >= 0) & (t <= 1)).all()):
                raise ValueError(f"times must be float32 [{n}] in [0, 1], got {t.dtype} {tuple(t.shape)}")
        if self.appearance_ids is not None and (self.appearance_ids.shape != (n,)
                                                or self.appearance_ids.dtype != torch.int64):
            raise ValueError(f"appearance_ids must be int64 [{n}], got {self.appearance_ids.dtype} "
                             f"{tuple(self.appearance_ids.shape)}")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def is_dynamic(self) -> bool:
        """Whether the views are moments of a moving scene (rays then carry ``extras["time"]``,
        see ``nerflite.data.dynamic``)."""
        return self.times is not None

    @property
    def has_masks(self) -> bool:
        return self.mask_paths is not None

    def split(self, name: str) -> list[int]:
        return self.splits[name]
