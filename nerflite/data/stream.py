"""The training stream: batch k is a pure function of (seed, rank, k), built in data workers.

Determinism
    Batch k draws its pixels with a generator seeded by ``derive_seed(seed, rank, "batch", k)``
    and its image chunk (``chunk_views``) from ``(seed, rank, k // chunk_reuse)``. Nothing depends
    on which worker builds it, so results do not depend on the number of workers, ranks draw
    different rays, and resuming at step k is "start the stream at k".

Workers
    Worker w of W builds batches ``start + w, start + w + W, ...``; the DataLoader delivers them
    in order (round robin). A batch crosses the process boundary through a ring of shared-memory
    slots allocated before the workers start: the worker writes the packed batch into slot
    ``(k - start) % slots`` and sends only ``(k, slot)``, so no tensor is pickled per batch (only
    ``custom_ray_processor`` extras are). The DataLoader keeps at most ``prefetch * W`` batches in
    flight and the main process copies a slot out as soon as it arrives, so ``prefetch * W + 2``
    slots are never overwritten early.

Failure
    A ``DatasetError`` in a worker (corrupt or missing image) is sent to the main process as a
    message and raised there as the same ``DatasetError`` (naming the file). Any other exception
    is re-raised by the DataLoader with the worker's traceback; a killed worker is reported by the
    DataLoader's liveness check within seconds; a stuck one is stopped by ``_Watchdog`` after
    ``timeout`` seconds and reported as stuck.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nerflite.cameras import generate_rays, ndc_rays
from nerflite.data.cache import ImageCache, Pool
from nerflite.data.chunks import SharedChunks
from nerflite.data.dynamic import ViewTimes
from nerflite.data.samplers import PixelSampler
from nerflite.data.scene import DatasetError, Scene
from nerflite.data.slots import SlotRing
from nerflite.rays import RayBundle

RayProcessor = Callable[[RayBundle, dict], tuple[RayBundle, dict]]


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of ints and strings (stable across processes and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def chunk_views(
    seed: int, rank: int, chunk: int, views: Sequence[int], per_chunk: int | None
) -> list[int] | None:
    """The training views of chunk ``chunk``, sorted; ``None`` when every chunk holds all views.

    The chunks walk through one random permutation of the views per epoch, so every view is used
    equally often; a chunk straddling two epochs drops a repeated view.
    """
    n = len(views)
    if per_chunk is None or per_chunk >= n:
        return None
    positions = range(chunk * per_chunk, (chunk + 1) * per_chunk)
    perms = {e: torch.randperm(n, generator=generator(seed, rank, "epoch", e)).tolist() for e in
             {p // n for p in positions}}
    return sorted({views[perms[p // n][p % n]] for p in positions})


@functools.lru_cache(maxsize=16)
def _constant(values: tuple[float, ...], device: torch.device) -> Tensor:
    """float32 ``values`` on ``device``, copied there once (a copy per batch would wait for the device)."""
    return torch.tensor(values, dtype=torch.float32).to(device)


def gather_batch(
    scene: Scene,
    pool: Pool,
    img: Tensor,
    y: Tensor,
    x: Tensor,
    cameras=None,
    processor: RayProcessor | None = None,
    times: ViewTimes | None = None,
) -> tuple[RayBundle, dict[str, Tensor]]:
    """Rays and ground truth for pixels ``(y, x)`` of pool images ``img`` (each int64 [n], CPU).

    Only the gathered pixels become float: ``rgb`` [n, 3] in [0, 1], composited onto
    ``scene.background`` when the images have alpha; ``mask`` [n, 1] float when the scene has
    masks; ``indices`` [n, 3] (view, y, x). Rays are float32, on the pool's device, and carry their
    views' ``extras["time"]`` in a dynamic scene (``times``: ``ViewTimes`` on that device).
    """
    cameras = scene.cameras if cameras is None else cameras
    flat = pool.offsets.index_select(0, img) + y * pool.widths.index_select(0, img) + x  # [n]
    view = pool.ids.index_select(0, img)
    device = pool.pixels.device
    if device.type != "cpu":  # from pinned memory the copy is queued: the host never waits for the device
        idx = torch.stack([flat, view, y, x])  # [4, n]
        if device.type == "cuda":
            idx = idx.pin_memory()
        flat, view, y, x = idx.to(device, non_blocking=True).unbind(0)
    px = pool.pixel_words().index_select(0, flat).view(torch.uint8).view(-1, pool.pixels.shape[1])  # [n, c]
    rgb = px[:, :3].float().mul_(1.0 / 255.0)  # [n, 3]
    if px.shape[1] == 4:
        alpha = px[:, 3:].float().mul_(1.0 / 255.0)  # [n, 1]
        bg = _constant(tuple(scene.background), device)  # [3]
        rgb = rgb * alpha + bg * (1.0 - alpha)
    batch = {"rgb": rgb, "indices": torch.stack([view, y, x], -1)}
    if pool.masks is not None:
        batch["mask"] = pool.masks.index_select(0, flat).float().unsqueeze(-1)  # [n, 1]
    rays = generate_rays(cameras, view, y, x, near=scene.near, far=scene.far)
    if scene.ndc:
        host = scene.cameras  # the intrinsics as numbers from the CPU copy (no device read-back)
        rays = ndc_rays(rays, float(host.fx[0]), float(host.fy[0]), int(host.width[0]), int(host.height[0]))
    if rays.origins.dtype != torch.float32:
        rays = rays._map(lambda t: t.float() if t.is_floating_point() else t)
    times = ViewTimes.of(scene, device) if times is None else times
    if times is not None:
        rays = times.attach(rays, view)
    if processor is not None:
        rays, batch = processor(rays, batch)
    return rays, batch


class BatchBuilder:
    """Builds training batch k: chunk of views -> pool -> sampled pixels -> rays and ground truth."""

    def __init__(
        self,
        scene: Scene,
        cache: ImageCache,
        sampler: PixelSampler,
        rays_per_batch: int,
        seed: int,
        rank: int,
        images_per_chunk: int | None,
        chunk_reuse: int,
        processor: RayProcessor | None = None,
    ):
        self.scene, self.cache, self.sampler, self.processor = scene, cache, sampler, processor
        self.n = sampler.rays_per_batch(rays_per_batch)
        self.seed, self.rank = seed, rank
        self.images_per_chunk, self.chunk_reuse = images_per_chunk, max(1, chunk_reuse)
        self.cameras = scene.cameras.to(cache.device)
        self.times = ViewTimes.of(scene, cache.device)  # None for a static scene
        self._pool_key: tuple | None = None
        self._pool: Pool | None = None
        self.shared: SharedChunks | None = None  # set in data workers of the disk and compressed caches
        self.worker = 0

    def pool_for(self, k: int) -> Pool:
        chunk = k // self.chunk_reuse
        key = (chunk,) if self.chunked else ("all",)
        if key != self._pool_key:
            views = chunk_views(self.seed, self.rank, chunk, self.cache.train_ids, self.images_per_chunk)
            self._pool = None  # release the previous chunk before decoding the next
            if self.shared is not None and views is not None:
                self._pool = self.shared.pool(chunk, views, self.worker)
            else:
                self._pool = self.cache.pool(views)
            self._pool_key = key
        return self._pool

    @property
    def chunked(self) -> bool:
        """Whether batches draw from chunks of the views rather than from all of them."""
        return self.images_per_chunk is not None and self.images_per_chunk < len(self.cache.train_ids)

    def shares_chunks(self, workers: int) -> bool:
        """Whether ``workers`` processes decode each chunk together (see ``nerflite.data.chunks``)."""
        return workers > 0 and self.chunked and self.cache.full is None and self.chunk_reuse >= workers

    def build(self, k: int) -> tuple[RayBundle, dict[str, Tensor]]:
        pool = self.pool_for(k)
        gen = generator(self.seed, self.rank, "batch", k)
        inside = pool.inside() if self.sampler.uses_masks else None
        img, y, x = self.sampler(self.n, k, pool.heights, pool.widths, gen, inside)
        return gather_batch(self.scene, pool, img, y, x, self.cameras, self.processor, self.times)


class _WorkerStream(IterableDataset):
    """What each DataLoader worker runs: batches ``start + w, start + w + W, ...`` into the ring."""

    def __init__(self, builder: BatchBuilder, ring: SlotRing, start: int, shared: SharedChunks | None):
        self.builder, self.ring, self.start, self.shared = builder, ring, start, shared

    def __iter__(self):
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.builder.cache.threads = max(1, cpus // workers)  # decode threads per worker
        self.builder.shared, self.builder.worker = self.shared, wid
        k = self.start + wid
        while True:
            try:
                rays, batch = self.builder.build(k)
            except DatasetError as e:
                yield ("error", k, str(e.path), e.problem)
                return
            slot = (k - self.start) % self.ring.slots
            yield ("ok", k, slot, self.ring.write(slot, rays, batch))
            k += workers


@contextmanager
def one_thread():
    """Build a batch with one intra-op thread (restored afterwards). A batch is many small tensor
    operations; waking the thread pool for them costs more than it saves, and its spinning threads
    slow everything else on a busy machine (up to 30x measured on 2 cores)."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


