import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nerflite.engine import checkpoint as ckpt


def _state(value: float) -> dict:
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "rng": ckpt.rng_state(),
        "config": "a: 1\n",
        "datamanager": {"counter": torch.tensor(5), "epoch": 2},
    }


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    state = _state(0.5)
    path = ckpt.save_checkpoint(tmp_path, 7, state)
    assert path == tmp_path / "checkpoints" / ckpt.checkpoint_name(7)
    loaded = torch.load(path, weights_only=True)  # no pickled objects anywhere
    assert loaded["step"] == 7
    torch.testing.assert_close(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["optimizer"]["state"][0]["step"] == state["optimizer"]["state"][0]["step"]
    assert loaded["config"] == "a: 1\n"
    assert ckpt.latest(tmp_path) == path


def test_keep_last_k(tmp_path):
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, step, {"x": torch.tensor(step)}, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")]
    assert names == [ckpt.checkpoint_name(4), ckpt.checkpoint_name(5)]
    assert ckpt.load_checkpoint(ckpt.latest(tmp_path))["x"].item() == 5


def test_rng_state_round_trip():
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ckpt.rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(state)
    got = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]


_WRITER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from nerflite.engine import checkpoint as ckpt
    run, mode = sys.argv[1], sys.argv[2]
    ckpt.save_checkpoint(run, 1, {"w": torch.full((1000,), 1.0)})
    if mode == "before_rename":   # die after the data is on disk, before os.replace
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    else:                         # die in the middle of writing the file
        real_fsync = os.fsync
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    ckpt.save_checkpoint(run, 2, {"w": torch.full((1_000_000,), 2.0)})
    print("not reached")
    """
)


@pytest.mark.parametrize("mode", ["mid_write", "before_rename"])
def test_killed_while_writing_keeps_previous_checkpoint(tmp_path, mode):
    proc = subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), mode], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # really killed
    assert "not reached" not in proc.stdout
    folder = tmp_path / "checkpoints"
    leftovers = [p.name for p in folder.iterdir() if ".tmp" in p.name]
    assert leftovers, "the killed write should have left its temporary file"
    latest = ckpt.latest(tmp_path)
    assert latest.name == ckpt.checkpoint_name(1)
    assert torch.load(latest, weights_only=True)["w"].sum().item() == 1000.0
    # The next save completes and clears the stale temporary file.
    ckpt.save_checkpoint(tmp_path, 3, {"w": torch.zeros(1)})
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
    assert ckpt.latest(tmp_path).name == ckpt.checkpoint_name(3)


def _write(path, kind: str) -> None:
    if kind == "truncated":
        ckpt.atomic_save({"step": 1, "model": {"w": torch.zeros(1000)}, "config": "a: 1\n"}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("dataset: lego\n")
    elif kind == "pickled_object":
        torch.save({"step": 1, "model": {}, "config": "", "path": Path("/tmp")}, path)
    elif kind == "tensors_only":
        torch.save({"weight": torch.zeros(2)}, path)


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("truncated", r"damaged or truncated \(PytorchStreamReader"),
        ("empty", r"empty file \(0 bytes\)"),
        ("text", r"not a PyTorch checkpoint"),
        ("pickled_object", r"refused: it holds a pickled object \(pathlib.PosixPath\).*weights_only"),
        ("tensors_only", r"not a complete nerflite checkpoint \(missing step, model, config\)"),
    ],
)
def test_load_checkpoint_names_the_file_and_the_problem(tmp_path, kind, problem):
    path = tmp_path / "step_000000001.pt"
    _write(path, kind)
    with pytest.raises(ckpt.CheckpointError, match=problem) as err:
        ckpt.load_checkpoint(path, require=ckpt.MODEL_KEYS)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_load_newest_skips_damaged_checkpoints(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, {"model": {"w": torch.full((10,), float(step))}, "config": ""})
    paths = ckpt.list_checkpoints(tmp_path / "checkpoints")[::-1]
    _write(paths[0], "truncated")
    _write(paths[1], "pickled_object")
    said = []
    path, state = ckpt.load_newest(paths, warn=said.append)
    assert path == paths[2] and state["step"] == 1 and state["model"]["w"][0] == 1.0
    assert len(said) == 2 and paths[0].name in said[0] and "truncated" in said[0] and "refused" in said[1]
    _write(paths[2], "empty")
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint loads \(step_000000003.pt: damaged.*step_000000001"):
        ckpt.load_newest(paths, warn=said.append)
    with pytest.raises(ckpt.CheckpointError, match="step_000000001.pt: empty file"):
        ckpt.load_newest(paths[2:])  # one named file: its own problem


def test_check_model_state_names_mismatched_tensors():
    small, big = torch.nn.Linear(3, 2), torch.nn.Linear(3, 4)
    ckpt.check_model_state(small, small.state_dict(), "a.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"a.pt: .*weight is \[4, 3\] in the checkpoint, \[2, 3\]"):
        ckpt.check_model_state(small, big.state_dict(), "a.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"1 tensor\(s\) missing, 1 unexpected"):
        ckpt.check_model_state(small, {"weight": small.weight, "other": small.bias}, "a.pt")
