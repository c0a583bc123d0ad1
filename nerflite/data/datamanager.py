"""DataManager: the one object the trainer and the evaluator ask for rays and ground truth.

    dm = DataManager(scene, DataManagerConfig(...), device, rank=0, world_size=1, custom_ray_processor=None)
    rays, batch = dm.next_train(step)   # batch: rgb [n,3] float, mask [n,1] (if masks), indices [n,3]
    # a dynamic scene's rays carry extras["time"] [n,1] (and "appearance_id"): nerflite.data.dynamic
    rays, batch = dm.next_eval(step)              # from the eval split, never from the train stream
    idx, rays, batch = dm.next_eval_image(step)   # whole image: rays [H*W], rgb [H*W,3], image_hw (H, W)
    for idx, rays, batch in dm.iter_eval_images(): ...
    dm.state_dict(); dm.load_state_dict(sd); dm.close()

Training batch ``step`` is a pure function of ``(seed, rank, step)`` (see ``nerflite.data.stream``):
``next_train(step)`` with a step other than the one expected restarts the stream at that step, and
a resume reproduces exactly the batches of an uninterrupted run. Design notes and the trade-offs
of the cache modes: ``docs/datamanager.md``.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from nerflite.data.cache import CACHE_MODES, ImageCache, Pool, cache_bytes, choose_cache
from nerflite.data.dynamic import ViewTimes
from nerflite.data.samplers import PixelSampler, all_pixels, sample_uniform
from nerflite.data.scene import Scene
from nerflite.data.stream import BatchBuilder, BatchStream, RayProcessor, gather_batch, generator
from nerflite.rays import RayBundle


@dataclass
class DataManagerConfig:
    rays_per_batch: int = 1024  # rays per training step (per rank under DDP)
    cache: str = "auto"  # where pixels live: auto | ram | compressed | disk | device (docs/datamanager.md)
    device_share: float = 0.25  # cache=auto: the GPU holds the images when they take at most this share of it
    workers: int = 2  # data worker processes (0: build batches in the training process; device: always 0)
    images_per_chunk: int | None = None  # views per batch; None: all (ram, device), 12 (disk, compressed)
    chunk_reuse: int = 64  # consecutive batches drawn from the same chunk of views
    prefetch: int = 4  # batches each worker keeps ready ahead of the trainer
    sampler: str = "uniform"  # pixel sampler: uniform | patch
    patch_size: int = 32  # side of the square patches (sampler=patch)
    mask_sampling: str = "none"  # none | fraction (mask_fraction of rays inside) | inside (only inside)
    mask_fraction: float = 0.5  # share of rays inside the mask when mask_sampling=fraction
    precrop_steps: int = 0  # sample only the centre crop for the first steps (classic NeRF trick; 0: off)
    precrop_frac: float = 0.5  # side of the centre crop relative to the image
    seed: int = 0  # every random stream derives from (seed, rank, step)
    worker_timeout: float = 120.0  # seconds to wait for one batch before reporting a stuck worker
    eval_cache_images: int = 4  # decoded eval images kept in memory (uint8)


DISK_IMAGES_PER_CHUNK = 12


def check_config(cfg: DataManagerConfig) -> None:
    """Reject settings that cannot work, naming the key."""
    problems = []
    if cfg.rays_per_batch < 1:
        problems.append(f"rays_per_batch must be >= 1, got {cfg.rays_per_batch}")
    if cfg.workers < 0:
        problems.append(f"workers must be >= 0, got {cfg.workers}")
    if cfg.images_per_chunk is not None and cfg.images_per_chunk < 1:
        problems.append(f"images_per_chunk must be >= 1 or None, got {cfg.images_per_chunk}")
    if cfg.chunk_reuse < 1:
        problems.append(f"chunk_reuse must be >= 1, got {cfg.chunk_reuse}")
    if cfg.cache not in ("auto", *CACHE_MODES):
        problems.append(f"cache must be auto, {', '.join(CACHE_MODES)}; got {cfg.cache!r}")
    if not 0.0 <= cfg.device_share <= 1.0:
        problems.append(f"device_share must be in [0, 1], got {cfg.device_share}")
    if cfg.prefetch < 1:
        problems.append(f"prefetch must be >= 1, got {cfg.prefetch}")
    if not 0.0 < cfg.precrop_frac <= 1.0:
        problems.append(f"precrop_frac must be in (0, 1], got {cfg.precrop_frac}")
    if problems:
        raise ValueError("datamanager config: " + "; ".join(problems))


def eval_split(scene: Scene) -> list[int]:
    """``val`` if it has views, else ``test``, else ``train``."""
    for name in ("val", "test", "train"):
        if scene.splits.get(name):
            return list(scene.splits[name])
    raise ValueError("the scene has no views in any split")


class DataManager:
    def __init__(
        self,
        scene: Scene,
        config: DataManagerConfig,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        custom_ray_processor: RayProcessor | None = None,
    ):
        """``custom_ray_processor(ray_bundle, batch) -> (ray_bundle, batch)`` runs where a training
        batch is built (in the workers, on CPU tensors), before the batch crosses to the training
        process. It may add per-ray tensors to ``ray_bundle.extras`` or new keys to ``batch`` (each
        with first dimension n). With workers it must be picklable (a module-level function or an
        instance of a module-level class) and so must everything it returns."""
        check_config(config)
        self.scene, self.config = scene, config
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.processor = custom_ray_processor
        self.sampler = PixelSampler(
            kind=config.sampler,
            patch_size=config.patch_size,
            mask_sampling=config.mask_sampling,
            mask_fraction=config.mask_fraction,
            precrop_steps=config.precrop_steps,
            precrop_frac=config.precrop_frac,
        )
        if self.sampler.uses_masks and not scene.has_masks:
            raise ValueError(f"mask_sampling={config.mask_sampling} but the scene has no masks")
        self.train_views = list(scene.split("train"))
        self.eval_views = eval_split(scene)
        if not self.train_views:
            raise ValueError("the scene has no training views")
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        mode, self.cache_note = config.cache, ""
        if mode == "auto":
            mode, why = choose_cache(cache_bytes(scene, self.train_views), self.device, config.device_share)
            self.cache_note = f"datamanager: cache=auto -> {mode} ({why})"
        per_chunk = config.images_per_chunk
        if per_chunk is None and mode in ("disk", "compressed"):
            per_chunk = DISK_IMAGES_PER_CHUNK
        self.cache = ImageCache(scene, mode, self.train_views, self.device, threads)
        self.workers = 0 if mode == "device" else config.workers
        self.builder = BatchBuilder(
            scene, self.cache, self.sampler, config.rays_per_batch, config.seed, rank, per_chunk,
            config.chunk_reuse, custom_ray_processor,
        )
        if self.sampler.uses_masks and self.cache.full is not None and not self.builder.chunked:
            self.cache.full.inside()  # the mask's pixel list, computed once and shared by the workers
            self.cache.full.share_memory_()
        self.eval_cameras = scene.cameras.to(self.cache.device)
        self.eval_times = ViewTimes.of(scene, self.cache.device)  # None for a static scene
        self._pin = self.device.type == "cuda"
        self._stream: BatchStream | None = None
        self._next_step = 0
        self._eval_pools: OrderedDict[int, Pool] = OrderedDict()
        self.wait_s = 0.0  # seconds the training process spent inside next_train (log its share of a step)

    @property
    def rays_per_batch(self) -> int:
        """Rays in each training batch (whole patches only with the patch sampler)."""
        return self.builder.n

    # -- training -----------------------------------------------------------------------------
    def next_train(self, step: int) -> tuple[RayBundle, dict[str, Tensor]]:
        """Training batch ``step`` on the device; restarts the stream when ``step`` is not the next one."""
        start = time.perf_counter()
        if self._stream is None or step != self._stream.next_k:
            self._restart(step)
        rays, batch = self._stream.next(self.device)
        self._next_step = step + 1
        out = self._to_device(rays, batch)
        self.wait_s += time.perf_counter() - start
        return out

    def _restart(self, step: int) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = BatchStream(
            self.builder, step, self.workers, self.config.prefetch, self.config.worker_timeout, self._pin
        )

    def _to_device(self, rays: RayBundle, batch: dict) -> tuple[RayBundle, dict]:
        same = all(v.device == self.device for v in (rays.origins, *rays.extras.values(), *batch.values())
                   if isinstance(v, Tensor))
        if same or (self.device.type == "cpu" and rays.device.type == "cpu"):
            return rays, batch
        nb = self._pin
        moved = {k: v.to(self.device, non_blocking=nb) if isinstance(v, Tensor) else v
                 for k, v in batch.items()}
        return rays.to(self.device, non_blocking=nb), moved

    # -- evaluation (never touches the training stream) ----------------------------------------
    def _eval_pool(self, view: int) -> Pool:
        """One eval view decoded (uint8), from a small LRU cache."""
        if view in self._eval_pools:
            self._eval_pools.move_to_end(view)
            return self._eval_pools[view]
        pool = self.cache.decode_pool([view], device=self.cache.device)
        self._eval_pools[view] = pool
        while len(self._eval_pools) > max(1, self.config.eval_cache_images):
            self._eval_pools.popitem(last=False)
        return pool

    def next_eval(self, step: int) -> tuple[RayBundle, dict[str, Tensor]]:
        """``rays_per_batch`` random rays from one eval view chosen by ``(seed, rank, step)``."""
        gen = generator(self.config.seed, self.rank, "eval", step)
        view = self.eval_views[int(torch.randint(0, len(self.eval_views), (1,), generator=gen))]
        pool = self._eval_pool(view)
        img, y, x = sample_uniform(self.config.rays_per_batch, pool.heights, pool.widths, gen)
        return self._to_device(*gather_batch(self.scene, pool, img, y, x, self.eval_cameras, times=self.eval_times))

    def eval_image(self, view: int) -> tuple[RayBundle, dict]:
        """Rays and ground truth for every pixel of ``view`` (row-major), with ``batch["image_hw"]``."""
        pool = self._eval_pool(view)
        h, w = int(pool.heights[0]), int(pool.widths[0])
        y, x = all_pixels(h, w)
        rays, batch = gather_batch(self.scene, pool, torch.zeros_like(y), y, x, self.eval_cameras,
                                   times=self.eval_times)
        rays, batch = self._to_device(rays, batch)
        batch["image_hw"] = (h, w)
        return rays, batch

    def next_eval_image(self, step: int) -> tuple[int, RayBundle, dict]:
        """A whole eval image, chosen by ``(seed, rank, step)``: ``(view index, rays, batch)``."""
        gen = generator(self.config.seed, self.rank, "eval_image", step)
        view = self.eval_views[int(torch.randint(0, len(self.eval_views), (1,), generator=gen))]
        return (view, *self.eval_image(view))

    def iter_eval_images(self) -> Iterator[tuple[int, RayBundle, dict]]:
        """Every eval view in order: ``(view index, rays, batch)``."""
        for view in self.eval_views:
            yield (view, *self.eval_image(view))

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        c = self.config
        return {"next_step": self._next_step, "seed": c.seed, "rank": self.rank,
                "rays_per_batch": self.rays_per_batch}

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state["next_step"]``: ``next_train`` then draws what an uninterrupted run would."""
        if state.get("seed", self.config.seed) != self.config.seed:
            raise ValueError(f"checkpoint data seed {state['seed']} != config seed {self.config.seed}")
        self._next_step = int(state["next_step"])
        if self._stream is not None and self._stream.next_k != self._next_step:
            self._stream.close()
            self._stream = None

    def worker_pids(self) -> list[int]:
        """Process ids of the running data workers (empty without workers)."""
        return self._stream.worker_pids() if self._stream is not None else []

    def close(self) -> None:
        """Stop the workers; safe to call twice."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> DataManager:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
