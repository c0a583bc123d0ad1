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
import os
import time
from collections.abc import Sequence

import psutil
import torch

from nerflite.data.cache import ImageCache, Pool, _fill, decode_threads

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
        self.pids = torch.zeros(workers, dtype=torch.int64).share_memory_()
        self.stopping = torch.zeros(1, dtype=torch.int8).share_memory_()  # set by the main process on close
        self.lock = multiprocessing.get_context().Lock()

    def stop(self) -> None:
        """Release workers that wait on each other (called before the stream shuts them down)."""
        self.stopping[0] = 1

    def _peer_died(self) -> int:
        for pid in self.pids.tolist():
            if pid > 0:
                try:
                    if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                        return pid
                except psutil.NoSuchProcess:
                    return pid
        return 0

    def _wait(self, ready, what: str) -> None:
        """Poll ``ready()``; give up when the stream stops, a peer worker died, or after the timeout."""
        start = last_check = time.monotonic()
        while not ready():
            now = time.monotonic()
            if self.stopping[0]:
                raise RuntimeError("data stream stopped")
            if now - last_check > 0.2:
                last_check = now
                if dead := self._peer_died():
                    raise RuntimeError(f"data worker (pid {dead}) died while decoding a shared chunk")
            if now - start > self.timeout:
                raise RuntimeError(f"data worker waited {self.timeout:.0f} s for {what}")
            time.sleep(0.0005)

    def pool(self, chunk: int, views: Sequence[int], worker: int) -> Pool:
        """Chunk ``chunk`` (views ``views``) decoded together with the other workers."""
        b = chunk % 2
        self.pids[worker] = os.getpid()
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
        threads = max(1, min(self.cache.threads, len(views)))
        if threads == 1:
            self._decode_share(b, chunk, views, offsets, sizes)
        else:  # fewer workers than cores: each worker decodes with several threads (OpenCV frees the GIL)
            with decode_threads(threads) as ex:
                for job in [ex.submit(self._decode_share, b, chunk, views, offsets, sizes) for _ in range(threads)]:
                    job.result()
        return Pool(
            ids=idx, heights=heights, widths=widths, offsets=offsets, pixels=self.pixels[b],
            masks=self.masks[b].view(torch.bool) if self.masks is not None else None,
        )

    def _decode_share(self, b: int, chunk: int, views: Sequence[int], offsets, sizes) -> None:
        """Claim and decode images of the chunk in buffer ``b`` until every image is done."""
        state = self.state[b]
        done = lambda: bool((state[: len(views)] == _DONE).all())  # noqa: E731
        while True:  # claim and decode images until every image of the chunk is done
            with self.lock:
                todo = torch.nonzero(state[: len(views)] == _TODO)
                i = int(todo[0]) if todo.numel() else -1
                if i >= 0:
                    state[i] = _CLAIMED
            if i < 0:  # the rest is being decoded by others (or failed and went back to the list)
                self._wait(lambda: done() or bool((state[: len(views)] == _TODO).any()), f"chunk {chunk}")
                if done():
                    break
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
