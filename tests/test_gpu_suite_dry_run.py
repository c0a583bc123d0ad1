"""bench/gpu_suite.sh's CPU dry run (DRY_RUN=1): toy sizes on generated scenes, one JSON file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_its_json(tmp_path):
    out = tmp_path / "suite.json"
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    # lego_fast through train.py: the test split at the two marks and at the end (max_minutes)
    minutes = [float(m) for m in result["test_psnr"]]
    assert len(minutes) == 3 and minutes == sorted(minutes) and minutes[-1] >= result["lego_fast_minutes"] - 1e-3
    assert list(result["test_ssim"]) == list(result["test_psnr"])
    assert all(p > 5.0 for p in result["test_psnr"].values())  # it learned (the generated scene)
    steps = list(result["test_steps"].values())
    assert steps == sorted(steps) and steps[0] > 0
    train = result["lego_fast_train"]
    assert train["steps_per_s"] > 0 and train["samples_per_s"] > 0 and 0 <= train["data_wait_frac"] <= 1
    render = result["render"]
    assert render["s_per_view"] > 0 and render["dense_s_per_view"] > 0 and render["size"] == [16, 16]
    for variant in ("eager", "bf16"):
        step = result["step"][variant]
        assert step["samples_per_s"] > 0 and 0 < step["samples_per_step"] <= 4096, variant
    speed = result["speed"]
    for name in ("nerf", "instant", "neus", "neus_instant"):
        assert speed[name]["steps_per_s"] > 0 and 0 <= speed[name]["data_wait_frac"] <= 1, name
