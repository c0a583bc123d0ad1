"""What the viewer renders, and when: browser camera -> nerflite Cameras, frame sizes, the time
budget shared with training, and frames rendered a chunk at a time between training steps.

Nothing here knows about the browser; ``nerflite.viewer.server`` feeds it cameras and sends its
pictures. A browser camera is viser's: a pose ``wxyz`` (quaternion, camera-to-world rotation),
``position``, a vertical field of view in radians and the canvas size. Its axes are OpenCV's
(x right, y down, z forward), nerflite's own, so the pose is used as it is.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from nerflite.cameras import Cameras
from nerflite.data.scene import Scene
from nerflite.engine.evaluate import IMAGE_KEYS, visualisations
from nerflite.engine.logging import to_uint8
from nerflite.engine.render import camera_rays
from nerflite.models.base import Model, render_rays_chunked
from nerflite.rays import RayBundle

OUTPUTS = ("rgb", "depth", "accumulation", "normals")  # pictures the viewer can show


@dataclass(frozen=True)
class BrowserCamera:
    """One browser view: pose (OpenCV axes, camera-to-world), vertical fov and canvas size."""

    wxyz: tuple[float, float, float, float]  # rotation as a unit quaternion (w, x, y, z)
    position: tuple[float, float, float]  # camera centre in scene coordinates
    fov: float  # vertical field of view in radians
    width: int  # canvas width in pixels
    height: int  # canvas height in pixels


def rotation_from_wxyz(wxyz) -> np.ndarray:
    """3x3 rotation matrix (float64) of a quaternion (w, x, y, z); normalised first."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def wxyz_from_rotation(R) -> tuple[float, float, float, float]:
    """Unit quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation matrix (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    t = np.trace(R)
    if t > 0:
        s = 2.0 * math.sqrt(1.0 + t)
        q = (0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s)
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        v = [0.0, 0.0, 0.0]
        v[i], v[j], v[k] = 0.25 * s, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
        q = ((R[k, j] - R[j, k]) / s, *v)
    q = np.array(q) * (1.0 if q[0] >= 0 else -1.0)
    return tuple(float(v) for v in q / np.linalg.norm(q))


def frame_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) with the canvas's aspect ratio and ``longest`` pixels on its longer side (never
    larger than the canvas itself)."""
    longest = max(1, min(longest, max(width, height)))
    if width >= height:
        return longest, max(1, round(longest * height / width))
    return max(1, round(longest * width / height)), longest


def browser_cameras(cam: BrowserCamera, width: int, height: int) -> Cameras:
    """A one-view ``Cameras`` (float32, like the training batches) of a browser camera rendered at
    ``width`` x ``height``: square pixels, principal point at the centre, the canvas's vertical fov."""
    fy = height / (2.0 * math.tan(cam.fov / 2.0))
    c2w = np.concatenate([rotation_from_wxyz(cam.wxyz), np.asarray(cam.position, np.float64)[:, None]], 1)
    one = lambda v, dt=torch.float32: torch.tensor([v], dtype=dt)  # noqa: E731
    return Cameras(
        one(fy), one(fy), one(width / 2.0), one(height / 2.0),
        one(width, torch.int64), one(height, torch.int64), torch.tensor(c2w[None], dtype=torch.float32),
    )


def ray_bounds(scene: Scene, position, distances: tuple[float, float]) -> tuple[float, float]:
    """(near, far) for a browser camera at ``position``: the scene's own while the camera is as far
    from the scene centre as some training camera (``distances``: their min and max), shifted by
    how much nearer or farther it is otherwise, so flying out (or in) keeps the scene in range.
    NDC scenes keep theirs (NDC depths do not depend on the distance)."""
    if scene.ndc:
        return scene.near, scene.far
    d = float(np.linalg.norm(np.asarray(position, np.float64) - scene.sphere_center.double().numpy()))
    lo, hi = distances
    shift = d - hi if d > hi else (d - lo if d < lo else 0.0)
    if shift == 0.0:
        return scene.near, scene.far
    near = max(scene.near + shift, 0.0)
    return near, max(scene.far + shift, near + 1e-3)


def picture(outputs: dict[str, Tensor], kind: str) -> np.ndarray:
    """uint8 [H, W, 3] picture of one output kind of a rendered frame (render.py's pictures for rgb,
    depth and normals; accumulation in grey). Falls back to rgb for a kind the model lacks."""
    if kind == "accumulation" and "accumulation" in outputs:
        return to_uint8(outputs["accumulation"].float().expand(*outputs["accumulation"].shape[:2], 3))
    pics = visualisations(outputs)
    return to_uint8(pics.get(kind, pics["rgb"]))


