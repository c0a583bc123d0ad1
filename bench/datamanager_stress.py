"""Stress the streaming DataManager: many short create / iterate / restart / close cycles.

    PYTHONPATH=. python bench/datamanager_stress.py [--iters 200] [--hang-s 20] [--seed 0]

Each cycle picks a cache mode (disk, compressed, ram), 1 or 2 workers, images_per_chunk,
chunk_reuse and prefetch at random, draws a few batches, jumps to unexpected steps (as a resume
does), and checks every batch against the same batch built without workers. A cycle that takes
longer than ``--hang-s`` is a hang: the script prints the Python stacks of the training process
and of every worker (faulthandler on SIGUSR1), then exits with status 3.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
from test_datamanager import tiny_scene  # noqa: E402

from nerflite.data.datamanager import DataManager, DataManagerConfig  # noqa: E402


def _same(a, b) -> bool:
    (ra, ba), (rb, bb) = a, b
    fields = ("origins", "directions", "viewdirs", "near", "far", "camera_indices")
    return all(torch.equal(getattr(ra, f), getattr(rb, f)) for f in fields) and all(
        torch.equal(ba[k], bb[k]) for k in ba)


class Watchdog:
    """Dumps every stack and exits when a cycle overruns its deadline."""

    def __init__(self, hang_s: float):
        self.hang_s, self.deadline, self.what = hang_s, None, ""
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # inherited by forked workers
        threading.Thread(target=self._run, daemon=True).start()

    def arm(self, what: str) -> None:
        self.what, self.deadline = what, time.monotonic() + self.hang_s

    def disarm(self) -> None:
        self.deadline = None

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            if self.deadline is not None and time.monotonic() > self.deadline:
                print(f"\nHANG after {self.hang_s} s in {self.what}\n--- training process:", flush=True)
                faulthandler.dump_traceback(all_threads=True)
                for child in psutil.Process().children(recursive=True):
                    print(f"--- child {child.pid} ({child.status()}):", flush=True)
                    try:
                        os.kill(child.pid, signal.SIGUSR1)
                    except ProcessLookupError:
                        pass
                    time.sleep(0.5)
                sys.stdout.flush()
                os._exit(3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--hang-s", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    dog = Watchdog(args.hang_s)
    with tempfile.TemporaryDirectory() as tmp:
        scene = tiny_scene(Path(tmp), n=9)
        refs: dict[tuple, DataManager] = {}
        start = time.monotonic()
        for it in range(args.iters):
            cfg = dict(rays_per_batch=32, seed=3, cache=rng.choice(["disk", "compressed", "ram"]),
                       workers=rng.choice([1, 2]), images_per_chunk=rng.choice([1, 2, 3, None]),
                       chunk_reuse=rng.choice([1, 2, 3, 5]), prefetch=rng.choice([1, 2, 3]), worker_timeout=60)
            key = (cfg["images_per_chunk"], cfg["chunk_reuse"])
            if key not in refs:
                refs[key] = DataManager(scene, DataManagerConfig(**{**cfg, "cache": "disk", "workers": 0}))
            ref = refs[key]
            steps = list(range(rng.randrange(0, 6), rng.randrange(6, 12)))
            if rng.random() < 0.5:  # jump to an unexpected step, as a resume does
                cut = rng.randrange(len(steps))
                steps = steps[:cut] + list(range(rng.randrange(0, 20), rng.randrange(20, 26)))
            dog.arm(f"cycle {it}: {cfg} steps {steps}")
            dm = DataManager(scene, DataManagerConfig(**cfg))
            try:
                for s in steps:
                    got = dm.next_train(s)
                    if not _same(got, ref.next_train(s)):
                        raise AssertionError(f"cycle {it}: batch {s} differs from the in-process batch ({cfg})")
                if rng.random() < 0.3:  # resume through the state dict
                    state = dm.state_dict()
                    dm.load_state_dict(state)
                    s = state["next_step"]
                    assert _same(dm.next_train(s), ref.next_train(s))
            finally:
                dm.close()
            dog.disarm()
            if (it + 1) % 20 == 0:
                print(f"{it + 1} cycles, {time.monotonic() - start:.1f} s", flush=True)
        print(f"OK: {args.iters} cycles in {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
