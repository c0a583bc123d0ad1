import subprocess
import sys
from pathlib import Path

import pytest

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.runs import find_resume_checkpoint, hydra_run_dir
from tests.app.helpers import TINY_NERF, TINY_RUN

REPO = Path(__file__).resolve().parents[2]


def _run_with_checkpoints(root: Path, name: str, stamp: str, steps: list[int]) -> Path:
    run = root / name / stamp
    for step in steps:
        ckpt.save_checkpoint(run, step, {"x": 0})
    return run


def test_resume_finds_the_newest_run_with_a_checkpoint(tmp_path):
    old = _run_with_checkpoints(tmp_path, "lego", "2026-01-01_10-00-00", [10, 20])
    (tmp_path / "lego" / "2026-01-02_10-00-00").mkdir()  # newer, but crashed before any checkpoint
    assert find_resume_checkpoint(True, str(tmp_path), "lego") == old / "checkpoints" / ckpt.checkpoint_name(20)
    assert find_resume_checkpoint("true", str(tmp_path), "lego") == old / "checkpoints" / ckpt.checkpoint_name(20)
    assert find_resume_checkpoint(False, str(tmp_path), "lego") is None
    assert find_resume_checkpoint(str(old), str(tmp_path), "other").name == ckpt.checkpoint_name(20)
    given = old / "checkpoints" / ckpt.checkpoint_name(10)
    assert find_resume_checkpoint(str(given), str(tmp_path), "x") == given
    with pytest.raises(FileNotFoundError, match="no run of 'fern'"):
        find_resume_checkpoint(True, str(tmp_path), "fern")
    # Hydra's run folder: the resumed run's own, else a new dated one.
    assert hydra_run_dir(str(tmp_path), "lego", True) == str(old)
    fresh = Path(hydra_run_dir(str(tmp_path), "lego", False))
    assert fresh.parent == tmp_path / "lego" and fresh.name[:2] == "20" and not fresh.exists()


def test_multirun_sweep_trains_each_job_in_its_own_folder(tiny_scene, tmp_path):
    args = [
        f"dataset.path={tiny_scene('blender')}",
        f"output_root={tmp_path}",
        *TINY_NERF,
        *TINY_RUN,
        "trainer.steps=1",
        "trainer.final_eval_images=1",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "seed=0,1", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "synthetic_nerf").glob("multirun_*/*") if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    for seed, job in enumerate(jobs):
        assert f"seed={seed}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert "seed: " + str(seed) in (job / "config.yaml").read_text()
        assert ckpt.latest(job).name == ckpt.checkpoint_name(1)
