"""What the deformable models (D-NeRF, HyperNeRF) share: reading each ray's moment, and the error
for a dataset without one.

A dynamic scene's rays carry ``ray_bundle.extras["time"]`` (float32 [n, 1] in [0, 1]) and, when the
format has them, ``extras["appearance_id"]`` (int64 [n, 1]). Its ``Scene`` has ``times`` [n_views]
(and ``appearance_ids`` [n_views]); the model builders pass the training views' values on.
"""

from __future__ import annotations

from torch import Tensor

from nerflite.rays import RayBundle


def static_scene_error(name: str) -> ValueError:
    """The one-line error for a deformable model on a static dataset (or rays without time)."""
    return ValueError(
        f"model={name} needs a dynamic dataset (rays carry no time): "
        "use dataset.format=dnerf|nerfies or a transforms.json with time"
    )


def ray_times(ray_bundle: RayBundle, name: str) -> Tensor:
    """Each ray's moment [n, 1] (float32), or ``static_scene_error(name)`` when the rays carry none."""
    t = ray_bundle.extras.get("time")
    if t is None:
        raise static_scene_error(name)
    return t.reshape(len(ray_bundle), 1).float()


def per_sample(values: Tensor, s: int) -> Tensor:
    """Per-ray values [n, c] repeated for the ``s`` samples of each ray -> [n * s, c] (ray-major, as
    ``RayBundle.points(t).reshape(n * s, 3)``)."""
    n, c = values.shape
    return values[:, None, :].expand(n, s, c).reshape(n * s, c)