def output_keys(model: Model, scene: Scene) -> list[str]:
    """The per-ray outputs worth rendering for pictures (``IMAGE_KEYS`` the model produces), found
    with one ray in eval mode, as ``render_image`` does (at time 0 in a dynamic scene)."""
    cams = Cameras(*(torch.ones(1) for _ in range(4)), torch.ones(1, dtype=torch.int64),
                   torch.ones(1, dtype=torch.int64), scene.cameras.c2w[:1].float())
    rays = camera_rays(scene, cams, 0, 0.0 if scene.is_dynamic else None)
    with eval_mode(model):
        probe = render_rays_chunked(model, rays, 1, keys=None)
    return [k for k in IMAGE_KEYS if k in probe]


@contextmanager
def eval_mode(model: Model):
    """The model in eval mode with torch's RNG state forked (restored on exit), then back in its
    previous mode: rendering between training steps leaves training exactly as it was."""
    device = next(model.parameters()).device
    was_training = model.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)


class Budget:
    """The viewer's share of wall time while training runs: time spent training earns credit at
    ``share / (1 - share)`` seconds per second, rendering spends it; the viewer renders only with
    credit left, so over time it takes about ``share`` (in (0, 1)) of the wall clock.
    Credit is capped at ``cap_s`` so that a long quiet spell does not buy a long stall later."""

    def __init__(self, share: float, cap_s: float = 0.5, clock=time.perf_counter):
        if not 0.0 < share < 1.0:
            raise ValueError(f"viewer.budget must be in (0, 1), got {share}")
        self.rate = share / (1.0 - share)
        self.cap_s = cap_s
        self.clock = clock
        self.credit = cap_s
        self.mark = clock()
        self.spent_s = 0.0  # viewer seconds in total
        self.start = self.mark

    def earn(self) -> None:
        """Credit for the time since the viewer last worked (time the training used)."""
        now = self.clock()
        self.credit = min(self.cap_s, self.credit + (now - self.mark) * self.rate)
        self.mark = now

    def available(self) -> bool:
        return self.credit > 0.0

    def spend(self, seconds: float) -> None:
        self.credit -= seconds
        self.spent_s += seconds
        self.mark = self.clock()

    def share_used(self) -> float:
        """Fraction of the wall clock since the start spent by the viewer."""
        return self.spent_s / max(self.clock() - self.start, 1e-9)


@dataclass
class FrameJob:
    """One frame being rendered ``chunk`` rays at a time: the chunks are the ones
    ``render_rays_chunked(model, rays, chunk)`` makes, so the pixels are render.py's."""

    rays: RayBundle  # [h * w] rays of the frame, row-major
    height: int
    width: int
    chunk: int  # rays per model forward
    keys: list[str]  # outputs to keep
    tag: object = None  # what the frame is of (the caller's camera version, level, ...)
    done_rays: int = 0
    parts: dict[str, list[Tensor]] = field(default_factory=dict)

    @staticmethod
    def of_camera(scene: Scene, cam: BrowserCamera, longest: int, chunk: int, keys: list[str], tag=None,
                  distances: tuple[float, float] | None = None, time: float | None = None) -> FrameJob:
        """The frame of a browser camera; ``distances`` (of the training cameras from the scene
        centre) moves near / far with a camera beyond them (``ray_bounds``); ``time``: the moment
        its rays carry (a dynamic scene), as render.py's ``time=T``."""
        w, h = frame_size(cam.width, cam.height, longest)
        if distances is not None:
            near, far = ray_bounds(scene, cam.position, distances)
            if (near, far) != (scene.near, scene.far):
                scene = replace(scene, near=near, far=far)
        rays = camera_rays(scene, browser_cameras(cam, w, h), 0, time)
        return FrameJob(rays, h, w, chunk, keys, tag)

    @property
    def finished(self) -> bool:
        return self.done_rays >= len(self.rays)

    def step(self, model: Model) -> None:
        """Render the next chunk (the caller puts the model in eval mode: ``eval_mode``)."""
        start = self.done_rays
        out = render_rays_chunked(model, self.rays[start : start + self.chunk], self.chunk, keys=self.keys)
        for k, v in out.items():
            self.parts.setdefault(k, []).append(v)
        self.done_rays = min(start + self.chunk, len(self.rays))

    def outputs(self) -> dict[str, Tensor]:
        """The finished frame's outputs [H, W, C] (float, on the CPU), as ``render_image`` returns."""
        return {k: torch.cat(v).float().reshape(self.height, self.width, -1) for k, v in self.parts.items()}
