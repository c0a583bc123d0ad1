"""The configuration schema of train.py / render.py, built from each component's own dataclass.

Hydra composes ``conf/config.yaml``; the structured schemas registered here make a misspelt key
or a value of the wrong type fail when the config is composed, before anything runs:

    dataset      DatasetSchema = the parsers' DatasetConfig + how to generate a synthetic scene
    model        NeRFConfig | NeuSConfig | InstantConfig | NeuSInstantConfig | DNeRFConfig |
                 HyperNeRFConfig | DynamicInstantConfig (each names itself in ``model.name``)
    datamanager  DataManagerConfig
    trainer      TrainerConfig (below)
    viewer       ViewerConfig (the live browser viewer, nerflite/viewer/)

Component fields are never repeated here: the schemas are (or subclass) the components' dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from nerflite.data.datamanager import DataManagerConfig
from nerflite.data.parsers import DatasetConfig
from nerflite.models.dnerf import DNeRFConfig
from nerflite.models.dynamic_instant import DynamicInstantConfig
from nerflite.models.hypernerf import HyperNeRFConfig
from nerflite.models.instant import InstantConfig
from nerflite.models.nerf import NeRFConfig
from nerflite.models.neus import NeuSConfig
from nerflite.models.neus_instant import NeuSInstantConfig
from nerflite.viewer.config import ViewerConfig


@dataclass
class SyntheticSpec:
    """A scene nerflite generates itself (``nerflite.data.synthetic``) at ``dataset.path`` on first use."""

    format: str = "blender"  # blender | llff | neus | dnerf | nerfies: the file format to write (the last two move)
    views: int = 40  # number of rendered views
    size: int = 64  # image width and height in pixels
    seed: int = 0  # seed of the camera placement


@dataclass
class DatasetSchema(DatasetConfig):
    synthetic: SyntheticSpec | None = None  # generate this scene at `path` on first use (None: real data)


@dataclass
class TrainerConfig:
    steps: int = 2000  # optimisation steps in total
    max_minutes: float = 0.0  # stop after this much training (evals, checkpoints excluded; over resumes; 0: off)
    test_minutes: list[float] = field(default_factory=list)  # test-split metrics at these training minutes
    eval_every: int = 500  # render held-out images and log PSNR / SSIM every N steps (0: never)
    eval_images: int = 1  # held-out images rendered at each periodic eval
    final_eval_images: int = 0  # held-out images evaluated at the end of training (0: all)
    test_at_end: bool = True  # after training, every test view's metrics into <run>/metrics_test.json
    ckpt_every: int = 1000  # write a checkpoint every N steps (and always at the end)
    keep_ckpts: int = 3  # keep the last K checkpoints
    log_every: int = 20  # TensorBoard scalars every N steps
    device: str = "auto"  # auto (this rank's GPU if any, else CPU) | cpu | cuda | cuda:N
    cpu_threads: int = 0  # intra-op threads when training on the CPU (0: torch's default, one per core)
    amp: bool = False  # mixed precision (autocast) for the model's forward pass
    amp_dtype: str = "bf16"  # bf16 | fp16 (fp16 uses a gradient scaler)
    tf32: bool = False  # allow TF32 matmuls / convolutions on Ampere+ GPUs (as does model.tf32)
    lr: float = 5e-4  # peak learning rate (Adam)
    lr_final: float = 5e-5  # learning rate reached at the end of the decay
    schedule: str = "exp"  # exp (geometric decay to lr_final) | cosine (to lr_final) | constant
    warmup_steps: int = 0  # linear warm-up from 0 before the decay starts
    decay_steps: int = 0  # steps over which lr decays to lr_final (0: the whole run)
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam's betas
    adam_eps: float = 1e-8  # Adam's epsilon
    weight_decay: float = 0.0  # L2 weight decay
    grad_clip: float = 0.0  # clip the gradient norm to this value (0: off)
    mesh_at_eval: bool = True  # NeuS: log a mesh to TensorBoard at each eval
    mesh_res: int = 64  # grid resolution of that mesh
    progress: bool = True  # show the tqdm progress bar


@dataclass
class TrainConfig:
    dataset: DatasetSchema = field(default_factory=DatasetSchema)  # what to train on
    model: Any = MISSING  # NeRFConfig or NeuSConfig (the `model` group; `model.name` tells which)
    datamanager: DataManagerConfig = field(default_factory=DataManagerConfig)  # ray batches
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # the optimisation loop
    viewer: ViewerConfig = field(default_factory=ViewerConfig)  # live browser viewer (docs/viewer.md)
    name: str = "default"  # runs go to <output_root>/<name>/<date_time>/
    output_root: str = "outputs"  # folder of all runs
    seed: int = 0  # seeds model initialisation, sampling and rays
    resume: Any = False  # false | true (latest run of `name`) | path of a run folder or checkpoint


@dataclass
class RenderConfig:
    run: str = MISSING  # run folder (outputs/<name>/<date_time>)
    ckpt: str | None = None  # checkpoint file (default: the run's latest)
    path: str = "auto"  # auto (spiral for forward-facing scenes, else orbit) | orbit | spiral | test | train
    frames: int = 120  # frames of orbit / spiral paths
    time: str | None = None  # dynamic runs: play (0 -> 1 over the frames) | T in [0, 1] (frozen); unset: play / own
    appearance: int | None = None  # dynamic runs: this appearance id on every ray (unset: none, or the views' own)
    fps: int = 30  # video frame rate
    downscale: float = 1.0  # render at 1/downscale of the training resolution
    width: int = 0  # render width in pixels (0: from downscale), height keeps the aspect ratio
    chunk: int = 0  # rays per model forward (0: the run's model.chunk)
    out: str | None = None  # output folder (default: <run>/renders/<path>)
    mesh: bool = False  # NeuS: extract a mesh and write it as PLY
    mesh_res: int = 256  # NeuS: marching-cubes grid resolution
    device: str = "auto"  # auto | cpu | cuda
    video: bool = True  # write an MP4 besides the PNG frames
    dataset_path: str | None = None  # the run's dataset folder, if it moved since training (default: as trained)


MODEL_SCHEMAS = {"nerf": NeRFConfig, "neus": NeuSConfig, "instant": InstantConfig}  # model.name -> its config dataclass
MODEL_SCHEMAS["neus_instant"] = NeuSInstantConfig
MODEL_SCHEMAS["dnerf"] = DNeRFConfig  # dynamic scenes (docs/dynamic.md)
MODEL_SCHEMAS["hypernerf"] = HyperNeRFConfig
MODEL_SCHEMAS["dynamic_instant"] = DynamicInstantConfig  # the fast dynamic model (docs/dynamic.md)
