"""Chunks of decoded images shared by all data workers (``disk`` and ``compressed`` caches).

Every batch of chunk c draws from the same ``images_per_chunk`` views, and with round-robin
delivery every worker builds batches of every chunk. Decoding the chunk in each worker would cost
W times the decode work; instead the workers decode it together into one of two shared-memory
buffers (chunk c lives in buffer c % 2, so chunk c + 1 can be filled while c is still in use):

1. A worker that needs chunk c publishes ``progress[w] = c`` and waits until every worker has
   reached at least chunk c - 1 (so nobody still reads chunk c - 2 from the same buffer).
2. The first worker there marks the buffer as holding chunk c; then each worker claims images
   not yet claimed (under one lock), decodes them straight into the buffer and marks them done.
3. It waits until every image of the chunk is done (the others are decoding theirs) and reads.

No worker ever waits for another one's participation, only for images being decoded and for
workers behind it to catch up. Workers behind can always catch up when ``chunk_reuse >= workers``:
then the batches of every worker that precede a given batch lie at most one chunk earlier, and
the DataLoader has already requested them. Buffers hold RGBA (RGB images get alpha 255, which
composites to exactly the same colours).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence

import torch

from nerflite.data.cache import ImageCache, Pool, _fill

_TODO, _CLAIMED, _DONE = 0, 1, 2


class SharedChunks:
    def __init__(self, cache: ImageCache, per_chunk: int, workers: int, first_chunk: int, timeout: float):
        scene = cache.scene
        views = torch.as_tensor(cache.train_ids, dtype=torch.int64)
        sizes = (scene.cameras.height[views] * scene.cameras.width[views]).long()
        capacity = int(sizes.sort(descending=True).values[:per_chunk].sum())  # the largest chunk possible
        self.cache, self.per_chunk, self.timeout = cache, per_chunk, timeout
        self.pixels = torch.empty(2, capacity, 4, dtype=torch.uint8).share_memory_()
        self.masks = torch.empty(2, capacity, dtype=torch.uint8).share_memory_() if scene.has_masks else None
        self.chunk = torch.full((2,), -(2**40), dtype=torch.int64).share_memory_()  # chunk in each buffer
        self.state = torch.zeros(2, per_chunk, dtype=torch.int8).share_memory_()
        self.progress = torch.full((workers,), first_chunk - 1, dtype=torch.int64).share_memory_()
        self.lock = multiprocessing.get_context().Lock()

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"data worker waited {self.timeout:.0f} s for {what}")
            time.sleep(0.0005)

    def pool(self, chunk: int, views: Sequence[int], worker: int) -> Pool:
        """Chunk ``chunk`` (views ``views``) decoded together with the other workers."""
        b = chunk % 2
        self.progress[worker] = chunk
        behind = f"the other workers to reach chunk {chunk - 1}"
        self._wait(lambda: int(self.progress.min()) >= chunk - 1, behind)
        with self.lock:
            if int(self.chunk[b]) != chunk:
                self.state[b].zero_()
                self.chunk[b] = chunk
        heights, widths = self.cache.scene.cameras.height, self.cache.scene.cameras.width
        idx = torch.as_tensor(list(views), dtype=torch.int64)
        heights, widths = heights[idx].long(), widths[idx].long()
        sizes = heights * widths
        offsets = torch.cumsum(sizes, 0) - sizes
        state = self.state[b]
        deadline = time.monotonic() + self.timeout
        while True:  # claim and decode images until every image of the chunk is done
            with self.lock:
                todo = torch.nonzero(state[: len(views)] == _TODO)
                i = int(todo[0]) if todo.numel() else -1
                if i >= 0:
                    state[i] = _CLAIMED
            if i < 0:
                if bool((state[: len(views)] == _DONE).all()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"data worker waited {self.timeout:.0f} s for chunk {chunk}")
                time.sleep(0.0005)
                continue
            try:
                o = int(offsets[i])
                _fill(self.pixels[b], o, self.cache._decode(views[i]))
                if self.masks is not None:
                    m = torch.from_numpy(self.cache._decode_mask(views[i]).reshape(-1))
                    self.masks[b, o : o + int(sizes[i])].copy_(m.view(torch.uint8))
            except BaseException:
                state[i] = _TODO  # a worker waiting for this image decodes it again and reports the error too
                raise
            state[i] = _DONE
        return Pool(
            ids=idx, heights=heights, widths=widths, offsets=offsets, pixels=self.pixels[b],
            masks=self.masks[b].view(torch.bool) if self.masks is not None else None,
        )
