"""Checkpoints: atomic writes, the last K kept, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects,
so loading one cannot run code):

    step, model, optimizer, scheduler, scaler, datamanager, rng, config (the resolved config as YAML)

Writing is crash-safe: the bytes go to a temporary file in the same folder, which is flushed and
fsynced, then renamed over the final name with ``os.replace`` (atomic on POSIX), and the folder
is fsynced so the rename itself is durable. Older checkpoints are deleted only after the new one
is complete, so a process killed at any moment leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

CKPT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{9})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:09d}.pt"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: dict, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a fsynced temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder`` sorted by step (temporary files are never listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run folder (or of a checkpoints folder), or None."""
    run_dir = Path(run_dir)
    folder = run_dir / CKPT_DIR if (run_dir / CKPT_DIR).is_dir() else run_dir
    ckpts = list_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir: str | Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write ``state`` (plus ``step``) as the checkpoint of ``step``, then prune to the last ``keep``."""
    folder = Path(run_dir) / CKPT_DIR
    path = atomic_save({**state, "step": step}, folder / checkpoint_name(step))
    if keep > 0:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)
    for stale in folder.glob(".step_*.pt.tmp*"):  # left by a process killed mid-write
        if not stale.name.endswith(f".tmp{os.getpid()}"):
            stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint safely: ``weights_only=True`` refuses anything but tensors and plain data."""
    return torch.load(path, map_location=map_location, weights_only=True)


# ---------------------------------------------------------------------------------------------
# Random number generator states as tensors and plain types


def rng_state() -> dict:
    """Every global RNG's state: torch CPU (and CUDA), numpy, python; all weights_only-safe."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