class _Watchdog:
    """Stops data workers that deliver nothing for ``timeout`` seconds, so that a stuck (alive but
    not progressing) worker becomes an error instead of a silent hang: the workers are killed and
    the DataLoader's liveness check reports them; the error then says they were stuck.

    One thread checks a timestamp once a second; a wait costs two attribute writes."""

    def __init__(self, timeout: float, pids: list[int]):
        self.timeout, self.pids = timeout, pids
        self.waiting_since: float | None = None
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nerflite-data-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            since = self.waiting_since
            if since is not None and time.monotonic() - since > self.timeout:
                self.fired = True
                for pid in self.pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return

    def call(self, fn, *args):
        self.waiting_since = time.monotonic()
        try:
            return fn(*args)
        except RuntimeError as e:
            if self.fired:
                raise RuntimeError(
                    f"data workers delivered no batch for {self.timeout:.0f} s (stuck); they were stopped "
                    "(datamanager.worker_timeout)"
                ) from e
            raise
        finally:
            self.waiting_since = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class BatchStream:
    """Batches ``start, start + 1, ...`` on the CPU (pinned when ``pin``), from ``workers``
    processes, or built in this process when ``workers == 0``."""

    def __init__(self, builder: BatchBuilder, start: int, workers: int, prefetch: int, timeout: float,
                 pin: bool = False):
        self.builder, self.next_k, self.pin = builder, start, pin
        self._it = None
        self.shared: SharedChunks | None = None
        if workers > 0:
            prefetch = max(1, prefetch)
            has_mask = builder.scene.has_masks
            ray_extras = builder.times.layout() if builder.times is not None else []
            self.ring = SlotRing(prefetch * workers + 2, builder.n, has_mask, ray_extras)
            shared = None
            if builder.shares_chunks(workers):
                first_chunk = start // builder.chunk_reuse
                shared = SharedChunks(builder.cache, builder.images_per_chunk, workers, first_chunk, timeout)
            self.shared = shared
            loader = DataLoader(
                _WorkerStream(builder, self.ring, start, shared),
                batch_size=None,
                num_workers=workers,
                prefetch_factor=prefetch,
                # 0: the DataLoader polls its workers' liveness every few seconds while it waits, so a
                # dead worker surfaces within seconds; stuck (alive) workers are the watchdog's job
                timeout=0,
                persistent_workers=False,
            )
            self._it = iter(loader)
            self._watchdog = _Watchdog(timeout, self.worker_pids())

    def next(self, device: torch.device | None = None) -> tuple[RayBundle, dict[str, Tensor]]:
        """The next batch. From workers, the two packed tensors move to ``device`` (non-blocking
        from pinned memory) and are unpacked there; in-process batches stay where they were built."""
        k = self.next_k
        if self._it is None:
            with one_thread():
                rays, batch = self.builder.build(k)
        else:
            msg = self._watchdog.call(next, self._it)
            if msg[0] == "error":
                self.close()
                raise DatasetError(msg[2], msg[3])
            _, got, slot, extras = msg
            if got != k:
                raise RuntimeError(f"data stream out of order: expected batch {k}, got {got}")
            floats, ints, extras = self.ring.read(slot, extras, self.pin)
            if device is not None and device != floats.device:
                floats = floats.to(device, non_blocking=self.pin)
                ints = ints.to(device, non_blocking=self.pin)
            rays, batch = self.ring.unpack(floats, ints, extras)
        self.next_k += 1
        return rays, batch

    def worker_pids(self) -> list[int]:
        return [w.pid for w in getattr(self._it, "_workers", [])]

    def close(self) -> None:
        if self._it is not None:
            self._watchdog.stop()
            if self.shared is not None:
                self.shared.stop()
            self._it._shutdown_workers()
            self._it = None
