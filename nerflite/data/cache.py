"""Image caches: where the pixels of the training images live between the files and a batch.

Pixels are uint8 everywhere here; a batch converts only the pixels it gathered to float.

``ram``         every image decoded once (a thread pool: OpenCV releases the GIL) straight into ONE
                shared-memory uint8 tensor, so all data workers read the same pages (fork or spawn).
``compressed``  the encoded files held in one shared uint8 tensor; workers decode a chunk at a time.
``disk``        nothing held; workers read and decode a chunk of images at a time.
``device``      like ``ram`` but the tensor lives on the training device (rays are built there too).

A ``Pool`` is the set of images one batch draws from (all of them, or the current chunk): a flat
pixel tensor [t, c] plus, per image, its offset into it and its size. ``pool.pixels[offset[i] +
y * width[i] + x]`` is pixel (y, x) of pool image i. Images of different sizes are fine.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import psutil
import torch
from torch import Tensor

from nerflite.data.images import decode_image, decode_mask, read_image, read_mask
from nerflite.data.samplers import inside_indices
from nerflite.data.scene import DatasetError, Scene

CACHE_MODES = ("ram", "compressed", "disk", "device")


def cache_bytes(scene: Scene, ids: Sequence[int]) -> int:
    """Bytes the decoded images ``ids`` take at most (uint8 RGBA, plus a mask byte where masked)."""
    cams, idx = scene.cameras, torch.as_tensor(list(ids), dtype=torch.int64)
    pixels = int((cams.height[idx].long() * cams.width[idx].long()).sum())
    return pixels * (5 if scene.has_masks else 4)


def choose_cache(need: int, device: torch.device, share: float) -> tuple[str, str]:
    """``cache=auto``: (mode, why). ``device`` on a GPU when the images (``need`` bytes) take at most
    ``share`` of its memory and fit in what is free; else ``ram`` when they fit in 80% of the free
    RAM; else ``compressed``."""
    gb = need / 1e9
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if need <= share * total and need <= 0.8 * free:
            return "device", f"{gb:.2f} GB of images, {100 * need / total:.1f}% of {device}'s {total / 1e9:.0f} GB"
    ram = psutil.virtual_memory().available
    if need <= 0.8 * ram:
        where = "" if device.type != "cuda" else f", over {100 * share:.0f}% of {device}'s memory"
        return "ram", f"{gb:.2f} GB of images{where}"
    return "compressed", f"{gb:.2f} GB of images, more than the free RAM ({ram / 1e9:.1f} GB)"


@contextmanager
def decode_threads(n: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose exit returns only once its OS threads have really ended.

    ``Thread.join`` returns before a thread has run its native thread-local destructors; OpenCV's
    takes a process-wide mutex. A data worker forked in that window inherits the mutex locked and
    its first OpenCV call from a new thread deadlocks forever. Every pool of decode threads in a
    process that may fork afterwards (the training process) must therefore be fully gone first.
    """
    tids: list[int] = []
    lock = threading.Lock()

    def note() -> None:
        with lock:
            tids.append(threading.get_native_id())

    with ThreadPoolExecutor(max(1, n), initializer=note) as ex:
        yield ex
    deadline = time.monotonic() + 5.0
    for tid in tids:  # /proc/self/task/<tid> vanishes once the thread has exited completely
        while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
            time.sleep(0.0002)


def file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read image file ({e.strerror or e})") from None


def read_into(path, out: np.ndarray) -> None:
    """Read the whole file into ``out`` (uint8, exactly the file's size)."""
    try:
        with open(path, "rb") as f:
            got = f.readinto(memoryview(out))
    except OSError as e:
        raise DatasetError(path, f"cannot read image file ({e.strerror or e})") from None
    if got != out.shape[0]:
        raise DatasetError(path, "image file changed size while being read")


