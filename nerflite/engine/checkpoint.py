"""Checkpoints: atomic writes, the last K kept, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects,
so loading one cannot run code):

    step, model, optimizer, scheduler, scaler, datamanager, rng, config (the resolved config as YAML)

Writing is crash-safe: the bytes go to a temporary file in the same folder, which is flushed and
fsynced, then renamed over the final name with ``os.replace`` (atomic on POSIX), and the folder
is fsynced so the rename itself is durable. Older checkpoints are deleted only after the new one
is complete, so a process killed at any moment leaves the previous checkpoint loadable.

Loading never trusts a file: anything that is not a complete nerflite checkpoint (truncated by a
disk or copy fault, refused by ``weights_only``, another kind of file, another model's tensors)
raises ``CheckpointError`` naming the file and the problem; ``load_newest`` skips such files and
falls back to the newest one that loads (and, given a ``check``, belongs to the run:
``nerflite.engine.ownership``).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from collections.abc import Callable
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


class CheckpointError(Exception):
    """A checkpoint that cannot be used: the message names the file and the problem (shown to users
    without a traceback)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


MODEL_KEYS = ("step", "model", "config")  # what rendering needs of a checkpoint
RESUME_KEYS = (*MODEL_KEYS, "optimizer", "scheduler", "scaler", "datamanager", "rng")  # what resuming needs
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_checkpoint(path: str | Path, map_location="cpu", require: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint safely: ``weights_only=True`` refuses anything but tensors and plain data.
    ``require``: keys the checkpoint must hold. Any problem raises ``CheckpointError``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such file")
    if not path.is_file():
        raise CheckpointError(path, "not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (0 bytes): damaged or truncated")
    try:
        with warnings.catch_warnings():  # torch's warnings about foreign pickles: the error says it all
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch reports damage as RuntimeError, EOFError, KeyError, ...)
        kind = _file_kind(path)
        if kind == "other":
            problem = "not a PyTorch checkpoint (unknown file format)"
        elif isinstance(e, pickle.UnpicklingError):
            problem = _unpickling_problem(str(e))
        elif "CUDA" in str(e) or "device" in str(e):  # tensors saved on a GPU this machine lacks
            problem = f"cannot be loaded here ({str(e).splitlines()[0]})"
        else:
            problem = f"damaged or truncated ({str(e).split('. ')[0].strip() or type(e).__name__})"
        raise CheckpointError(path, problem) from e
    if not isinstance(state, dict):
        raise CheckpointError(path, f"not a nerflite checkpoint (holds a {type(state).__name__}, not a dict)")
    missing = [k for k in require if k not in state]
    if missing:
        raise CheckpointError(path, f"not a complete nerflite checkpoint (missing {', '.join(missing)})")
    return state


def _unpickling_problem(message: str) -> str:
    if "Weights only load failed" not in message:
        return f"damaged, or not a PyTorch checkpoint ({message.splitlines()[0] if message else 'unreadable data'})"
    found = _REFUSED_GLOBAL.search(message)
    what = f"a pickled object ({found.group(1)})" if found else "pickled data beyond tensors and plain values"
    return (
        f"refused: it holds {what} that safe loading (weights_only) does not allow; "
        "nerflite never writes such checkpoints, and loading one could run code"
    )


def _file_kind(path: Path) -> str:
    """'zip' (torch.save's archive), 'pickle' (its legacy format, or a plain pickle) or 'other'."""
    with open(path, "rb") as f:
        head = f.read(4)
    return "zip" if head == b"PK\x03\x04" else "pickle" if head[:1] == b"\x80" else "other"


def load_newest(
    paths: list[Path], map_location="cpu", require: tuple[str, ...] = MODEL_KEYS, warn: Callable[[str], None] = print,
    check: Callable[[Path, dict], None] | None = None,
) -> tuple[Path, dict]:
    """The first of ``paths`` (newest first) that loads, and its state; each one skipped is reported
    through ``warn`` (one line naming it and why). ``check(path, state)`` may refuse a checkpoint
    that loads (``CheckpointError``: e.g. one of another run, ``nerflite.engine.ownership``); it is
    skipped the same way. ``CheckpointError`` naming them all if none is left (just its own when
    there is one: a checkpoint named by the user)."""
    if len(paths) == 1:
        state = load_checkpoint(paths[0], map_location, require)
        if check is not None:
            check(paths[0], state)
        return paths[0], state
    problems = []
    for path in paths:
        try:
            state = load_checkpoint(path, map_location, require)
            if check is not None:
                check(path, state)
            return path, state
        except CheckpointError as e:
            problems.append(e)
            warn(f"warning: skipping checkpoint {path}: {e.problem}")
    if not problems:
        raise CheckpointError("(none)", "no checkpoint to load")
    folder = problems[0].path.parent
    names = "; ".join(f"{e.path.name}: {e.problem}" for e in problems)
    fits = " and fits the run" if any(type(e) is not CheckpointError for e in problems) else ""
    raise CheckpointError(folder, f"no checkpoint loads{fits} ({names})")


def state_mismatch(model: torch.nn.Module, state) -> str | None:
    """What differs between ``state`` (a model state dict) and ``model``'s tensors and shapes, or None."""
    expected = model.state_dict()
    if not isinstance(state, dict):
        return "its model state is not a state dict"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or resized):
        return None
    if resized:
        k = resized[0]
        return (
            f"{len(resized)} tensor(s) differ in shape, e.g. {k} is {list(state[k].shape)} in the checkpoint, "
            f"{list(expected[k].shape)} in the model"
        )
    return f"{len(missing)} tensor(s) missing, {len(unexpected)} unexpected (e.g. {(missing or unexpected)[0]})"


def check_model_state(model: torch.nn.Module, state: dict, path: str | Path, hint: str = "") -> None:
    """``CheckpointError`` unless ``state`` (a model state dict) has exactly ``model``'s tensors and shapes;
    ``hint`` ends the message (e.g. the overrides that changed the model)."""
    what = state_mismatch(model, state)
    if what is None:
        return
    if not isinstance(state, dict):
        raise CheckpointError(path, what)
    hint = hint or "; trained with other model settings?"
    raise CheckpointError(path, f"does not fit the model of the config: {what}{hint}")


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
