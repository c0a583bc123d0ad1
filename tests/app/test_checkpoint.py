import random
import subprocess
import sys
import textwrap

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