@dataclass
class Pool:
    """Images one batch draws from; see the module docstring for the layout."""

    ids: Tensor  # [I] int64 scene view index of each pool image
    heights: Tensor  # [I] int64
    widths: Tensor  # [I] int64
    offsets: Tensor  # [I] int64 first pixel of each image in `pixels` (and `masks`)
    pixels: Tensor  # [t, c] uint8, c = 3 (RGB) or 4 (RGBA)
    masks: Tensor | None = None  # [t] bool
    _inside: Tensor | None = field(default=None, repr=False)

    def inside(self) -> Tensor:
        """Sorted indices of mask pixels over the pool's images concatenated in pool order [k] (cached)."""
        if self._inside is None:
            if self.masks is None:
                raise ValueError("the scene has no masks")
            sizes = (self.heights * self.widths).tolist()
            parts = [self.masks[o : o + s] for o, s in zip(self.offsets.tolist(), sizes)]
            masks = torch.cat(parts) if len(parts) > 1 else parts[0]
            self._inside = inside_indices(masks.cpu())  # sampling happens on the CPU
        return self._inside

    def pixel_words(self) -> Tensor:
        """``pixels`` with one element per pixel ([t] int32 for RGBA), for fast gathers."""
        if self.pixels.shape[1] == 4:
            return self.pixels.view(torch.int32).view(-1)
        return self.pixels

    def share_memory_(self) -> Pool:
        for t in (self.pixels, self.masks, self._inside):
            if t is not None and t.device.type == "cpu":
                t.share_memory_()
        return self


def _sizes(scene: Scene, ids: Sequence[int]) -> tuple[Tensor, Tensor]:
    idx = torch.as_tensor(list(ids), dtype=torch.int64)
    return scene.cameras.height[idx].long(), scene.cameras.width[idx].long()


def _fill(buffer: Tensor, offset: int, img: np.ndarray) -> None:
    """Copy one decoded image [h, w, c'] into rows of ``buffer`` [t, c]; RGB into RGBA gets alpha 255."""
    flat = torch.from_numpy(img.reshape(-1, img.shape[-1]))
    rows = buffer[offset : offset + flat.shape[0]]
    rows[:, : flat.shape[1]].copy_(flat)
    if flat.shape[1] < buffer.shape[1]:
        rows[:, flat.shape[1] :].fill_(255)


def build_pool(
    scene: Scene,
    ids: Sequence[int],
    decode: callable,
    decode_mask_fn: callable | None,
    threads: int,
    device: torch.device | str = "cpu",
    shared: bool = False,
) -> Pool:
    """Decode images ``ids`` with ``decode(view) -> uint8 [h, w, c]`` into one pool.

    Threads decode in parallel and write straight into the preallocated tensor. The channel count
    is that of the first image; an RGBA image among RGB ones widens the pool (one re-copy).
    """
    ids = list(ids)
    heights, widths = _sizes(scene, ids)
    sizes = heights * widths
    offsets = torch.cumsum(sizes, 0) - sizes
    total = int(sizes.sum())
    first = decode(ids[0])
    channels = [first.shape[2]]

    def alloc(c: int) -> Tensor:
        t = torch.empty(total, c, dtype=torch.uint8, device=device)
        return t.share_memory_() if shared and t.device.type == "cpu" else t

    pixels = alloc(channels[0])
    masks = alloc(1).view(-1) if decode_mask_fn is not None else None

    def work(i: int) -> int:
        img = first if i == 0 else decode(ids[i])
        o = int(offsets[i])
        if img.shape[2] > pixels.shape[1]:
            return i  # widen later
        _fill(pixels, o, img)
        if masks is not None:
            m = torch.from_numpy(decode_mask_fn(ids[i]).reshape(-1))  # [h * w] bool
            masks[o : o + int(sizes[i])].copy_(m.view(torch.uint8))
        return -1

    with decode_threads(threads) as ex:
        late = [i for i in ex.map(work, range(len(ids))) if i >= 0]
    if late:  # some images had alpha: widen to RGBA and add them
        wide = alloc(4)
        wide[:, :3].copy_(pixels)
        wide[:, 3].fill_(255)
        pixels = wide
        for i in late:
            _fill(pixels, int(offsets[i]), decode(ids[i]))
    return Pool(
        ids=torch.as_tensor(ids, dtype=torch.int64),
        heights=heights,
        widths=widths,
        offsets=offsets,
        pixels=pixels,
        masks=masks.view(torch.bool) if masks is not None else None,
    )


