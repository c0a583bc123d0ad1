"""From a composed config to the objects a run needs: the scene, the model, the datamanager.

Shared by training and rendering, so both read a run's config the same way.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from nerflite.data.parsers import load_scene
from nerflite.data.scene import Scene
from nerflite.models.base import Model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_dataclass(node, cls):
    """An instance of ``cls`` (a component's own config dataclass, or a schema subclassing it) from a
    config node; plain nodes (a run's saved YAML) are validated against ``cls`` on the way."""
    if not OmegaConf.is_config(node):
        node = OmegaConf.create(node)
    typed = OmegaConf.get_type(node)
    if not (isinstance(typed, type) and issubclass(typed, cls)):
        node = OmegaConf.merge(OmegaConf.structured(cls), node)
    return OmegaConf.to_object(node)


def ensure_synthetic(dcfg: DictConfig) -> None:
    """Generate the synthetic scene that ``dataset.synthetic`` describes if ``dataset.path`` lacks it."""
    spec = dcfg.get("synthetic")
    if spec is None:
        return
    out = Path(dcfg.path)
    if out.is_dir() and any(out.iterdir()):
        return
    from nerflite.data.synthetic import generate

    print(f"generating the synthetic {spec.format} scene ({spec.views} views, {spec.size}px) in {out} ...")
    tmp = out.with_name(out.name + ".partial")
    generate(spec.format, tmp, views=spec.views, size=spec.size, seed=spec.seed)
    tmp.replace(out)  # a half-written scene is never mistaken for a complete one


def build_scene(dcfg: DictConfig, report: bool = False) -> Scene:
    """The dataset's Scene; ``report``: print the reader's warnings (a guessed scale, a 360-degree
    capture taken out of NDC, damaged poses, ...) as ``warning: dataset PATH: ...`` lines on stderr,
    as the inspector lists them, so a run never starts on a silently changed reading."""
    from nerflite.engine.config import DatasetSchema

    ensure_synthetic(dcfg)
    scene = load_scene(to_dataclass(dcfg, DatasetSchema))
    for note in scene.metadata.get("warnings", []) if report else []:
        print(f"warning: dataset {scene.root}: {note}", file=sys.stderr)
    return scene


def check_ray_space(model_cls: type, name: str, scene: Scene) -> None:
    """Refuse NDC rays for a model class that declares ``needs_world_rays`` (NeuS: its bounding
    sphere is measured in world units, so NDC rays would sample nothing)."""
    if getattr(model_cls, "needs_world_rays", False) and scene.ndc:
        raise ValueError(f"model={name} needs world-space rays: set dataset.ndc=false")


def _nerf(cfg, scene: Scene) -> Model:
    from nerflite.models.nerf import NeRFModel

    return NeRFModel(cfg, background=scene.background)


def _neus(cfg, scene: Scene) -> Model:
    from nerflite.models.neus import NeuSModel

    check_ray_space(NeuSModel, cfg.name, scene)
    return NeuSModel(cfg, sphere_center=scene.sphere_center, sphere_radius=scene.sphere_radius,
                     background=scene.background)


def _instant(cfg, scene: Scene) -> Model:
    from nerflite.models.instant import InstantModel

    return InstantModel(
        cfg, background=scene.background, sphere_center=scene.sphere_center,
        sphere_radius=scene.sphere_radius, ndc=scene.ndc, far=scene.far,
    )  # fmt: skip


def _neus_instant(cfg, scene: Scene) -> Model:
    from nerflite.models.neus_instant import NeuSInstantModel

    check_ray_space(NeuSInstantModel, cfg.name, scene)
    return NeuSInstantModel(cfg, sphere_center=scene.sphere_center, sphere_radius=scene.sphere_radius,
                            background=scene.background)


def train_split_values(scene: Scene, key: str, name: str | None = None) -> torch.Tensor | None:
    """``scene.<key>`` (``times`` or ``appearance_ids``, one value per view) of the training views, or
    None when the scene has none; with ``name`` (a deformable model) a scene without them is refused."""
    values = getattr(scene, key, None)  # the dynamic formats' fields (docs/dynamic.md)
    if values is None:
        if name is not None:
            from nerflite.models.dynamic import static_scene_error

            raise static_scene_error(name)
        return None
    return torch.as_tensor(values)[torch.as_tensor(scene.split("train"), dtype=torch.long)]


def _dnerf(cfg, scene: Scene) -> Model:
    from nerflite.models.dnerf import DNeRFModel

    train_split_values(scene, "times", cfg.name)  # a static scene fails here, before anything is built
    return DNeRFModel(cfg, background=scene.background)


def _hypernerf(cfg, scene: Scene) -> Model:
    from nerflite.models.hypernerf import HyperNeRFModel

    times = train_split_values(scene, "times", cfg.name)  # one warp code per distinct training time
    ids = train_split_values(scene, "appearance_ids")  # one appearance code per distinct training id
    return HyperNeRFModel(cfg, times, appearance_ids=ids, background=scene.background)


def _dynamic_instant(cfg, scene: Scene) -> Model:
    from nerflite.models.dynamic_instant import DynamicInstantModel

    train_split_values(scene, "times", cfg.name)  # a static scene fails here, before anything is built
    return DynamicInstantModel(
        cfg, background=scene.background, sphere_center=scene.sphere_center,
        sphere_radius=scene.sphere_radius, ndc=scene.ndc, far=scene.far,
    )  # fmt: skip


# model.name -> how to build it for a scene from its config dataclass (schemas: config.MODEL_SCHEMAS)
MODEL_BUILDERS = {"nerf": _nerf, "neus": _neus, "instant": _instant, "neus_instant": _neus_instant}
MODEL_BUILDERS.update(dnerf=_dnerf, hypernerf=_hypernerf, dynamic_instant=_dynamic_instant)


def build_model(mcfg, scene: Scene) -> Model:
    """The model the ``model`` config names (``model.name``: a key of ``MODEL_BUILDERS``), set up for ``scene``."""
    from nerflite.engine.config import MODEL_SCHEMAS

    name = mcfg["name"]
    if name not in MODEL_SCHEMAS or name not in MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r} (expected one of {sorted(MODEL_BUILDERS)})")
    return MODEL_BUILDERS[name](to_dataclass(mcfg, MODEL_SCHEMAS[name]), scene)


def build_datamanager(cfg: DictConfig, scene: Scene, device, rank: int = 0, world_size: int = 1):
    from nerflite.data.datamanager import DataManager, DataManagerConfig

    dm_cfg = to_dataclass(cfg.datamanager, DataManagerConfig)
    dm = DataManager(scene, dm_cfg, device, rank=rank, world_size=world_size)
    if dm.cache_note and rank == 0:
        print(dm.cache_note)  # which cache cache=auto chose, and why
    return dm
