"""COLMAP folders from known cameras: the synthetic scene rendered through nerflite cameras (lens
included), written as images/ plus a sparse model whose points are exact surface points.

``make_colmap`` returns the ground truth: correspondences (view, pixel of the files on disk,
world point in COLMAP's frame) for checking that parsed cameras project the surface where the
images show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from nerflite.cameras import project
from nerflite.data.images import image_size
from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers.colmap_write import write_model
from nerflite.data.synthetic import LLFF_DISTANCE, WALL_Y, Similarity, _axis_angle, _llff_wall, rigs
from nerflite.data.synthetic.render import correspondences, render_views
from nerflite.data.synthetic.shapes import object_parts, sample_surface

# COLMAP's world frame relative to the synthetic canonical one: a rotation, a scale and an offset
FRAME = Similarity(2.3, _axis_angle((0.3, -1.0, 0.5), 1.1), torch.tensor([1.5, -0.7, 4.0], dtype=torch.float64))
LENSES = {  # name -> (COLMAP model, distortion k1 k2 k3 k4 p1 p2, fisheye)
    "pinhole": ("PINHOLE", [0.0] * 6, False),
    "simple_radial": ("SIMPLE_RADIAL", [-0.08, 0, 0, 0, 0, 0], False),
    "opencv": ("OPENCV", [-0.3, 0.1, 0.0, 0.0, 0.004, -0.003], False),
    "fisheye": ("OPENCV_FISHEYE", [-0.15, 0.02, 0.004, -0.001, 0.0, 0.0], True),
}
FOCALS = (1.1, 0.95, 1.2, 1.0)  # focal of camera k, in image widths


@dataclass
class Truth:
    root: Path
    names: list[str]  # registered image names, in view order of the synthetic cameras
    view: np.ndarray  # [m] index into names
    xy: np.ndarray  # [m, 2] pixel coordinates in the image files (pixel centres at +0.5)
    world: np.ndarray  # [m, 3] the surface point seen there, in COLMAP's world frame
    surface: np.ndarray  # [k, 3] points uniform on the object's surface, COLMAP frame
    model: cio.Model


def colmap_params(model: str, fx, fy, cx, cy, d) -> list[float]:
    k1, k2, k3, k4, p1, p2 = d
    return {"PINHOLE": [fx, fy, cx, cy], "SIMPLE_RADIAL": [fx, cx, cy, k1],
            "OPENCV": [fx, fy, cx, cy, k1, k2, p1, p2], "OPENCV_FISHEYE": [fx, fy, cx, cy, k1, k2, k3, k4]}[model]


def make_colmap(root: Path, views: int = 10, size: int = 40, lenses=("pinhole",), ext: str = ".bin",
                file_scale: float = 1.0, unregistered: int = 0, outliers: int = 0, forward: bool = False,
                n_points: int = 3000, radius: float = 3.0, seed: int = 0) -> Truth:
    """Render and write a COLMAP dataset; views take the cameras of ``lenses`` in turn (camera k has
    lens ``lenses[k]`` and focal ``FOCALS[k]`` x width), so one lens is one shared camera."""
    gen = torch.Generator().manual_seed(seed)
    w, h = size, int(size * 0.75) // 2 * 2
    parts = object_parts()
    if forward:
        c2w = rigs.forward_facing(views, LLFF_DISTANCE, (0.45, 0.3), WALL_Y, gen)
    else:
        c2w = rigs.orbit(views, radius, (10.0, 60.0), gen)
    cam_of = [i % len(lenses) for i in range(views)]
    lens_of = [LENSES[lenses[k]] for k in cam_of]
    f = torch.tensor([FOCALS[k] * w for k in cam_of], dtype=torch.float64)
    cams = rigs.intrinsics(views, w, h, 1.0, 1.0, w / 2 + 0.7, h / 2 - 0.4, c2w)
    single = torch.tensor([LENSES[lenses[k]][0].startswith("SIMPLE") for k in cam_of])  # one focal length
    dist = torch.tensor([lz[1] for lz in lens_of], dtype=torch.float64)
    cams = replace(cams, fx=f, fy=torch.where(single, f, f * 1.01), distortion=dist,
                   fisheye=torch.tensor([lz[2] for lz in lens_of]))
    if forward:
        parts = parts + [_llff_wall(cams)]
    far = 4.0 * (LLFF_DISTANCE + WALL_Y)
    r = render_views(parts, cams, bound=None if forward else 1.0, far=far)
    rgb = (r.rgb * r.alpha[..., None]).clamp(0, 1).mul(255).round().byte().numpy()

    (root / "images").mkdir(parents=True, exist_ok=True)
    fw, fh = round(w * file_scale), round(h * file_scale)
    names = [f"frame_{i:03d}.png" for i in range(views)]
    for name, img in zip(names, rgb):
        if (fw, fh) != (w, h):
            img = cv2.resize(img, (fw, fh), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "images" / name), img[..., ::-1])
    for j in range(unregistered):  # photos SfM could not place
        cv2.imwrite(str(root / "images" / f"unplaced_{j:02d}.png"), rgb[j % views][..., ::-1])

    # points: surface samples, observed by the views where they are the first hit
    pts, _, _ = sample_surface(parts, n_points, gen)  # forward-facing: the wall too
    m = len(pts)
    keypoints: list[list[tuple[float, float, int]]] = [[] for _ in range(views)]
    tracks: list[list[tuple[int, int]]] = [[] for _ in range(m)]
    for v in range(views):
        xy, z = project(cams, torch.full((m,), v), pts)
        px, py = xy[:, 0].floor().long(), xy[:, 1].floor().long()
        inside = (z > 0) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
        zd = torch.full((m,), float("inf"), dtype=torch.float64)
        zd[inside] = r.zdepth[v, py[inside], px[inside]].double()
        seen = inside & (z < zd * 1.02 + 1e-3)
        for p in torch.nonzero(seen).flatten().tolist():
            tracks[p].append((v + 1, len(keypoints[v])))
            keypoints[v].append((float(xy[p, 0]) * file_scale, float(xy[p, 1]) * file_scale, p + 1))
    xyz = FRAME.points(pts).numpy()
    gj = np.random.default_rng(seed)
    extra = []
    for o in range(outliers):  # gross far-away points and junk right in front of a camera
        if o % 2 == 0:
            extra.append(FRAME.points(torch.from_numpy(gj.normal(size=3) * 200.0)[None]).numpy()[0])
        else:
            c = c2w[o % views]
            extra.append(FRAME.points((c[:, 3] + 0.02 * c[:, 2])[None]).numpy()[0])
        v = o % views
        tracks.append([(v + 1, len(keypoints[v]))])
        keypoints[v].append((1.0, 1.0, m + o + 1))
    xyz = np.concatenate([xyz, np.array(extra).reshape(-1, 3)])
    lengths = [len(t) for t in tracks]
    points = cio.Points3D(np.arange(1, len(xyz) + 1), xyz, np.full((len(xyz), 3), 128, np.uint8),
                          np.full(len(xyz), 0.3), np.array([e for t in tracks for e in t], np.int64).reshape(-1, 2),
                          np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    file_c2w = FRAME.cameras(cams).c2w.numpy()
    cameras, images = {}, {}
    for v in range(views):
        lz, cid = lens_of[v], cam_of[v] + 1
        p = colmap_params(lz[0], float(cams.fx[v]), float(cams.fy[v]), float(cams.cx[v]), float(cams.cy[v]), lz[1])
        cameras[cid] = cio.Camera(cid, lz[0], w, h, np.array(p))
        R = file_c2w[v, :, :3].T  # world-to-camera
        kp = np.array(keypoints[v], np.float64).reshape(-1, 3)
        images[v + 1] = cio.Image(v + 1, cio.rotmat_to_qvec(R), -R @ file_c2w[v, :, 3], cid, names[v],
                                  kp[:, :2], kp[:, 2].astype(np.int64))
    model = cio.Model(cameras, images, points)
    write_model(model, root / "sparse" / "0", ext)

    per_view = 60
    ci, cxy, world = correspondences(parts, cams, list(range(views)), r, per_view, None if forward else 1.0,
                                     far, gen)
    surface, _, _ = sample_surface(parts[:3], 2000, gen)
    return Truth(root, names, ci.numpy(), cxy.numpy() * file_scale, FRAME.points(world).numpy(),
                 FRAME.points(surface).numpy(), model)


def to_scene(scene, points: np.ndarray) -> torch.Tensor:
    """COLMAP-frame points [m, 3] in the scene frame (through ``world_from_scene``)."""
    m = np.linalg.inv(scene.metadata["world_from_scene"])
    return torch.from_numpy(points @ m[:3, :3].T + m[:3, 3])


def reprojection_error(scene, truth: Truth) -> float:
    """Largest distance (pixels) between where the parsed cameras project the ground-truth surface
    points and where the images show them."""
    index = {p.name: i for i, p in enumerate(scene.image_paths)}
    view = torch.tensor([index[truth.names[v]] for v in truth.view])
    cams = scene.cameras
    cams = replace(cams, **{k: getattr(cams, k).double() for k in ("fx", "fy", "cx", "cy", "c2w")},
                   distortion=None if cams.distortion is None else cams.distortion.double())
    xy, _ = project(cams, view, to_scene(scene, truth.world))
    files = torch.tensor([image_size(p) for p in scene.image_paths], dtype=torch.float64)  # [n, 2] on disk
    scale = torch.stack([cams.width, cams.height], -1).double()[view] / files[view]
    return float((xy - torch.from_numpy(truth.xy) * scale).norm(dim=-1).max())


def corrupt(path: Path, keep: float = 0.6) -> None:
    """Truncate a file to ``keep`` of its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: math.floor(len(data) * keep)])