class ImageCache:
    """Makes the pool for a list of views: from memory (``ram``, ``device``) or by decoding."""

    def __init__(self, scene: Scene, mode: str, train_ids: Sequence[int], device="cpu", threads: int = 2):
        if mode not in CACHE_MODES:
            raise ValueError(f"unknown cache mode {mode!r} ({' | '.join(CACHE_MODES)})")
        self.scene, self.mode, self.threads = scene, mode, threads
        self.device = torch.device(device) if mode == "device" else torch.device("cpu")
        self.train_ids = list(train_ids)
        self.full: Pool | None = None  # every training image (ram, device)
        self.encoded: Tensor | None = None  # compressed: all files' bytes [b] uint8
        self.enc_offsets: dict[int, tuple[int, int]] = {}
        self.mask_offsets: dict[int, tuple[int, int]] = {}
        if mode in ("ram", "device"):
            self._check_fits()
            self.full = self.decode_pool(self.train_ids, device=self.device, shared=mode == "ram")
        elif mode == "compressed":
            self._load_encoded()

    def _check_fits(self) -> None:
        """Refuse a ``ram``/``device`` cache that cannot fit, before decoding anything."""
        need = cache_bytes(self.scene, self.train_ids)
        if self.device.type == "cuda":
            free = torch.cuda.mem_get_info(self.device)[0]
        elif self.device.type == "cpu":
            free = psutil.virtual_memory().available
        else:
            return
        if need > 0.8 * free:
            raise MemoryError(
                f"cache={self.mode} needs up to {need / 2**30:.1f} GiB for {len(self.train_ids)} images but "
                f"{free / 2**30:.1f} GiB are free on {self.device}; use cache=compressed or cache=disk"
            )

    # -- decoding ----------------------------------------------------------------------------
    def _size(self, view: int) -> tuple[int, int]:
        cams = self.scene.cameras
        return int(cams.width[view]), int(cams.height[view])

    def _decode(self, view: int) -> np.ndarray:
        path = self.scene.image_paths[view]
        if self.encoded is not None and view in self.enc_offsets:
            o, n = self.enc_offsets[view]
            return decode_image(self.encoded[o : o + n].numpy().tobytes(), path, self._size(view))
        return read_image(path, self._size(view))

    def _decode_mask(self, view: int) -> np.ndarray:
        path = self.scene.mask_paths[view]
        if self.encoded is not None and view in self.mask_offsets:
            o, n = self.mask_offsets[view]
            return decode_mask(self.encoded[o : o + n].numpy().tobytes(), path, self._size(view))
        return read_mask(path, self._size(view))

    def decode_pool(self, ids: Sequence[int], device="cpu", shared: bool = False) -> Pool:
        mask_fn = self._decode_mask if self.scene.has_masks else None
        return build_pool(self.scene, ids, self._decode, mask_fn, self.threads, device, shared)

    def _load_encoded(self) -> None:
        """Read every training file (and mask) into one shared byte tensor."""
        paths = [(v, self.scene.image_paths[v], self.enc_offsets) for v in self.train_ids]
        if self.scene.has_masks:
            paths += [(v, self.scene.mask_paths[v], self.mask_offsets) for v in self.train_ids]
        sizes = [file_size(p) for _, p, _ in paths]
        self.encoded = torch.empty(sum(sizes), dtype=torch.uint8).share_memory_()
        buffer = self.encoded.numpy()
        o = 0
        for (view, _, table), n in zip(paths, sizes):
            table[view] = (o, n)
            o += n

        def read(job) -> None:  # straight from the file into the shared tensor, no extra copy
            view, path, table = job
            o, n = table[view]
            read_into(path, buffer[o : o + n])

        with decode_threads(self.threads) as ex:
            list(ex.map(read, paths))

    # -- pools -------------------------------------------------------------------------------
    def pool(self, ids: Sequence[int] | None) -> Pool:
        """The pool of views ``ids`` (``None``: all training views). ``ram`` and ``device`` pools
        share the cached pixels (only offsets change); the others decode the images now."""
        if ids is None:
            ids = self.train_ids
        if self.full is not None:
            if list(ids) == self.train_ids:
                return self.full
            pos = {v: i for i, v in enumerate(self.train_ids)}
            sel = torch.as_tensor([pos[v] for v in ids], dtype=torch.int64)
            f = self.full
            return Pool(f.ids[sel], f.heights[sel], f.widths[sel], f.offsets[sel], f.pixels, f.masks)
        return self.decode_pool(ids)

    def nbytes(self) -> int:
        held = [self.encoded] if self.encoded is not None else []
        if self.full is not None:
            held += [t for t in (self.full.pixels, self.full.masks) if t is not None]
        return sum(t.numel() * t.element_size() for t in held)
